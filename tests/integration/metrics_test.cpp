// Metrics and health against the real control plane and agent: jobs that succeed, fail
// and are denied, then the scraped counts must match what the audit records say happened.
#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstring>
#include <regex>

#include "harness.hpp"

namespace delegate::testing {
namespace {

struct Answer {
  int status = 0;
  std::string body;
};

Answer http_unix(const fs::path& socket_path, const std::string& method, const std::string& target) {
  Answer a;
  const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_un sa{};
  sa.sun_family = AF_UNIX;
  std::strncpy(sa.sun_path, socket_path.c_str(), sizeof sa.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    ::close(fd);
    return a;
  }
  const std::string req = method + " " + target + " HTTP/1.1\r\nHost: localhost\r\n\r\n";
  (void)!::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[8192];
  for (ssize_t n; (n = ::recv(fd, buf, sizeof buf, 0)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(fd);
  if (out.rfind("HTTP/1.1 ", 0) != 0) return a;
  a.status = std::stoi(out.substr(9, 3));
  const auto end = out.find("\r\n\r\n");
  if (end != std::string::npos) a.body = out.substr(end + 4);
  return a;
}

// The value of one sample line (`name{labels}`), or -1 when absent.
double sample(const std::string& text, const std::string& series) {
  const auto pos = text.find("\n" + series + " ");
  if (pos == std::string::npos) return -1;
  return std::stod(text.substr(pos + series.size() + 2));
}

std::string runbook(const std::string& name, const std::string& argv) {
  return "name: " + name + "\ndescription: metrics test\nauthorize:\n  scopes: [runbooks:execute]\nsteps:\n"
         "  - name: main\n    uses: command\n    with: {argv: " + argv + "}\n"
         "    sandbox: {profile: default, network: false, timeout_s: 20, memory_mb: 256}\n";
}

class Metrics : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    cp_ = new ControlPlane(tmp_->path / "cp", 0, {"--metrics-listen", "unix:" + (tmp_->path / "cp.sock").string()});
    const auto rb = cp_->dir() / "runbooks";
    write_text(rb / "fails.yaml", runbook("fails", "[/bin/sh, -c, 'exit 3']"));
    write_text(rb / "missing.yaml", runbook("missing", "[/nonexistent/program]"));
    const auto cfg = cp_->dir() / "agent.yaml";
    write_text(cfg, read_text(cfg) + "metrics:\n  listen: \"unix:" + agent_sock().string() + "\"\n", 0600);
    auto key = run({Bins::agent(), "api-key", "create", "--config", cfg.string(), "--id", "oncall", "--scope",
                    "runbooks:execute", "--role", "sre-oncall"});
    ASSERT_EQ(key.exit_code, 0) << key.err;
    key_ = new std::string(key.out.substr(0, key.out.find('\n')));
  }
  static void TearDownTestSuite() {
    delete agent_;
    delete cp_;
    delete tmp_;
    delete key_;
  }
  void TearDown() override {
    if (HasFailure() && agent_ != nullptr) {
      std::cerr << "---- agent log ----\n" << agent_->log_text() << "---- control plane log ----\n"
                << cp_->process().log_text();
    }
  }
  static fs::path agent_sock() { return tmp_->path / "agent.sock"; }
  // The agent starts while the control plane is down: alive but not ready, then ready
  // once the control plane is back and it has registered. Done once, by whichever test
  // runs first; what was seen is kept for ReadyzFlipsAfterRegistration.
  struct Startup {
    int healthz_down = 0, readyz_down = 0, readyz_up = 0;
    double reachable_down = -1, last_success_down = -1;
  };
  static const Startup& start_agent() {
    static const Startup seen = [] {
      Startup s;
      cp_->kill();
      agent_ = new Process({Bins::agent(), "run", "--config", (cp_->dir() / "agent.yaml").string()},
                           cp_->dir() / "agent.log");
      eventually([] { return http_unix(agent_sock(), "GET", "/healthz").status == 200; });
      s.healthz_down = http_unix(agent_sock(), "GET", "/healthz").status;
      s.readyz_down = http_unix(agent_sock(), "GET", "/readyz").status;
      // A failed attempt to register has been made (the gauge starts at 0 either way).
      eventually([] { return agent_->log_text().find("cannot register") != std::string::npos; });
      const auto m = agent_metrics();
      s.reachable_down = sample(m, "delegate_agent_control_plane_reachable");
      s.last_success_down = sample(m, "delegate_agent_control_plane_last_success_timestamp_seconds");
      cp_->start();
      eventually([] { return http_unix(agent_sock(), "GET", "/readyz").status == 200; });
      s.readyz_up = http_unix(agent_sock(), "GET", "/readyz").status;
      return s;
    }();
    return seen;
  }
  static Json job(const std::string& runbook, const std::string& key) {
    return Json{{"runbook", runbook}, {"authorization", {{"type", "api_key"}, {"key", key}}}};
  }
  static std::string agent_metrics() { return http_unix(agent_sock(), "GET", "/metrics").body; }
  static std::string cp_metrics() { return http_unix(tmp_->path / "cp.sock", "GET", "/metrics").body; }

  static inline TempDir* tmp_ = nullptr;
  static inline ControlPlane* cp_ = nullptr;
  static inline Process* agent_ = nullptr;
  static inline std::string* key_ = nullptr;
};

TEST_F(Metrics, ReadyzFlipsAfterRegistration) {
  const auto& s = start_agent();
  EXPECT_EQ(s.healthz_down, 200);
  EXPECT_EQ(s.readyz_down, 503);
  EXPECT_EQ(s.reachable_down, 0);
  EXPECT_EQ(s.last_success_down, 0);
  EXPECT_EQ(s.readyz_up, 200);
  const auto m = agent_metrics();
  EXPECT_EQ(sample(m, "delegate_agent_ready"), 1);
  EXPECT_EQ(sample(m, "delegate_agent_control_plane_reachable"), 1);
  EXPECT_GT(sample(m, "delegate_agent_control_plane_last_success_timestamp_seconds"), 1.7e9);
  // Read-only endpoints: other methods are refused, other paths do not exist.
  EXPECT_EQ(http_unix(agent_sock(), "POST", "/metrics").status, 405);
  EXPECT_EQ(http_unix(agent_sock(), "GET", "/v1/jobs").status, 404);
}

TEST_F(Metrics, CountsMatchWhatHappened) {
  ASSERT_EQ(start_agent().readyz_up, 200);
  // Well-formed, with the real key's secret, but an id the agent does not know.
  const std::string secret = key_->substr(key_->rfind('.') + 1);
  const std::vector<std::pair<std::string, std::string>> jobs = {
      {cp_->submit(job("host-diagnostics", *key_)), "succeeded"},
      {cp_->submit(job("fails", *key_)), "failed"},
      {cp_->submit(job("missing", *key_)), "failed"},
      {cp_->submit(job("host-diagnostics", "dlg.nosuchkey." + secret)), "denied"}};
  std::size_t job_records = 0, steps_run = 0, not_found = 0, dispatched = 0;
  for (const auto& [id, want] : jobs) {
    ASSERT_EQ(cp_->wait_final(id), want) << id;
    const auto recs = cp_->records(id);
    job_records += recs.size();
    bool any_step = false;
    for (const auto& r : recs) {
      if (r["kind"] != "step.end") continue;
      any_step = true;
      const auto s = r["data"]["status"].get<std::string>();
      if (s == "not_found") ++not_found;
      else if (s != "setup_failed" && s != "agent_error") ++steps_run;
    }
    dispatched += any_step ? 1 : 0;
  }
  // Everything spooled is acknowledged in the end (the agent stream's records too).
  std::string m;
  ASSERT_TRUE(eventually([&] {
    m = agent_metrics();
    const double spooled = sample(m, "delegate_agent_audit_records_spooled_total");
    return spooled >= static_cast<double>(job_records) &&
           sample(m, "delegate_agent_audit_records_acknowledged_total") == spooled;
  })) << m;
  EXPECT_EQ(sample(m, "delegate_agent_jobs_total{status=\"succeeded\"}"), 1);
  EXPECT_EQ(sample(m, "delegate_agent_jobs_total{status=\"failed\"}"), 2);
  EXPECT_EQ(sample(m, "delegate_agent_jobs_total{status=\"denied\"}"), 1);
  EXPECT_EQ(sample(m, "delegate_agent_jobs_total{status=\"cancelled\"}"), 0);
  EXPECT_EQ(sample(m, "delegate_agent_authz_denials_total{reason=\"api_key_unknown\"}"), 1);
  EXPECT_EQ(sample(m, "delegate_agent_sandbox_launch_failures_total{cause=\"not_found\"}"), static_cast<double>(not_found));
  EXPECT_EQ(not_found, 1u);
  EXPECT_EQ(sample(m, "delegate_agent_step_duration_seconds_count"), static_cast<double>(steps_run));
  EXPECT_EQ(sample(m, "delegate_agent_step_duration_seconds_bucket{le=\"+Inf\"}"), static_cast<double>(steps_run));
  EXPECT_EQ(sample(m, "delegate_agent_dispatch_latency_seconds_count"), static_cast<double>(dispatched));
  EXPECT_GE(sample(m, "delegate_agent_audit_records_sent_total"), sample(m, "delegate_agent_audit_records_acknowledged_total"));
  EXPECT_GE(sample(m, "delegate_agent_spool_bytes"), 0);
  EXPECT_EQ(sample(m, "delegate_agent_build_info{version=\"" DELEGATE_VERSION "\"}"), 1);
  // No job input reaches a label: not the key, not the job ids.
  EXPECT_EQ(m.find(secret), std::string::npos);
  EXPECT_EQ(m.find("nosuchkey"), std::string::npos);
  for (const auto& [id, _] : jobs) EXPECT_EQ(m.find(id), std::string::npos);

  // The control plane: the same jobs by status, the agent online and long-polling, every
  // record it stored counted, requests by route.
  // Scraped together until they agree: the agent stream may add a checkpoint meanwhile.
  std::string c;
  ASSERT_TRUE(eventually([&] {
    c = cp_metrics();
    const auto a = agent_metrics();
    const double acked = sample(a, "delegate_agent_audit_records_acknowledged_total");
    return sample(c, "delegate_cp_jobs{status=\"succeeded\"}") == 1 && sample(c, "delegate_cp_jobs{status=\"failed\"}") == 2 &&
           sample(c, "delegate_cp_jobs{status=\"denied\"}") == 1 && sample(c, "delegate_cp_parked_long_polls") == 1 &&
           sample(a, "delegate_agent_audit_records_spooled_total") == acked &&
           sample(c, "delegate_cp_records_ingested_total") == acked;
  })) << c;
  EXPECT_EQ(sample(c, "delegate_cp_jobs{status=\"queued\"}"), 0);
  EXPECT_EQ(sample(c, "delegate_cp_agents{state=\"online\"}"), 1);
  EXPECT_EQ(sample(c, "delegate_cp_agents{state=\"revoked\"}"), 0);
  // (The control plane restarted once, before the agent could send anything: it stored
  // and counted every record the agent had acknowledged.)
  EXPECT_GE(sample(c, "delegate_cp_http_requests_total{route=\"complete\",code=\"2xx\"}"), 4);
  EXPECT_GE(sample(c, "delegate_cp_http_requests_total{route=\"register\",code=\"2xx\"}"), 1);
  EXPECT_GE(sample(c, "delegate_cp_http_requests_total{route=\"admin\",code=\"2xx\"}"), 4);
  for (const auto& [id, _] : jobs) EXPECT_EQ(c.find(id), std::string::npos);
  EXPECT_EQ(http_unix(tmp_->path / "cp.sock", "GET", "/readyz").status, 200);
}

// promtool is in Debian's prometheus package (packaging/install-deps.sh --test).
TEST_F(Metrics, PromtoolAcceptsBothExpositions) {
  const auto which = run({"/bin/sh", "-c", "command -v promtool"});
  if (which.exit_code != 0) {
    GTEST_SKIP() << "promtool is not installed (apt-get install prometheus); exposition not validated";
  }
  ASSERT_EQ(start_agent().readyz_up, 200);
  for (const auto& text : {agent_metrics(), cp_metrics()}) {
    ASSERT_FALSE(text.empty());
    auto r = run({which.out.substr(0, which.out.find('\n')), "check", "metrics"}, text);
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err << "\n" << text;
  }
}

}  // namespace
}  // namespace delegate::testing
