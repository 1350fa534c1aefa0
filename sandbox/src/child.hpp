#pragma once
// Private to the sandbox library: the part of a launch that runs in the cloned child.
// Everything it touches is prepared by the parent, because between clone and exec only
// async-signal-safe calls are allowed (the agent is multi-threaded: another thread may
// have held the malloc lock at clone time).
//
// With a pid namespace the cloned child is the namespace's init: it finishes the
// isolation (cgroup namespace, hostname, loopback, file-system view), forks the step,
// reaps everything until the step exits, reports the step's wait status and exits,
// which makes the kernel kill whatever the step left behind.
#include <signal.h>
#include <sys/resource.h>
#include <sys/types.h>

#include <array>
#include <cstddef>
#include <string_view>

#include <delegate/sandbox/seccomp.hpp>

#include "creds.hpp"
#include "mounts.hpp"

namespace delegate::sandbox::detail {

struct RlimitSetting {
  int resource;
  rlimit value;
};

// Written to the error pipe by a child that could not reach execve. The pipe is
// O_CLOEXEC, so a successful exec closes it with no data.
enum class ChildStage : int {
  setsid = 1,
  signals,
  death_signal,
  stdio,
  chdir,
  rlimit,
  no_new_privs,
  close_fds,
  seccomp,
  exec,
  sync,          // waiting for the parent (id maps, cgroups)
  cgroup_ns,
  hostname,
  loopback,
  mounts,
  fork_step,
  credentials,
};

struct ChildReport {
  int stage;   // ChildStage
  int error;   // errno
  int detail;  // mounts: index of the failing mount step
};

struct ChildPlan {
  const char* path = nullptr;
  char* const* argv = nullptr;
  char* const* envp = nullptr;
  const char* workdir = nullptr;
  // All > 2, so dup2 onto 0..2 can never clobber one of them.
  int stdin_fd = -1;
  int stdout_fd = -1;
  int stderr_fd = -1;
  int error_fd = -1;
  int go_fd = -1;      // read end: one byte once the parent has finished its part
  int status_fd = -1;  // write end: init reports the step's wait status (int) here
  std::array<RlimitSetting, 6> rlimits{};
  pid_t parent_pid = 0;
  // Upper bound for closing fds one by one when close_range() is unavailable.
  int max_fd = 1024;
  const SeccompProgram* filter = nullptr;
  sigset_t empty_mask{};

  bool init = false;                // pid namespace: act as init and fork the step
  bool cgroup_ns = false;           // unshare the cgroup namespace once moved into the step cgroup
  const char* hostname = nullptr;   // uts namespace
  bool loopback_up = false;         // fresh network namespace: bring lo up
  const MountPlan* mounts = nullptr;
  CredPlan creds;
  // The init starts the step on this stack, sharing the init's memory until execve
  // (vfork-style, see start_step in child.cpp); null means a plain _Fork().
  char* step_stack = nullptr;
  std::size_t step_stack_size = 0;
};

// The stack for the step's vfork-style start (start_step in child.cpp): one mapping
// with a guard page, made once per process. Empty where that start is not used: a
// sanitizer build, or fs.suid_dumpable other than 0 (see vfork_start_safe); then the
// plan carries no stack and the step is forked.
struct StepStack {
  char* base = nullptr;
  std::size_t size = 0;
};
[[nodiscard]] StepStack step_start_stack() noexcept;
// Whether the content of /proc/sys/fs/suid_dumpable allows the shared start.
[[nodiscard]] bool vfork_start_safe(std::string_view suid_dumpable) noexcept;

[[noreturn]] void child_main(const ChildPlan& plan) noexcept;

[[nodiscard]] const char* stage_name(ChildStage stage) noexcept;

}  // namespace delegate::sandbox::detail
