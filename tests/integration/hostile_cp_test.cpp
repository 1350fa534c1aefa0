// The agent against a hostile control plane: malformed, oversized and ill-typed
// answers must neither crash it nor get anything executed, and a job that can be
// identified is still audited and completed as denied.
#include <gtest/gtest.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>

#include <atomic>
#include <mutex>
#include <thread>

#include "harness.hpp"

namespace delegate::testing {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

class HostileServer {
 public:
  explicit HostileServer(const fs::path& dir) : ssl_(asio::ssl::context::tls_server), acceptor_(ioc_) {
    SSL_CTX_set_min_proto_version(ssl_.native_handle(), TLS1_3_VERSION);
    ssl_.use_certificate_chain_file((dir / "server.pem").string());
    ssl_.use_private_key_file((dir / "server.key").string(), asio::ssl::context::pem);
    tcp::endpoint ep(asio::ip::make_address("127.0.0.1"), 0);
    acceptor_.open(ep.protocol());
    acceptor_.bind(ep);
    acceptor_.listen();
    port_ = acceptor_.local_endpoint().port();
    accept_thread_ = std::thread([this] { accept_loop(); });
  }
  ~HostileServer() {
    stop_ = true;
    // A blocking accept() is not interrupted by close() from another thread: wake it.
    beast::error_code ec;
    tcp::socket poke(ioc_);
    poke.connect(acceptor_.local_endpoint(), ec);
    accept_thread_.join();
    acceptor_.close(ec);
    for (auto& t : conns_) t.join();
  }
  [[nodiscard]] std::uint16_t port() const { return port_; }

  std::vector<Json> records_of(const std::string& job) {
    std::lock_guard lock(mu_);
    return records_[job];
  }
  std::string completed(const std::string& job) {
    std::lock_guard lock(mu_);
    return completions_[job];
  }
  int acquires() const { return acquires_; }

 private:
  void accept_loop() {
    while (!stop_) {
      tcp::socket s(ioc_);
      beast::error_code ec;
      acceptor_.accept(s, ec);
      if (ec || stop_) return;
      conns_.emplace_back([this, s = std::move(s)]() mutable { serve(std::move(s)); });
    }
  }

  http::response<http::string_body> answer(const http::request<http::string_body>& req) {
    http::response<http::string_body> res{http::status::ok, 11};
    const std::string target(req.target());
    auto json = [&](http::status st, const std::string& body) {
      res.result(st);
      res.body() = body;
    };
    if (target == "/v1/agents/register") {
      json(http::status::created, R"({"agent_id":"agt_hostile","agent_token":"tok"})");
    } else if (target.ends_with("/heartbeat")) {
      json(http::status::ok, R"({"cancel":"not-an-array"})");
    } else if (target.ends_with("/jobs/acquire")) {
      const int n = acquires_++;
      switch (n) {
        case 0: json(http::status::ok, "{not json"); break;
        case 1: json(http::status::ok, std::string(9u << 20, 'x')); break;  // over the agent's cap
        case 2: json(http::status::ok, R"({"job":{"id":"job_typed","runbook":42,"params":"x","authorization":{"type":"api_key","key":"dlg.a.b"}}})"); break;
        case 3: json(http::status::ok, R"({"job":{"id":"../../etc/passwd","runbook":"host-diagnostics"}})"); break;
        case 4: json(http::status::ok, R"({"jobs":[]})"); break;
        case 5: json(http::status::ok, R"({"job":{"id":"job_inline","runbook":"host-diagnostics","steps":[{"argv":["/bin/rm","-rf","/"]}],"authorization":{"type":"api_key","key":"dlg.a.b"}}})"); break;
        default:
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          res.result(http::status::no_content);
      }
    } else if (target.ends_with("/records")) {
      auto body = Json::parse(req.body());
      std::lock_guard lock(mu_);
      auto job = target.substr(std::string("/v1/jobs/").size());
      job = job.substr(0, job.find('/'));
      std::int64_t last = -1;
      for (const auto& r : body["records"]) {
        records_[job].push_back(r);
        last = r["seq"].get<std::int64_t>();
      }
      json(http::status::ok, Json{{"acked_seq", last}}.dump());
    } else if (target.ends_with("/complete")) {
      auto body = Json::parse(req.body());
      auto job = target.substr(std::string("/v1/jobs/").size());
      job = job.substr(0, job.find('/'));
      std::lock_guard lock(mu_);
      completions_[job] = body["status"].get<std::string>();
      json(http::status::ok, "{}");
    } else {
      json(http::status::not_found, "{}");
    }
    res.prepare_payload();
    return res;
  }

  void serve(tcp::socket socket) {
    beast::ssl_stream<tcp::socket> stream(std::move(socket), ssl_);
    beast::error_code ec;
    stream.handshake(asio::ssl::stream_base::server, ec);
    if (ec) return;
    beast::flat_buffer buf;
    while (!stop_) {
      http::request<http::string_body> req;
      http::read(stream, buf, req, ec);
      if (ec) return;
      auto res = answer(req);
      http::write(stream, res, ec);
      if (ec) return;
    }
  }

  asio::io_context ioc_;
  asio::ssl::context ssl_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> acquires_{0};
  std::thread accept_thread_;
  std::vector<std::thread> conns_;
  std::mutex mu_;
  std::map<std::string, std::vector<Json>> records_;
  std::map<std::string, std::string> completions_;
};

TEST(HostileControlPlane, BadAnswersNeverCrashTheAgentAndIdentifiableJobsAreDeniedAndAudited) {
  TempDir tmp;
  // Only for the certificates, the config and the runbooks; it is not started.
  auto init = run({Bins::controlplane(), "init", "--dir", (tmp.path / "cp").string(), "--listen", "127.0.0.1:1"});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  HostileServer server(tmp.path / "cp");
  auto cfg = read_text(tmp.path / "cp" / "agent.yaml");
  cfg.replace(cfg.find("127.0.0.1:1\n"), 12, "127.0.0.1:" + std::to_string(server.port()) + "\n");
  cfg.replace(cfg.find("agent:\n"), 7, "agent:\n  heartbeat_s: 1\n");
  write_text(tmp.path / "agent.yaml", cfg, 0600);
  const auto config = (tmp.path / "agent.yaml").string();
  ASSERT_EQ(run({Bins::agent(), "api-key", "create", "--config", config, "--id", "a", "--scope", "runbooks:execute"})
                .exit_code,
            0);
  {
    Process agent({Bins::agent(), "run", "--config", config}, tmp.path / "agent.log");
    ASSERT_TRUE(eventually([&] { return server.completed("job_inline") != ""; }, std::chrono::seconds(90)))
        << agent.log_text();
    EXPECT_TRUE(agent.running()) << agent.log_text();
    EXPECT_EQ(server.completed("job_typed"), "denied");
    EXPECT_EQ(server.completed("job_inline"), "denied");
    auto typed = server.records_of("job_typed");
    ASSERT_EQ(typed.size(), 3u);
    EXPECT_EQ(typed[1]["data"]["decision"], "deny");
    EXPECT_EQ(typed[1]["data"]["reason"], "invalid_params");
    auto in = server.records_of("job_inline");
    ASSERT_EQ(in.size(), 3u);
    EXPECT_EQ(in[1]["data"]["reason"], "inline_not_allowed");
    // A job whose id is unusable is refused without being run or recorded.
    EXPECT_TRUE(server.records_of("../../etc/passwd").empty());
    const auto log = agent.log_text();
    EXPECT_NE(log.find("acquire answer is malformed"), std::string::npos) << log;
    EXPECT_NE(log.find("exceeds"), std::string::npos) << log;
    EXPECT_NE(log.find("without a valid id"), std::string::npos) << log;
    EXPECT_TRUE(eventually([&] {
      return agent.log_text().find("heartbeat answer is malformed") != std::string::npos;
    })) << log;
    // The records the hostile server got still verify against the agent's key.
    auto pub = run({Bins::agent(), "identity", "--config", config});
    std::string lines;
    for (const auto& r : typed) lines += r.dump() + "\n";
    auto v = run({Bins::audit(), "verify", "--public-key", pub.out.substr(0, pub.out.find('\n'))}, lines);
    EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
    agent.signal(SIGTERM);
    EXPECT_NE(agent.wait(std::chrono::seconds(30)), -1) << agent.log_text();
  }
}

}  // namespace
}  // namespace delegate::testing
