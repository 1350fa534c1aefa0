#include "creds.hpp"

#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace delegate::sandbox::detail {

int drop_privileges(const CredPlan& plan) noexcept {
  if (plan.drop_capabilities) {
    // Every capability out of the bounding set, so no file capability or setuid-root
    // binary can hand one back. The loop ends at the kernel's last capability (EINVAL).
    for (unsigned long cap = 0; cap < 64; ++cap) {
      if (::prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0) {
        if (errno == EINVAL) break;
        return errno;
      }
    }
    // uid 0 gets no capabilities at exec (a "root" step is root only for file
    // ownership), and none of these rules can be undone by the step.
    const unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP_LOCKED |
                               SECBIT_KEEP_CAPS_LOCKED | SECBIT_NO_CAP_AMBIENT_RAISE |
                               SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (::prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) != 0) return errno;
  }
  // Raw syscalls, not the glibc wrappers: those broadcast the change to every thread
  // glibc believes exists (POSIX process-wide credentials) and wait for their answers.
  // This child is a clone of a multi-threaded agent: the other threads do not exist
  // here, and the wait would never end.
  if (plan.clear_groups && ::syscall(SYS_setgroups, 0, nullptr) != 0) return errno;
  if (::syscall(SYS_setresgid, plan.gid, plan.gid, plan.gid) != 0) return errno;
  if (::syscall(SYS_setresuid, plan.uid, plan.uid, plan.uid) != 0) return errno;
  if (plan.drop_capabilities) {
    __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
    __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
    if (::syscall(SYS_capset, &header, data) != 0) return errno;
  }
  // Ambient capabilities survive exec for non-root; there must be none.
  if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) != 0 && errno != EINVAL) return errno;
  return 0;
}

}  // namespace delegate::sandbox::detail
