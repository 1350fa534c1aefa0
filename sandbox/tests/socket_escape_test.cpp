// Host Unix sockets from inside a real step (docs/sandbox.md, "Host sockets"): the listeners live outside,
// in the test process, and say themselves whether anything reached them, so a probe
// that failed for another reason cannot pass as a blocked connection. Every refusal
// has a positive control: the same probe reaching a socket the step was granted.
#include <fcntl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
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

const std::string P = prober();

// A fresh directory named after `prefix` (under /run, /var/run or /var/tmp), removed
// with its content.
class HostDir {
 public:
  explicit HostDir(const std::string& prefix) {
    std::string tmpl = prefix + "-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    path_ = tmpl;
    ::chmod(path_.c_str(), 0755);
  }
  ~HostDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  HostDir(const HostDir&) = delete;
  HostDir& operator=(const HostDir&) = delete;
  std::string operator/(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// A listening stream socket or a bound datagram socket at `path` ("@name": abstract).
class Listener {
 public:
  Listener(std::string path, int type = SOCK_STREAM, mode_t mode = 0666) : path_(std::move(path)), type_(type) {
    fd_ = ::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    const bool abstract = path_[0] == '@';
    std::memcpy(addr.sun_path, path_.data(), path_.size());
    if (abstract) addr.sun_path[0] = '\0';
    const auto len = static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + path_.size() + (abstract ? 0 : 1));
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        (type == SOCK_STREAM && ::listen(fd_, 16) != 0) || (!abstract && ::chmod(path_.c_str(), mode) != 0)) {
      ADD_FAILURE() << "cannot listen on " << path_ << ": " << std::strerror(errno);
    }
  }
  ~Listener() {
    if (fd_ >= 0) ::close(fd_);
    if (path_[0] != '@') ::unlink(path_.c_str());
  }
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;
  const std::string& path() const { return path_; }

  // Whether a client connected and sent its byte (stream) or a datagram arrived. The
  // step has ended when this is asked: whatever it did is queued by now.
  bool reached() {
    if (type_ == SOCK_DGRAM) {
      char b = 0;
      return ::recv(fd_, &b, 1, MSG_DONTWAIT) == 1;
    }
    const int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c < 0) return false;
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(c, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) peer_uid_ = cred.uid;
    char b = 0;
    const bool sent = ::recv(c, &b, 1, 0) == 1;
    ::close(c);
    return sent;
  }
  uid_t peer_uid() const { return peer_uid_; }

 private:
  std::string path_;
  int type_;
  int fd_ = -1;
  uid_t peer_uid_ = static_cast<uid_t>(-1);
};

class SocketEscape : public ::testing::Test {
 protected:
  void SetUp() override {
    const HostSupport& h = host_support();
    if (!(h.user_ns || h.other_ns) || !h.mount_setattr) {
      GTEST_SKIP() << "the sandbox cannot isolate steps on this host: " << h.notes;
    }
    // The sockets under test live in /run, which only root may write.
    if (!h.is_root) GTEST_SKIP() << "needs a root agent (sockets under /run)";
  }
};

std::string connect_all(const std::vector<std::string>& paths, const char* action = "connect_unix") {
  std::string script;
  for (const auto& p : paths) script += P + " " + action + " " + p + "; ";
  return script;
}

int errno_of(const Captured& c, const std::string& path, const char* action = "connect_unix") {
  return parse_errno(std::string(action) + " " + path, c.out);
}

Captured run(Spec spec, bool unix_sockets = false) {
  spec.limits.timeout = 60s;
  if (spec.network && spec.profile == "default") spec.profile = "network";
  return run_capture(spec, compile_or_die(spec.profile, spec.network, unix_sockets));
}

// A world-connectable socket under /run and one under /var/run: no default step reaches
// either, with or without the host network. Seccomp refuses the Unix socket itself;
// underneath, /run is an empty tmpfs (shown with AF_UNIX allowed by a grant of another
// socket, whose connection is the positive control).
TEST_F(SocketEscape, DefaultStepReachesNoSocketUnderRunOrVarRun) {
  const HostDir run_dir("/run/delegate-sock-test");
  const HostDir var_run_dir("/var/run/delegate-sock-test");
  const HostDir elsewhere("/var/tmp/delegate-sock-test");
  Listener in_run(run_dir / "world.sock");
  Listener in_var_run(var_run_dir / "world.sock");
  Listener granted(elsewhere / "granted.sock");
  for (const bool network : {false, true}) {
    SCOPED_TRACE(network ? "network: true" : "network: false");
    Spec spec;
    spec.network = network;
    spec.argv = {"sh", "-c", connect_all({in_run.path(), in_var_run.path(), granted.path()})};
    const auto c = run(spec);
    ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
    for (const auto* l : {&in_run, &in_var_run, &granted}) EXPECT_EQ(errno_of(c, l->path()), EPERM) << c.out;
    EXPECT_FALSE(in_run.reached());
    EXPECT_FALSE(in_var_run.reached());
    EXPECT_FALSE(granted.reached());

    spec.isolation.sockets = {granted.path()};
    const auto g = run(spec, true);
    ASSERT_EQ(g.outcome.status, Status::exited) << g.outcome.error << g.err;
    EXPECT_EQ(errno_of(g, granted.path()), 0) << g.out;
    EXPECT_TRUE(granted.reached()) << "control: the granted socket was not reached\n" << g.out;
    EXPECT_EQ(errno_of(g, in_run.path()), ENOENT) << g.out;
    EXPECT_EQ(errno_of(g, in_var_run.path()), ENOENT) << g.out;
    EXPECT_FALSE(in_run.reached());
    EXPECT_FALSE(in_var_run.reached());
  }
}

// A root step is uid 0 to a server that checks SO_PEERCRED: a root-only socket must stay
// out of its reach unless granted (the control shows what a grant means).
TEST_F(SocketEscape, RootStepCannotReachARootOnlySocket) {
  const HostDir run_dir("/run/delegate-sock-test");
  Listener root_only(run_dir / "root.sock", SOCK_STREAM, 0600);
  Spec spec;
  spec.isolation.root = true;
  spec.argv = {P, "connect_unix", root_only.path()};
  const auto c = run(spec);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(errno_of(c, root_only.path()), EPERM) << c.out;
  EXPECT_FALSE(root_only.reached());

  spec.isolation.sockets = {root_only.path()};
  const auto g = run(spec, true);
  ASSERT_EQ(g.outcome.status, Status::exited) << g.outcome.error << g.err;
  EXPECT_EQ(errno_of(g, root_only.path()), 0) << g.out;
  EXPECT_TRUE(root_only.reached());
  EXPECT_EQ(root_only.peer_uid(), 0u);
}

// socketpair() gets the family filter of socket(): a datagram pair would otherwise be a
// Unix socket that connect() points at any path.
TEST_F(SocketEscape, DatagramSocketpairCannotBeConnectedToAPath) {
  const HostDir dir("/var/tmp/delegate-sock-test");
  Listener dgram(dir / "dgram.sock", SOCK_DGRAM);
  Spec spec;
  spec.argv = {P, "socketpair_dgram_connect", dgram.path()};
  const auto c = run(spec);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(errno_of(c, dgram.path(), "socketpair_dgram_connect"), EPERM) << c.out;
  EXPECT_FALSE(dgram.reached());

  spec.isolation.sockets = {dgram.path()};
  const auto g = run(spec, true);
  ASSERT_EQ(g.outcome.status, Status::exited) << g.outcome.error << g.err;
  EXPECT_EQ(errno_of(g, dgram.path(), "socketpair_dgram_connect"), 0) << g.out;
  EXPECT_TRUE(dgram.reached());
}

// A granted step can make Unix sockets, so every other named socket of the host that its
// view shows is covered: outside /run, and under /run re-exposed by a read-only bind.
TEST_F(SocketEscape, AStepWithAGrantReachesNoOtherSocket) {
  const HostDir dir("/var/tmp/delegate-sock-test");
  const HostDir run_dir("/run/delegate-sock-test");
  Listener granted(dir / "granted.sock");
  Listener other(dir / "other.sock");
  Listener in_run(run_dir / "world.sock");
  Spec spec;
  spec.isolation.sockets = {granted.path()};
  spec.isolation.mounts = {{BindMount::Kind::read_only, fs::path(in_run.path()).parent_path()}};
  spec.argv = {"sh", "-c",
               "test -e " + other.path() + " && echo other-visible; test -e " + in_run.path() + " && echo run-visible; " +
                   connect_all({granted.path(), other.path(), in_run.path()})};
  const auto c = run(spec, true);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  // The paths exist in the view (so the refusals below are not "not found")...
  EXPECT_NE(c.out.find("other-visible"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("run-visible"), std::string::npos) << c.out;
  // ...but hold no socket any more.
  EXPECT_EQ(errno_of(c, granted.path()), 0) << c.out;
  EXPECT_TRUE(granted.reached());
  EXPECT_EQ(errno_of(c, other.path()), ECONNREFUSED) << c.out;
  EXPECT_EQ(errno_of(c, in_run.path()), ECONNREFUSED) << c.out;
  EXPECT_FALSE(other.reached());
  EXPECT_FALSE(in_run.reached());
}

// With the host network a step shares the host's abstract socket namespace; without a
// grant it cannot make the socket to use it. With a grant it can: the documented
// residual risk of granting a socket to a network step (THREAT_MODEL.md).
TEST_F(SocketEscape, HostAbstractSocketsNeedAGrantToBeReached) {
  const std::string name = "@delegate-sock-test-" + std::to_string(::getpid());
  Listener abstract(name);
  const HostDir dir("/var/tmp/delegate-sock-test");
  Listener granted(dir / "granted.sock");
  Spec spec;
  spec.network = true;
  spec.argv = {P, "connect_unix", name};
  const auto c = run(spec);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(errno_of(c, name), EPERM) << c.out;
  EXPECT_FALSE(abstract.reached());

  spec.isolation.sockets = {granted.path()};
  const auto g = run(spec, true);
  ASSERT_EQ(g.outcome.status, Status::exited) << g.outcome.error << g.err;
  EXPECT_EQ(errno_of(g, name), 0) << g.out;
  EXPECT_TRUE(abstract.reached());
  // In its own network namespace the same name does not exist.
  spec.network = false;
  const auto own = run(spec, true);
  ASSERT_EQ(own.outcome.status, Status::exited) << own.outcome.error << own.err;
  EXPECT_EQ(errno_of(own, name), ECONNREFUSED) << own.out;
  EXPECT_FALSE(abstract.reached());
}

// The filter and the grant must agree, or the launch fails closed before anything runs.
TEST_F(SocketEscape, FilterAndGrantMustAgree) {
  const HostDir dir("/var/tmp/delegate-sock-test");
  Listener granted(dir / "granted.sock");
  Spec spec;
  spec.argv = {P, "connect_unix", granted.path()};
  const auto no_grant = run(spec, true);
  EXPECT_EQ(no_grant.outcome.status, Status::setup_failed);
  EXPECT_EQ(no_grant.outcome.error,
            "the seccomp filter allows Unix sockets but the step was granted no host socket");
  spec.isolation.sockets = {granted.path()};
  const auto no_filter = run(spec, false);
  EXPECT_EQ(no_filter.outcome.status, Status::setup_failed);
  EXPECT_EQ(no_filter.outcome.error, "the step was granted host sockets but its seccomp filter refuses Unix sockets");
  EXPECT_FALSE(granted.reached());
  // Not a socket: refused when the isolation is planned.
  spec.isolation.sockets = {"/etc/hostname"};
  const auto not_socket = run(spec, true);
  EXPECT_EQ(not_socket.outcome.status, Status::setup_failed);
  EXPECT_EQ(not_socket.outcome.error, "host socket /etc/hostname is not a socket");
  // Recorded in the plan (step.start's isolation).
  spec.isolation.sockets = {granted.path()};
  const auto ok = run(spec, true);
  ASSERT_EQ(ok.outcome.status, Status::exited) << ok.outcome.error;
  EXPECT_EQ(describe(ok.outcome.isolation).at("sockets"), Json::array({granted.path()}));
}

// Name resolution keeps working for a network step when /etc/resolv.conf points into
// the covered /run (systemd-resolved's stub file).
TEST_F(SocketEscape, NetworkStepReadsAResolvConfThatLivesInRun) {
  std::error_code ec;
  const auto target = fs::canonical("/etc/resolv.conf", ec);
  if (ec || !fs::is_symlink("/etc/resolv.conf") || !target.string().starts_with("/run/")) {
    GTEST_SKIP() << "/etc/resolv.conf is not a symlink into /run on this host";
  }
  std::ifstream in(target);
  const std::string host((std::istreambuf_iterator<char>(in)), {});
  Spec spec;
  spec.network = true;
  spec.argv = {"cat", "/etc/resolv.conf"};
  const auto c = run(spec);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(c.out, host);
}

}  // namespace
}  // namespace delegate::sandbox
