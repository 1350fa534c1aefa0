// The proxy over real loopback sockets, with a scripted resolver: what is allowed,
// refused and recorded, and that a name is resolved once and checked in full.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include <delegate/egress/proxy.hpp>

namespace delegate::egress {
namespace {

int listen_loopback(std::uint16_t* port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(fd, 16) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ADD_FAILURE() << "listen failed";
  }
  *port = ntohs(a.sin_port);
  return fd;
}

// Accepts connections and echoes what each sends, prefixed "echo:".
struct EchoServer {
  std::uint16_t port = 0;
  int fd = listen_loopback(&port);
  std::atomic<int> accepted{0};
  std::thread t{[this] {
    while (true) {
      const int c = ::accept(fd, nullptr, nullptr);
      if (c < 0) return;
      ++accepted;
      char buf[256];
      const ssize_t n = ::recv(c, buf, sizeof buf, 0);
      if (n > 0) {
        const std::string reply = "echo:" + std::string(buf, static_cast<std::size_t>(n));
        (void)::send(c, reply.data(), reply.size(), MSG_NOSIGNAL);
      }
      ::close(c);
    }
  }};
  ~EchoServer() {
    ::shutdown(fd, SHUT_RDWR);
    ::close(fd);
    t.join();
  }
};

struct Fixture {
  std::mutex mu;
  std::vector<ConnectEvent> events;
  std::atomic<int> resolutions{0};
  std::atomic<bool> recorder_works{true};
  std::uint16_t port = 0;
  std::unique_ptr<Proxy> proxy;

  Fixture(std::vector<HostPort> allow, std::vector<Cidr> cidrs, std::vector<IpAddress> answer) {
    ProxyConfig c;
    c.allow = std::move(allow);
    c.policy = AddressPolicy(std::move(cidrs));
    c.record = [this](const ConnectEvent& e) {
      std::lock_guard lock(mu);
      events.push_back(e);
      return recorder_works.load();
    };
    c.resolve = [this, answer](const std::string&) -> Result<std::vector<IpAddress>> {
      ++resolutions;
      if (answer.empty()) return fail(Errc::unavailable, "cannot resolve: scripted");
      return answer;
    };
    auto p = Proxy::start(listen_loopback(&port), std::move(c));
    EXPECT_TRUE(p);
    proxy = std::move(*p);
  }
  // Sends `request`, then (after a 200) `payload`; returns everything read until EOF.
  std::string exchange(const std::string& request, const std::string& payload = "ping") const {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
    std::string got;
    char buf[512];
    bool sent = false;
    while (true) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) break;
      got.append(buf, static_cast<std::size_t>(n));
      if (!sent && got.find("\r\n\r\n") != std::string::npos && got.starts_with("HTTP/1.1 200")) {
        (void)::send(fd, payload.data(), payload.size(), MSG_NOSIGNAL);
        sent = true;
      }
    }
    ::close(fd);
    return got;
  }
  std::vector<ConnectEvent> seen() {
    std::lock_guard lock(mu);
    return events;
  }
};

std::string connect_to(const std::string& hp) { return "CONNECT " + hp + " HTTP/1.1\r\nHost: " + hp + "\r\n\r\n"; }

TEST(Proxy, AllowedTargetIsRelayedAndRecorded) {
  EchoServer echo;
  const std::string target = "svc.test:" + std::to_string(echo.port);
  Fixture f({*parse_host_port(target)}, {*parse_cidr("127.0.0.0/8")}, {*parse_ip("127.0.0.1")});
  const auto got = f.exchange(connect_to("SVC.test:" + std::to_string(echo.port)));
  EXPECT_EQ(got, "HTTP/1.1 200 Connection established\r\n\r\necho:ping");
  auto ev = f.seen();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].verdict, Verdict::allowed);
  EXPECT_EQ(ev[0].address, "127.0.0.1");
  EXPECT_EQ(f.resolutions, 1);
}

TEST(Proxy, TargetNotInTheAllowlistIs403WithoutResolving) {
  EchoServer echo;
  Fixture f({*parse_host_port("svc.test:" + std::to_string(echo.port))}, {*parse_cidr("127.0.0.0/8")},
            {*parse_ip("127.0.0.1")});
  // Same host, other port; and the allowed port on another name.
  EXPECT_TRUE(f.exchange(connect_to("svc.test:" + std::to_string(echo.port + 1))).starts_with("HTTP/1.1 403"));
  EXPECT_TRUE(f.exchange(connect_to("other.test:" + std::to_string(echo.port))).starts_with("HTTP/1.1 403"));
  EXPECT_TRUE(f.exchange(connect_to("127.0.0.1:" + std::to_string(echo.port))).starts_with("HTTP/1.1 403"));
  auto ev = f.seen();
  ASSERT_EQ(ev.size(), 3u);
  for (const auto& e : ev) EXPECT_EQ(e.verdict, Verdict::not_in_allowlist);
  EXPECT_EQ(f.resolutions, 0);
  EXPECT_EQ(echo.accepted, 0);
}

// The name resolves to a public and an internal address: refused, whichever the
// connect would have used, and nothing is connected.
TEST(Proxy, AnyForbiddenResolvedAddressRefusesTheRequest) {
  EchoServer echo;
  const std::string target = "svc.test:" + std::to_string(echo.port);
  Fixture f({*parse_host_port(target)}, {}, {*parse_ip("93.184.216.34"), *parse_ip("127.0.0.1")});
  EXPECT_TRUE(f.exchange(connect_to(target)).starts_with("HTTP/1.1 403"));
  auto ev = f.seen();
  ASSERT_EQ(ev.size(), 1u);
  EXPECT_EQ(ev[0].verdict, Verdict::address_not_allowed);
  EXPECT_EQ(ev[0].address, "127.0.0.1");
  EXPECT_EQ(echo.accepted, 0);
  // Positive control: the same name with the range allowed goes through.
  Fixture ok({*parse_host_port(target)}, {*parse_cidr("127.0.0.0/8")}, {*parse_ip("127.0.0.1")});
  EXPECT_TRUE(ok.exchange(connect_to(target)).starts_with("HTTP/1.1 200"));
}

TEST(Proxy, ResolveAndConnectFailuresAre502) {
  EchoServer echo;
  const std::string target = "svc.test:" + std::to_string(echo.port);
  Fixture unresolvable({*parse_host_port(target)}, {*parse_cidr("127.0.0.0/8")}, {});
  EXPECT_TRUE(unresolvable.exchange(connect_to(target)).starts_with("HTTP/1.1 502"));
  EXPECT_EQ(unresolvable.seen().at(0).verdict, Verdict::resolve_failed);
  std::uint16_t closed_port = 0;
  ::close(listen_loopback(&closed_port));
  const std::string dead = "svc.test:" + std::to_string(closed_port);
  Fixture refused({*parse_host_port(dead)}, {*parse_cidr("127.0.0.0/8")}, {*parse_ip("127.0.0.1")});
  EXPECT_TRUE(refused.exchange(connect_to(dead)).starts_with("HTTP/1.1 502"));
  EXPECT_EQ(refused.seen().at(0).verdict, Verdict::connect_failed);
}

TEST(Proxy, BadRequestsAre400AndRecorded) {
  Fixture f({*parse_host_port("svc.test:443")}, {}, {});
  EXPECT_TRUE(f.exchange("GET http://svc.test/ HTTP/1.1\r\nHost: svc.test\r\n\r\n").starts_with("HTTP/1.1 400"));
  EXPECT_TRUE(f.exchange("CONNECT svc.test:443 HTTP/1.1\r\nX: " + std::string(9000, 'a') + "\r\n\r\n")
                  .starts_with("HTTP/1.1 400"));
  auto ev = f.seen();
  ASSERT_EQ(ev.size(), 2u);
  EXPECT_EQ(ev[0].verdict, Verdict::bad_request);
  EXPECT_FALSE(ev[0].target);
  EXPECT_EQ(ev[1].detail, "request head larger than 8 KiB");
}

TEST(Proxy, AnAttemptThatCannotBeRecordedIsRefused) {
  EchoServer echo;
  const std::string target = "svc.test:" + std::to_string(echo.port);
  Fixture f({*parse_host_port(target)}, {*parse_cidr("127.0.0.0/8")}, {*parse_ip("127.0.0.1")});
  f.recorder_works = false;
  const auto got = f.exchange(connect_to(target), "secret-payload");
  EXPECT_TRUE(got.starts_with("HTTP/1.1 403")) << got;
  EXPECT_EQ(got.find("echo:"), std::string::npos);
}

}  // namespace
}  // namespace delegate::egress
