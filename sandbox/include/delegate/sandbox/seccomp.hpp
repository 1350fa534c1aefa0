#pragma once
// Seccomp-BPF programs are compiled once in the parent with libseccomp and exported
// as raw BPF, so the child only has to call prctl(): nothing allocates between fork
// and exec. Profiles are data (seccomp_profile.hpp, docs/seccomp.md).
#include <linux/filter.h>

#include <cstddef>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>

namespace delegate::sandbox {

namespace seccomp {
struct Profile;
}

struct SeccompOptions {
  // When false, on top of any profile: socket() for any family but AF_UNIX and
  // io_uring_setup() answer EPERM. True removes that override; it never allows a call
  // the profile denies.
  bool network = false;
};

class SeccompProgram {
 public:
  // `profile`: a builtin name ("default", "network", "strict") or the path of an
  // OCI/Docker JSON profile (anything containing '/').
  [[nodiscard]] static Result<SeccompProgram> compile(std::string_view profile,
                                                      const SeccompOptions& options);
  [[nodiscard]] static Result<SeccompProgram> compile(const seccomp::Profile& profile,
                                                      const SeccompOptions& options);

  // Installs the filters in the calling thread. Async-signal-safe: for use in the
  // child between fork and exec. Requires no_new_privs already set. Returns -errno.
  int install() const noexcept;

  // Over all filters.
  [[nodiscard]] std::size_t instruction_count() const;
  // A profile whose rules give one syscall different actions compiles to more than one
  // filter (see seccomp.cpp); the kernel applies the most restrictive answer.
  [[nodiscard]] std::size_t filter_count() const { return filters_.size(); }

 private:
  std::vector<std::vector<sock_filter>> filters_;
};

}  // namespace delegate::sandbox
