#include <delegate/sandbox/seccomp.hpp>

#include <fcntl.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <map>
#include <memory>
#include <set>
#include <string>

#include <delegate/sandbox/seccomp_profile.hpp>

#include "unique_fd.hpp"

// How a profile becomes BPF
// -------------------------
// Profile semantics: for each call, the most restrictive action among the matching
// rules wins; when no rule matches, the default action applies. libseccomp cannot
// express that in one filter when one syscall has rules with different actions: an
// unconditional rule silently swallows every conditional rule of the same syscall
// (whatever their action), and overlapping conditional rules are resolved by tree
// order. Rules with the same action are simply ORed, which is exact.
//
// So each syscall whose rules all share one action goes into the base filter as is.
// A syscall with mixed actions ("ioctl allowed, except TIOCSTI") is split:
//   - the base filter (default: the profile's default action) gets all its rules as
//     ALLOW, i.e. "some rule matched";
//   - one extra filter per non-ALLOW action X (default ALLOW) gets its X rules.
// The kernel runs every installed filter and keeps the most restrictive result
// (Documentation/userspace-api/seccomp_filter.rst), which is exactly the semantics
// above: when some rule matches the base says ALLOW and the extra filters contribute
// the matching actions; when none matches the extra filters say ALLOW and the base
// its default.
//
// Equal precedence (ERRNO with two errnos) is decided by the kernel in favour of the
// filter installed last. Extra filters are installed in ascending action order, so the
// larger errno wins; the base never ties with them (see above). The base goes in last,
// so that the extra filters, which only touch mixed syscalls, are the ones in force
// while the remaining prctl() calls are made.
namespace delegate::sandbox {
namespace {

using seccomp::Action;
using seccomp::Cmp;

struct CtxDeleter {
  void operator()(void* ctx) const noexcept { seccomp_release(ctx); }
};
using Ctx = std::unique_ptr<void, CtxDeleter>;

std::string errno_text(int negative_errno) { return std::strerror(-negative_errno); }

std::uint32_t to_scmp(const seccomp::Verdict& v) {
  switch (v.action) {
    case Action::allow: return SCMP_ACT_ALLOW;
    case Action::errno_ret: return SCMP_ACT_ERRNO(v.errno_ret);
    case Action::kill_thread: return SCMP_ACT_KILL_THREAD;
    case Action::kill_process: return SCMP_ACT_KILL_PROCESS;
    case Action::trap: return SCMP_ACT_TRAP;
    case Action::log: return SCMP_ACT_LOG;
  }
  return SCMP_ACT_KILL_PROCESS;  // not reached; fail closed
}

scmp_compare to_scmp(Cmp op) {
  switch (op) {
    case Cmp::ne: return SCMP_CMP_NE;
    case Cmp::lt: return SCMP_CMP_LT;
    case Cmp::le: return SCMP_CMP_LE;
    case Cmp::eq: return SCMP_CMP_EQ;
    case Cmp::ge: return SCMP_CMP_GE;
    case Cmp::gt: return SCMP_CMP_GT;
    case Cmp::masked_eq: return SCMP_CMP_MASKED_EQ;
  }
  return _SCMP_CMP_MIN;  // not reached; libseccomp rejects it
}

struct FlatRule {
  std::uint32_t action;
  std::vector<scmp_arg_cmp> args;
  std::string where;  // for messages
};
using RuleMap = std::map<int, std::vector<FlatRule>>;  // syscall number → rules

Result<void> add_override(RuleMap& rules, const char* name, std::uint32_t action,
                          std::vector<scmp_arg_cmp> args) {
  const int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) return fail(Errc::internal, std::string("seccomp: unknown syscall ") + name);
  rules[nr].push_back(FlatRule{action, std::move(args), std::string("socket override: ") + name});
  return ok();
}

Result<Ctx> new_ctx(std::uint32_t default_action) {
  Ctx ctx(seccomp_init(default_action));
  if (!ctx) return fail(Errc::internal, "seccomp_init failed");
  // Only the native ABI is in the filter; i386 (int 0x80) and x32 calls are foreign
  // architectures and kill the process rather than slipping past the rules.
  if (const int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
      rc < 0) {
    return fail(Errc::internal, "seccomp: cannot set bad-arch action: " + errno_text(rc));
  }
  // A binary tree keeps the cost of the common path logarithmic in the number of
  // syscalls. Optional: an older libseccomp just produces a linear filter.
  (void)seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2);
  return ctx;
}

Result<void> add_rule(const Ctx& ctx, std::uint32_t default_action, int nr, std::uint32_t action,
                      const FlatRule& rule) {
  // libseccomp refuses (EACCES) a rule that repeats the default; it is a no-op anyway.
  if (action == default_action) return ok();
  const int rc = seccomp_rule_add_array(ctx.get(), action, nr, static_cast<unsigned>(rule.args.size()),
                                        rule.args.data());
  if (rc < 0) return fail(Errc::invalid_argument, "seccomp: cannot add rule " + rule.where + ": " + errno_text(rc));
  return ok();
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
  if (bytes == 0 || bytes % sizeof(sock_filter) != 0) {
    return fail(Errc::internal, "seccomp: exported BPF program has an invalid size");
  }
  if (bytes / sizeof(sock_filter) > BPF_MAXINSNS) {
    return fail(Errc::invalid_argument, "seccomp: the profile compiles to " +
                                            std::to_string(bytes / sizeof(sock_filter)) +
                                            " BPF instructions, more than the kernel's " +
                                            std::to_string(BPF_MAXINSNS));
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

// Resolves names (checking them against libseccomp's table, also in entries that do
// not apply here, so a typo never hides behind an includes clause) and flattens the
// applicable entries into per-syscall rules.
Result<RuleMap> flatten(const seccomp::Profile& profile) {
  const seccomp::Host host = seccomp::current_host();
  RuleMap rules;
  for (const seccomp::Rule& rule : profile.syscalls) {
    std::vector<int> numbers;
    for (std::size_t i = 0; i < rule.names.size(); ++i) {
      const int nr = seccomp_syscall_resolve_name(rule.names[i].c_str());
      if (nr == __NR_SCMP_ERROR) {
        return fail(Errc::parse, "seccomp profile " + profile.source + ": " + rule.where(i) +
                                     ": unknown syscall \"" + rule.names[i] + "\"");
      }
      numbers.push_back(nr);
    }
    if (!seccomp::rule_applies(rule, host)) continue;
    std::vector<scmp_arg_cmp> args;
    for (const seccomp::Arg& a : rule.args) {
      args.push_back(scmp_arg_cmp{a.index, to_scmp(a.op), a.value, a.value_two});
    }
    for (std::size_t i = 0; i < numbers.size(); ++i) {
      rules[numbers[i]].push_back(FlatRule{to_scmp(rule.verdict), args,
                                           profile.source + " " + rule.where(i) + " (" + rule.names[i] + ")"});
    }
  }
  return rules;
}

}  // namespace

Result<SeccompProgram> SeccompProgram::compile(std::string_view profile_name,
                                               const SeccompOptions& options) {
  auto profile = seccomp::load_profile(profile_name);
  if (!profile) return std::unexpected(profile.error());
  return compile(*profile, options);
}

Result<SeccompProgram> SeccompProgram::compile(const seccomp::Profile& profile,
                                               const SeccompOptions& options) {
  auto rules = flatten(profile);
  if (!rules) return std::unexpected(rules.error());

  // The family filter of SeccompOptions, for socket() and socketpair() alike: a
  // datagram socketpair can be connect()ed to a path like any socket.
  const std::uint32_t eperm = SCMP_ACT_ERRNO(EPERM);
  for (const char* call : {"socket", "socketpair"}) {
    std::vector<scmp_arg_cmp> families;
    if (!options.network && !options.unix_sockets) {
      // No family at all: unconditional.
    } else if (!options.network) {
      // A plain 64-bit "!= AF_UNIX" also refuses AF_UNIX with garbage in the upper half
      // (which the kernel truncates away): harmless, and one rule.
      families.push_back(scmp_arg_cmp{0, SCMP_CMP_NE, AF_UNIX, 0});
    } else if (!options.unix_sockets) {
      // Compared on the low 32 bits only, which is what the kernel reads: a 64-bit
      // "== AF_UNIX" would let 0x1_00000001 through as AF_UNIX.
      families.push_back(scmp_arg_cmp{0, SCMP_CMP_MASKED_EQ, 0xffffffffu, AF_UNIX});
    } else {
      continue;
    }
    if (auto r = add_override(*rules, call, eperm, std::move(families)); !r) return std::unexpected(r.error());
  }
  // io_uring can open sockets (IORING_OP_SOCKET) without calling socket().
  if (!options.network || !options.unix_sockets) {
    if (auto r = add_override(*rules, "io_uring_setup", eperm, {}); !r) return std::unexpected(r.error());
  }

  const std::uint32_t default_action = to_scmp(profile.default_verdict);
  auto base = new_ctx(default_action);
  if (!base) return std::unexpected(base.error());
  std::map<std::uint32_t, Ctx> extra;  // action → filter with default ALLOW
  for (const auto& [nr, list] : *rules) {
    std::set<std::uint32_t> actions;
    for (const FlatRule& r : list) actions.insert(r.action);
    for (const FlatRule& r : list) {
      if (actions.size() == 1) {
        if (auto a = add_rule(*base, default_action, nr, r.action, r); !a) return std::unexpected(a.error());
        continue;
      }
      if (auto a = add_rule(*base, default_action, nr, SCMP_ACT_ALLOW, r); !a) return std::unexpected(a.error());
      if (r.action == SCMP_ACT_ALLOW) continue;
      auto it = extra.find(r.action);
      if (it == extra.end()) {
        auto ctx = new_ctx(SCMP_ACT_ALLOW);
        if (!ctx) return std::unexpected(ctx.error());
        it = extra.emplace(r.action, std::move(*ctx)).first;
      }
      if (auto a = add_rule(it->second, SCMP_ACT_ALLOW, nr, r.action, r); !a) return std::unexpected(a.error());
    }
  }

  SeccompProgram program;
  program.options_ = options;
  for (const auto& [action, ctx] : extra) {
    auto bpf = export_bpf(ctx);
    if (!bpf) return std::unexpected(bpf.error());
    program.filters_.push_back(std::move(*bpf));
  }
  auto bpf = export_bpf(*base);
  if (!bpf) return std::unexpected(bpf.error());
  program.filters_.push_back(std::move(*bpf));
  // The kernel's limit over all filters of a task, counting 4 instructions of overhead
  // per filter (MAX_INSNS_PER_PATH).
  if (program.instruction_count() + 4 * program.filters_.size() > 32768) {
    return fail(Errc::invalid_argument, "seccomp: the profile compiles to too many BPF instructions");
  }
  return program;
}

std::size_t SeccompProgram::instruction_count() const {
  std::size_t n = 0;
  for (const auto& f : filters_) n += f.size();
  return n;
}

int SeccompProgram::install() const noexcept {
  // An empty (default-constructed) program must never mean "no filter".
  if (filters_.empty()) return -EINVAL;
  for (const auto& filter : filters_) {
    // Built on the stack rather than stored: a stored pointer into filters_ would
    // dangle in a copied SeccompProgram.
    sock_fprog prog{};
    prog.len = static_cast<unsigned short>(filter.size());
    prog.filter = const_cast<sock_filter*>(filter.data());
    if (::prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0) != 0) return -errno;
  }
  return 0;
}

}  // namespace delegate::sandbox
