// Profiles from files, run through the real sandbox: actions, includes/excludes, the
// "most restrictive rule wins" construction and the network override on top of a
// profile that allows everything.
#include <csignal>
#include <string>

#include <delegate/sandbox/seccomp_profile.hpp>

#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

using testing::parse_errno;
using testing::probe_sandboxed;
using testing::probe_unsandboxed;
using testing::prober;
using testing::run_capture;
using testing::Captured;
using testing::TempDir;

SeccompProgram compile_file(const TempDir& dir, const std::string& json, bool network = false,
                            bool unix_sockets = false) {
  const std::string path = dir.write("profile.json", json);
  auto p = SeccompProgram::compile(path, SeccompOptions{.network = network, .unix_sockets = unix_sockets});
  if (!p) {
    ADD_FAILURE() << p.error().message;
    std::abort();
  }
  return std::move(*p);
}

// Default ALLOW plus the given entries.
std::string permissive(const std::string& entries) {
  return R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [)" + entries + "]}";
}

TEST(SeccompUserProfile, FileProfileIsApplied) {
  TempDir dir;
  const auto filter = compile_file(dir, permissive(R"({"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13})"));
  EXPECT_EQ(probe_sandboxed(filter, "getpid"), EACCES);
  EXPECT_EQ(probe_sandboxed(filter, "openat"), probe_unsandboxed("openat"));
}

TEST(SeccompUserProfile, BadFilesAreRejectedWithTheLoadersMessage) {
  TempDir dir;
  const std::string path = dir.write("bad.json", permissive(R"({"names": ["read", "fooo"], "action": "SCMP_ACT_ALLOW"})"));
  auto p = SeccompProgram::compile(path, {});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().message, "seccomp profile " + path + R"(: syscalls[0].names[1]: unknown syscall "fooo")");
  const std::string path2 = dir.write("bad2.json", permissive(R"({"names": ["read"], "action": "SCMP_ACT_PERMIT"})"));
  p = SeccompProgram::compile(path2, {});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().message, "seccomp profile " + path2 + R"(: syscalls[0].action: unknown action "SCMP_ACT_PERMIT")");
}

Captured run_probe(const SeccompProgram& filter, const char* probe) {
  Spec spec;
  spec.argv = {prober(), probe};
  return run_capture(spec, filter);
}

TEST(SeccompUserProfile, Actions) {
  TempDir dir;
  for (const char* action : {"SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_TRAP"}) {
    const auto filter = compile_file(dir, permissive(std::string(R"({"names": ["getpid"], "action": ")") + action + "\"}"));
    const auto c = run_probe(filter, "getpid");
    EXPECT_EQ(c.outcome.status, Status::signaled) << action;
    EXPECT_EQ(c.outcome.signal, SIGSYS) << action;
  }
  const auto log = compile_file(dir, permissive(R"({"names": ["getpid"], "action": "SCMP_ACT_LOG"})"));
  EXPECT_EQ(probe_sandboxed(log, "getpid"), 0);
  // Default KILL_PROCESS: anything outside the list kills.
  const auto allow_list = compile_file(dir, R"({"defaultAction": "SCMP_ACT_KILL_PROCESS", "syscalls": []})");
  const auto killed = run_probe(allow_list, "getpid");  // not even execve is allowed
  EXPECT_EQ(killed.outcome.status, Status::signaled);
  EXPECT_EQ(killed.outcome.signal, SIGSYS);
}

// libseccomp alone would let an unconditional ALLOW swallow the conditional ERRNO of
// the same syscall; the compiler stacks filters so the more restrictive rule wins, in
// whatever order the entries come.
TEST(SeccompUserProfile, MostRestrictiveMatchingRuleWins) {
  TempDir dir;
  const std::string allow = R"({"names": ["personality"], "action": "SCMP_ACT_ALLOW"})";
  const std::string deny32 =
      R"({"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]})";
  for (const std::string& entries : {allow + "," + deny32, deny32 + "," + allow}) {
    const auto filter = compile_file(dir, permissive(entries));
    EXPECT_EQ(probe_sandboxed(filter, "personality_linux32"), EACCES) << entries;
    EXPECT_EQ(probe_sandboxed(filter, "personality_linux"), 0) << entries;
    EXPECT_EQ(filter.filter_count(), 2u);
  }
  // An allow list with an exception inside the allowed set, and a kill above both.
  const auto filter = compile_file(dir, R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38, "syscalls": [
      {"names": ["execve", "brk", "mmap", "mprotect", "munmap", "arch_prctl", "set_tid_address",
                 "set_robust_list", "rseq", "prlimit64", "openat", "read", "close", "newfstatat",
                 "pread64", "access", "write", "exit_group", "getrandom", "futex", "fstat"],
       "action": "SCMP_ACT_ALLOW"},
      {"names": ["personality"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 4294967040, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]},
      {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]},
      {"names": ["personality"], "action": "SCMP_ACT_KILL_PROCESS", "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_GE"}]}]})");
  EXPECT_EQ(probe_sandboxed(filter, "personality_linux"), 0);       // 0: allowed
  EXPECT_EQ(probe_sandboxed(filter, "getpid"), ENOSYS);             // no rule: default
  EXPECT_EQ(run_probe(filter, "personality_linux32").outcome.signal, SIGSYS);  // 8: ERRNO < KILL
  EXPECT_EQ(run_probe(filter, "personality_query").outcome.signal, SIGSYS);
}

TEST(SeccompUserProfile, CapabilityEntriesAreNotApplied) {
  TempDir dir;
  const auto filter = compile_file(dir, permissive(R"(
      {"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "includes": {"caps": ["CAP_SYS_ADMIN"]}},
      {"names": ["unshare"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
      {"names": ["personality"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "includes": {"minKernel": "999.0"}},
      {"names": ["socketpair"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13, "excludes": {"minKernel": "2.6"}})"),
      false, true);
  EXPECT_EQ(probe_sandboxed(filter, "getpid"), 0);
  EXPECT_EQ(probe_sandboxed(filter, "unshare"), EACCES);
  EXPECT_EQ(probe_sandboxed(filter, "personality_linux"), 0);
  EXPECT_EQ(probe_sandboxed(filter, "socketpair_unix"), 0);
}

// network=false denies every socket family but AF_UNIX, unix_sockets=false denies
// AF_UNIX (socket and socketpair), and io_uring goes unless both are allowed, even
// under a profile that explicitly allows socket(), socketpair() and io_uring outright.
TEST(SeccompUserProfile, SocketOverridesWinOverAnyProfile) {
  TempDir dir;
  const std::string json =
      permissive(R"({"names": ["socket", "socketpair", "io_uring_setup"], "action": "SCMP_ACT_ALLOW"})");
  const auto off = compile_file(dir, json, false);
  for (const char* probe : {"socket_inet", "socket_inet6", "socket_packet", "socket_netlink", "socket_vsock",
                            "socket_alg", "socket_inet_highbits", "io_uring_setup", "http_client", "socket_unix",
                            "socketpair_unix", "socket_unix_highbits"}) {
    EXPECT_EQ(probe_sandboxed(off, probe), EPERM) << probe;
  }
  const auto unix_only = compile_file(dir, json, false, true);
  EXPECT_EQ(probe_sandboxed(unix_only, "socket_unix"), 0);
  EXPECT_EQ(probe_sandboxed(unix_only, "socketpair_unix"), 0);
  for (const char* probe : {"socket_inet", "socket_netlink", "io_uring_setup", "socket_inet_highbits"}) {
    EXPECT_EQ(probe_sandboxed(unix_only, probe), EPERM) << probe;
  }
  const auto net_only = compile_file(dir, json, true);
  for (const char* probe : {"socket_inet", "socket_inet6", "socket_netlink", "http_client"}) {
    EXPECT_EQ(probe_sandboxed(net_only, probe), probe_unsandboxed(probe)) << probe;
  }
  // The "== AF_UNIX" rule reads the low 32 bits, like the kernel.
  for (const char* probe : {"socket_unix", "socketpair_unix", "socket_unix_highbits", "io_uring_setup"}) {
    EXPECT_EQ(probe_sandboxed(net_only, probe), EPERM) << probe;
  }
  const auto both = compile_file(dir, json, true, true);
  for (const char* probe : {"socket_inet", "socket_unix", "socketpair_unix", "socket_unix_highbits", "io_uring_setup"}) {
    EXPECT_EQ(probe_sandboxed(both, probe), probe_unsandboxed(probe)) << probe;
  }
}

// Two ERRNO answers for one call: the larger errno wins (documented, deterministic).
TEST(SeccompUserProfile, OverrideAndProfileErrnoTie) {
  TempDir dir;
  const auto filter = compile_file(dir, permissive(
      R"({"names": ["socket"], "action": "SCMP_ACT_ERRNO", "errnoRet": 97, "args": [{"index": 0, "value": 4294967295, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]})"));
  EXPECT_EQ(probe_sandboxed(filter, "socket_inet"), EAFNOSUPPORT);
  EXPECT_EQ(probe_sandboxed(filter, "socket_inet6"), EPERM);
}

// glibc's getaddrinfo(AI_ADDRCONFIG) asks NETLINK_ROUTE which families are configured
// and assumes both when that socket is refused: the network profile works without
// AF_NETLINK (see the http_client row of the table, and docs/seccomp.md).
TEST(SeccompUserProfile, HttpClientNeedsNoNetlink) {
  const auto filter = testing::compile_or_die("network", true);
  EXPECT_EQ(probe_sandboxed(filter, "socket_netlink"), EPERM);
  EXPECT_EQ(probe_sandboxed(filter, "http_client"), ECONNREFUSED);
}

}  // namespace
}  // namespace delegate::sandbox
