// An agent that is not root (in a container, under a hardened unit) maps its own ids
// into each step's user namespace. The child must stay dumpable until the parent has
// written those maps, or the kernel makes /proc/<child>/{setgroups,uid_map,gid_map}
// root-owned and launches fail at random (docs/sandbox.md, "Start-up sequence"). This test runs many launches as
// uid/gid 65534 without capabilities, in a fresh copy of this binary (host support is
// probed once per process, and this one is root).
#include <grp.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <string>

#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

constexpr const char* kWorkerEnv = "DELEGATE_UNPRIVILEGED_WORKER";
constexpr int kLaunches = 100;

// The half that runs unprivileged, only inside ManyLaunchesAllStart's child.
TEST(UnprivilegedLaunch, Worker) {
  if (std::getenv(kWorkerEnv) == nullptr) GTEST_SKIP() << "runs inside UnprivilegedLaunch.ManyLaunchesAllStart";
  ASSERT_NE(::geteuid(), 0u);
  const HostSupport& h = host_support();
  if (!h.user_ns) GTEST_SKIP() << "unprivileged user namespaces are unavailable here: " << h.notes;
  const auto filter = testing::compile_or_die("default");
  int failures = 0;
  std::string first;
  for (int i = 0; i < kLaunches; ++i) {
    Spec spec;
    spec.argv = {"/bin/true"};
    auto r = run(spec, filter, [](Stream, std::string_view) {});
    const bool good = r && r->status == Status::exited && r->exit_code == 0;
    if (!good && failures++ == 0) first = r ? r->error : r.error().message;
  }
  EXPECT_EQ(failures, 0) << failures << " of " << kLaunches << " launches failed; the first: " << first;
}

TEST(UnprivilegedLaunch, ManyLaunchesAllStart) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root to become an unprivileged user for the worker";
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::dup2(out[1], STDOUT_FILENO);
    ::dup2(out[1], STDERR_FILENO);
    // Leaving uid 0 without keepcaps clears every capability.
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(90);
    }
    ::setenv(kWorkerEnv, "1", 1);
    ::unsetenv("GTEST_OUTPUT");
    const char* argv[] = {"sandbox_tests", "--gtest_filter=UnprivilegedLaunch.Worker", nullptr};
    ::execv("/proc/self/exe", const_cast<char* const*>(argv));
    ::_exit(91);
  }
  ::close(out[1]);
  std::string log;
  char buf[4096];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) log.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status)) << log;
  ASSERT_NE(WEXITSTATUS(status), 90) << "cannot drop to uid/gid 65534";
  ASSERT_NE(WEXITSTATUS(status), 91) << "cannot re-execute the test binary as uid 65534";
  if (log.find("[  SKIPPED ]") != std::string::npos) {
    GTEST_SKIP() << "the unprivileged worker skipped:\n" << log;
  }
  EXPECT_EQ(WEXITSTATUS(status), 0) << log;
  EXPECT_NE(log.find("[  PASSED  ] 1 test"), std::string::npos) << log;
}

}  // namespace
}  // namespace delegate::sandbox
