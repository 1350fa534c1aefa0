// SIGHUP: the agent re-reads agent.yaml and everything it points to, validates the whole,
// and swaps it in between jobs; an invalid new configuration is refused as a whole with
// one log line naming the problem, and the old one stays. Waits on log lines and job
// statuses only.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <map>

#include "harness.hpp"

namespace delegate::testing {
namespace {

constexpr const char* kRunbook =
    "description: prints\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
    "  - name: say\n    uses: command\n    with: {argv: [/bin/echo, hi]}\n"
    "    sandbox: {profile: default, network: false, timeout_s: 60, memory_mb: 64}\n";

std::size_t count(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (auto at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

class Reload : public ::testing::Test {
 protected:
  void SetUp() override {
    cp_ = std::make_unique<ControlPlane>(tmp_.path / "cp");
    runbooks_ = cp_->dir() / "runbooks";
    write_text(runbooks_ / "hello.yaml", std::string("name: hello\n") + kRunbook);
    config_text_ = read_text(cp_->dir() / "agent.yaml");
    config_ = (tmp_.path / "agent.yaml").string();
    write_text(config_, config_text_, 0600);
  }
  void TearDown() override {
    if (HasFailure() && agent_) std::cerr << agent_->log_text();
  }
  void start(std::map<std::string, std::string> env = {}) {
    agent_ = std::make_unique<Process>(std::vector<std::string>{Bins::agent(), "run", "--config", config_},
                                       tmp_.path / "agent.log", std::move(env));
  }
  std::string key(const std::string& id, const std::string& cfg) {
    auto k = run({Bins::agent(), "api-key", "create", "--config", cfg, "--id", id, "--scope", "runbooks:execute"});
    EXPECT_EQ(k.exit_code, 0) << k.err;
    return k.out.substr(0, k.out.find('\n'));
  }
  std::string submit(const std::string& runbook, const std::string& api_key) {
    return cp_->submit(Json{{"runbook", runbook}, {"authorization", {{"type", "api_key"}, {"key", api_key}}}});
  }
  Json decision(const std::string& job) {
    auto recs = cp_->records(job);
    return recs.size() > 1 ? recs[1]["data"] : Json::object();
  }
  // Sends SIGHUP and waits for the n-th line that says how it ended.
  void hup(const std::string& outcome, std::size_t nth) {
    agent_->signal(SIGHUP);
    ASSERT_TRUE(eventually([&] { return count(agent_->log_text(), outcome) >= nth; })) << agent_->log_text();
  }
  // The init'ed catalog holds example runbooks besides the test's own.
  [[nodiscard]] std::string runbook_count() const {
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(runbooks_)) n += e.path().extension() == ".yaml" ? 1 : 0;
    return std::to_string(n);
  }
  [[nodiscard]] std::string last_line_with(const std::string& what) const {
    const auto log = agent_->log_text();
    const auto at = log.rfind(what);
    if (at == std::string::npos) return "";
    const auto begin = log.rfind('\n', at);
    return log.substr(begin == std::string::npos ? 0 : begin + 1, log.find('\n', at) - (begin == std::string::npos ? 0 : begin + 1));
  }

  TempDir tmp_;
  std::unique_ptr<ControlPlane> cp_;
  fs::path runbooks_;
  std::string config_text_;
  std::string config_;
  std::unique_ptr<Process> agent_;
};

TEST_F(Reload, AnInvalidConfigurationIsRefusedWholeAndTheOldOneKeepsRunningJobs) {
  const auto k = key("k", config_);
  // As under systemd: JOURNAL_STREAM names the agent's stderr (the log file, which the
  // harness opens for appending), so each line carries its syslog priority.
  write_text(tmp_.path / "agent.log", "");
  struct stat st {};
  ASSERT_EQ(::stat((tmp_.path / "agent.log").c_str(), &st), 0);
  start({{"JOURNAL_STREAM", std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)}});
  ASSERT_EQ(cp_->wait_final(submit("hello", k)), "succeeded") << agent_->log_text();

  // A broken runbook next to a good new one: neither is taken.
  write_text(runbooks_ / "added.yaml", std::string("name: added\n") + kRunbook);
  write_text(runbooks_ / "broken.yaml", "name: broken\nsteps: [}\n");
  hup("reload rejected", 1);
  EXPECT_NE(last_line_with("reload rejected").find("broken.yaml"), std::string::npos) << agent_->log_text();
  EXPECT_EQ(last_line_with("reload rejected").rfind("<3>", 0), 0u) << last_line_with("reload rejected");
  EXPECT_EQ(cp_->wait_final(submit("hello", k)), "succeeded");
  const auto unknown = submit("added", k);
  EXPECT_EQ(cp_->wait_final(unknown), "denied");
  EXPECT_EQ(decision(unknown)["reason"], "unknown_runbook") << decision(unknown).dump();
  fs::remove(runbooks_ / "broken.yaml");

  // An unknown key anywhere refuses the whole file (the runbook added meanwhile too).
  write_text(config_, config_text_ + "sandbox_extra: 1\n", 0600);
  hup("reload rejected", 2);
  EXPECT_NE(last_line_with("reload rejected").find("sandbox_extra: unknown key"), std::string::npos);
  // An issuer CA that cannot be read.
  std::string bad_ca = config_text_;
  const auto ca_at = bad_ca.find("      ca_file: ");
  bad_ca.replace(ca_at, bad_ca.find('\n', ca_at) - ca_at, "      ca_file: /nonexistent/ca.pem");
  write_text(config_, bad_ca, 0600);
  hup("reload rejected", 3);
  EXPECT_NE(last_line_with("reload rejected").find("auth.oauth[0].ca_file"), std::string::npos);
  // A key that needs a restart.
  std::string renamed = config_text_;
  renamed.replace(renamed.find("name: dev-agent"), 15, "name: other-agent");
  write_text(config_, renamed, 0600);
  hup("reload rejected", 4);
  EXPECT_NE(last_line_with("reload rejected").find("agent.name changed: it takes effect only after a restart"),
            std::string::npos);
  const auto still = submit("added", k);
  EXPECT_EQ(cp_->wait_final(still), "denied");
  EXPECT_EQ(decision(still)["reason"], "unknown_runbook");
  EXPECT_EQ(count(agent_->log_text(), "configuration reloaded"), 0u);

  // The original file again: accepted, and now the new runbook runs.
  write_text(config_, config_text_, 0600);
  hup("configuration reloaded", 1);
  EXPECT_NE(last_line_with("configuration reloaded").find(runbook_count() + " runbooks, 1 API key, 1 issuer, config "),
            std::string::npos)
      << last_line_with("configuration reloaded");
  EXPECT_EQ(last_line_with("configuration reloaded").rfind("<6>", 0), 0u);
  EXPECT_EQ(cp_->wait_final(submit("added", k)), "succeeded") << agent_->log_text();
  EXPECT_TRUE(agent_->running());
}

TEST_F(Reload, RevokingAKeyDeniesItsNextJobWhileARunningJobFinishesUnderTheStateItStartedWith) {
  // The gated step ends when the test creates a file, not after some time.
  const auto gate = tmp_.path / "gate";
  fs::create_directories(gate);
  fs::permissions(gate, fs::perms::all);
  fs::permissions(tmp_.path, fs::perms::others_exec | fs::perms::group_exec, fs::perm_options::add);
  write_text(runbooks_ / "gated.yaml",
             "name: gated\ndescription: waits for the test\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: wait\n    uses: command\n"
             "    with: {argv: [/bin/sh, -c, 'while [ ! -e " + (gate / "open").string() + " ]; do sleep 0.05; done']}\n"
             "    sandbox: {profile: default, network: false, timeout_s: 300, memory_mb: 64, ro: [" + gate.string() + "]}\n"
             "  - name: after\n    uses: command\n    with: {argv: [/bin/true]}\n"
             "    sandbox: {profile: default, network: false, timeout_s: 60, memory_mb: 64}\n");
  const auto k1 = key("k1", config_);
  const auto k2 = key("k2", config_);
  // The new configuration points at a second key file in which k1 is revoked; the
  // running agent's file keeps k1 valid, so only the reload can deny it.
  const auto keys2 = tmp_.path / "api-keys-2.yaml";
  fs::copy_file(cp_->dir() / "api-keys.yaml", keys2);
  fs::permissions(keys2, fs::perms::owner_read | fs::perms::owner_write);
  std::string next = config_text_;
  next.replace(next.find("api_keys_file: "), next.find('\n', next.find("api_keys_file: ")) - next.find("api_keys_file: "),
               "api_keys_file: " + keys2.string());
  const auto next_file = (tmp_.path / "next.yaml").string();
  write_text(next_file, next, 0600);
  ASSERT_EQ(run({Bins::agent(), "api-key", "revoke", "--config", next_file, "--id", "k1"}).exit_code, 0);
  start();

  const auto running = submit("gated", k1);
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : cp_->records(running)) {
      if (r["kind"] == "step.start") return true;
    }
    return false;
  })) << agent_->log_text();

  // The reload also removes the running job's runbook.
  fs::rename(runbooks_ / "gated.yaml", tmp_.path / "gated.yaml");
  write_text(config_, next, 0600);
  hup("configuration reloaded", 1);
  EXPECT_NE(last_line_with("configuration reloaded").find(runbook_count() + " runbooks, 2 API keys"), std::string::npos)
      << last_line_with("configuration reloaded");

  const auto revoked = submit("hello", k1);
  EXPECT_EQ(cp_->wait_final(revoked), "denied");
  EXPECT_EQ(decision(revoked)["reason"], "api_key_revoked") << decision(revoked).dump();
  EXPECT_EQ(cp_->wait_final(submit("hello", k2)), "succeeded");
  EXPECT_EQ(cp_->admin_get("/v1/jobs/" + running).body.find("\"succeeded\""), std::string::npos);

  // The job that started before the reload runs both of its steps to success.
  write_text(gate / "open", "");
  EXPECT_EQ(cp_->wait_final(running), "succeeded") << agent_->log_text();
  std::size_t ends = 0;
  for (const auto& r : cp_->records(running)) ends += r["kind"] == "step.end" ? 1 : 0;
  EXPECT_EQ(ends, 2u);

  // Drain after reloads: a clean stop, exit 0.
  agent_->signal(SIGTERM);
  const int st = agent_->wait(std::chrono::seconds(60));
  ASSERT_NE(st, -1);
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) == 0) << agent_->log_text();
}


// The control plane's --log-format json: every line one JSON object, a job whose
// runbook name holds quotes and backslashes logged without breaking the line.
TEST(Logs, ControlPlaneWritesJsonLinesAndRefusesAnUnknownFormat) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  auto bad = run({Bins::controlplane(), "serve", "--dir", cp.dir().string(), "--log-format", "xml"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_NE(bad.err.find("log format must be text or json"), std::string::npos) << bad.err;
  cp.kill();
  Process json({Bins::controlplane(), "serve", "--dir", cp.dir().string(), "--log-format", "json"}, tmp.path / "cp.log");
  ASSERT_TRUE(eventually([&] { return json.log_text().find("listening on") != std::string::npos; })) << json.log_text();
  const std::string name = "we\"ird\\name";
  const auto id = cp.submit(Json{{"runbook", name}, {"authorization", {{"type", "api_key"}, {"key", "x"}}}});
  ASSERT_TRUE(eventually([&] { return json.log_text().find(id) != std::string::npos; })) << json.log_text();
  const auto log = json.log_text();
  bool seen = false;
  for (std::size_t at = 0, nl; (nl = log.find('\n', at)) != std::string::npos; at = nl + 1) {
    const auto line = Json::parse(log.substr(at, nl - at));
    EXPECT_EQ(line["component"], "controlplane") << line.dump();
    if (line["msg"].get<std::string>().find(id) != std::string::npos) {
      seen = true;
      EXPECT_NE(line["msg"].get<std::string>().find(name), std::string::npos) << line.dump();
    }
  }
  EXPECT_TRUE(seen) << log;
}

}  // namespace
}  // namespace delegate::testing
