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

// Overrides applied on top of any profile; they only ever take calls away, never allow
// a call the profile denies. socket() and socketpair() both answer EPERM for
//   - any family but AF_UNIX unless `network` (the step's network namespace, if any, is
//     empty anyway: this is defence in depth);
//   - AF_UNIX unless `unix_sockets`: without a Unix socket a step can connect() to no
//     path-based or abstract socket of the host, wherever it lives. Only steps granted
//     host sockets by the agent's policy get it (the launcher checks that the filter
//     and the grant agree).
// io_uring_setup() answers EPERM unless both are set: io_uring opens sockets
// (IORING_OP_SOCKET) without calling socket().
struct SeccompOptions {
  bool network = false;
  bool unix_sockets = false;
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

  // The overrides it was compiled with.
  [[nodiscard]] const SeccompOptions& options() const { return options_; }

 private:
  std::vector<std::vector<sock_filter>> filters_;
  SeccompOptions options_;
};

}  // namespace delegate::sandbox
