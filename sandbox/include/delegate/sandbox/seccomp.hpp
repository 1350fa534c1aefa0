#pragma once
// Seccomp-BPF programs are compiled once in the parent with libseccomp and exported
// as raw BPF, so the child only has to call prctl(): nothing allocates between fork
// and exec.
#include <linux/filter.h>

#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>

namespace delegate::sandbox {

struct SeccompOptions {
  // When false, socket() for AF_INET, AF_INET6, AF_PACKET and AF_NETLINK answers EPERM.
  bool network = false;
};

class SeccompProgram {
 public:
  // Builtin profile names: "default" (deny what Docker's default profile never allows:
  // ptrace, mount family, kexec, bpf, keyrings, modules, reboot, namespace creation, …),
  // "network" (same as default with network allowed; the flag still wins when false),
  // "strict" (default plus no process creation besides the exec'd program).
  [[nodiscard]] static Result<SeccompProgram> compile(std::string_view profile,
                                                      const SeccompOptions& options);

  // Installs the filter in the calling thread. Async-signal-safe: for use in the
  // child between fork and exec. Requires no_new_privs already set. Returns -errno.
  int install() const noexcept;

  [[nodiscard]] std::size_t instruction_count() const { return filter_.size(); }

 private:
  std::vector<sock_filter> filter_;
};

}  // namespace delegate::sandbox
