#pragma once
// Parent side while a step runs: output capture with the per-step cap, the wall-clock
// deadline, cancellation, and the kill of everything the step started.
#include <sys/resource.h>
#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>

#include <delegate/common/error.hpp>
#include <delegate/sandbox/launcher.hpp>

#include "cgroup.hpp"
#include "child.hpp"
#include "unique_fd.hpp"

namespace delegate::sandbox::detail {

// Kills and reaps the child on every path out of run(), including exceptions, so no
// step survives an agent error and no zombie is left behind.
class ChildGuard {
 public:
  ChildGuard(pid_t pid, const StepCgroup* cgroup) : pid_(pid), cgroup_(cgroup) {}
  ~ChildGuard();
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;

  // Until the child is reaped its pid, and therefore its process-group id, cannot be
  // reused, so signalling -pid can only hit the step's own group. Killing the child
  // itself ends its pid namespace when it is the init there; the cgroup kill covers
  // processes that left the group when there is no pid namespace.
  void kill_group() const noexcept;

  // Blocks until the (already exited or killed) child is reaped.
  [[nodiscard]] Result<std::pair<int, rusage>> reap();

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_;
  const StepCgroup* cgroup_;
  bool reaped_ = false;
};

struct OutputStream {
  UniqueFd fd;
  Stream kind;
};

struct LoopResult {
  bool timed_out = false;
  bool cancelled = false;
  std::optional<ChildReport> report;
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;
  std::string sink_error;
};

using SteadyClock = std::chrono::steady_clock;

[[nodiscard]] Result<LoopResult> supervise(const Spec& spec, const OutputSink& sink, const CancelToken* cancel,
                                           ChildGuard& child, UniqueFd& error_read,
                                           std::array<OutputStream, 2>& streams, SteadyClock::time_point start);

}  // namespace delegate::sandbox::detail
