// Seccomp profiles, checked by running the syscall prober inside each of them and
// comparing against the same probe run without any sandbox.
#include <stdio.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>

#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

using testing::compile_or_die;
using testing::parse_errno;
using testing::probe_sandboxed;
using testing::probe_unsandboxed;
using testing::prober;
using testing::run_capture;

// The allow/deny table of the shipped profiles (docs/seccomp.md shows the same table).
// Columns: default, default+network, network, network+network, strict, strict+network,
// then with host sockets granted (SeccompOptions::unix_sockets): default, network+network.
//   A: allowed, i.e. the same answer as without any filter;  P: EPERM;  N: ENOSYS.
struct Row {
  const char* probe;
  const char* expect;  // one letter per column
};
constexpr Row kTable[] = {
    // harmless calls every profile allows
    {"getpid", "AAAAAAAA"}, {"openat", "AAAAAAAA"}, {"mmap_256m", "AAAAAAAA"}, {"ioctl_other", "AAAAAAAA"},
    // process creation and the rest of an ordinary program's life; strict has none
    {"fork", "AAAAPPAA"}, {"clone_plain", "AAAAPPAA"}, {"socketpair_unix", "PPPPPPAA"},
    {"personality_query", "AAAAPPAA"}, {"personality_linux", "AAAAPPAA"},
    {"personality_linux32", "AAAAPPAA"}, {"personality_uname26", "AAAAPPAA"},
    // sockets: AF_UNIX (socket and socketpair) only when host sockets are granted; IP
    // only with the network profile AND flag
    {"socket_unix", "PPPPPPAA"},
    // The "!= AF_UNIX" override compares all 64 bits, the "== AF_UNIX" one and the
    // profiles the low 32: garbage in the upper half never turns a refusal into a socket.
    {"socket_unix_highbits", "PPPPPPPA"},
    {"socket_inet", "PPPAPPPA"}, {"socket_inet6", "PPPAPPPA"}, {"socket_inet_highbits", "PPPAPPPA"},
    {"http_client", "PPPAPPPA"},
    {"socket_netlink", "PPPPPPPP"}, {"socket_packet", "PPPPPPPP"}, {"socket_alg", "PPPPPPPP"},
    {"socket_vsock", "PPPPPPPP"},
    // clone3 hides its flags from seccomp: ENOSYS makes glibc fall back to clone
    {"clone3", "NNNNNNNN"},
    // denied everywhere
    {"ptrace", "PPPPPPPP"}, {"ptrace_attach", "PPPPPPPP"}, {"process_vm_readv", "PPPPPPPP"},
    {"process_vm_writev", "PPPPPPPP"}, {"kcmp", "PPPPPPPP"}, {"pidfd_getfd", "PPPPPPPP"},
    {"mount", "PPPPPPPP"}, {"umount2", "PPPPPPPP"}, {"pivot_root", "PPPPPPPP"}, {"chroot", "PPPPPPPP"},
    {"fsopen", "PPPPPPPP"}, {"open_tree", "PPPPPPPP"}, {"move_mount", "PPPPPPPP"}, {"fspick", "PPPPPPPP"},
    {"mount_setattr", "PPPPPPPP"},
    {"unshare", "PPPPPPPP"}, {"unshare_newuser", "PPPPPPPP"}, {"setns", "PPPPPPPP"},
    {"clone_newuser", "PPPPPPPP"}, {"clone_newns", "PPPPPPPP"},
    {"keyctl", "PPPPPPPP"}, {"add_key", "PPPPPPPP"}, {"request_key", "PPPPPPPP"},
    {"bpf", "PPPPPPPP"}, {"perf_event_open", "PPPPPPPP"}, {"io_uring_setup", "PPPPPPPP"},
    {"io_uring_enter", "PPPPPPPP"}, {"userfaultfd", "PPPPPPPP"},
    {"init_module", "PPPPPPPP"}, {"delete_module", "PPPPPPPP"}, {"kexec_load", "PPPPPPPP"},
    {"reboot", "PPPPPPPP"}, {"swapon", "PPPPPPPP"}, {"acct", "PPPPPPPP"}, {"syslog", "PPPPPPPP"},
    {"clock_settime", "PPPPPPPP"}, {"settimeofday", "PPPPPPPP"}, {"iopl", "PPPPPPPP"},
    {"lookup_dcookie", "PPPPPPPP"}, {"_sysctl", "PPPPPPPP"},
    {"open_by_handle_at", "PPPPPPPP"}, {"name_to_handle_at", "PPPPPPPP"},
    {"tiocsti", "PPPPPPPP"}, {"tiocsti_highbits", "PPPPPPPP"}, {"tioclinux", "PPPPPPPP"},
    {"personality_no_randomize", "PPPPPPPP"}, {"personality_read_implies_exec", "PPPPPPPP"},
    {"personality_highbits", "PPPPPPPP"},
};

struct ProfileCase {
  const char* profile;
  bool network;
  std::size_t column;
  bool unix_sockets = false;
};

void check_profile(const ProfileCase& pc) {
  const auto filter = compile_or_die(pc.profile, pc.network, pc.unix_sockets);
  for (const Row& row : kTable) {
    SCOPED_TRACE(std::string(pc.profile) + (pc.network ? "+network" : "") + (pc.unix_sockets ? "+unix " : " ") +
                 row.probe);
    const int got = probe_sandboxed(filter, row.probe);
    const char expect = row.expect[pc.column];
    if (expect == 'A') {
      EXPECT_EQ(got, probe_unsandboxed(row.probe));
    } else {
      EXPECT_EQ(got, expect == 'P' ? EPERM : ENOSYS);
    }
  }
}

TEST(SeccompProfiles, DefaultWithoutNetwork) { check_profile({"default", false, 0}); }
TEST(SeccompProfiles, DefaultWithNetworkFlagStillHasNoIpSockets) { check_profile({"default", true, 1}); }
TEST(SeccompProfiles, NetworkProfileStillHonoursTheFlag) { check_profile({"network", false, 2}); }
TEST(SeccompProfiles, NetworkProfileWithNetwork) { check_profile({"network", true, 3}); }
TEST(SeccompProfiles, Strict) { check_profile({"strict", false, 4}); }
TEST(SeccompProfiles, StrictDeniesSocketsEvenWithNetwork) { check_profile({"strict", true, 5}); }
TEST(SeccompProfiles, DefaultWithHostSocketsGranted) { check_profile({"default", false, 6, true}); }
TEST(SeccompProfiles, NetworkWithHostSocketsGranted) { check_profile({"network", true, 7, true}); }

TEST(SeccompProfiles, TableCoversEveryProbe) {
  std::set<std::string> in_table;
  for (const Row& row : kTable) {
    EXPECT_EQ(std::strlen(row.expect), 8u) << row.probe;
    EXPECT_TRUE(in_table.insert(row.probe).second) << "duplicate row " << row.probe;
  }
  // Probes deliberately outside the table: architecture checks and the personality
  // edge cases have their own tests.
  const std::set<std::string> elsewhere = {"int80_getpid", "x32_getpid"};
  FILE* f = ::popen((std::string(prober()) + " --list").c_str(), "r");
  ASSERT_NE(f, nullptr);
  char buf[128];
  while (std::fgets(buf, sizeof buf, f) != nullptr) {
    std::string name(buf);
    if (!name.empty() && name.back() == '\n') name.pop_back();
    if (!elsewhere.contains(name)) {
      EXPECT_TRUE(in_table.contains(name)) << name << " has no table row";
    }
  }
  ::pclose(f);
}

// Without this the table would prove nothing: a probe expected to be denied must not
// already fail with the same errno on this host without any filter.
TEST(SeccompProfiles, ProbesAreMeaningfulOnThisHost) {
  // Without privilege these already fail with EPERM; as root they reach the kernel's
  // argument checks.
  const std::set<std::string> privileged = {
      "mount", "umount2", "chroot", "pivot_root", "reboot", "swapon", "acct", "clone_newns",
      "socket_packet", "fsopen", "open_tree", "move_mount", "fspick", "mount_setattr",
      "clock_settime", "settimeofday", "syslog", "iopl", "bpf", "perf_event_open",
      "init_module", "delete_module", "kexec_load", "open_by_handle_at", "lookup_dcookie",
      "setns", "socket_alg", "personality_highbits"};
  for (const Row& row : kTable) {
    if (::geteuid() != 0 && privileged.contains(row.probe)) continue;
    const std::string_view expect = row.expect;
    const int got = probe_unsandboxed(row.probe);
    EXPECT_NE(got, -1) << row.probe;
    if (expect.find('P') != std::string_view::npos) {
      EXPECT_NE(got, EPERM) << row.probe << " is already EPERM without a filter";
    }
    if (expect.find('N') != std::string_view::npos) {
      EXPECT_NE(got, ENOSYS) << row.probe << " is already ENOSYS without a filter";
    }
  }
}

TEST(SeccompProfiles, ForeignArchitectureKillsTheProcess) {
  if (probe_unsandboxed("int80_getpid") != 0) GTEST_SKIP() << "no ia32 emulation on this kernel";
  Spec spec;
  spec.argv = {prober(), "int80_getpid"};
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.outcome.status, Status::signaled);
  EXPECT_EQ(c.outcome.signal, SIGSYS);
}

TEST(SeccompProfiles, X32SyscallsKillTheProcess) {
  Spec spec;
  spec.argv = {prober(), "x32_getpid"};
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.outcome.status, Status::signaled) << c.out;
  EXPECT_EQ(c.outcome.signal, SIGSYS);
}

// personality() is "deny unless one of Docker's values", built from many masked rules:
// check the values themselves and their neighbours, including the upper 32 bits.
TEST(SeccompProfiles, PersonalityAllowListEdges) {
  const auto filter = compile_or_die("default");
  for (const char* allowed : {"0x0", "0x8", "0x20000", "0x20008", "0xffffffff"}) {
    const std::string name = std::string("personality=") + allowed;
    EXPECT_NE(probe_sandboxed(filter, name), EPERM) << name;
  }
  for (const char* denied : {"0x1", "0x7", "0x9", "0x10", "0x1ffff", "0x20001", "0x20007",
                             "0x20009", "0x28000", "0x40000", "0x400000", "0x80000000",
                             "0xfffffffe", "0x100000000", "0x100000008", "0xffffffffffffffff"}) {
    const std::string name = std::string("personality=") + denied;
    EXPECT_EQ(probe_sandboxed(filter, name), EPERM) << name;
  }
}

TEST(SeccompCompile, BuiltinProfilesCompile) {
  for (const char* p : {"default", "network", "strict"}) {
    for (bool net : {false, true}) {
      auto prog = SeccompProgram::compile(p, SeccompOptions{.network = net});
      ASSERT_TRUE(prog) << p << ": " << prog.error().message;
      EXPECT_GT(prog->instruction_count(), 10u);
      EXPECT_LE(prog->instruction_count(), 4096u);
    }
  }
}

TEST(SeccompCompile, UnknownProfileIsAnError) {
  // Without a '/', a name is a builtin: "profile.json" is not looked up as a file.
  for (const char* name : {"permissive", "profile.json"}) {
    auto p = SeccompProgram::compile(name, {});
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().code, Errc::invalid_argument);
    EXPECT_NE(p.error().message.find(name), std::string::npos);
    EXPECT_NE(p.error().message.find("builtin profiles: default, network, strict"), std::string::npos)
        << p.error().message;
  }
}

TEST(SeccompCompile, MissingProfileFileIsAnError) {
  auto p = SeccompProgram::compile("/nonexistent/delegate/seccomp.json", {});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Errc::not_found);
  EXPECT_NE(p.error().message.find("/nonexistent/delegate/seccomp.json"), std::string::npos);
}

// A syscall with rules of different actions compiles to more than one filter; the
// shipped profiles have exactly one such case besides the network override (ioctl).
TEST(SeccompCompile, MixedActionsBecomeAStackOfFilters) {
  EXPECT_EQ(compile_or_die("default").filter_count(), 2u);
  EXPECT_EQ(compile_or_die("network", true).filter_count(), 2u);
}

TEST(SeccompCompile, EmptyProgramNeverInstallsAsNoFilter) {
  const SeccompProgram empty;
  EXPECT_EQ(empty.install(), -EINVAL);
}

TEST(SeccompCompile, CopiesInstallIndependently) {
  // A copy must carry its own BPF (no pointer into the original).
  std::optional<SeccompProgram> original = compile_or_die("default");
  const SeccompProgram copy = *original;
  original.reset();
  Spec spec;
  spec.argv = {prober(), "ptrace"};
  const auto c = run_capture(spec, copy);
  EXPECT_EQ(parse_errno("ptrace", c.out), EPERM);
}

}  // namespace
}  // namespace delegate::sandbox
