// The agent against control-plane answers that the real control plane gives rarely or
// never: acknowledgements past what was sent, 409 with expected_seq, permanent refusals,
// 401 on uploads, refused or failing completions; and servers it must not talk to at all
// (TLS 1.2 only, a trusted certificate for another host name).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <atomic>
#include <deque>
#include <mutex>
#include <set>
#include <thread>

#include "fake_cp.hpp"
#include "harness.hpp"

namespace delegate::testing {
namespace {

// A control plane that hands out the queued jobs once each, stores records by seq
// (idempotently, like the real one) and lets each test script its answers.
class ScriptedStore {
 public:
  using RecordHook = std::function<std::optional<FakeAnswer>(const std::string& job, int attempt, std::int64_t first,
                                                             std::int64_t last)>;
  using CompleteHook = std::function<std::optional<FakeAnswer>(const std::string& job, int attempt)>;

  void queue(Json job) {
    std::lock_guard lock(mu_);
    jobs_.push_back(std::move(job));
  }
  RecordHook on_records;
  CompleteHook on_complete;

  FakeAnswer operator()(const FakeRequest& req) {
    const std::string& t = req.target;
    if (t == "/v1/agents/register") return {201, R"({"agent_id":"agt_fake","agent_token":"tok_fake"})"};
    if (t.ends_with("/heartbeat")) return {200, R"({"cancel":[]})"};
    if (t.ends_with("/jobs/acquire")) {
      {
        std::lock_guard lock(mu_);
        if (!jobs_.empty()) {
          Json job = std::move(jobs_.front());
          jobs_.pop_front();
          return {200, Json{{"job", job}}.dump()};
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
      return {204, ""};
    }
    const std::string job = job_of(t);
    if (t.ends_with("/records")) {
      auto recs = records_in(req);
      if (recs.empty()) return {400, "{}"};
      const auto first = recs.front()["seq"].get<std::int64_t>();
      const auto last = recs.back()["seq"].get<std::int64_t>();
      int attempt = 0;
      {
        std::lock_guard lock(mu_);
        attempt = record_posts_[job]++;
        for (auto& r : recs) stored_[job].emplace(r["seq"].get<std::int64_t>(), r);
      }
      if (on_records) {
        if (auto a = on_records(job, attempt, first, last)) return *a;
      }
      return {200, Json{{"acked_seq", last}}.dump()};
    }
    if (t.ends_with("/complete")) {
      int attempt = 0;
      {
        std::lock_guard lock(mu_);
        attempt = complete_posts_[job]++;
      }
      if (on_complete) {
        if (auto a = on_complete(job, attempt)) return *a;
      }
      std::lock_guard lock(mu_);
      completed_[job] = Json::parse(req.body)["status"].get<std::string>();
      return {200, "{}"};
    }
    return {404, "{}"};
  }

  std::map<std::int64_t, Json> stored(const std::string& job) {
    std::lock_guard lock(mu_);
    return stored_[job];
  }
  std::string completed(const std::string& job) {
    std::lock_guard lock(mu_);
    return completed_[job];
  }
  int complete_posts(const std::string& job) {
    std::lock_guard lock(mu_);
    return complete_posts_[job];
  }

 private:
  std::mutex mu_;
  std::deque<Json> jobs_;
  std::map<std::string, std::map<std::int64_t, Json>> stored_;
  std::map<std::string, int> record_posts_, complete_posts_;
  std::map<std::string, std::string> completed_;
};

// A stored stream is whole when it holds seq 0..n-1 and ends with job.end.
::testing::AssertionResult whole(const std::map<std::int64_t, Json>& recs) {
  if (recs.empty()) return ::testing::AssertionFailure() << "no records";
  std::int64_t expect = 0;
  for (const auto& [seq, r] : recs) {
    if (seq != expect) return ::testing::AssertionFailure() << "gap before seq " << seq;
    ++expect;
  }
  if (recs.rbegin()->second["kind"] != "job.end") {
    return ::testing::AssertionFailure() << "last record is " << recs.rbegin()->second["kind"];
  }
  return ::testing::AssertionSuccess();
}

class AgentAnswers : public ::testing::Test {
 protected:
  void SetUp() override {
    auto init = run({Bins::controlplane(), "init", "--dir", (tmp_.path / "cp").string(), "--listen", "127.0.0.1:1"});
    ASSERT_EQ(init.exit_code, 0) << init.err;
    gate_ = tmp_.path / "gate";
    fs::create_directories(gate_);
    fs::permissions(gate_, fs::perms::all);
    // Prints, waits for the test to open the gate, prints again: its records reach the
    // store in at least two uploads.
    write_text(tmp_.path / "cp" / "runbooks" / "gated.yaml",
               "name: gated\ndescription: waits for the test\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
               "  - name: wait\n    uses: command\n"
               "    with: {argv: [/bin/sh, -c, 'echo before; while [ ! -e " + (gate_ / "open").string() +
                   " ]; do sleep 0.05; done; echo after']}\n"
               "    sandbox: {profile: default, network: false, timeout_s: 600, memory_mb: 64, ro: [" +
                   gate_.string() + "]}\n");
  }

  // Starts the agent against a fake serving `store`.
  void start(ScriptedStore& store) {
    server_ = std::make_unique<FakeControlPlane>(
        FakeControlPlane::Tls{tmp_.path / "cp" / "server.pem", tmp_.path / "cp" / "server.key"},
        [&store](const FakeRequest& r) { return store(r); });
    config_ = (tmp_.path / "agent.yaml").string();
    write_text(config_, agent_config_for(tmp_.path / "cp", server_->port(), "  heartbeat_s: 1\n"), 0600);
    auto key = run({Bins::agent(), "api-key", "create", "--config", config_, "--id", "k", "--scope", "runbooks:execute",
                    "--role", "sre-oncall"});
    ASSERT_EQ(key.exit_code, 0) << key.err;
    key_ = key.out.substr(0, key.out.find('\n'));
    agent_ = std::make_unique<Process>(std::vector<std::string>{Bins::agent(), "run", "--config", config_},
                                       tmp_.path / "agent.log");
  }
  Json job(const std::string& id, const std::string& runbook = "gated") const {
    return Json{{"id", id}, {"runbook", runbook}, {"authorization", {{"type", "api_key"}, {"key", key_}}}};
  }
  void open_gate() { write_text(gate_ / "open", ""); }
  // SIGTERM and wait: every count the fake holds is final afterwards.
  void stop_agent() {
    agent_->signal(SIGTERM);
    ASSERT_NE(agent_->wait(std::chrono::seconds(60)), -1) << agent_->log_text();
  }
  void TearDown() override {
    if (HasFailure() && agent_) std::cerr << "---- agent log ----\n" << agent_->log_text();
    agent_.reset();
    server_.reset();
  }

  TempDir tmp_;
  fs::path gate_;
  std::string config_, key_;
  // Declared before the server whose handler refers to it, so it outlives every request
  // the agent still makes until TearDown stops both. (A store local to the test body
  // died while the fake's threads went on serving the agent's polls with it: a lock on
  // a dead mutex hung the run until ctest's timeout.)
  ScriptedStore store_;
  std::unique_ptr<FakeControlPlane> server_;
  std::unique_ptr<Process> agent_;
};

TEST_F(AgentAnswers, AnAcknowledgementPastWhatWasSentDropsNothing) {
  ScriptedStore& store = store_;
  // The first upload is answered with an acknowledgement far beyond it, as if the
  // store held records the agent has not even produced yet.
  store.on_records = [](const std::string& job, int attempt, std::int64_t, std::int64_t last) -> std::optional<FakeAnswer> {
    if (job == "job_lie" && attempt == 0) return FakeAnswer{200, Json{{"acked_seq", last + 1000}}.dump()};
    return std::nullopt;
  };
  start(store);
  store.queue(job("job_lie"));
  ASSERT_TRUE(eventually([&] { return !store.stored("job_lie").empty(); })) << agent_->log_text();
  open_gate();
  ASSERT_TRUE(eventually([&] { return store.completed("job_lie") == "succeeded"; }, std::chrono::seconds(60)));
  EXPECT_TRUE(whole(store.stored("job_lie")));
  EXPECT_NE(agent_->log_text().find("was sent only up to seq"), std::string::npos);
}

TEST_F(AgentAnswers, ConflictWithExpectedSeqMovesTheAckAndLosesNothing) {
  ScriptedStore& store = store_;
  // "Already have everything below expected_seq" for what was just sent (as after a
  // lost answer): the agent must move on, not re-send, not stall.
  store.on_records = [](const std::string& job, int attempt, std::int64_t, std::int64_t last) -> std::optional<FakeAnswer> {
    if (job == "job_409" && attempt == 0) return FakeAnswer{409, Json{{"expected_seq", last + 1}}.dump()};
    return std::nullopt;
  };
  start(store);
  store.queue(job("job_409"));
  ASSERT_TRUE(eventually([&] { return !store.stored("job_409").empty(); })) << agent_->log_text();
  open_gate();
  ASSERT_TRUE(eventually([&] { return store.completed("job_409") == "succeeded"; }, std::chrono::seconds(60)));
  EXPECT_TRUE(whole(store.stored("job_409")));
}

TEST_F(AgentAnswers, PermanentRefusalsMoveTheStreamToTheDeadLetterAndTheAgentGoesOn) {
  ScriptedStore& store = store_;
  const std::vector<int> refusals = {400, 403, 404, 413, 422};
  store.on_records = [](const std::string& job, int, std::int64_t, std::int64_t) -> std::optional<FakeAnswer> {
    if (job.starts_with("job_refused_")) return FakeAnswer{std::stoi(job.substr(12)), R"({"error":"no"})"};
    return std::nullopt;
  };
  start(store);
  for (int s : refusals) store.queue(job("job_refused_" + std::to_string(s), "host-diagnostics"));
  store.queue(job("job_fine", "host-diagnostics"));
  ASSERT_TRUE(eventually([&] { return store.completed("job_fine") == "succeeded"; }, std::chrono::seconds(60)))
      << agent_->log_text();
  const auto dead = tmp_.path / "cp" / "agent-state" / "spool" / "dead";
  auto dead_count = [&] {
    std::set<std::string> jobs;
    std::error_code ec;
    for (const auto& e : fs::directory_iterator(dead, ec)) {
      const auto name = e.path().filename().string();
      jobs.insert(name.substr(0, name.find('-')));
    }
    return jobs.size();
  };
  ASSERT_TRUE(eventually([&] { return dead_count() == refusals.size(); })) << dead;
  const auto log = agent_->log_text();
  for (int s : refusals) {
    EXPECT_NE(log.find("refused records of job job_refused_" + std::to_string(s) + " (HTTP " + std::to_string(s)),
              std::string::npos)
        << s;
  }
  EXPECT_TRUE(agent_->running());
  EXPECT_TRUE(whole(store.stored("job_fine")));
}

TEST_F(AgentAnswers, UnauthorizedUploadRenewsTheCredentialsAndResends) {
  ScriptedStore& store = store_;
  store.on_records = [](const std::string& job, int attempt, std::int64_t, std::int64_t) -> std::optional<FakeAnswer> {
    if (job == "job_401" && attempt == 0) return FakeAnswer{401, R"({"error":"token expired"})"};
    return std::nullopt;
  };
  start(store);
  store.queue(job("job_401", "host-diagnostics"));
  ASSERT_TRUE(eventually([&] { return store.completed("job_401") == "succeeded"; }, std::chrono::seconds(60)))
      << agent_->log_text();
  EXPECT_TRUE(whole(store.stored("job_401")));
  EXPECT_GE(server_->count("/v1/agents/register"), 2u);
}

TEST_F(AgentAnswers, CompletionIsRetriedOnServerErrorsAndNotAfterARefusal) {
  ScriptedStore& store = store_;
  store.on_complete = [](const std::string& job, int attempt) -> std::optional<FakeAnswer> {
    if (job == "job_500" && attempt == 0) return FakeAnswer{500, "{}"};
    if (job == "job_409c") return FakeAnswer{409, R"({"error":"status does not match the log"})"};
    return std::nullopt;
  };
  start(store);
  store.queue(job("job_500", "host-diagnostics"));
  store.queue(job("job_409c", "host-diagnostics"));
  ASSERT_TRUE(eventually([&] { return store.completed("job_500") == "succeeded"; }, std::chrono::seconds(60)))
      << agent_->log_text();
  ASSERT_TRUE(eventually([&] {
    return agent_->log_text().find("refused completion of job job_409c") != std::string::npos;
  })) << agent_->log_text();
  stop_agent();
  EXPECT_EQ(store.complete_posts("job_500"), 2);
  EXPECT_EQ(store.complete_posts("job_409c"), 1);
}

TEST_F(AgentAnswers, ATls12OnlyServerGetsNoRequest) {
  FakeControlPlane old({tmp_.path / "cp" / "server.pem", tmp_.path / "cp" / "server.key", TLS1_2_VERSION,
                        TLS1_2_VERSION},
                       [](const FakeRequest&) { return FakeAnswer{201, "{}"}; });
  config_ = (tmp_.path / "agent.yaml").string();
  write_text(config_, agent_config_for(tmp_.path / "cp", old.port()), 0600);
  Process agent({Bins::agent(), "run", "--config", config_}, tmp_.path / "agent.log");
  ASSERT_TRUE(eventually([&] { return agent.log_text().find("cannot register") != std::string::npos; }))
      << agent.log_text();
  EXPECT_EQ(old.handshakes(), 0);
  EXPECT_TRUE(old.requests().empty());
  EXPECT_TRUE(agent.running());
}

TEST_F(AgentAnswers, ATrustedCertificateForAnotherHostNameIsRefused) {
  // A CA the agent trusts, and a certificate from it that names another host.
  const auto d = tmp_.path / "pki";
  fs::create_directories(d);
  const std::string sh =
      "set -e; cd '" + d.string() + "'; "
      "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
      "-days 2 -subj /CN=test-ca 2>/dev/null; "
      "openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout srv.key -out srv.csr "
      "-subj /CN=elsewhere.example 2>/dev/null; "
      "printf 'subjectAltName=DNS:elsewhere.example\\n' > ext; "
      "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 2 -extfile ext -out srv.pem "
      "2>/dev/null";
  ASSERT_EQ(run({"/bin/sh", "-c", sh}).exit_code, 0);
  std::atomic<int> answered{0};
  FakeControlPlane other({d / "srv.pem", d / "srv.key"}, [&](const FakeRequest&) {
    ++answered;
    return FakeAnswer{201, R"({"agent_id":"agt_x","agent_token":"t"})"};
  });
  auto cfg = agent_config_for(tmp_.path / "cp", other.port());
  const auto ca = cfg.find("ca_file: ");
  cfg.replace(ca, cfg.find('\n', ca) - ca, "ca_file: " + (d / "ca.pem").string());
  config_ = (tmp_.path / "agent.yaml").string();
  write_text(config_, cfg, 0600);
  Process agent({Bins::agent(), "run", "--config", config_}, tmp_.path / "agent.log");
  ASSERT_TRUE(eventually([&] { return agent.log_text().find("cannot register") != std::string::npos; }))
      << agent.log_text();
  // The handshake fails on the agent's side: not one request reaches the server.
  EXPECT_TRUE(other.requests().empty());
  EXPECT_EQ(answered.load(), 0);
  // Positive control: the same server is trusted by curl when the name matches.
  auto ok = run({"/usr/bin/curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", (d / "ca.pem").string(),
                 "--resolve", "elsewhere.example:" + std::to_string(other.port()) + ":127.0.0.1",
                 "https://elsewhere.example:" + std::to_string(other.port()) + "/"});
  EXPECT_EQ(ok.out, "201");
}

}  // namespace
}  // namespace delegate::testing
