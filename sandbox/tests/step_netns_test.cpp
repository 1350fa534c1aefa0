// A network namespace the agent prepares (StepNetns) and a step launched into it
// (Spec::netns_fd): the step reaches the agent's listener on that namespace's loopback,
// and nothing on the host's loopback; without the prepared namespace it reaches nothing.
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <unistd.h>

#include <string>

#include <delegate/sandbox/step_netns.hpp>

#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::compile_or_die;
using testing::run_capture;

Spec connecting_step(std::uint16_t port) {
  Spec spec;
  spec.argv = {"/usr/bin/python3", "-c",
               "import socket,sys\n"
               "try:\n"
               "  s=socket.create_connection(('127.0.0.1'," + std::to_string(port) + "),5); s.sendall(b'hi'); print('connected')\n"
               "except OSError as e:\n"
               "  print('refused', e.errno); sys.exit(3)\n"};
  spec.profile = "network";
  spec.limits.timeout = 30s;
  return spec;
}

// Whether a connection is waiting on the listener (which is never accepted from here
// before the step ended: the step's connect completes against the backlog).
std::string accept_one(int listener) {
  pollfd p{listener, POLLIN, 0};
  if (::poll(&p, 1, 0) != 1) return "";
  const int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (c < 0) return "";
  char buf[16] = {};
  const ssize_t n = ::recv(c, buf, sizeof buf, MSG_DONTWAIT);
  ::close(c);
  return n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : std::string("(connected)");
}

TEST(StepNetns, TheStepReachesTheListenerInItsPreparedNamespaceOnly) {
  if (!host_support().is_root) {
    auto ns = StepNetns::create();
    ASSERT_FALSE(ns);
    EXPECT_EQ(ns.error().code, Errc::unavailable);
    EXPECT_NE(ns.error().message.find("needs a root agent"), std::string::npos) << ns.error().message;
    return;
  }
  auto ns = StepNetns::create();
  ASSERT_TRUE(ns) << ns.error().message;
  std::uint16_t port = 0;
  auto listener = ns->listen_loopback(&port);
  ASSERT_TRUE(listener) << listener.error().message;
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } closer{*listener};

  // Control first: a step in a fresh namespace of its own sees no listener there.
  const auto filter = compile_or_die("network", true);
  const auto alone = run_capture(connecting_step(port), filter);
  ASSERT_EQ(alone.outcome.status, Status::exited) << alone.outcome.error << alone.err;
  EXPECT_EQ(alone.outcome.exit_code, 3) << alone.out;
  EXPECT_EQ(accept_one(*listener), "");

  // The host's loopback does not lead there either.
  const int host = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  (void)::connect(host, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::close(host);
  EXPECT_EQ(accept_one(*listener), "");

  auto spec = connecting_step(port);
  spec.netns_fd = ns->fd();
  const auto joined = run_capture(spec, filter);
  ASSERT_EQ(joined.outcome.status, Status::exited) << joined.outcome.error << joined.err;
  EXPECT_EQ(joined.out, "connected\n") << joined.err;
  EXPECT_EQ(accept_one(*listener), "hi");
}

TEST(StepNetns, APreparedNamespaceIsNeverCombinedWithTheHostNetwork) {
  if (!host_support().is_root) GTEST_SKIP() << "needs root";
  auto ns = StepNetns::create();
  ASSERT_TRUE(ns) << ns.error().message;
  auto spec = connecting_step(1);
  spec.network = true;
  spec.netns_fd = ns->fd();
  const auto c = run_capture(spec, compile_or_die("network", true));
  EXPECT_EQ(c.outcome.status, Status::setup_failed);
  EXPECT_NE(c.outcome.error.find("prepared network namespace"), std::string::npos) << c.outcome.error;
}

}  // namespace
}  // namespace delegate::sandbox
