#include <delegate/sandbox/seccomp.hpp>

#include <fcntl.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <memory>
#include <span>

#include "unique_fd.hpp"

namespace delegate::sandbox {
namespace {

// Syscalls that answer EPERM in every builtin profile: everything Docker's default
// profile never allows an unprivileged container (plus chroot, which Docker grants
// with CAP_SYS_CHROOT but a step has no business using). Each name must be known to
// libseccomp: an unknown name fails compile() instead of being skipped, so a typo here
// can never silently open a hole. Names that libseccomp knows but the native
// architecture lacks (e.g. iopl on arm64) are handled by libseccomp itself.
constexpr const char* kDeniedEverywhere[] = {
    // debugging / reading other processes' memory
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    // mount family, old and new API
    "mount", "umount2", "pivot_root", "chroot", "move_mount", "open_tree", "fsopen",
    "fsconfig", "fsmount", "fspick", "mount_setattr",
    // replacing or reconfiguring the kernel
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    "bpf", "perf_event_open", "lookup_dcookie", "reboot", "swapon", "swapoff", "acct",
    "quotactl", "syslog", "_sysctl", "sysfs", "ustat", "uselib", "nfsservctl", "vhangup",
    // kernel keyrings are not namespaced
    "keyctl", "add_key", "request_key",
    // clocks are host-global
    "settimeofday", "clock_settime", "clock_adjtime", "adjtimex",
    // raw port I/O
    "iopl", "ioperm",
    // namespaces (clone with CLONE_NEW* is handled by an argument filter below)
    "setns", "unshare",
    // historically a rich source of kernel bugs and of seccomp bypasses
    "userfaultfd", "io_uring_setup", "io_uring_enter", "io_uring_register",
    // file handles bypass path-based access checks
    "open_by_handle_at", "name_to_handle_at",
};

// Process creation, denied by "strict" only.
constexpr const char* kStrictProcessCreation[] = {"fork", "vfork", "clone"};

// CLONE_NEW* flags as seen in clone()'s first argument on x86_64. CLONE_NEWTIME
// (0x80) is omitted on purpose: in clone() those bits are the exit signal; a time
// namespace can only be requested through clone3 (ENOSYS here) or unshare (EPERM).
constexpr std::uint64_t kCloneNamespaceFlags[] = {
    CLONE_NEWNS, CLONE_NEWCGROUP, CLONE_NEWUTS, CLONE_NEWIPC,
    CLONE_NEWUSER, CLONE_NEWPID, CLONE_NEWNET,
};

// personality() values Docker allows: PER_LINUX, PER_LINUX32, UNAME26,
// UNAME26|PER_LINUX32 and the 0xffffffff query. Must stay sorted.
constexpr std::uint64_t kAllowedPersonalities[] = {0x0, 0x8, 0x20000, 0x20008, 0xffffffff};

// Socket families a step without network access may not open.
constexpr int kNetworkFamilies[] = {AF_INET, AF_INET6, AF_PACKET, AF_NETLINK};

// ioctls that push input into a terminal (keystroke injection into the agent's tty).
constexpr std::uint64_t kDeniedIoctls[] = {TIOCSTI, TIOCLINUX};

constexpr std::uint64_t kLow32 = 0xffffffffull;

struct CtxDeleter {
  void operator()(void* ctx) const noexcept { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

std::string errno_text(int negative_errno) { return std::strerror(-negative_errno); }

Result<int> resolve(const char* name) {
  const int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) {
    return fail(Errc::internal, std::string("seccomp: syscall name unknown to libseccomp: ") + name);
  }
  return nr;
}

Result<void> add_rule(const Ctx& ctx, std::uint32_t action, const char* name,
                      std::span<const scmp_arg_cmp> cmps = {}) {
  auto nr = resolve(name);
  if (!nr) return std::unexpected(nr.error());
  const int rc = seccomp_rule_add_array(ctx.get(), action, *nr,
                                        static_cast<unsigned>(cmps.size()), cmps.data());
  if (rc < 0) {
    return fail(Errc::internal,
                std::string("seccomp: cannot add rule for ") + name + ": " + errno_text(rc));
  }
  return ok();
}

// libseccomp ANDs comparisons within one rule but refuses two on the same argument,
// so "arg0 not in {a, b, …}" cannot be one rule. Instead the gaps between the allowed
// values are covered by aligned power-of-two blocks, each one masked-equality rule
// (the CIDR trick); rules with the same action are ORed.
Result<void> deny_arg0_except(const Ctx& ctx, std::uint32_t action, const char* name,
                              std::span<const std::uint64_t> allowed_sorted) {
  auto deny_range = [&](std::uint64_t lo, std::uint64_t hi) -> Result<void> {
    while (lo <= hi) {
      unsigned k = 0;
      while (k < 63) {
        const std::uint64_t size = std::uint64_t{1} << (k + 1);
        if ((lo & (size - 1)) != 0 || hi - lo < size - 1) break;
        ++k;
      }
      const std::uint64_t size = std::uint64_t{1} << k;
      const scmp_arg_cmp cmp{0, SCMP_CMP_MASKED_EQ, ~(size - 1), lo};
      if (auto r = add_rule(ctx, action, name, std::span(&cmp, 1)); !r) return r;
      if (hi - lo < size) break;  // the block reached hi (also avoids wrap-around)
      lo += size;
    }
    return ok();
  };
  std::uint64_t next = 0;
  for (const std::uint64_t v : allowed_sorted) {
    if (v > next) {
      if (auto r = deny_range(next, v - 1); !r) return r;
    }
    next = v + 1;
  }
  const scmp_arg_cmp above{0, SCMP_CMP_GT, allowed_sorted.back(), 0};
  return add_rule(ctx, action, name, std::span(&above, 1));
}

enum class Profile { default_profile, network, strict };

Result<Profile> parse_profile(std::string_view name) {
  if (name == "default") return Profile::default_profile;
  if (name == "network") return Profile::network;
  if (name == "strict") return Profile::strict;
  if (name.find('/') != std::string_view::npos || name.find('.') != std::string_view::npos) {
    // OCI/Docker-format profile files are a later issue; refusing beats guessing.
    return fail(Errc::invalid_argument, "custom seccomp profile files are not supported yet");
  }
  return fail(Errc::invalid_argument,
              "unknown seccomp profile '" + std::string(name) +
                  "' (builtin profiles: default, network, strict)");
}

Result<std::vector<sock_filter>> export_bpf(const Ctx& ctx) {
  // libseccomp 2.5 can only export to a file descriptor.
  detail::UniqueFd mem(::memfd_create("delegate-seccomp", MFD_CLOEXEC));
  if (!mem) return fail(Errc::io, std::string("memfd_create: ") + std::strerror(errno));
  if (const int rc = seccomp_export_bpf(ctx.get(), mem.get()); rc < 0) {
    return fail(Errc::internal, "seccomp_export_bpf: " + errno_text(rc));
  }
  struct stat st {};
  if (::fstat(mem.get(), &st) != 0) return fail(Errc::io, std::string("fstat: ") + std::strerror(errno));
  const auto bytes = static_cast<std::size_t>(st.st_size);
  if (bytes == 0 || bytes % sizeof(sock_filter) != 0 || bytes / sizeof(sock_filter) > BPF_MAXINSNS) {
    return fail(Errc::internal, "seccomp: exported BPF program has an invalid size");
  }
  std::vector<sock_filter> out(bytes / sizeof(sock_filter));
  auto* dst = reinterpret_cast<char*>(out.data());
  std::size_t done = 0;
  while (done < bytes) {
    const ssize_t n = ::pread(mem.get(), dst + done, bytes - done, static_cast<off_t>(done));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(Errc::io, "seccomp: cannot read back the exported BPF program");
    done += static_cast<std::size_t>(n);
  }
  return out;
}

}  // namespace

Result<SeccompProgram> SeccompProgram::compile(std::string_view profile_name,
                                               const SeccompOptions& options) {
  auto profile = parse_profile(profile_name);
  if (!profile) return std::unexpected(profile.error());

  // Seams for later issues (OCI profiles, allow-lists) go here: the profile becomes
  // data, this function stays the one place that talks to libseccomp.
  bool deny_process_creation = false;
  bool deny_all_sockets = false;
  switch (*profile) {
    case Profile::default_profile:
    case Profile::network:
      break;
    case Profile::strict:
      deny_process_creation = true;
      deny_all_sockets = true;
      break;
  }

  Ctx ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) return fail(Errc::internal, "seccomp_init failed");
  // Only the native ABI is in the filter; i386 (int 0x80) and x32 calls are foreign
  // architectures and kill the process rather than slipping past the rules.
  if (const int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
      rc < 0) {
    return fail(Errc::internal, "seccomp: cannot set bad-arch action: " + errno_text(rc));
  }
  // A binary tree keeps the cost of the (allowed) common path logarithmic in the number
  // of rules. Optional: an older libseccomp just produces a linear filter.
  (void)seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);

  const std::uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* name : kDeniedEverywhere) {
    if (auto r = add_rule(ctx, eperm, name); !r) return std::unexpected(r.error());
  }
  // ENOSYS, not EPERM: glibc then falls back to clone(), whose flags we can inspect
  // (clone3 passes them in memory, out of seccomp's reach).
  if (auto r = add_rule(ctx, SCMP_ACT_ERRNO(ENOSYS), "clone3"); !r) return std::unexpected(r.error());

  if (deny_process_creation) {
    for (const char* name : kStrictProcessCreation) {
      if (auto r = add_rule(ctx, eperm, name); !r) return std::unexpected(r.error());
    }
  } else {
    for (const std::uint64_t flag : kCloneNamespaceFlags) {
      const scmp_arg_cmp cmp{0, SCMP_CMP_MASKED_EQ, flag, flag};
      if (auto r = add_rule(ctx, eperm, "clone", std::span(&cmp, 1)); !r) {
        return std::unexpected(r.error());
      }
    }
  }

  if (auto r = deny_arg0_except(ctx, eperm, "personality", kAllowedPersonalities); !r) {
    return std::unexpected(r.error());
  }

  // The kernel truncates ioctl's request and socket's family to 32 bits, so only the
  // low half is compared: garbage in the upper half must not bypass the rule.
  for (const std::uint64_t request : kDeniedIoctls) {
    const scmp_arg_cmp cmp{1, SCMP_CMP_MASKED_EQ, kLow32, request};
    if (auto r = add_rule(ctx, eperm, "ioctl", std::span(&cmp, 1)); !r) return std::unexpected(r.error());
  }
  if (deny_all_sockets) {
    if (auto r = add_rule(ctx, eperm, "socket"); !r) return std::unexpected(r.error());
  } else if (!options.network) {
    for (const int family : kNetworkFamilies) {
      const scmp_arg_cmp cmp{0, SCMP_CMP_MASKED_EQ, kLow32, static_cast<std::uint64_t>(family)};
      if (auto r = add_rule(ctx, eperm, "socket", std::span(&cmp, 1)); !r) {
        return std::unexpected(r.error());
      }
    }
  }

  auto bpf = export_bpf(ctx);
  if (!bpf) return std::unexpected(bpf.error());
  SeccompProgram program;
  program.filter_ = std::move(*bpf);
  return program;
}

int SeccompProgram::install() const noexcept {
  // An empty (default-constructed) program must never mean "no filter".
  if (filter_.empty()) return -EINVAL;
  // Built on the stack rather than stored: a stored pointer into filter_ would dangle
  // in a copied SeccompProgram.
  sock_fprog prog{};
  prog.len = static_cast<unsigned short>(filter_.size());
  prog.filter = const_cast<sock_filter*>(filter_.data());
  if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) return -errno;
  return 0;
}

}  // namespace delegate::sandbox
