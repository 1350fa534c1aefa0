// run(): exit statuses, limits, cancellation, isolation of environment, fds and workdir.
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "child.hpp"
#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::compile_or_die;
using testing::prober;
using testing::run_argv;
using testing::run_capture;

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

std::set<std::string> lines(const std::string& text) {
  std::set<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.insert(line);
  return out;
}

// Gone, or a zombie waiting for whoever inherited it: either way no longer running.
bool process_gone(pid_t pid) {
  for (int i = 0; i < 100; ++i) {
    std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
    if (!stat) return true;
    std::string content((std::istreambuf_iterator<char>(stat)), {});
    const auto close = content.rfind(')');
    if (close != std::string::npos && close + 2 < content.size() && content[close + 2] == 'Z') return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

// A sleep with a unique duration, so the host-side scan below can recognise it: inside
// the step's pid namespace the pids it could print mean nothing out here.
std::string unique_sleep() {
  static int counter = 0;
  return "1000." + std::to_string(::getpid()) + std::to_string(++counter);
}

// No host process runs `sleep <duration>` (zombies do not count: they no longer run).
bool no_sleep_running(const std::string& duration) {
  const std::string needle = std::string("sleep") + '\0' + duration;
  for (int i = 0; i < 100; ++i) {
    bool found = false;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
      const std::string name = entry.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream cmd(entry.path() / "cmdline");
      std::string content((std::istreambuf_iterator<char>(cmd)), {});
      if (content.find(needle) != std::string::npos && !process_gone(std::stoi(name))) found = true;
    }
    if (!found) return true;
    std::this_thread::sleep_for(50ms);
  }
  return false;
}

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "sandbox-test-XXXXXX").string();
    path_ = ::mkdtemp(tmpl.data());
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

TEST(Launcher, TrueExitsZero) {
  const auto c = run_argv({"/bin/true"});
  EXPECT_EQ(c.outcome.status, Status::exited);
  EXPECT_EQ(c.outcome.exit_code, 0);
  EXPECT_EQ(exit_status(c.outcome), 0);
  EXPECT_TRUE(c.outcome.limits_hit.empty());
}

TEST(Launcher, ProgramIsResolvedAgainstTheCleanPath) {
  const auto c = run_argv({"sh", "-c", "echo $0"});
  EXPECT_EQ(c.outcome.status, Status::exited);
  EXPECT_EQ(c.out, "sh\n");  // argv[0] is kept as given
}

TEST(Launcher, ExitCodeIsPassedThrough) {
  const auto c = run_argv({"sh", "-c", "exit 7"});
  EXPECT_EQ(c.outcome.status, Status::exited);
  EXPECT_EQ(c.outcome.exit_code, 7);
  EXPECT_EQ(exit_status(c.outcome), 7);
}

TEST(Launcher, KilledBySignal) {
  const auto c = run_argv({"sh", "-c", "kill -9 $$"});
  EXPECT_EQ(c.outcome.status, Status::signaled);
  EXPECT_EQ(c.outcome.signal, 9);
  EXPECT_EQ(exit_status(c.outcome), 137);
}

TEST(Launcher, MissingProgramIsNotFound) {
  for (const char* name : {"delegate-no-such-program", "/nonexistent/bin/tool", ""}) {
    const auto c = run_argv({name});
    EXPECT_EQ(c.outcome.status, Status::not_found) << name;
    EXPECT_EQ(exit_status(c.outcome), 127);
    EXPECT_FALSE(c.outcome.error.empty());
  }
}

TEST(Launcher, NonExecutableFileIsNotFound) {
  TempDir dir;
  const auto file = dir.path() / "script";
  std::ofstream(file) << "#!/bin/sh\necho hi\n";
  ::chmod(file.c_str(), 0644);
  const auto c = run_argv({file.string()});
  EXPECT_EQ(c.outcome.status, Status::not_found);
}

TEST(Launcher, MissingInterpreterIsReportedFromExec) {
  TempDir dir;
  const auto file = dir.path() / "script";
  std::ofstream(file) << "#!/nonexistent/interpreter\n";
  ::chmod(file.c_str(), 0755);
  const auto c = run_argv({file.string()});
  EXPECT_EQ(c.outcome.status, Status::not_found);
  EXPECT_NE(c.outcome.error.find("execve"), std::string::npos) << c.outcome.error;
}

TEST(Launcher, TimeoutKillsTheWholeProcessTree) {
  const std::string marker = unique_sleep();
  Spec spec;
  spec.argv = {"sh", "-c", "sleep " + marker + " & echo started; sleep 100"};
  spec.limits.timeout = 1s;
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.outcome.status, Status::timed_out);
  EXPECT_TRUE(contains(c.outcome.limits_hit, "timeout"));
  EXPECT_EQ(c.outcome.signal, SIGKILL);
  EXPECT_EQ(exit_status(c.outcome), 124);
  ASSERT_EQ(c.out, "started\n");
  EXPECT_TRUE(no_sleep_running(marker));
}

TEST(Launcher, GrandchildrenAreKilledWhenTheMainProcessExits) {
  const std::string marker = unique_sleep();
  // setsid: even a process that left the step's session and group goes with it.
  const auto c = run_argv({"sh", "-c", "setsid sleep " + marker + " & sleep " + marker + " & echo started"});
  EXPECT_EQ(c.outcome.status, Status::exited);
  ASSERT_EQ(c.out, "started\n");
  EXPECT_TRUE(no_sleep_running(marker));
}

// A process that left the step's session and group still holds its stdout: the launch
// must end when the step does, and take that process with it. It is found by its
// unique argument in the host's /proc, never by a pid read from inside the step's pid
// namespace (that number names some other host process).
TEST(Launcher, EscapedProcessHoldingThePipesDoesNotHang) {
  const std::string marker = unique_sleep();
  // The fifo makes the step wait until the escaped process runs (and holds the pipe).
  const auto c = run_argv({"sh", "-c",
                           "mkfifo up; setsid sh -c 'echo escaped > up; exec sleep " + marker +
                               "' & read x < up; echo \"$x\"; exit 3"});
  EXPECT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(c.outcome.exit_code, 3);
  EXPECT_EQ(c.out, "escaped\n");
  EXPECT_TRUE(no_sleep_running(marker));
}

TEST(Launcher, CancelFromAnotherThread) {
  CancelToken token;
  EXPECT_FALSE(token.cancelled());
  // The canceller waits until the step demonstrably runs (its first output), so the
  // test does not depend on how long a launch takes on a loaded machine.
  std::mutex mu;
  std::condition_variable cv;
  bool started = false;
  std::thread canceller([&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return started; });
    token.cancel();
  });
  const std::string marker = unique_sleep();
  Spec spec;
  spec.argv = {"sh", "-c", "sleep " + marker + " & echo started; sleep 100"};
  testing::Captured c;
  auto r = run(
      spec, compile_or_die("default"),
      [&](Stream, std::string_view data) {
        c.out.append(data);
        std::lock_guard lock(mu);
        started = true;
        cv.notify_all();
      },
      &token);
  {
    std::lock_guard lock(mu);  // release the canceller even if the step never printed
    started = true;
  }
  cv.notify_all();
  canceller.join();
  ASSERT_TRUE(r) << r.error().message;
  c.outcome = *r;
  EXPECT_TRUE(token.cancelled());
  EXPECT_EQ(c.outcome.status, Status::cancelled);
  EXPECT_EQ(exit_status(c.outcome), 137);
  ASSERT_EQ(c.out, "started\n");
  EXPECT_TRUE(no_sleep_running(marker));
}

TEST(Launcher, AlreadyCancelledTokenStopsTheStep) {
  CancelToken token;
  token.cancel();
  Spec spec;
  spec.argv = {"sleep", "100"};
  const auto c = run_capture(spec, compile_or_die("default"), &token);
  EXPECT_EQ(c.outcome.status, Status::cancelled);
}

TEST(Launcher, OutputBeyondTheCapIsDroppedAndCounted) {
  Spec spec;
  spec.argv = {"sh", "-c", "head -c 100000 /dev/zero; head -c 5000 /dev/zero >&2; echo done"};
  spec.limits.output_bytes = 1000;
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.outcome.status, Status::exited);
  EXPECT_EQ(c.outcome.exit_code, 0);  // the step was never blocked on a full pipe
  EXPECT_EQ(c.out.size() + c.err.size(), 1000u);
  EXPECT_EQ(c.outcome.bytes_dropped, 100000u + 5000u + 5u - 1000u);
  EXPECT_TRUE(contains(c.outcome.limits_hit, "output"));
}

TEST(Launcher, OutputArrivesInChunksOfAtMost16KiB) {
  const auto c = run_argv({"head", "-c", "300000", "/dev/zero"});
  EXPECT_EQ(c.out.size(), 300000u);
  EXPECT_EQ(c.outcome.bytes_dropped, 0u);
  for (std::size_t n : c.chunk_sizes) EXPECT_LE(n, 16u * 1024);
}

TEST(Launcher, StdinDataIsProvided) {
  Spec spec;
  spec.argv = {"cat"};
  spec.stdin_data = "hello\nworld\n";
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.out, "hello\nworld\n");
  const auto empty = run_argv({"cat"});  // /dev/null: EOF at once
  EXPECT_EQ(empty.outcome.status, Status::exited);
  EXPECT_EQ(empty.out, "");
}

TEST(Launcher, EnvironmentIsClean) {
  ::setenv("DELEGATE_TEST_AGENT_SECRET", "must-not-leak", 1);
  Spec spec;
  spec.argv = {"env"};
  spec.env = {"STEP_VAR=1", "LANG=C"};
  const auto c = run_capture(spec, compile_or_die("default"));
  ::unsetenv("DELEGATE_TEST_AGENT_SECRET");
  std::set<std::string> names;
  std::string home;
  for (const auto& line : lines(c.out)) {
    const auto name = line.substr(0, line.find('='));
    names.insert(name);
    if (name == "HOME") home = line.substr(5);
  }
  EXPECT_EQ(names, (std::set<std::string>{"PATH", "HOME", "TMPDIR", "LANG", "STEP_VAR"}));
  EXPECT_TRUE(lines(c.out).contains("LANG=C"));  // spec.env overrides the base
  EXPECT_TRUE(lines(c.out).contains("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
  EXPECT_TRUE(lines(c.out).contains("TMPDIR=" + home));
  EXPECT_EQ(c.out.find("must-not-leak"), std::string::npos);
}

TEST(Launcher, InvalidEnvironmentEntryIsASetupFailure) {
  Spec spec;
  spec.argv = {"true"};
  spec.env = {"NO_EQUALS_SIGN"};
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.outcome.status, Status::setup_failed);
  EXPECT_EQ(exit_status(c.outcome), 125);
}

TEST(Launcher, FreshPrivateWorkdirIsRemovedWithoutFollowingSymlinks) {
  TempDir parent;
  TempDir outside;
  const auto sentinel = outside.path() / "keep-me";
  std::ofstream(sentinel) << "x";
  Spec spec;
  spec.work_parent = parent.path();
  spec.argv = {"sh", "-c",
               "pwd; ls -A | wc -l; stat -c %a .; echo $HOME; mkdir -p a/b/c; touch a/b/c/f; "
               "chmod 000 a/b; ln -s '" + outside.path().string() + "' out; ln -s '" +
                   sentinel.string() + "' a/link"};
  const auto c = run_capture(spec, compile_or_die("default"));
  ASSERT_EQ(c.outcome.status, Status::exited) << c.err;
  std::istringstream in(c.out);
  std::string pwd, count, mode, home;
  std::getline(in, pwd);
  std::getline(in, count);
  std::getline(in, mode);
  std::getline(in, home);
  EXPECT_EQ(std::filesystem::path(pwd).parent_path(), parent.path());
  EXPECT_EQ(count, "0");
  EXPECT_EQ(mode, "700");
  EXPECT_EQ(home, pwd);
  EXPECT_FALSE(std::filesystem::exists(pwd));
  EXPECT_TRUE(std::filesystem::is_empty(parent.path()));
  EXPECT_TRUE(std::filesystem::exists(sentinel));
}

TEST(Launcher, CpuLimitKillsABusyLoop) {
  Spec spec;
  spec.argv = {"sh", "-c", "while :; do :; done"};
  spec.limits.cpu_seconds = 1;
  spec.limits.timeout = 60s;  // generous; the CPU limit must fire first
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.outcome.status, Status::signaled);
  EXPECT_TRUE(c.outcome.signal == SIGXCPU || c.outcome.signal == SIGKILL) << c.outcome.signal;
  // The kernel's own verdict (SIGXCPU/SIGKILL at RLIMIT_CPU) is the event that counts;
  // how much CPU rusage reports is a figure for bench/, not an assertion.
  EXPECT_TRUE(contains(c.outcome.limits_hit, "cpu"));
}

TEST(Launcher, CpuLimitIgnoringSigxcpuIsKilledAtTheHardLimit) {
  Spec spec;
  spec.argv = {"sh", "-c", "trap '' XCPU; while :; do :; done"};
  spec.limits.cpu_seconds = 1;
  spec.limits.timeout = 60s;
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.outcome.status, Status::signaled);
  EXPECT_EQ(c.outcome.signal, SIGKILL);
  EXPECT_TRUE(contains(c.outcome.limits_hit, "cpu"));
}

TEST(Launcher, MemoryHogIsOomKilledAndReported) {
  if (host_support().memory == CgroupVersion::none) GTEST_SKIP() << "no memory cgroup on this host";
  Spec spec;
  // tail -n holds a line until it ends; /dev/zero has no newline, so tail keeps all
  // 512 MiB resident against a 64 MiB limit.
  spec.argv = {"sh", "-c", "head -c 536870912 /dev/zero | tail -n 1 >/dev/null; echo survived"};
  spec.limits.memory_bytes = 64ull << 20;
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_TRUE(contains(c.outcome.limits_hit, "memory")) << c.out << c.err;
  spec.limits.memory_bytes = 2ull << 30;
  spec.argv = {"sh", "-c", "head -c 8388608 /dev/zero | tail -n 1 >/dev/null; echo survived"};
  const auto roomy = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(roomy.out, "survived\n");
  EXPECT_FALSE(contains(roomy.outcome.limits_hit, "memory"));
}

TEST(Launcher, AddressSpaceIsNotLimitedWhenTheMemoryCgroupIs) {
  if (host_support().memory == CgroupVersion::none) GTEST_SKIP() << "no memory cgroup on this host";
  // Reserving (not touching) 256 MiB under a 64 MiB memory limit: virtual reservations
  // are not memory use, and runtimes that make them (Go, JVMs) must keep working.
  Spec spec;
  spec.argv = {prober(), "mmap_256m"};
  spec.limits.memory_bytes = 64ull << 20;
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.out, "mmap_256m errno=0\n");
}

TEST(Launcher, FileSizeLimit) {
  Spec spec;
  spec.argv = {"dd", "if=/dev/zero", "of=big", "bs=4096", "count=100"};
  spec.limits.file_size_bytes = 8192;
  const auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.outcome.status, Status::signaled);
  EXPECT_EQ(c.outcome.signal, SIGXFSZ);
  EXPECT_TRUE(contains(c.outcome.limits_hit, "file_size"));
}

TEST(Launcher, NoNewPrivsAndSeccompAreActive) {
  const auto c = run_argv({"cat", "/proc/self/status"});
  const auto l = lines(c.out);
  EXPECT_TRUE(l.contains("NoNewPrivs:\t1")) << c.out;
  EXPECT_TRUE(l.contains("Seccomp:\t2")) << c.out;
}

TEST(Launcher, RlimitsAreApplied) {
  const auto c = run_argv({"sh", "-c", "ulimit -n; ulimit -c; ulimit -t"});
  EXPECT_EQ(c.out, "256\n0\n300\n");
}

TEST(Launcher, OwnSessionAndProcessGroup) {
  // /proc/PID/stat fields 5 and 6: process group and session.
  const auto c = run_argv({"sh", "-c", "echo $$ $(cut -d' ' -f5,6 /proc/$$/stat)"});
  ASSERT_EQ(c.outcome.status, Status::exited);
  std::istringstream in(c.out);
  pid_t pid = 0, pgrp = 0, sid = 0;
  in >> pid >> pgrp >> sid;
  EXPECT_GT(pid, 0);
  EXPECT_EQ(pgrp, pid);
  EXPECT_EQ(sid, pid);
}

TEST(Launcher, AgentDescriptorsAreNotInherited) {
  const int raw = ::open("/dev/null", O_RDONLY);  // deliberately without O_CLOEXEC
  ASSERT_GE(raw, 0);
  const int fd = ::fcntl(raw, F_DUPFD, 50);  // also without O_CLOEXEC
  ::close(raw);
  ASSERT_GE(fd, 50);
  const auto c = run_argv({"ls", "/proc/self/fd"});
  ::close(fd);
  // ls itself holds the directory it lists, as fd 3.
  EXPECT_EQ(lines(c.out), (std::set<std::string>{"0", "1", "2", "3"})) << c.out;
}

TEST(Launcher, ThrowingSinkIsAnErrorAndKillsTheStep) {
  Spec spec;
  spec.argv = {"sh", "-c", "echo x; sleep 100"};
  auto r = run(spec, compile_or_die("default"),
               [](Stream, std::string_view) { throw std::runtime_error("audit spool full"); });
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("audit spool full"), std::string::npos);
}

TEST(Launcher, ReportsResourceUsage) {
  const auto c = run_argv({"head", "-c", "10", "/dev/zero"});
  EXPECT_GT(c.outcome.max_rss_kb, 0u);
}

TEST(Launcher, ExitStatusContract) {
  Outcome o;
  o.status = Status::exited;
  o.exit_code = 3;
  EXPECT_EQ(exit_status(o), 3);
  o.status = Status::signaled;
  o.signal = SIGTERM;
  EXPECT_EQ(exit_status(o), 128 + SIGTERM);
  o.status = Status::timed_out;
  EXPECT_EQ(exit_status(o), 124);
  o.status = Status::cancelled;
  o.signal = 0;
  EXPECT_EQ(exit_status(o), 128 + SIGKILL);
  o.status = Status::setup_failed;
  EXPECT_EQ(exit_status(o), 125);
  o.status = Status::not_found;
  EXPECT_EQ(exit_status(o), 127);
}

TEST(Launcher, StrictProfileRunsTheProgramButNoChildren) {
  const auto c = run_argv({"sh", "-c", "echo start; /bin/true && echo forked"}, "strict");
  EXPECT_EQ(c.outcome.status, Status::exited);
  EXPECT_NE(c.out.find("start"), std::string::npos);
  EXPECT_EQ(c.out.find("forked"), std::string::npos);
}

}  // namespace
}  // namespace delegate::sandbox

namespace delegate::sandbox {
namespace {

// Whether the namespace came from the pool (after the first launches) or from clone(),
// the step sees exactly one interface, loopback, and it is up.
TEST(Launcher, PrivateNetworkHasOnlyLoopbackAndItIsUp) {
  if (!host_support().user_ns && !host_support().other_ns) GTEST_SKIP() << "no namespaces on this host";
  // A filter that allows IP sockets, so only the namespace decides what they reach.
  const auto filter = testing::compile_or_die("network", true);
  Spec spec;
  spec.argv = {"bash", "-c", "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '; echo > /dev/tcp/127.0.0.1/1"};
  spec.network = false;
  for (int i = 0; i < 6; ++i) {
    const auto c = testing::run_capture(spec, filter);
    ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error;
    EXPECT_EQ(c.out, "lo\n") << "launch " << i;
    // Refused means the packet went through an up loopback; a down one is unreachable.
    EXPECT_NE(c.err.find("Connection refused"), std::string::npos) << "launch " << i << ": " << c.err;
  }
}

// The init starts the step vfork-style (child.cpp, start_step), on a stack the launcher
// prepares, except in an AddressSanitizer build, whose runtime would see a foreign stack
// and which falls back to _Fork. Either way every status reaches the parent through the
// init (its status pipe survives the step closing its own descriptors before execve).
TEST(StepStart, VforkStyleExceptUnderAddressSanitizer) {
  bool asan = false;
#if defined(__SANITIZE_ADDRESS__)
  asan = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
  asan = true;
#endif
#endif
  const detail::StepStack stack = detail::step_start_stack();
  if (asan) {
    EXPECT_EQ(stack.base, nullptr);
  } else {
    std::ifstream f("/proc/sys/fs/suid_dumpable");
    std::string setting;
    std::getline(f, setting);
    EXPECT_EQ(stack.base != nullptr, setting == "0") << "fs.suid_dumpable=" << setting;
    if (stack.base != nullptr) {
      EXPECT_GE(stack.size, 16u * 1024);
    }
  }
  if (!host_support().user_ns && !host_support().other_ns) GTEST_SKIP() << "no namespaces on this host";
  for (int code : {0, 1, 42, 255}) {
    const auto c = run_argv({"/bin/sh", "-c", "echo started; exit " + std::to_string(code)});
    EXPECT_TRUE(c.outcome.isolation.pid_ns);
    EXPECT_EQ(c.outcome.status, Status::exited) << c.outcome.error;
    EXPECT_EQ(c.outcome.exit_code, code);
    EXPECT_EQ(c.out, "started\n");
  }
}

// With fs.suid_dumpable 1, the step's setresuid would make the memory it shares with
// the init ptrace-able by any host process of the step's uid until execve; with 2, a
// crash of the init would dump the agent's memory. Only 0 allows the shared start.
TEST(StepStart, SharedStartOnlyWhereCredentialChangesLeaveMemoryUndumpable) {
  EXPECT_TRUE(detail::vfork_start_safe("0\n"));
  EXPECT_TRUE(detail::vfork_start_safe("0"));
  EXPECT_FALSE(detail::vfork_start_safe("1\n"));
  EXPECT_FALSE(detail::vfork_start_safe("2\n"));
  EXPECT_FALSE(detail::vfork_start_safe(""));
  EXPECT_FALSE(detail::vfork_start_safe("00"));
}

// An overflow of the start stack must fault, not write over the init's heap: the page
// below the stack is inaccessible.
TEST(StepStart, TheStartStackHasAGuardPage) {
  const detail::StepStack stack = detail::step_start_stack();
  if (stack.base == nullptr) GTEST_SKIP() << "no shared start here (sanitizer build or fs.suid_dumpable != 0)";
  const pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    ::signal(SIGSEGV, SIG_DFL);
    *(stack.base - 1) = 1;  // must fault
    ::_exit(0);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(st) && WTERMSIG(st) == SIGSEGV) << st;
}

}  // namespace
}  // namespace delegate::sandbox
