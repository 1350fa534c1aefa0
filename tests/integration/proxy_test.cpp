// The agent behind an HTTP CONNECT proxy: a small thread-per-connection proxy in this
// file (recording every request line and every byte the agent sends through it) in
// front of the real control plane over TLS 1.3 on loopback.
#include <gtest/gtest.h>

#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "harness.hpp"

namespace delegate::testing {
namespace {

class ConnectProxy {
 public:
  enum class Mode { tunnel, answer407, answer502 };

  // `basic`: the Proxy-Authorization value required ("" for none).
  explicit ConnectProxy(std::string basic) : basic_(std::move(basic)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(listen_fd_, 16) != 0) {
      ADD_FAILURE() << "proxy cannot listen";
    }
    socklen_t len = sizeof a;
    ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len);
    port_ = ntohs(a.sin_port);
    accept_ = std::thread([this] { accept_loop(); });
  }
  ~ConnectProxy() {
    stop_ = true;
    accept_.join();  // no thread is added after this
    // Joined without holding mu_: a connection thread may still need it to record.
    std::vector<std::thread> conns;
    {
      std::lock_guard lock(mu_);
      conns.swap(conns_);
    }
    for (auto& t : conns) t.join();
    ::close(listen_fd_);
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  void set_mode(Mode m) { mode_ = m; }
  [[nodiscard]] std::vector<std::string> lines() const {
    std::lock_guard lock(mu_);
    return lines_;
  }
  [[nodiscard]] std::string sent_through() const {
    std::lock_guard lock(mu_);
    return through_;
  }
  [[nodiscard]] int connections() const { return connections_; }
  [[nodiscard]] bool saw(const std::string& line) const {
    for (const auto& l : lines()) {
      if (l == line) return true;
    }
    return false;
  }

 private:
  void accept_loop() {
    while (!stop_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 100) <= 0) continue;
      const int c = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      // Bounds a client that connects and never sends a head (only so that the
      // destructor cannot hang on it; no scenario depends on it).
      timeval tv{5, 0};
      ::setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      ++connections_;
      std::lock_guard lock(mu_);
      conns_.emplace_back([this, c] { serve(c); });
    }
  }

  static void send_all(int fd, std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = ::send(fd, s.data(), s.size(), MSG_NOSIGNAL);
      if (n <= 0) return;
      s.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  void serve(int c) {
    std::string head;
    char ch = 0;
    while (head.find("\r\n\r\n") == std::string::npos && head.size() < 8192 && ::recv(c, &ch, 1, 0) == 1) head += ch;
    const std::string line = head.substr(0, head.find("\r\n"));
    {
      std::lock_guard lock(mu_);
      lines_.push_back(line);
    }
    const bool authorised = basic_.empty() || head.find("\r\nProxy-Authorization: " + basic_ + "\r\n") != std::string::npos;
    if (mode_ == Mode::answer502) {
      send_all(c, "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n");
    } else if (mode_ == Mode::answer407 || !authorised) {
      send_all(c, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\n\r\n");
    } else if (line.rfind("CONNECT ", 0) == 0) {
      tunnel(c, line.substr(8, line.rfind(' ') - 8));
    }
    ::close(c);
  }

  void tunnel(int c, const std::string& target) {
    const auto colon = target.rfind(':');
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    if (::getaddrinfo(target.substr(0, colon).c_str(), target.substr(colon + 1).c_str(), &hints, &res) != 0) {
      send_all(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n");
      return;
    }
    int s = -1;
    for (addrinfo* a = res; a && s < 0; a = a->ai_next) {
      s = ::socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
      if (s >= 0 && ::connect(s, a->ai_addr, a->ai_addrlen) != 0) {
        ::close(s);
        s = -1;
      }
    }
    ::freeaddrinfo(res);
    if (s < 0) {
      send_all(c, "HTTP/1.1 502 Bad Gateway\r\n\r\n");
      return;
    }
    send_all(c, "HTTP/1.1 200 Connection established\r\n\r\n");
    char buf[16384];
    while (!stop_) {
      pollfd p[2] = {{c, POLLIN, 0}, {s, POLLIN, 0}};
      if (::poll(p, 2, 100) <= 0) continue;
      bool done = false;
      for (int i = 0; i < 2; ++i) {
        if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
        const ssize_t n = ::recv(p[i].fd, buf, sizeof buf, 0);
        if (n <= 0) {
          done = true;
          break;
        }
        if (i == 0) {
          std::lock_guard lock(mu_);
          if (through_.size() < (4u << 20)) through_.append(buf, static_cast<std::size_t>(n));
        }
        send_all(i == 0 ? s : c, std::string_view(buf, static_cast<std::size_t>(n)));
      }
      if (done) break;
    }
    ::close(s);
  }

  std::string basic_;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<Mode> mode_{Mode::tunnel};
  std::atomic<int> connections_{0};
  std::thread accept_;
  mutable std::mutex mu_;
  std::vector<std::thread> conns_;
  std::vector<std::string> lines_;
  std::string through_;
};

class CpProxy : public ::testing::Test {
 protected:
  void SetUp() override {
    cp_ = std::make_unique<ControlPlane>(tmp_.path / "cp");
    config_ = (cp_->dir() / "agent.yaml").string();
    // The issuer's keys come from "localhost", the control plane is "127.0.0.1" (same
    // server, both names in its certificate): the proxy's log tells the two apart.
    std::string yaml = read_text(config_);
    const std::string from = "jwks_uri: https://127.0.0.1:";
    ASSERT_NE(yaml.find(from), std::string::npos);
    yaml.replace(yaml.find(from), from.size(), "jwks_uri: https://localhost:");
    write_text(config_, yaml, 0600);
    auto key = run({Bins::agent(), "api-key", "create", "--config", config_, "--id", "oncall", "--scope",
                    "runbooks:execute", "--role", "sre-oncall"});
    ASSERT_EQ(key.exit_code, 0) << key.err;
    key_ = key.out.substr(0, key.out.find('\n'));
  }
  void TearDown() override {
    if (HasFailure() && agent_) std::cerr << "---- agent log ----\n" << agent_->log_text();
  }
  void start_agent(const std::string& proxy_url, const std::string& no_proxy) {
    agent_ = std::make_unique<Process>(
        std::vector<std::string>{Bins::agent(), "run", "--config", config_}, tmp_.path / "agent.log",
        std::map<std::string, std::string>{
            {"HTTPS_PROXY", proxy_url}, {"https_proxy", proxy_url}, {"NO_PROXY", no_proxy}, {"no_proxy", no_proxy}});
  }
  std::string api_key_job() {
    auto id = cp_->submit(
        Json{{"runbook", "host-diagnostics"}, {"authorization", {{"type", "api_key"}, {"key", key_}}}});
    return cp_->wait_final(id);
  }
  std::string oauth_token() {
    const std::string secret =
        Json::parse(read_text(cp_->dir() / "oauth-clients.json"))["clients"][0]["client_secret"];
    auto r = run({"/usr/bin/curl", "-s", "--noproxy", "*", "--cacert", (cp_->dir() / "ca.pem").string(), "-u",
                  "incident-bot:" + secret, "-d", "grant_type=client_credentials", cp_->url() + "/oauth/token"});
    return Json::parse(r.out)["access_token"];
  }
  std::string cp_target() const { return "127.0.0.1:" + std::to_string(cp_->port()); }

  TempDir tmp_;
  std::unique_ptr<ControlPlane> cp_;
  std::string config_;
  std::string key_;
  std::unique_ptr<Process> agent_;
};

TEST_F(CpProxy, AgentRegistersRunsJobsAndFetchesJwksThroughTheTunnelWithTlsEndToEnd) {
  ConnectProxy proxy("Basic " + std::string("YWdlbnQ6cGFAc3M="));  // agent:pa@ss
  const std::string url = "http://agent:pa%40ss@127.0.0.1:" + std::to_string(proxy.port());
  start_agent(url, "");
  ASSERT_EQ(api_key_job(), "succeeded");
  // An OAuth token is verified with keys the agent fetched from jwks_uri, through the proxy.
  auto id = cp_->submit(Json{{"runbook", "host-diagnostics"}, {"authorization", {{"type", "oauth"}, {"token", oauth_token()}}}});
  ASSERT_EQ(cp_->wait_final(id), "succeeded");
  EXPECT_TRUE(proxy.saw("CONNECT " + cp_target() + " HTTP/1.1"));
  EXPECT_TRUE(proxy.saw("CONNECT localhost:" + std::to_string(cp_->port()) + " HTTP/1.1"));
  for (const auto& l : proxy.lines()) EXPECT_EQ(l.rfind("CONNECT ", 0), 0u) << l;
  // Only TLS passed through: the first byte is a handshake record, no request in clear.
  const std::string through = proxy.sent_through();
  ASSERT_FALSE(through.empty());
  EXPECT_EQ(through[0], '\x16');
  for (const char* plain : {"POST /v1", "GET /v1", "/v1/agents", "Bearer", "HTTP/1.1", "host-diagnostics"}) {
    EXPECT_EQ(through.find(plain), std::string::npos) << plain;
  }
  const std::string log = agent_->log_text();
  EXPECT_EQ(log.find("pa@ss"), std::string::npos);
  EXPECT_EQ(log.find("pa%40ss"), std::string::npos);

  // doctor takes the same route and says so.
  auto doc = run({"/usr/bin/env", "HTTPS_PROXY=" + url, "https_proxy=" + url, "NO_PROXY=", "no_proxy=", Bins::agent(),
                  "doctor", "--config", config_});
  EXPECT_NE(doc.out.find("via proxy http://127.0.0.1:" + std::to_string(proxy.port()) + " (environment https_proxy)"),
            std::string::npos)
      << doc.out;
  EXPECT_EQ(doc.out.find("pa@ss"), std::string::npos);
}

TEST_F(CpProxy, NoProxyMatchingTheControlPlaneBypassesTheProxy) {
  ConnectProxy proxy("");
  start_agent("http://127.0.0.1:" + std::to_string(proxy.port()), "127.0.0.0/8, .localhost");
  ASSERT_EQ(api_key_job(), "succeeded");
  EXPECT_EQ(proxy.connections(), 0);
}

TEST_F(CpProxy, ControlPlaneProxyNoneWinsOverTheEnvironment) {
  ConnectProxy proxy("");
  std::string yaml = read_text(config_);
  yaml.replace(yaml.find("control_plane:\n"), 15, "control_plane:\n  proxy: none\n");
  write_text(config_, yaml, 0600);
  start_agent("http://127.0.0.1:" + std::to_string(proxy.port()), "");
  ASSERT_EQ(api_key_job(), "succeeded");
  EXPECT_EQ(proxy.connections(), 0);
}

TEST_F(CpProxy, ARefusingProxyIsANamedErrorAndTheAgentKeepsRetrying) {
  ConnectProxy proxy("");
  proxy.set_mode(ConnectProxy::Mode::answer407);
  const std::string name = "proxy http://127.0.0.1:" + std::to_string(proxy.port()) + " (environment https_proxy)";
  start_agent("http://127.0.0.1:" + std::to_string(proxy.port()), "");
  ASSERT_TRUE(eventually([&] { return agent_->log_text().find(name + ", CONNECT " + cp_target() + ": the proxy answered HTTP 407") != std::string::npos; }));
  const int seen = proxy.connections();
  proxy.set_mode(ConnectProxy::Mode::answer502);
  ASSERT_TRUE(eventually([&] { return agent_->log_text().find("the proxy answered HTTP 502") != std::string::npos; }));
  ASSERT_TRUE(eventually([&] { return proxy.connections() >= seen + 2; }));
  EXPECT_TRUE(agent_->running());
  EXPECT_EQ(cp_->first_agent_id(), "");  // it never reached the control plane
}

}  // namespace
}  // namespace delegate::testing
