// Proxy settings (URL forms, NO_PROXY matching, which key or variable wins) and the
// CONNECT tunnel's client side against a scripted proxy on loopback. The tunnel in front
// of the real control plane: tests/integration/proxy_test.cpp.
#include <gtest/gtest.h>

#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <random>
#include <thread>

#include <delegate/agent/config.hpp>
#include <delegate/agent/proxy.hpp>

namespace delegate::agent {
namespace {

egress::HostPort hp(const std::string& text) {
  auto r = egress::parse_host_port(text);
  EXPECT_TRUE(r) << text;
  return r ? *r : egress::HostPort{};
}

bool bypass(const std::string& list, const std::string& target) {
  auto entries = parse_no_proxy(list, "NO_PROXY");
  EXPECT_TRUE(entries) << list << ": " << (entries ? "" : entries.error().message);
  return entries && no_proxy_matches(*entries, hp(target));
}

TEST(ProxyUrl, AcceptsHttpWithPortAndDecodesCredentials) {
  auto p = parse_proxy_url("http://Proxy.Example:3128", "HTTPS_PROXY");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->display(), "http://proxy.example:3128");
  EXPECT_FALSE(p->has_credentials);
  p = parse_proxy_url("HTTP://al%40ice:p%3Ass@10.0.0.1:8080/", "x");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->user, "al@ice");
  EXPECT_EQ(p->password, "p:ss");
  EXPECT_EQ(p->display(), "http://10.0.0.1:8080");
  p = parse_proxy_url("http://u:@[::1]:3128", "x");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->display(), "http://[::1]:3128");
  EXPECT_TRUE(p->has_credentials);
}

TEST(ProxyUrl, RefusesOtherSchemesAndFormsWithoutEchoingTheSecret) {
  for (const char* bad : {"https://u:s3cret@proxy:3128", "socks5://u:s3cret@proxy:1080", "u:s3cret@proxy:3128",
                          "http://u:s3cret@proxy", "http://u:s3cret@proxy:3128/path", "http://u:s3cret@proxy:3128?q",
                          "http://u:s3cret@proxy:0", "http://u:s3cret@pro xy:3128", "http://:s3cret@proxy:3128",
                          "http://u:s3cret%zz@proxy:3128", "http://u:s3cret%0a@proxy:3128", "", "http://u:s3cret@:3128"}) {
    auto p = parse_proxy_url(bad, "control_plane.proxy");
    ASSERT_FALSE(p) << bad;
    EXPECT_EQ(p.error().code, Errc::invalid_argument);
    EXPECT_EQ(p.error().message.rfind("control_plane.proxy: ", 0), 0u) << p.error().message;
    EXPECT_EQ(p.error().message.find("s3cret"), std::string::npos) << p.error().message;
  }
  auto p = parse_proxy_url("socks5://proxy:1080", "HTTPS_PROXY");
  ASSERT_FALSE(p);
  EXPECT_NE(p.error().message.find("\"socks5\" is not supported"), std::string::npos) << p.error().message;
}

TEST(NoProxy, SuffixesCaseAndTrailingDots) {
  EXPECT_TRUE(bypass("example.com", "example.com:443"));
  EXPECT_TRUE(bypass("example.com", "api.example.com:443"));
  EXPECT_TRUE(bypass(".example.com", "api.example.com:443"));
  EXPECT_TRUE(bypass(".example.com", "example.com:443"));
  EXPECT_TRUE(bypass("*.example.com", "a.b.example.com:443"));
  EXPECT_TRUE(bypass("EXAMPLE.com.", "Api.Example.COM:443"));
  EXPECT_FALSE(bypass("example.com", "badexample.com:443"));
  EXPECT_FALSE(bypass("example.com", "example.com.evil.net:443"));
  EXPECT_FALSE(bypass("api.example.com", "example.com:443"));
  EXPECT_FALSE(bypass("", "example.com:443"));
  EXPECT_FALSE(bypass(" , ,", "example.com:443"));
}

TEST(NoProxy, AddressesRangesStarAndPorts) {
  EXPECT_TRUE(bypass("*", "anything.example:8443"));
  EXPECT_TRUE(bypass("10.0.0.0/8", "10.1.2.3:443"));
  EXPECT_FALSE(bypass("10.0.0.0/8", "11.1.2.3:443"));
  EXPECT_TRUE(bypass("fd00::/8", "[fd12::1]:443"));
  EXPECT_FALSE(bypass("fd00::/8", "[fe80::1]:443"));
  EXPECT_TRUE(bypass("::1", "[::1]:443"));
  EXPECT_TRUE(bypass("[::1]:8443", "[::1]:8443"));
  EXPECT_FALSE(bypass("[::1]:8443", "[::1]:443"));
  EXPECT_TRUE(bypass("127.0.0.1", "127.0.0.1:1"));
  EXPECT_TRUE(bypass("cp.example:8443", "cp.example:8443"));
  EXPECT_FALSE(bypass("cp.example:8443", "cp.example:443"));
  // Names are never resolved: a range does not match a name, a name not an address.
  EXPECT_FALSE(bypass("127.0.0.0/8", "localhost:443"));
  EXPECT_FALSE(bypass("localhost", "127.0.0.1:443"));
  EXPECT_TRUE(bypass("localhost, 10.0.0.0/8\t*.corp", "x.corp:443"));
}

TEST(NoProxy, MalformedEntriesAreErrorsNamingTheEntry) {
  for (const char* bad : {"10.0.0.0/33", "10.0.0.1/8", "exa_mple", "host:0", "host:99999", "[::1", "[::1]x", "a..b",
                          "<local>", "host:"}) {
    auto r = parse_no_proxy(bad, "NO_PROXY");
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().message.rfind("NO_PROXY: ", 0), 0u) << r.error().message;
  }
}

TEST(ProxySettings, KeyWinsOverEnvironmentAndNoneDisablesIt) {
  const std::map<std::string, std::string> env{{"HTTPS_PROXY", "http://env-proxy:3128"}, {"NO_PROXY", "internal"}};
  auto s = resolve_proxy_settings("", std::nullopt, env);
  ASSERT_TRUE(s) << s.error().message;
  ASSERT_TRUE(s->proxy);
  EXPECT_EQ(s->proxy->source, "environment HTTPS_PROXY");
  EXPECT_EQ(s->route(hp("cp.example:443")), &*s->proxy);
  EXPECT_EQ(s->route(hp("cp.internal:443")), nullptr);

  s = resolve_proxy_settings("http://key-proxy:8080", std::nullopt, env);
  ASSERT_TRUE(s && s->proxy);
  EXPECT_EQ(s->proxy->display(), "http://key-proxy:8080");
  EXPECT_NE(s->route(hp("cp.internal:443")), nullptr);  // the environment's NO_PROXY is ignored too

  s = resolve_proxy_settings("http://key-proxy:8080", std::vector<std::string>{"cp.internal"}, env);
  ASSERT_TRUE(s && s->proxy);
  EXPECT_EQ(s->route(hp("cp.internal:443")), nullptr);

  s = resolve_proxy_settings("none", std::nullopt, env);
  ASSERT_TRUE(s);
  EXPECT_FALSE(s->proxy);

  // Lower case first; an empty variable is not set.
  s = resolve_proxy_settings("", std::nullopt, {{"https_proxy", "http://lower:1"}, {"HTTPS_PROXY", "http://upper:2"}});
  ASSERT_TRUE(s && s->proxy);
  EXPECT_EQ(s->proxy->display(), "http://lower:1");
  s = resolve_proxy_settings("", std::nullopt, {{"https_proxy", ""}, {"HTTPS_PROXY", "http://upper:2"}});
  ASSERT_TRUE(s && s->proxy);
  EXPECT_EQ(s->proxy->display(), "http://upper:2");

  // A malformed variable is a configuration error, not a silent direct connection.
  s = resolve_proxy_settings("", std::nullopt, {{"HTTPS_PROXY", "socks5://p:1080"}});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("environment HTTPS_PROXY"), std::string::npos);
  s = resolve_proxy_settings("", std::nullopt, {{"HTTPS_PROXY", "http://p:1"}, {"no_proxy", "10.0.0.0/99"}});
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().message.find("environment no_proxy"), std::string::npos);
}

TEST(HttpsTarget, DefaultPortBracketsAndTrailingDot) {
  EXPECT_EQ(egress::to_string(*https_target("https://CP.example/v1")), "cp.example:443");
  EXPECT_EQ(egress::to_string(*https_target("https://cp.example.:8443")), "cp.example:8443");
  EXPECT_EQ(egress::to_string(*https_target("https://[::1]:8443/x")), "[::1]:8443");
  EXPECT_EQ(egress::to_string(*https_target("https://[::1]")), "[::1]:443");
  EXPECT_FALSE(https_target("http://cp.example"));
  EXPECT_FALSE(https_target("https://u:p@cp.example"));
}

TEST(ConnectReply, AcceptsStrictHeadsAndReturnsTheStatus) {
  EXPECT_EQ(*parse_connect_reply("HTTP/1.1 200 Connection established\r\n\r\n"), 200);
  EXPECT_EQ(*parse_connect_reply("HTTP/1.0 200\r\nProxy-Agent: x/1\r\nVia: 1.1 p\r\n\r\n"), 200);
  EXPECT_EQ(*parse_connect_reply("HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic\r\n\r\n"), 407);
}

TEST(ConnectReply, RefusesTruncatedOversizeAndMalformedHeads) {
  const std::string good = "HTTP/1.1 200 OK\r\nVia: p\r\n\r\n";
  // Every truncation.
  for (std::size_t n = 0; n < good.size(); ++n) EXPECT_FALSE(parse_connect_reply(good.substr(0, n))) << n;
  // Oversize: a valid head padded past the bound.
  const std::string big = "HTTP/1.1 200 OK\r\nX: " + std::string(kMaxConnectReply, 'a') + "\r\n\r\n";
  auto r = parse_connect_reply(big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::too_large);
  for (const char* bad : {"HTTP/2 200 OK\r\n\r\n", "HTTP/1.1 20 OK\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n",
                          "HTTP/1.1 200 OK\n\r\n", "HTTP/1.1 200 OK\r\nVia p\r\n\r\n", "HTTP/1.1 200 OK\r\n Via: p\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nVia: a\x01z\r\n\r\n", "HTTP/1.1 200 O\x7fK\r\n\r\n",
                          "HTTP/1.1 200 OK\r\n\r\n\x16\x03\x03", "http/1.1 200 OK\r\n\r\n", "HTTP/1.1 099 x\r\n\r\n",
                          "HTTP/1.1 200 OK\r\nVia: p\rx\n\r\n", "HTTP/1.1 200OK\r\n\r\n"}) {
    EXPECT_FALSE(parse_connect_reply(bad)) << bad;
  }
}

TEST(ConnectReply, BitFlipsNeverCrashAndOnlyYieldWellFormedStatuses) {
  const std::string good = "HTTP/1.1 200 Connection established\r\nProxy-Agent: test/1\r\n\r\n";
  std::mt19937 rng(7);
  for (int i = 0; i < 20000; ++i) {
    std::string m = good;
    const int flips = 1 + static_cast<int>(rng() % 3);
    for (int f = 0; f < flips; ++f) m[rng() % m.size()] ^= static_cast<char>(1u << (rng() % 8));
    auto r = parse_connect_reply(m);
    if (r) {
      EXPECT_GE(*r, 100);
      EXPECT_LE(*r, 999);
    }
  }
}

// A one-connection proxy on loopback that reads the request head and answers `reply`.
class ScriptedProxy {
 public:
  explicit ScriptedProxy(std::string reply) : reply_(std::move(reply)) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
    socklen_t len = sizeof a;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    EXPECT_EQ(::listen(fd_, 4), 0);
    thread_ = std::thread([this] {
      const int c = ::accept(fd_, nullptr, nullptr);
      if (c < 0) return;
      char buf[4096];
      while (request_.find("\r\n\r\n") == std::string::npos) {
        const ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        request_.append(buf, static_cast<std::size_t>(n));
      }
      if (!reply_.empty()) (void)::send(c, reply_.data(), reply_.size(), MSG_NOSIGNAL);
      ::shutdown(c, SHUT_WR);
      while (::recv(c, buf, sizeof buf, 0) > 0) {
      }
      ::close(c);
    });
  }
  ~ScriptedProxy() {
    ::shutdown(fd_, SHUT_RDWR);
    thread_.join();
    ::close(fd_);
  }
  ProxyUrl url() const { return *parse_proxy_url("http://bob:s3cret@127.0.0.1:" + std::to_string(port_), "HTTPS_PROXY"); }
  std::string request() {
    thread_.join();
    thread_ = std::thread([] {});
    return request_;
  }

 private:
  std::string reply_;
  int fd_ = -1;
  std::uint16_t port_ = 0;
  std::thread thread_;
  std::string request_;
};

TEST(Tunnel, SendsConnectWithBasicAuthAndAcceptsOnly200) {
  {
    ScriptedProxy proxy("HTTP/1.1 200 Connection established\r\n\r\n");
    auto fd = open_tunnel(proxy.url(), hp("cp.example:8443"), std::chrono::seconds(10), nullptr);
    ASSERT_TRUE(fd) << fd.error().message;
    ::close(*fd);
    const auto req = proxy.request();
    EXPECT_EQ(req.rfind("CONNECT cp.example:8443 HTTP/1.1\r\nHost: cp.example:8443\r\n", 0), 0u) << req;
    EXPECT_NE(req.find("Proxy-Authorization: Basic Ym9iOnMzY3JldA==\r\n"), std::string::npos) << req;  // bob:s3cret
  }
  struct Case {
    std::string reply, expect;
  };
  for (const auto& c : std::vector<Case>{
           {"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", "answered HTTP 407 (proxy authentication required"},
           {"HTTP/1.1 502 Bad Gateway\r\n\r\n", "answered HTTP 502"},
           {"HTTP/1.1 200 OK\r\n", "closed the connection before answering"},
           {"", "closed the connection before answering"},
           {"HTTP/1.1 200 OK\r\nX: " + std::string(kMaxConnectReply, 'a'), "longer than 8192 bytes"},
           {"SSH-2.0-OpenSSH\r\n\r\n", "no HTTP/1.x status line"}}) {
    ScriptedProxy proxy(c.reply);
    auto fd = open_tunnel(proxy.url(), hp("cp.example:8443"), std::chrono::seconds(10), nullptr);
    ASSERT_FALSE(fd) << c.expect;
    const auto& msg = fd.error().message;
    EXPECT_NE(msg.find(c.expect), std::string::npos) << msg;
    EXPECT_NE(msg.find("proxy http://127.0.0.1:"), std::string::npos) << msg;
    EXPECT_EQ(msg.find("s3cret"), std::string::npos) << msg;
    EXPECT_EQ(msg.find('\n'), std::string::npos) << msg;
  }
}

TEST(Tunnel, ASilentProxyTimesOut) {
  const int l = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(l, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  socklen_t len = sizeof a;
  ::getsockname(l, reinterpret_cast<sockaddr*>(&a), &len);
  ASSERT_EQ(::listen(l, 4), 0);  // the kernel completes the handshake; nobody ever answers
  auto url = *parse_proxy_url("http://127.0.0.1:" + std::to_string(ntohs(a.sin_port)), "control_plane.proxy");
  auto fd = open_tunnel(url, hp("cp.example:443"), std::chrono::milliseconds(300), nullptr);
  ::close(l);
  ASSERT_FALSE(fd);
  EXPECT_EQ(fd.error().code, Errc::timeout);
  EXPECT_NE(fd.error().message.find("timed out"), std::string::npos) << fd.error().message;
}

}  // namespace
}  // namespace delegate::agent

namespace delegate::agent {
namespace {

const char* kProxyConfig = R"(control_plane:
  url: https://cp.example.com:8443
  enrollment_token_file: /etc/delegate/enrollment.token
PROXY_KEYSagent:
  name: web-01
  state_dir: /var/lib/delegate
auth:
  api_keys_file: /etc/delegate/api-keys.yaml
)";

Result<Config> load_with(const std::string& keys, const Environment& env = {}) {
  std::string text = kProxyConfig;
  text.replace(text.find("PROXY_KEYS"), 10, keys);
  return parse_config(text, env);
}

TEST(ConfigProxy, KeysEnvironmentAndOverridesResolveToOneRoute) {
  const auto cp = hp("cp.example.com:8443");
  auto c = load_with("", {{"HTTPS_PROXY", "http://p:3128"}});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_NE(c->control_plane.proxy_settings.route(cp), nullptr);
  EXPECT_EQ(c->control_plane.proxy_settings.route(cp)->display(), "http://p:3128");

  c = load_with("  proxy: none\n", {{"HTTPS_PROXY", "http://p:3128"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->control_plane.proxy_settings.route(cp), nullptr);

  c = load_with("  proxy: http://k:8080\n  no_proxy: [.example.com]\n", {{"HTTPS_PROXY", "http://p:3128"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->control_plane.proxy_settings.route(cp), nullptr);
  EXPECT_NE(c->control_plane.proxy_settings.route(hp("other.net:443")), nullptr);

  c = load_with("  proxy: http://k:8080\n  no_proxy: other.net, 10.0.0.0/8\n");
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->control_plane.proxy_settings.route(hp("other.net:443")), nullptr);
  EXPECT_NE(c->control_plane.proxy_settings.route(cp), nullptr);

  c = load_with("  proxy: http://k:8080\n", {{"DELEGATE_CONTROL_PLANE_PROXY", "none"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->control_plane.proxy_settings.route(cp), nullptr);

  c = load_with("", {{"HTTPS_PROXY", "http://p:3128"}, {"DELEGATE_CONTROL_PLANE_NO_PROXY", "cp.example.com:8443"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->control_plane.proxy_settings.route(cp), nullptr);
}

TEST(ConfigProxy, BadValuesStopTheLoadNamingTheirSourceWithoutTheSecret) {
  auto c = load_with("  proxy: https://u:s3cret@p:3128\n");
  ASSERT_FALSE(c);
  EXPECT_EQ(c.error().message.rfind("control_plane.proxy: ", 0), 0u) << c.error().message;
  EXPECT_EQ(c.error().message.find("s3cret"), std::string::npos);
  c = load_with("", {{"https_proxy", "socks5://p:1080"}});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("environment https_proxy"), std::string::npos) << c.error().message;
  c = load_with("  no_proxy: [\"bad entry!\"]\n");
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("control_plane.no_proxy"), std::string::npos) << c.error().message;
  c = load_with("  proxy: {url: x}\n");
  ASSERT_FALSE(c);
}

}  // namespace
}  // namespace delegate::agent
