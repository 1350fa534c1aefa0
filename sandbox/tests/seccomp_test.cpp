// Seccomp profiles, checked by running the syscall prober inside each of them and
// comparing against the same probe run without any sandbox.
#include <stdio.h>
#include <sys/wait.h>

#include <cerrno>
#include <cstdlib>
#include <map>
#include <set>
#include <string>

#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

using testing::compile_or_die;
using testing::prober;
using testing::run_capture;

// "name errno=N" → N; -1 when the line is missing (the prober died).
int parse_errno(const std::string& name, const std::string& out) {
  const std::string prefix = name + " errno=";
  const auto pos = out.find(prefix);
  if (pos == std::string::npos) return -1;
  return std::atoi(out.c_str() + pos + prefix.size());
}

int probe_sandboxed(const SeccompProgram& filter, const std::string& name) {
  Spec spec;
  spec.argv = {prober(), name};
  const auto c = run_capture(spec, filter);
  EXPECT_EQ(c.outcome.status, Status::exited) << name << ": " << c.outcome.error << c.err;
  return parse_errno(name, c.out);
}

// The same probe outside any sandbox, to tell "denied by our filter" from "denied by the
// host anyway" and to check that allowed calls behave exactly as without a filter.
int probe_unsandboxed(const std::string& name) {
  const std::string cmd = std::string(prober()) + " " + name + " 2>/dev/null";
  FILE* f = ::popen(cmd.c_str(), "r");
  if (f == nullptr) return -1;
  std::string out;
  char buf[256];
  while (std::fgets(buf, sizeof buf, f) != nullptr) out += buf;
  ::pclose(f);
  return parse_errno(name, out);
}

const std::set<std::string> kDeniedEverywhere = {
    "ptrace", "process_vm_readv", "kcmp", "mount", "umount2", "pivot_root", "chroot",
    "fsopen", "open_tree", "unshare", "setns", "keyctl", "add_key", "bpf", "kexec_load",
    "init_module", "delete_module", "reboot", "swapon", "acct", "clock_settime", "syslog",
    "iopl", "userfaultfd", "perf_event_open", "io_uring_setup", "open_by_handle_at",
    "pidfd_getfd", "lookup_dcookie", "_sysctl", "tiocsti", "tiocsti_highbits",
    "clone_newuser", "clone_newns", "personality_no_randomize",
    "personality_read_implies_exec", "personality_highbits",
};
const std::set<std::string> kNetwork = {"socket_inet", "socket_inet6", "socket_netlink",
                                        "socket_packet"};
const std::set<std::string> kProcessCreation = {"fork", "clone_plain"};
const std::set<std::string> kAlwaysAllowed = {
    "getpid", "ioctl_other", "personality_query", "personality_linux",
    "personality_linux32", "personality_uname26", "mmap_256m",
};

struct ProfileCase {
  const char* profile;
  bool network;
};

void check_profile(const ProfileCase& pc) {
  const auto filter = compile_or_die(pc.profile, pc.network);
  const bool strict = std::string(pc.profile) == "strict";
  std::map<std::string, int> expected_eperm;  // name → expect EPERM?
  for (const auto& n : kDeniedEverywhere) expected_eperm[n] = true;
  for (const auto& n : kNetwork) expected_eperm[n] = strict || !pc.network;
  for (const auto& n : kProcessCreation) expected_eperm[n] = strict;
  for (const auto& n : kAlwaysAllowed) expected_eperm[n] = false;
  expected_eperm["socket_unix"] = strict;
  // Packet sockets also need CAP_NET_RAW, which a step never holds: EPERM either way.
  expected_eperm["socket_packet"] = true;

  for (const auto& [name, deny] : expected_eperm) {
    SCOPED_TRACE(std::string(pc.profile) + (pc.network ? "+network " : " ") + name);
    const int got = probe_sandboxed(filter, name);
    if (deny) {
      EXPECT_EQ(got, EPERM);
    } else {
      // Allowed means: indistinguishable from running without a filter.
      EXPECT_EQ(got, probe_unsandboxed(name));
    }
  }
  SCOPED_TRACE(pc.profile);
  EXPECT_EQ(probe_sandboxed(filter, "clone3"), ENOSYS);
}

TEST(SeccompProfiles, DefaultWithoutNetwork) { check_profile({"default", false}); }
TEST(SeccompProfiles, DefaultWithNetwork) { check_profile({"default", true}); }
TEST(SeccompProfiles, NetworkProfileStillHonoursTheFlag) { check_profile({"network", false}); }
TEST(SeccompProfiles, NetworkProfileWithNetwork) { check_profile({"network", true}); }
TEST(SeccompProfiles, Strict) { check_profile({"strict", false}); }
TEST(SeccompProfiles, StrictDeniesSocketsEvenWithNetwork) { check_profile({"strict", true}); }

// Without this the deny table would prove nothing: the same probes must not already be
// EPERM on this host. Restricted to probes whose outcome does not depend on privilege,
// plus the privileged ones when running as root.
TEST(SeccompProfiles, ProbesAreMeaningfulOnThisHost) {
  std::set<std::string> names = {"unshare", "setns", "keyctl", "clone_newuser", "clone3",
                                 "tiocsti", "tiocsti_highbits", "ptrace", "socket_unix",
                                 "socket_inet", "fork", "personality_no_randomize"};
  if (::geteuid() == 0) {
    for (const char* n : {"mount", "umount2", "chroot", "pivot_root", "reboot", "swapon",
                          "acct", "clone_newns", "socket_packet"}) {
      names.insert(n);
    }
  }
  for (const auto& n : names) {
    const int got = probe_unsandboxed(n);
    EXPECT_NE(got, -1) << n;
    EXPECT_NE(got, EPERM) << n << " is already EPERM without a filter";
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
  auto p = SeccompProgram::compile("permissive", {});
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Errc::invalid_argument);
  EXPECT_NE(p.error().message.find("permissive"), std::string::npos);
}

TEST(SeccompCompile, ProfileFilesAreRefused) {
  for (const char* path : {"/etc/delegate/seccomp.json", "./profile.json", "profile.json"}) {
    auto p = SeccompProgram::compile(path, {});
    ASSERT_FALSE(p) << path;
    EXPECT_EQ(p.error().message, "custom seccomp profile files are not supported yet");
  }
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
