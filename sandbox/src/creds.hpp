#pragma once
// Child side: the step gives up every privilege before exec. Async-signal-safe.
#include <sys/types.h>

namespace delegate::sandbox::detail {

struct CredPlan {
  uid_t uid = 0;
  gid_t gid = 0;
  // Drop supplementary groups (needs CAP_SETGID; impossible in a user namespace an
  // unprivileged agent created, where it keeps its own groups).
  bool clear_groups = false;
  // The process holds capabilities (root, or creator of its user namespace) that must
  // go: bounding set, securebits so uid 0 never regains them at exec, then the sets.
  bool drop_capabilities = false;
};

// Returns 0 or an errno.
[[nodiscard]] int drop_privileges(const CredPlan& plan) noexcept;

}  // namespace delegate::sandbox::detail
