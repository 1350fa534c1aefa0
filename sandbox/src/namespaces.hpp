#pragma once
// Namespace creation details shared by the host probe and the launcher.
#include <sched.h>
#include <sys/types.h>

#include <delegate/common/error.hpp>
#include <delegate/sandbox/isolation.hpp>

namespace delegate::sandbox::detail {

inline constexpr unsigned long kAllNamespaces =
    CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWIPC | CLONE_NEWUTS;

// clone() flags for a plan. The cgroup namespace is not among them: the child unshares
// it after the parent moved it into the step's cgroup, so that cgroup becomes its root.
[[nodiscard]] unsigned long clone_flags(const IsolationPlan& plan);

// Identity maps for the step's user namespace, written by the parent. A root agent
// maps 0 (for the init, which builds the mounts) and the step user; an unprivileged
// agent can only map itself, after denying setgroups.
[[nodiscard]] Result<void> write_id_maps(pid_t child, const IsolationPlan& plan, bool agent_is_root);

// Brings up "lo" in the caller's network namespace. Returns 0 or an errno;
// async-signal-safe (the launch child calls it between clone and exec).
[[nodiscard]] int bring_loopback_up() noexcept;

}  // namespace delegate::sandbox::detail
