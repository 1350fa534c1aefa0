// The agent against a hostile control plane: malformed, oversized and ill-typed
// answers must neither crash it nor get anything executed, and a job that can be
// identified is still audited and completed as denied.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>
#include <thread>

#include "fake_cp.hpp"
#include "harness.hpp"

namespace delegate::testing {
namespace {

// Malformed, oversized and ill-typed answers in turn, then an honest record store.
class Hostile {
 public:
  FakeAnswer operator()(const FakeRequest& req) {
    const std::string& target = req.target;
    if (target == "/v1/agents/register") return {201, R"({"agent_id":"agt_hostile","agent_token":"tok"})"};
    if (target.ends_with("/heartbeat")) return {200, R"({"cancel":"not-an-array"})"};
    if (target.ends_with("/jobs/acquire")) {
      switch (acquires_++) {
        case 0: return {200, "{not json"};
        case 1: return {200, std::string(9u << 20, 'x')};  // over the agent's cap
        case 2:
          return {200, R"({"job":{"id":"job_typed","runbook":42,"params":"x","authorization":{"type":"api_key","key":"dlg.a.b"}}})"};
        case 3: return {200, R"({"job":{"id":"../../etc/passwd","runbook":"host-diagnostics"}})"};
        case 4: return {200, R"({"jobs":[]})"};
        case 5:
          return {200, R"({"job":{"id":"job_inline","runbook":"host-diagnostics","steps":[{"argv":["/bin/rm","-rf","/"]}],"authorization":{"type":"api_key","key":"dlg.a.b"}}})"};
        default:
          std::this_thread::sleep_for(std::chrono::milliseconds(200));
          return {204, ""};
      }
    }
    if (target.ends_with("/records")) {
      std::int64_t last = -1;
      for (const auto& r : records_in(req)) last = r["seq"].get<std::int64_t>();
      return {200, Json{{"acked_seq", last}}.dump()};
    }
    if (target.ends_with("/complete")) return {200, "{}"};
    return {404, "{}"};
  }

 private:
  std::atomic<int> acquires_{0};
};

std::vector<Json> records_of(const FakeControlPlane& cp, const std::string& job) {
  std::vector<Json> out;
  for (const auto& r : cp.requests()) {
    if (r.target == "/v1/jobs/" + job + "/records") {
      for (auto& rec : records_in(r)) out.push_back(std::move(rec));
    }
  }
  return out;
}

std::string completed(const FakeControlPlane& cp, const std::string& job) {
  std::string status;
  for (const auto& r : cp.requests()) {
    if (r.target == "/v1/jobs/" + job + "/complete") status = Json::parse(r.body)["status"].get<std::string>();
  }
  return status;
}

TEST(HostileControlPlane, BadAnswersNeverCrashTheAgentAndIdentifiableJobsAreDeniedAndAudited) {
  TempDir tmp;
  // Only for the certificates, the config and the runbooks; it is not started.
  auto init = run({Bins::controlplane(), "init", "--dir", (tmp.path / "cp").string(), "--listen", "127.0.0.1:1"});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  auto hostile = std::make_shared<Hostile>();
  FakeControlPlane server({tmp.path / "cp" / "server.pem", tmp.path / "cp" / "server.key"},
                         [hostile](const FakeRequest& r) { return (*hostile)(r); });
  write_text(tmp.path / "agent.yaml", agent_config_for(tmp.path / "cp", server.port(), "  heartbeat_s: 1\n"), 0600);
  const auto config = (tmp.path / "agent.yaml").string();
  ASSERT_EQ(run({Bins::agent(), "api-key", "create", "--config", config, "--id", "a", "--scope", "runbooks:execute"})
                .exit_code,
            0);
  {
    Process agent({Bins::agent(), "run", "--config", config}, tmp.path / "agent.log");
    ASSERT_TRUE(eventually([&] { return completed(server, "job_inline") != ""; }, std::chrono::seconds(90)))
        << agent.log_text();
    EXPECT_TRUE(agent.running()) << agent.log_text();
    EXPECT_EQ(completed(server, "job_typed"), "denied");
    EXPECT_EQ(completed(server, "job_inline"), "denied");
    auto typed = records_of(server, "job_typed");
    ASSERT_EQ(typed.size(), 3u);
    EXPECT_EQ(typed[1]["data"]["decision"], "deny");
    EXPECT_EQ(typed[1]["data"]["reason"], "invalid_params");
    auto in = records_of(server, "job_inline");
    ASSERT_EQ(in.size(), 3u);
    EXPECT_EQ(in[1]["data"]["reason"], "inline_not_allowed");
    // A job whose id is unusable is refused without being run, recorded or completed:
    // no request of the agent names it, under any spelling.
    for (const auto& r : server.requests()) {
      EXPECT_EQ(r.target.find("passwd"), std::string::npos) << r.target;
      EXPECT_EQ(r.target.find(".."), std::string::npos) << r.target;
      EXPECT_EQ(r.body.find("passwd"), std::string::npos) << r.target << " " << r.body;
    }
    // Positive control: the identifiable jobs' requests are seen by this check.
    EXPECT_GT(server.count("/v1/jobs/job_typed/records"), 0u);
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
