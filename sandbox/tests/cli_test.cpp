// sandbox_run_main, run in a forked child so its exit status and output can be checked.
#include <poll.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <delegate/sandbox/cli.hpp>

#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

struct CliResult {
  int status = -1;
  std::string out;
  std::string err;
};

std::string read_all(int fd) {
  std::string s;
  char buf[4096];
  for (ssize_t n; (n = ::read(fd, buf, sizeof buf)) > 0;) s.append(buf, static_cast<std::size_t>(n));
  return s;
}

CliResult run_cli(std::vector<std::string> args) {
  args.insert(args.begin(), "sandbox-run");
  int out[2], err[2];
  if (::pipe(out) != 0 || ::pipe(err) != 0) return {};
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    ::close(out[0]);
    ::close(err[0]);
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::_exit(sandbox_run_main(static_cast<int>(args.size()), argv.data()));
  }
  ::close(out[1]);
  ::close(err[1]);
  CliResult r;
  // stderr is small; reading stdout to EOF first cannot deadlock for these commands.
  r.out = read_all(out[0]);
  r.err = read_all(err[0]);
  ::close(out[0]);
  ::close(err[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.status = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

bool one_line(const std::string& s) { return !s.empty() && s.find('\n') == s.size() - 1; }

TEST(SandboxRunCli, PassesOutputAndExitStatusThrough) {
  const auto r = run_cli({"--", "sh", "-c", "echo out; echo err >&2; exit 3"});
  EXPECT_EQ(r.status, 3);
  EXPECT_EQ(r.out, "out\n");
  EXPECT_EQ(r.err, "err\n");
}

TEST(SandboxRunCli, ProgramWithoutDoubleDash) {
  const auto r = run_cli({"--timeout", "10", "sh", "-c", "echo $1", "x", "--network"});
  EXPECT_EQ(r.status, 0);
  EXPECT_EQ(r.out, "--network\n");  // options after PROGRAM belong to PROGRAM
}

TEST(SandboxRunCli, SignalAndNotFoundAndTimeout) {
  EXPECT_EQ(run_cli({"--", "sh", "-c", "kill -TERM $$"}).status, 128 + SIGTERM);
  const auto nf = run_cli({"--", "delegate-no-such-program"});
  EXPECT_EQ(nf.status, 127);
  EXPECT_TRUE(one_line(nf.err)) << nf.err;
  EXPECT_EQ(run_cli({"--timeout=1", "--", "sleep", "30"}).status, 124);
}

TEST(SandboxRunCli, NetworkFlag) {
  const std::string probe = testing::prober();
  EXPECT_EQ(run_cli({"--", probe, "socket_inet"}).out, "socket_inet errno=1\n");
  // The flag only lifts the override: the default profile has no IP sockets.
  EXPECT_EQ(run_cli({"--network", "--", probe, "socket_inet"}).out, "socket_inet errno=1\n");
  EXPECT_EQ(run_cli({"--profile", "network", "--", probe, "socket_inet"}).out, "socket_inet errno=1\n");
  EXPECT_EQ(run_cli({"--profile=network", "--network", "--", probe, "socket_inet"}).out,
            "socket_inet errno=0\n");
  EXPECT_EQ(run_cli({"--profile", "strict", "--network", "--", probe, "socket_inet"}).out,
            "socket_inet errno=1\n");
}

TEST(SandboxRunCli, MemoryLimit) {
  if (host_support().memory == CgroupVersion::none) GTEST_SKIP() << "no memory cgroup on this host";
  // tail buffers one endless line, so the OOM kill takes it: its status is 128+SIGKILL.
  // Anything else (tail failing for another reason, head dying) prints another status.
  const auto r = run_cli({"--memory-mb", "64", "--", "sh", "-c",
                          "head -c 536870912 /dev/zero | tail -n 1 >/dev/null; echo tail=$?"});
  EXPECT_EQ(r.out, "tail=137\n") << r.err;
  EXPECT_EQ(r.status, 0) << r.err;
}

TEST(SandboxRunCli, SetupErrorsAreOneLineAndExit125) {
  const std::vector<std::vector<std::string>> bad = {
      {"--ro", "/nonexistent/delegate-path", "--", "true"},
      {"--rw=/proc/sys", "--", "true"},
      {"--rw=/", "--", "true"},
      {"--hide", "--", "true"},
      {"--socket", "/etc/hostname", "--", "true"},
      {"--socket", "--", "true"},
      {"--cpu-percent", "0", "--", "true"},
      {"--profile", "/etc/delegate/seccomp.json", "--", "true"},
      {"--profile", "nonesuch", "--", "true"},
      {"--timeout", "0", "--", "true"},
      {"--timeout", "abc", "--", "true"},
      {"--memory-mb", "--", "true"},
      {"--pids"},
      {"--bogus", "--", "true"},
      {"--"},
      {},
  };
  for (const auto& args : bad) {
    std::string joined;
    for (const auto& a : args) joined += a + " ";
    const auto r = run_cli(args);
    EXPECT_EQ(r.status, 125) << joined;
    EXPECT_TRUE(one_line(r.err)) << joined << ": " << r.err;
    EXPECT_TRUE(r.err.starts_with("sandbox-run: ")) << r.err;
  }
  EXPECT_NE(run_cli({"--ro", "/nonexistent/delegate-path", "--", "true"}).err.find("/nonexistent/delegate-path"),
            std::string::npos);
  EXPECT_NE(run_cli({"--profile", "./nonexistent.json", "--", "true"}).err.find("nonexistent.json"),
            std::string::npos);
}


TEST(SandboxRunCli, BindMountsAndHiddenPaths) {
  const auto dir = std::filesystem::path("/var/tmp") / ("delegate-cli-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "shown");
  std::ofstream(dir / "secret") << "s3cr3t";
  std::filesystem::permissions(dir, std::filesystem::perms::all);
  std::filesystem::permissions(dir / "shown", std::filesystem::perms::all);
  // Writable only where --rw says so; the rest of the host is read-only.
  auto r = run_cli({"--rw", (dir / "shown").string(), "--", "sh", "-c",
                    "echo hi > " + (dir / "shown/out").string() + " && echo ok; echo x > " +
                        (dir / "other").string() + " 2>/dev/null || echo denied"});
  EXPECT_EQ(r.out, "ok\ndenied\n") << r.err;
  EXPECT_TRUE(std::filesystem::exists(dir / "shown/out"));
  EXPECT_FALSE(std::filesystem::exists(dir / "other"));
  // A hidden file reads as empty.
  r = run_cli({"--hide", (dir / "secret").string(), "--", "cat", (dir / "secret").string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "");
  r = run_cli({"--", "cat", (dir / "secret").string()});
  EXPECT_EQ(r.out, "s3cr3t");
  std::filesystem::remove_all(dir);
}


// --socket grants one host socket; without it the step has no Unix socket at all.
TEST(SandboxRunCli, SocketGrant) {
  const HostSupport& h = host_support();
  if (!(h.user_ns || h.other_ns) || !h.mount_setattr) GTEST_SKIP() << "no mount namespace on this host";
  const std::string path = testing::granted_test_socket();
  const std::string label = "connect_unix " + path + " errno=";
  auto r = run_cli({"--", testing::prober(), "connect_unix", path});
  EXPECT_EQ(r.out, label + std::to_string(EPERM) + "\n") << r.err;
  r = run_cli({"--socket", path, "--", testing::prober(), "connect_unix", path});
  EXPECT_EQ(r.out, label + "0\n") << r.err;
}

TEST(SandboxRunCli, ProfileFile) {
  const testing::TempDir dir;
  const std::string good = dir.write("good.json", R"({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["getpid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}]})");
  const std::string probe = testing::prober();
  const auto r = run_cli({"--profile", good, "--", probe, "getpid"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "getpid errno=13\n");

  const std::string bad = dir.write("bad.json", R"({"defaultAction": "SCMP_ACT_ALLOW",
      "syscalls": [{"names": ["getpid", "fooo"], "action": "SCMP_ACT_ALLOW"}]})");
  const auto b = run_cli({"--profile", bad, "--", "true"});
  EXPECT_EQ(b.status, 125);
  EXPECT_EQ(b.err, "sandbox-run: seccomp profile " + bad + ": syscalls[0].names[1]: unknown syscall \"fooo\"\n");
  const std::string bad_action = dir.write("bad2.json", R"({"defaultAction": "SCMP_ACT_NOTIFY"})");
  const auto b2 = run_cli({"--profile", bad_action, "--", "true"});
  EXPECT_EQ(b2.status, 125);
  EXPECT_EQ(b2.err, "sandbox-run: seccomp profile " + bad_action +
                        ": defaultAction: action \"SCMP_ACT_NOTIFY\" is not supported\n");
}

TEST(SandboxRunCli, Help) {
  const auto r = run_cli({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("usage: sandbox-run"), std::string::npos);
}

}  // namespace
}  // namespace delegate::sandbox

namespace delegate::sandbox {
namespace {

std::size_t thread_count(pid_t pid) {
  std::size_t n = 0;
  for ([[maybe_unused]] const auto& e :
       std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task")) {
    ++n;
  }
  return n;
}

// One launch, then exit: the CLI keeps no pool of network namespaces (whose thread would
// make namespaces it never uses, on the only launch's path). Seen while the step runs:
// the CLI is one thread.
TEST(SandboxRunCli, OneLaunchStartsNoNetnsPool) {
  const auto dir = std::filesystem::path("/var/tmp") / ("delegate-cli-pool-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::permissions(dir, std::filesystem::perms::all);
  const std::string fifo = (dir / "go").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  std::filesystem::permissions(fifo, std::filesystem::perms::all);  // the step runs as nobody
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    std::vector<std::string> args = {"sandbox-run", "--", "sh", "-c", "echo ready; read x < " + fifo + "; echo $x"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    ::_exit(sandbox_run_main(static_cast<int>(args.size()), argv.data()));
  }
  ::close(out[1]);
  std::string got;
  char c = 0;
  while (got != "ready\n" && ::read(out[0], &c, 1) == 1) got += c;
  ASSERT_EQ(got, "ready\n");
  EXPECT_EQ(thread_count(pid), 1u);
  {
    std::ofstream(fifo) << "go\n";
  }
  EXPECT_EQ(read_all(out[0]), "go\n");
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace delegate::sandbox
