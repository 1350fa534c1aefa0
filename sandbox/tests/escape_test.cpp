// Escape attempts from inside a real sandboxed step (GitHub issue #4): each test runs
// the attack through sandbox::run and, where possible, checks the result from outside.
// Most attacks are first stopped by seccomp; where that is so, a second run under a
// profile that allows every syscall shows that the layer below (namespaces, dropped
// capabilities, read-only mounts, a non-dumpable init) stops them as well. Each test
// carries a positive control, so that a broken probe cannot pass as a blocked attack.
//
// Files a step must see live under /var/tmp: the host's /tmp is not visible inside.
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::Captured;
using testing::compile_or_die;
using testing::parse_errno;
using testing::prober;
using testing::run_capture;
using testing::TempDir;

const std::string P = prober();

// Every syscall allowed (but the network override, see SeccompOptions): what is left
// when seccomp is taken away, to test the layers underneath it.
SeccompProgram allow_all() {
  static TempDir dir;
  const std::string path = dir.write("allow-all.json", R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []})");
  auto p = SeccompProgram::compile(path, SeccompOptions{});
  if (!p) {
    ADD_FAILURE() << p.error().message;
    std::abort();
  }
  return std::move(*p);
}

Captured run_step(const Spec& spec) { return run_capture(spec, compile_or_die(spec.profile, spec.network)); }

Captured run_script(const std::string& script, const SeccompProgram* filter = nullptr, bool root = false) {
  Spec spec;
  spec.argv = {"sh", "-c", script};
  spec.isolation.root = root;
  spec.limits.timeout = 60s;
  return filter != nullptr ? run_capture(spec, *filter) : run_step(spec);
}

// "ACTION ARGS found=N" → N; -1 when missing.
int parse_found(const std::string& label, const std::string& out) {
  const auto pos = out.find(label + " errno=");
  if (pos == std::string::npos) return -1;
  const auto f = out.find(" found=", pos);
  const auto eol = out.find('\n', pos);
  if (f == std::string::npos || f > eol) return -1;
  return std::atoi(out.c_str() + f + 7);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

bool has_line(const std::string& text, const std::string& line) {
  const auto l = lines(text);
  return std::find(l.begin(), l.end(), line) != l.end();
}

bool contains(const std::vector<std::string>& v, const std::string& s) {
  return std::find(v.begin(), v.end(), s) != v.end();
}

// "Key:\tvalue" of a /proc/PID/status text.
std::map<std::string, std::string> status_fields(const std::string& text) {
  std::map<std::string, std::string> out;
  for (const auto& line : lines(text)) {
    const auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    const auto value = line.find_first_not_of(" \t", colon + 1);
    out[line.substr(0, colon)] = value == std::string::npos ? "" : line.substr(value);
  }
  return out;
}

bool full_isolation() {
  const HostSupport& h = host_support();
  return (h.user_ns || h.other_ns) && h.mount_setattr;
}

class Escape : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!full_isolation()) {
      GTEST_SKIP() << "the sandbox cannot isolate steps on this host: " << host_support().notes;
    }
  }
};

#define REQUIRE_ROOT()                                                                                  \
  do {                                                                                                  \
    if (!host_support().is_root) GTEST_SKIP() << "needs a root agent (steps as another uid, chown)"; \
  } while (0)

// A directory under /var/tmp, which steps see (read-only unless bound read-write).
class HostDir {
 public:
  explicit HostDir(mode_t mode = 0755) {
    std::string tmpl = "/var/tmp/delegate-escape-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
    ::chmod(path_.c_str(), mode);
  }
  ~HostDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  HostDir(const HostDir&) = delete;
  HostDir& operator=(const HostDir&) = delete;
  const fs::path& path() const { return path_; }
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// A host process the steps must neither see nor kill: `sleep <unique duration>`.
class HostSleeper {
 public:
  HostSleeper() {
    duration_ = "1000." + std::to_string(::getpid()) + std::to_string(++counter_);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execlp("sleep", "sleep", duration_.c_str(), static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~HostSleeper() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  HostSleeper(const HostSleeper&) = delete;
  HostSleeper& operator=(const HostSleeper&) = delete;
  pid_t pid() const { return pid_; }
  // Still running: not exited, not a zombie.
  bool alive() const {
    int status = 0;
    return pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == 0 && ::kill(pid_, 0) == 0;
  }

 private:
  static inline int counter_ = 0;
  std::string duration_;
  pid_t pid_ = -1;
};

// A unique `sleep` duration, to recognise a step's processes from the host.
std::string unique_sleep() {
  static int counter = 0;
  return "2000." + std::to_string(::getpid()) + std::to_string(++counter);
}

// Eventually no host process runs `sleep <duration>` (zombies no longer run).
bool no_sleep_running(const std::string& duration) {
  const std::string needle = std::string("sleep") + '\0' + duration;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  for (;;) {
    bool found = false;
    for (const auto& entry : fs::directory_iterator("/proc")) {
      const std::string name = entry.path().filename().string();
      if (name.find_first_not_of("0123456789") != std::string::npos) continue;
      std::ifstream cmd(entry.path() / "cmdline");
      const std::string content((std::istreambuf_iterator<char>(cmd)), {});
      if (content.find(needle) == std::string::npos) continue;
      std::ifstream stat(entry.path() / "stat");
      const std::string st((std::istreambuf_iterator<char>(stat)), {});
      const auto close = st.rfind(')');
      if (close != std::string::npos && close + 2 < st.size() && st[close + 2] == 'Z') continue;
      found = true;
    }
    if (!found) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(50ms);
  }
}

// This process's step cgroups (delegate-step-<our pid>-*) in every hierarchy in use.
std::vector<fs::path> our_step_cgroups() {
  const HostSupport& h = host_support();
  const std::string prefix = "delegate-step-" + std::to_string(::getpid()) + "-";
  std::set<fs::path> out;
  for (const fs::path* dir : {&h.memory_dir, &h.pids_dir, &h.cpu_dir}) {
    if (dir->empty()) continue;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(*dir, ec)) {
      if (e.path().filename().string().starts_with(prefix)) out.insert(e.path());
    }
  }
  return {out.begin(), out.end()};
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  return std::string((std::istreambuf_iterator<char>(in)), {});
}

// ---------------------------------------------------------------------------------------

// 1. ptrace of the agent: pid 1 of the step (the sandbox init, a copy of the agent) and
// the test process itself, by its host pid.
TEST_F(Escape, PtraceOfTheAgentFails) {
  const std::string me = std::to_string(::getpid());
  const std::string script = P + " ptrace_attach_pid 1; " + P + " ptrace_attach_pid " + me + "; " + P +
                             " ptrace_own_child";
  const auto c = run_script(script);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(parse_errno("ptrace_attach_pid 1", c.out), EPERM) << c.out;
  EXPECT_EQ(parse_errno("ptrace_attach_pid " + me, c.out), EPERM) << c.out;
  EXPECT_EQ(parse_errno("ptrace_own_child", c.out), EPERM) << c.out;  // seccomp: no ptrace at all

  // Without seccomp: the init is out of reach (non-dumpable, another uid), the host pid
  // does not exist in the step's pid namespace, and ptrace itself works (control).
  const auto filter = allow_all();
  const auto bare = run_script(script, &filter);
  ASSERT_EQ(bare.outcome.status, Status::exited) << bare.outcome.error << bare.err;
  EXPECT_EQ(parse_errno("ptrace_own_child", bare.out), 0) << bare.out;
  EXPECT_EQ(parse_errno("ptrace_attach_pid 1", bare.out), EPERM) << bare.out;
  EXPECT_EQ(parse_errno("ptrace_attach_pid " + me, bare.out), ESRCH) << bare.out;
}

// The init must be out of reach even for a "root" step, which has the init's uid: what
// stands between the step and this copy of the agent's memory is that the init holds
// capabilities the step lacks (the kernel refuses access to a more privileged process)
// and, on top, that the init is non-dumpable (removing that flag alone does not open it).
TEST_F(Escape, PtraceOfTheInitFailsForARootStepWithoutSeccomp) {
  REQUIRE_ROOT();
  const auto filter = allow_all();
  const auto c = run_script(P + " ptrace_attach_pid 1; " + P + " ptrace_own_child; id -u", &filter, true);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_TRUE(has_line(c.out, "0")) << c.out;  // it is uid 0 inside
  EXPECT_EQ(parse_errno("ptrace_own_child", c.out), 0) << c.out;
  EXPECT_EQ(parse_errno("ptrace_attach_pid 1", c.out), EPERM) << c.out;
}

// 2. The mount family and namespace changes, under the default profile and (apart from
// creating a user namespace, which seccomp alone forbids) without any filter.
TEST_F(Escape, MountsAndNamespaceChangesFail) {
  const std::string me = std::to_string(::getpid());
  std::vector<std::string> attempts = {
      "mount_tmpfs /proc", "mount_tmpfs .", "mount_tmpfs /etc", "remount_rw /", "remount_rw /etc",
      "umount2_path /proc", "umount2_path .", "umount2_path /", "pivot_root_path . .", "chroot_path .",
      "unshare_ns mnt", "unshare_ns net", "unshare_ns pid", "unshare_ns uts", "unshare_ns ipc",
      "unshare_ns cgroup",
  };
  for (const char* ns : {"mnt", "pid", "net", "user", "ipc", "uts", "cgroup"}) {
    attempts.push_back(std::string("setns_path /proc/1/ns/") + ns);
    attempts.push_back("setns_path /proc/" + me + "/ns/" + ns);
  }
  const std::vector<std::string> seccomp_only = {"unshare_ns user", "unshare_ns user,mnt"};

  std::string script;
  for (const auto& a : attempts) script += P + " " + a + "; ";
  for (const auto& a : seccomp_only) script += P + " " + a + "; ";
  // Control: the probe reaches the kernel and answers 0 for something allowed.
  script += P + " write_file ./control";

  const auto c = run_script(script);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(parse_errno("write_file ./control", c.out), 0) << c.out;
  for (const auto& a : attempts) {
    const int e = parse_errno(a, c.out);
    EXPECT_NE(e, -1) << a << ": no answer\n" << c.out << c.err;
    EXPECT_NE(e, 0) << a << " succeeded inside the step";
  }
  for (const auto& a : seccomp_only) EXPECT_EQ(parse_errno(a, c.out), EPERM) << a;
  // The host's namespaces are not even nameable from inside.
  for (const char* ns : {"mnt", "pid", "net", "user"}) {
    EXPECT_EQ(parse_errno("setns_path /proc/" + me + "/ns/" + ns, c.out), ENOENT) << ns;
  }

  const auto filter = allow_all();
  const auto bare = run_script(script, &filter);
  ASSERT_EQ(bare.outcome.status, Status::exited) << bare.outcome.error << bare.err;
  EXPECT_EQ(parse_errno("write_file ./control", bare.out), 0) << bare.out;
  for (const auto& a : attempts) {
    const int e = parse_errno(a, bare.out);
    EXPECT_NE(e, -1) << a << ": no answer (no seccomp)\n" << bare.out << bare.err;
    EXPECT_NE(e, 0) << a << " succeeded without seccomp: only the filter stood in the way";
  }
}

// 3. Writing outside the writable binds, read-only binds, hidden paths.
TEST_F(Escape, WritesOutsideReadWriteBindsFail) {
  HostDir open_dir(0777);  // writable by anyone on the host: only the mount stops the step
  const std::string tag = std::to_string(::getpid());
  const std::vector<std::string> targets = {"/etc/delegate-escape-" + tag, "/usr/delegate-escape-" + tag,
                                            open_dir / "escaped", "/var/tmp/delegate-escape-" + tag};
  struct RemoveOnExit {  // should the test fail, leave nothing behind on the host
    const std::vector<std::string>& paths;
    ~RemoveOnExit() {
      for (const auto& p : paths) ::unlink(p.c_str());
    }
  } remove_on_exit{targets};
  std::string script;
  for (const auto& t : targets) script += P + " write_file " + t + "; ";
  script += P + " write_file ./in-workdir";  // control: the workdir is writable
  const auto c = run_script(script);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(parse_errno("write_file ./in-workdir", c.out), 0) << c.out;
  for (const auto& t : targets) {
    EXPECT_EQ(parse_errno("write_file " + t, c.out), EROFS) << t << "\n" << c.out;
    EXPECT_FALSE(fs::exists(t)) << t;
  }

  // The same directory bound read-write: the write succeeds and lands on the host.
  Spec rw;
  rw.argv = {P, "write_file", open_dir / "escaped"};
  rw.isolation.mounts = {{BindMount::Kind::read_write, open_dir.path()}};
  const auto w = run_step(rw);
  ASSERT_EQ(w.outcome.status, Status::exited) << w.outcome.error << w.err;
  EXPECT_EQ(parse_errno("write_file " + (open_dir / "escaped"), w.out), 0) << w.out;
  EXPECT_EQ(read_file(open_dir / "escaped"), "escaped\n");
  if (host_support().is_root) {
    struct stat st {};
    ASSERT_EQ(::stat((open_dir / "escaped").c_str(), &st), 0);
    EXPECT_EQ(st.st_uid, 65534u);  // written as the step user, not as root
  }

  // Bound read-only: still not writable, even though the host directory is 0777.
  HostDir ro_dir(0777);
  Spec ro;
  ro.argv = {P, "write_file", ro_dir / "escaped"};
  ro.isolation.mounts = {{BindMount::Kind::read_only, ro_dir.path()}};
  const auto r = run_step(ro);
  ASSERT_EQ(r.outcome.status, Status::exited) << r.outcome.error << r.err;
  EXPECT_EQ(parse_errno("write_file " + (ro_dir / "escaped"), r.out), EROFS) << r.out;
  EXPECT_FALSE(fs::exists(ro_dir / "escaped"));
}

TEST_F(Escape, HiddenPathsAreNotReadable) {
  HostDir secrets(0755);
  const std::string marker = "delegate-hidden-" + std::to_string(::getpid());
  {
    std::ofstream(secrets / "key") << marker << "\n";
  }
  ::chmod((secrets / "key").c_str(), 0644);
  const std::string label = "find_in_file " + (secrets / "key") + " " + marker;

  Spec spec;
  spec.argv = {P, "find_in_file", secrets / "key", marker};
  const auto visible = run_step(spec);  // control: readable when not hidden
  ASSERT_EQ(visible.outcome.status, Status::exited) << visible.outcome.error << visible.err;
  EXPECT_EQ(parse_errno(label, visible.out), 0) << visible.out;
  EXPECT_EQ(parse_found(label, visible.out), 1) << visible.out;

  spec.isolation.mounts = {{BindMount::Kind::hidden, secrets.path()}};
  const auto dir_hidden = run_step(spec);
  ASSERT_EQ(dir_hidden.outcome.status, Status::exited) << dir_hidden.outcome.error << dir_hidden.err;
  EXPECT_EQ(parse_errno(label, dir_hidden.out), ENOENT) << dir_hidden.out;

  spec.isolation.mounts = {{BindMount::Kind::hidden, secrets.path() / "key"}};
  const auto file_hidden = run_step(spec);
  ASSERT_EQ(file_hidden.outcome.status, Status::exited) << file_hidden.outcome.error << file_hidden.err;
  EXPECT_EQ(parse_found(label, file_hidden.out), 0) << file_hidden.out;  // reads as /dev/null
}

// 4. Host processes: invisible, unsignallable, and they survive `kill -9 -1`.
TEST_F(Escape, HostProcessesAreInvisible) {
  HostSleeper sleeper;
  ASSERT_TRUE(sleeper.alive());
  const auto c = run_script("ls /proc");
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  std::set<std::string> pids;
  for (const auto& l : lines(c.out)) {
    if (!l.empty() && l.find_first_not_of("0123456789") == std::string::npos) pids.insert(l);
  }
  EXPECT_TRUE(pids.contains("1")) << c.out;  // control: this is a listing of a real /proc
  EXPECT_LE(pids.size(), 4u) << c.out;
  EXPECT_FALSE(pids.contains(std::to_string(::getpid())));
  EXPECT_FALSE(pids.contains(std::to_string(sleeper.pid())));
}

TEST_F(Escape, HostProcessesCannotBeSignalled) {
  HostSleeper sleeper;
  ASSERT_TRUE(sleeper.alive());
  const std::string victim = std::to_string(sleeper.pid());
  const std::string me = std::to_string(::getpid());
  const std::string script = "sleep 100 & S=$!; kill -0 $S && echo control=signalled; " + P + " kill " + victim +
                             " 0; " + P + " kill " + me + " 0; " + P + " kill " + victim + " 9; " +
                             "kill -9 -1; wait $S; echo sibling=$?";
  const auto c = run_script(script);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_TRUE(has_line(c.out, "control=signalled")) << c.out;
  EXPECT_TRUE(has_line(c.out, "sibling=137")) << c.out;  // kill -9 -1 did kill inside the step
  EXPECT_EQ(parse_errno("kill " + victim + " 0", c.out), ESRCH) << c.out;
  EXPECT_EQ(parse_errno("kill " + me + " 0", c.out), ESRCH) << c.out;
  EXPECT_EQ(parse_errno("kill " + victim + " 9", c.out), ESRCH) << c.out;
  EXPECT_TRUE(sleeper.alive()) << "a host process died while a step ran kill -9 -1";
}

// 5. The agent's environment and memory. The secret is set in this process before the
// launch, so the init (a copy of this process) holds it in its heap.
TEST_F(Escape, AgentEnvironmentAndMemoryAreNotReadable) {
  const std::string secret = "delegate-secret-" + std::to_string(::getpid()) + "-escape";
  const std::string step_marker = "step-marker-" + std::to_string(::getpid());
  ::setenv("DELEGATE_TEST_SECRET", secret.c_str(), 1);
  struct Unset {
    ~Unset() { ::unsetenv("DELEGATE_TEST_SECRET"); }
  } unset;

  const std::string script = "env; " + P + " find_in_file /proc/self/environ " + step_marker + "; " + P +
                             " find_in_file /proc/1/environ \"$NEEDLE\"; " + P +
                             " find_in_file /proc/1/cmdline \"$NEEDLE\"; " + P + " find_in_mem 1 \"$NEEDLE\"; " + P +
                             " find_in_mem self \"$NEEDLE\"";
  auto check = [&](const Captured& c, const std::string& what) {
    SCOPED_TRACE(what);
    ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
    // Controls: the step's own environment and memory are readable and searched (the
    // prober's argv holds the secret).
    EXPECT_EQ(parse_found("find_in_file /proc/self/environ " + step_marker, c.out), 1) << c.out;
    EXPECT_EQ(parse_found("find_in_mem self " + secret, c.out), 1) << c.out;
    // Nothing in the step's environment came from the agent's.
    EXPECT_EQ(c.out.find("DELEGATE_TEST_SECRET"), std::string::npos) << c.out;
    // The init's environ and memory: unreadable (or at least without the secret).
    for (const std::string probe : {"find_in_file /proc/1/environ ", "find_in_mem 1 "}) {
      const int e = parse_errno(probe + secret, c.out);
      EXPECT_NE(e, -1) << probe << c.out << c.err;
      EXPECT_TRUE(e == EACCES || e == EPERM || (e == 0 && parse_found(probe + secret, c.out) == 0))
          << probe << " errno=" << e << "\n" << c.out;
      EXPECT_NE(e, 0) << probe << " was readable";
    }
    EXPECT_NE(parse_found("find_in_file /proc/1/cmdline " + secret, c.out), 1) << c.out;
  };

  Spec spec;
  spec.argv = {"sh", "-c", script};
  spec.env = {"NEEDLE=" + secret, "STEP_MARKER=" + step_marker};
  check(run_step(spec), "default profile");
  const auto filter = allow_all();
  check(run_capture(spec, filter), "no seccomp");
  if (host_support().is_root) {
    // Same uid as the init: its capabilities and its non-dumpable flag protect it.
    spec.isolation.root = true;
    check(run_capture(spec, filter), "root step, no seccomp");
  }
}

// 6. A listener on the host's loopback.
TEST_F(Escape, HostLoopbackIsUnreachableWithoutNetwork) {
  const int listener = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(listener, 0);
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } guard{listener};
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(listener, 16), 0);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const std::string port = std::to_string(ntohs(addr.sin_port));
  const std::string label = "connect_tcp " + port;

  auto attempt = [&](const std::string& profile, bool seccomp_network, bool network) {
    Spec spec;
    spec.argv = {P, "connect_tcp", port};
    spec.profile = profile;
    spec.network = network;
    const auto c = run_capture(spec, compile_or_die(profile, seccomp_network));
    EXPECT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
    return parse_errno(label, c.out);
  };
  EXPECT_EQ(attempt("default", false, false), EPERM);  // no IP sockets at all
  EXPECT_EQ(attempt("network", false, false), EPERM);  // the profile allows them; the flag does not
  // IP sockets allowed by seccomp but no network: the step's own, empty network namespace.
  EXPECT_EQ(attempt("network", true, false), ECONNREFUSED);
  // Control: with the network the very same connect reaches the listener.
  EXPECT_EQ(attempt("network", true, true), 0);
}

// 7. Setuid binaries.
TEST_F(Escape, SetuidBinaryGainsNothing) {
  REQUIRE_ROOT();
  HostDir dir(0755);
  const std::string id = dir / "id";
  fs::copy_file("/usr/bin/id", id);
  ASSERT_EQ(::chown(id.c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod(id.c_str(), 04755), 0);

  // Control: on the host, the copy does make nobody root.
  int out[2];
  ASSERT_EQ(::pipe(out), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::dup2(out[1], 1);
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0) {
      ::_exit(126);
    }
    ::execl(id.c_str(), "id", "-u", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  std::string host_euid;
  char buf[64];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) host_euid.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  if (host_euid != "0\n") GTEST_SKIP() << "the setuid copy does not work on this host (nosuid /var/tmp?): " << host_euid;

  const auto c = run_script(id + " -u; " + id);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  const auto l = lines(c.out);
  ASSERT_FALSE(l.empty()) << c.err;
  EXPECT_EQ(l[0], "65534");
  EXPECT_EQ(c.out.find("euid=0"), std::string::npos) << c.out;

  if (fs::exists("/usr/bin/su")) {
    Spec su;
    su.argv = {"/usr/bin/su", "-c", "id -u", "root"};
    su.limits.timeout = 20s;
    const auto s = run_step(su);
    EXPECT_NE(s.outcome.status == Status::exited ? s.outcome.exit_code : -1, 0) << s.out << s.err;
    EXPECT_FALSE(has_line(s.out, "0")) << s.out;
  }
  if (fs::exists("/usr/bin/sudo")) {
    Spec sudo;
    sudo.argv = {"/usr/bin/sudo", "-n", "id", "-u"};
    sudo.limits.timeout = 20s;
    const auto s = run_step(sudo);
    EXPECT_FALSE(has_line(s.out, "0")) << s.out;
  }
}

// 8. TIOCSTI: denied by every shipped profile, and a step has no terminal to aim at.
TEST_F(Escape, TerminalInjectionIsDeniedEverywhere) {
  for (const char* profile : {"default", "network", "strict"}) {
    for (const bool network : {false, true}) {
      SCOPED_TRACE(std::string(profile) + (network ? " +network" : ""));
      Spec spec;
      spec.argv = {P, "tiocsti"};
      spec.network = network;
      const auto c = run_capture(spec, compile_or_die(profile, network));
      EXPECT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
      EXPECT_EQ(parse_errno("tiocsti", c.out), EPERM) << c.out;
    }
  }
  // No controlling terminal: the agent's (if any) is not reachable through /dev/tty.
  Spec tty;
  tty.argv = {P, "open_rw", "/dev/tty"};
  const auto c = run_step(tty);
  EXPECT_EQ(parse_errno("open_rw /dev/tty", c.out), ENXIO) << c.out << c.err;
}

// 9. Kernel attack surface, used for real: keyrings, BPF, perf, io_uring.
TEST_F(Escape, KernelAttackSurfaceIsDenied) {
  const std::vector<std::string> probes = {"add_key_real", "bpf_map_real", "perf_event_real", "io_uring_real"};
  std::string script;
  for (const auto& p : probes) script += P + " " + p + "; ";
  script += P + " keyctl";
  const auto c = run_script(script);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  for (const auto& p : probes) {
    EXPECT_EQ(parse_errno(p, c.out), EPERM) << p << "\n" << c.out;
    // Control: outside the sandbox the same call works (so EPERM is the sandbox's doing).
    const int host = testing::probe_unsandboxed(p);
    if (host != 0) {
      std::cout << "[   NOTE   ] " << p << " also fails outside the sandbox (errno " << host
                << "); inside it must still be EPERM\n";
    }
  }
  EXPECT_EQ(parse_errno("keyctl", c.out), EPERM) << c.out;
}

// 10. Fork bomb under a pids limit of 64.
TEST_F(Escape, ForkBombIsContained) {
  if (host_support().pids == CgroupVersion::none) GTEST_SKIP() << "no pids cgroup on this host";
  const std::string marker = unique_sleep();
  Spec spec;
  // dash gives up at the first failed fork; the bomb is contained either way, whether
  // it ends like that or runs into the timeout.
  spec.argv = {"sh", "-c", "echo started; while :; do sleep " + marker + " & done"};
  spec.limits.processes = 64;
  spec.limits.timeout = 10s;
  // Sampled from the host while the bomb runs, on every chunk of output it produces.
  std::uint64_t max_current = 0;
  std::string pids_max;
  std::uint64_t limit_events = 0;
  bool events_file = false;
  int samples = 0;
  Captured c;
  auto r = run(spec, compile_or_die("default"), [&](Stream s, std::string_view data) {
    (s == Stream::stdout_stream ? c.out : c.err).append(data);
    if (samples >= 200) return;
    ++samples;
    for (const auto& dir : our_step_cgroups()) {
      if (!fs::exists(dir / "pids.max")) continue;
      pids_max = read_file(dir / "pids.max");
      try {
        max_current = std::max<std::uint64_t>(max_current, std::stoull(read_file(dir / "pids.current")));
      } catch (...) {
      }
      if (fs::exists(dir / "pids.events")) {
        events_file = true;
        std::istringstream in(read_file(dir / "pids.events"));
        std::string key;
        std::uint64_t value = 0;
        while (in >> key >> value) {
          if (key == "max") limit_events = std::max(limit_events, value);
        }
      }
    }
  });
  ASSERT_TRUE(r) << r.error().message;
  c.outcome = *r;
  EXPECT_TRUE(c.outcome.status == Status::timed_out ||
              (c.outcome.status == Status::exited && c.outcome.exit_code != 0))
      << c.outcome.error << c.err.substr(0, 500);
  EXPECT_LT(c.outcome.duration, 30s);
  RecordProperty("max_pids_current", static_cast<int>(max_current));
  RecordProperty("pids_limit_events", static_cast<int>(limit_events));
  EXPECT_EQ(pids_max, "64\n");  // control: the samples came from the step's cgroup
  EXPECT_GT(max_current, 1u);
  EXPECT_LE(max_current, 64u);
  if (events_file) {
    EXPECT_GT(limit_events, 0u) << "the pids limit was never hit";
  }
  EXPECT_NE(c.err.find("fork"), std::string::npos) << c.err.substr(0, 500);
  EXPECT_TRUE(no_sleep_running(marker)) << "a process of the fork bomb survived the step";
  EXPECT_TRUE(our_step_cgroups().empty());
  // The host can still fork.
  const pid_t child = ::fork();
  ASSERT_GE(child, 0) << std::strerror(errno);
  if (child == 0) ::_exit(0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

// 11. Memory hog.
TEST_F(Escape, MemoryHogIsOomKilled) {
  if (host_support().memory == CgroupVersion::none) GTEST_SKIP() << "no memory cgroup on this host";
  Spec spec;
  // tail -n holds an unterminated line: all 512 MiB stay resident against 64 MiB.
  spec.argv = {"sh", "-c", "head -c 536870912 /dev/zero | tail -n 1 >/dev/null; echo survived"};
  spec.limits.memory_bytes = 64ull << 20;
  const auto c = run_step(spec);
  EXPECT_TRUE(contains(c.outcome.limits_hit, "memory")) << c.out << c.err;
  // Control: the same pipeline under the limit completes.
  spec.argv = {"sh", "-c", "head -c 8388608 /dev/zero | tail -n 1 >/dev/null; echo survived"};
  const auto small = run_step(spec);
  EXPECT_EQ(small.out, "survived\n");
  EXPECT_FALSE(contains(small.outcome.limits_hit, "memory"));
}

// 12. Infinite loops: the wall clock and the CPU limit.
TEST_F(Escape, InfiniteLoopHitsTheTimeout) {
  Spec spec;
  spec.argv = {"sh", "-c", "while :; do :; done"};
  spec.limits.timeout = 1s;
  const auto c = run_step(spec);
  EXPECT_EQ(c.outcome.status, Status::timed_out);
  EXPECT_TRUE(contains(c.outcome.limits_hit, "timeout"));
  EXPECT_LT(c.outcome.duration, 30s);
}

TEST_F(Escape, InfiniteLoopHitsTheCpuLimit) {
  Spec spec;
  spec.argv = {"sh", "-c", "while :; do :; done"};
  spec.limits.cpu_seconds = 1;
  spec.limits.timeout = 60s;  // generous: the CPU limit must fire first
  const auto c = run_step(spec);
  EXPECT_EQ(c.outcome.status, Status::signaled);
  EXPECT_TRUE(c.outcome.signal == SIGXCPU || c.outcome.signal == SIGKILL) << c.outcome.signal;
  EXPECT_TRUE(contains(c.outcome.limits_hit, "cpu"));
  EXPECT_FALSE(contains(c.outcome.limits_hit, "timeout"));
}

// 13. Who the step is.
TEST_F(Escape, StepIdentityIsUnprivileged) {
  REQUIRE_ROOT();  // an unprivileged agent's steps run as the agent's own uid
  const auto c = run_script(
      "id -u; id -g; echo ---; cat /proc/self/status; echo ---; cat /proc/sys/kernel/hostname; echo ---; "
      "cat /proc/self/uid_map; echo ---; cat /proc/self/gid_map; echo ---; cat /proc/net/dev");
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  std::vector<std::string> parts;
  std::string current;
  for (const auto& l : lines(c.out)) {
    if (l == "---") {
      parts.push_back(current);
      current.clear();
    } else {
      current += l + "\n";
    }
  }
  parts.push_back(current);
  ASSERT_EQ(parts.size(), 6u) << c.out;
  EXPECT_EQ(parts[0], "65534\n65534\n");
  const auto st = status_fields(parts[1]);
  for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"}) {
    EXPECT_EQ(st.count(cap) ? st.at(cap) : "missing", "0000000000000000") << cap;
  }
  EXPECT_EQ(st.count("NoNewPrivs") ? st.at("NoNewPrivs") : "", "1");
  EXPECT_EQ(st.count("Seccomp") ? st.at("Seccomp") : "", "2");
  EXPECT_EQ(parts[2], "delegate-step\n");
  // Exactly two ids exist inside: root (the init) and the step user.
  auto ids = [](const std::string& map) {
    std::set<std::string> out;
    std::istringstream in(map);
    std::string inner, outer, count;
    while (in >> inner >> outer >> count) out.insert(inner + " " + outer + " " + count);
    return out;
  };
  EXPECT_EQ(ids(parts[3]), (std::set<std::string>{"0 0 1", "65534 65534 1"})) << parts[3];
  EXPECT_EQ(ids(parts[4]), (std::set<std::string>{"0 0 1", "65534 65534 1"})) << parts[4];
  // Network interfaces: loopback only (the host has more, see the control below).
  std::set<std::string> ifaces;
  for (const auto& l : lines(parts[5])) {
    const auto colon = l.find(':');
    if (colon == std::string::npos) continue;
    ifaces.insert(l.substr(l.find_first_not_of(' '), colon - l.find_first_not_of(' ')));
  }
  EXPECT_EQ(ifaces, (std::set<std::string>{"lo"})) << parts[5];
}

// 14. A "root" step: uid 0 for file ownership only.
TEST_F(Escape, RootStepHasNoPower) {
  REQUIRE_ROOT();
  const std::string tag = std::to_string(::getpid());
  struct RemoveOnExit {  // should the test fail, leave nothing behind on the host
    std::string path;
    ~RemoveOnExit() { ::unlink(path.c_str()); }
  } remove_on_exit{"/etc/delegate-escape-" + tag};
  const std::string script = "id -u; grep -E '^Cap(Eff|Prm|Bnd|Amb):' /proc/self/status; " + P +
                             " write_file /etc/delegate-escape-" + tag + "; " + P + " mount_tmpfs .; " + P +
                             " remount_rw /; " + P + " write_file ./control";
  for (const bool seccomp : {true, false}) {
    SCOPED_TRACE(seccomp ? "default profile" : "no seccomp");
    const auto filter = seccomp ? compile_or_die("default") : allow_all();
    const auto c = run_script(script, &filter, true);
    ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
    const auto l = lines(c.out);
    ASSERT_FALSE(l.empty());
    EXPECT_EQ(l[0], "0");
    for (const char* cap : {"CapEff", "CapPrm", "CapBnd", "CapAmb"}) {
      EXPECT_TRUE(has_line(c.out, std::string(cap) + ":\t0000000000000000")) << cap << "\n" << c.out;
    }
    EXPECT_EQ(parse_errno("write_file ./control", c.out), 0) << c.out;
    EXPECT_EQ(parse_errno("write_file /etc/delegate-escape-" + tag, c.out), EROFS) << c.out;
    EXPECT_EQ(parse_errno("mount_tmpfs .", c.out), EPERM) << c.out;
    EXPECT_EQ(parse_errno("remount_rw /", c.out), EPERM) << c.out;
    EXPECT_FALSE(fs::exists("/etc/delegate-escape-" + tag));
  }
}

// 15. Nothing of a step outlives it: cgroups, working directory.
TEST_F(Escape, CgroupsAndWorkdirAreRemoved) {
  const HostSupport& h = host_support();
  const bool any_cgroup = h.memory != CgroupVersion::none || h.pids != CgroupVersion::none ||
                          h.cpu != CgroupVersion::none;
  ASSERT_TRUE(our_step_cgroups().empty());
  for (const bool time_out : {false, true}) {
    SCOPED_TRACE(time_out ? "timed out" : "exited");
    Spec spec;
    spec.argv = {"sh", "-c", std::string("pwd; ") + (time_out ? "sleep 100" : "true")};
    spec.limits.timeout = 1s;
    std::size_t seen_during = 0;
    Captured c;
    auto r = run(spec, compile_or_die("default"), [&](Stream s, std::string_view data) {
      (s == Stream::stdout_stream ? c.out : c.err).append(data);
      seen_during = std::max(seen_during, our_step_cgroups().size());
    });
    ASSERT_TRUE(r) << r.error().message;
    EXPECT_EQ(r->status, time_out ? Status::timed_out : Status::exited) << r->error << c.err;
    const auto l = lines(c.out);
    ASSERT_FALSE(l.empty()) << c.err;
    EXPECT_TRUE(l[0].starts_with("/tmp/")) << l[0];
    EXPECT_FALSE(fs::exists(l[0])) << "workdir left behind: " << l[0];
    if (any_cgroup) {
      EXPECT_GT(seen_during, 0u) << "control: the step's cgroup was never seen";
    }
    const auto left = our_step_cgroups();
    EXPECT_TRUE(left.empty()) << "left behind: " << (left.empty() ? "" : left.front().string());
  }
}

}  // namespace
}  // namespace delegate::sandbox
