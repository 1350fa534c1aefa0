#pragma once
// Per-step cgroups: memory (no swap), pids and CPU bandwidth. On a unified (v2)
// hierarchy one directory serves every controller; on hybrid hosts each controller
// lives in its own v1 hierarchy, so a step gets one directory per controller. The
// directories are created under the agent's own cgroup, so a service manager's
// delegation (and its limits) still bound the sum of all steps.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/sandbox/isolation.hpp>

namespace delegate::sandbox::detail {

// Fills the cgroup part of HostSupport: which hierarchy serves each controller and
// whether we can create children there.
void probe_cgroups(HostSupport& host);

struct CgroupLimits {
  std::uint64_t memory_bytes = 0;
  std::uint64_t pids = 0;
  std::uint32_t cpu_percent = 0;
};

class StepCgroup {
 public:
  StepCgroup() = default;
  // Creates the directories the plan asks for and writes the limits. Any failure
  // removes what was created and is an error: a plan that promised a limit must not
  // silently launch without it.
  [[nodiscard]] static Result<StepCgroup> create(const IsolationPlan& plan, const HostSupport& host,
                                                 const CgroupLimits& limits);
  StepCgroup(StepCgroup&& other) noexcept;
  StepCgroup& operator=(StepCgroup&& other) noexcept;
  StepCgroup(const StepCgroup&) = delete;
  StepCgroup& operator=(const StepCgroup&) = delete;
  ~StepCgroup();

  [[nodiscard]] bool empty() const { return dirs_.empty(); }
  // Moves `pid` (and so everything it later forks) into every step directory.
  [[nodiscard]] Result<void> attach(pid_t pid) const;
  // SIGKILLs every process still in the step's cgroups: the tree kill that also works
  // without a pid namespace.
  void kill_all() const noexcept;
  // The kernel's OOM killer acted inside the step's memory cgroup.
  [[nodiscard]] bool oom_killed() const;
  // Peak memory use in bytes, 0 when unknown.
  [[nodiscard]] std::uint64_t peak_memory() const;

 private:
  struct Dir {
    CgroupVersion version;
    std::filesystem::path path;
    bool memory = false;
  };
  void remove() noexcept;
  std::vector<Dir> dirs_;
};

}  // namespace delegate::sandbox::detail
