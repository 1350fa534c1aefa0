// End-to-end: the real control plane and agent binaries over TLS 1.3 on loopback.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <delegate/common/encoding.hpp>

#include "harness.hpp"

namespace delegate::testing {
namespace {

std::string runbook_yaml(const std::string& name, const std::string& argv_yaml, int timeout_s) {
  return "name: " + name +
         "\n"
         "description: integration test runbook\n"
         "authorize:\n"
         "  scopes: [runbooks:execute]\n"
         "steps:\n"
         "  - name: main\n"
         "    uses: command\n"
         "    with: {argv: " + argv_yaml + "}\n"
         "    sandbox: {profile: default, network: false, timeout_s: " + std::to_string(timeout_s) +
         ", memory_mb: 256}\n";
}

// One control plane and one agent shared by the tests of this suite.
class Flow : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    cp_ = new ControlPlane(tmp_->path / "cp");
    const auto rb = cp_->dir() / "runbooks";
    write_text(rb / "probe.yaml", runbook_yaml("probe-syscalls", "[" + Bins::prober() + ", ptrace]", 20));
    write_text(rb / "sleepy.yaml", runbook_yaml("sleepy", "[/bin/sleep, '30']", 1));
    // Outlives any test: only a cancel can end it.
    write_text(rb / "endless.yaml", runbook_yaml("endless", "[/bin/sleep, '3600']", 3600));
    write_text(rb / "noisy.yaml",
               runbook_yaml("noisy", "[/bin/sh, -c, 'echo to-stdout; echo to-stderr >&2; exit 3']", 20));
    const auto cfg = (cp_->dir() / "agent.yaml").string();
    auto key = run({Bins::agent(), "api-key", "create", "--config", cfg, "--id", "oncall", "--scope",
                    "runbooks:execute", "--role", "sre-oncall"});
    ASSERT_EQ(key.exit_code, 0) << key.err;
    key_ = new std::string(key.out.substr(0, key.out.find('\n')));
    auto pub = run({Bins::agent(), "identity", "--config", cfg});
    ASSERT_EQ(pub.exit_code, 0) << pub.err;
    pubkey_ = new std::string(pub.out.substr(0, pub.out.find('\n')));
    agent_ = new Process({Bins::agent(), "run", "--config", cfg}, cp_->dir() / "agent.log");
  }
  void TearDown() override {
    if (HasFailure()) {
      std::cerr << "---- agent log ----\n" << agent_->log_text() << "---- control plane log ----\n"
                << cp_->process().log_text();
    }
  }
  static void TearDownTestSuite() {
    delete agent_;
    delete cp_;
    delete tmp_;
    delete key_;
    delete pubkey_;
  }

  static Json api_key_job(const std::string& runbook, const std::string& key, Json params = Json::object()) {
    return Json{{"runbook", runbook}, {"params", params}, {"authorization", {{"type", "api_key"}, {"key", key}}}};
  }

  // Writes the job's export to a file and runs delegate-audit verify on it.
  static RunResult verify(const std::string& job_id, const std::string& edit_from = "", const std::string& edit_to = "") {
    auto body = cp_->admin_get("/v1/jobs/" + job_id + "/records").body;
    if (!edit_from.empty()) {
      auto pos = body.find(edit_from);
      EXPECT_NE(pos, std::string::npos);
      if (pos != std::string::npos) body.replace(pos, edit_from.size(), edit_to);
    }
    auto file = tmp_->path / (job_id + ".jsonl");
    write_text(file, body);
    return run({Bins::audit(), "verify", "--public-key", *pubkey_, file.string()});
  }

  static Json find_record(const std::vector<Json>& recs, const std::string& kind) {
    for (const auto& r : recs) {
      if (r["kind"] == kind) return r;
    }
    return Json();
  }

  static std::string output_of(const std::vector<Json>& recs, const std::string& stream) {
    std::string out;
    for (const auto& r : recs) {
      if (r["kind"] == "output" && r["data"]["stream"] == stream) {
        auto b = base64_decode(r["data"]["b64"].get<std::string>());
        if (b) out.append(b->begin(), b->end());
      }
    }
    return out;
  }

  static inline TempDir* tmp_ = nullptr;
  static inline ControlPlane* cp_ = nullptr;
  static inline Process* agent_ = nullptr;
  static inline std::string* key_ = nullptr;
  static inline std::string* pubkey_ = nullptr;
};

TEST_F(Flow, AuthorisedJobSucceedsAndItsExportVerifies) {
  auto id = cp_->submit(api_key_job("host-diagnostics", *key_, {{"detail", "basic"}}));
  ASSERT_EQ(cp_->wait_final(id), "succeeded") << agent_->log_text();
  auto recs = cp_->records(id);
  ASSERT_GE(recs.size(), 4u);
  EXPECT_EQ(recs.front()["kind"], "job.received");
  EXPECT_EQ(recs[1]["kind"], "authz.decision");
  EXPECT_EQ(recs[1]["data"]["decision"], "allow");
  EXPECT_EQ(recs[1]["data"]["subject"], "oncall");
  EXPECT_EQ(recs.back()["kind"], "job.end");
  EXPECT_EQ(recs.back()["data"]["status"], "succeeded");
  EXPECT_EQ(recs.back()["data"]["records"], recs.size());
  EXPECT_NE(output_of(recs, "stdout").find("Linux"), std::string::npos);  // uname -a
  // The credential never appears in the audit trail, only its fingerprint.
  auto body = cp_->admin_get("/v1/jobs/" + id + "/records").body;
  EXPECT_EQ(body.find(*key_), std::string::npos);

  auto v = verify(id);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_EQ(v.out, "OK " + id + " " + std::to_string(recs.size()) + " records\n");
}

TEST_F(Flow, FailingStepEndsFailedWithBothStreamsRecorded) {
  auto id = cp_->submit(api_key_job("noisy", *key_));
  ASSERT_EQ(cp_->wait_final(id), "failed");
  auto recs = cp_->records(id);
  EXPECT_EQ(output_of(recs, "stdout"), "to-stdout\n");
  EXPECT_EQ(output_of(recs, "stderr"), "to-stderr\n");
  EXPECT_EQ(find_record(recs, "step.end")["data"]["exit_code"], 3);
  EXPECT_EQ(verify(id).exit_code, 0);
}

TEST_F(Flow, WrongExpiredAndRevokedKeysAreDeniedAndAudited) {
  const auto cfg = (cp_->dir() / "agent.yaml").string();
  auto expired = run({Bins::agent(), "api-key", "create", "--config", cfg, "--id", "old", "--scope", "runbooks:execute",
                      "--role", "sre-oncall", "--expires", "2020-01-01T00:00:00Z"});
  ASSERT_EQ(expired.exit_code, 0) << expired.err;
  auto revoked = run({Bins::agent(), "api-key", "create", "--config", cfg, "--id", "gone", "--scope",
                      "runbooks:execute", "--role", "sre-oncall"});
  ASSERT_EQ(revoked.exit_code, 0) << revoked.err;
  ASSERT_EQ(run({Bins::agent(), "api-key", "revoke", "--config", cfg, "--id", "gone"}).exit_code, 0);
  // Same id as the valid key, different secret.
  std::string wrong = "dlg.oncall." + base64url_encode(std::vector<std::uint8_t>(32, 7));

  const std::pair<std::string, std::string> cases[] = {
      {wrong, "api_key_unknown"},
      {expired.out.substr(0, expired.out.find('\n')), "api_key_expired"},
      {revoked.out.substr(0, revoked.out.find('\n')), "api_key_revoked"},
  };
  for (const auto& [key, reason] : cases) {
    SCOPED_TRACE(reason);
    auto id = cp_->submit(api_key_job("host-diagnostics", key));
    ASSERT_EQ(cp_->wait_final(id), "denied");
    auto recs = cp_->records(id);
    ASSERT_EQ(recs.size(), 3u);  // received, decision, end: no step ran
    EXPECT_EQ(recs[1]["data"]["decision"], "deny");
    EXPECT_EQ(recs[1]["data"]["reason"], reason);
    EXPECT_EQ(recs[2]["data"]["status"], "denied");
    EXPECT_EQ(verify(id).exit_code, 0);
  }
}

TEST_F(Flow, JobWithoutCredentialOrWithMalformedOneIsDenied) {
  auto none = cp_->submit(Json{{"runbook", "host-diagnostics"}, {"params", Json::object()}});
  auto bad = cp_->submit(Json{{"runbook", "host-diagnostics"}, {"authorization", {{"type", "magic"}}}});
  ASSERT_EQ(cp_->wait_final(none), "denied");
  ASSERT_EQ(cp_->wait_final(bad), "denied");
  EXPECT_EQ(cp_->records(none)[1]["data"]["reason"], "no_authorization");
  EXPECT_EQ(cp_->records(bad)[1]["data"]["reason"], "token_malformed");
}

TEST_F(Flow, DeniedSyscallGetsEperm) {
  auto id = cp_->submit(api_key_job("probe-syscalls", *key_));
  ASSERT_EQ(cp_->wait_final(id), "succeeded");
  EXPECT_EQ(output_of(cp_->records(id), "stdout"), "ptrace errno=1\n");  // EPERM
}

TEST_F(Flow, StepPastItsTimeoutIsKilledAndJobTimesOut) {
  auto id = cp_->submit(api_key_job("sleepy", *key_));
  ASSERT_EQ(cp_->wait_final(id), "timed_out");
  auto end = find_record(cp_->records(id), "step.end");
  EXPECT_EQ(end["data"]["status"], "timed_out");
  EXPECT_NE(end["data"]["limits_hit"].dump().find("timeout"), std::string::npos);
  EXPECT_EQ(verify(id).exit_code, 0);
}

TEST_F(Flow, EditedExportFailsVerification) {
  auto id = cp_->submit(api_key_job("host-diagnostics", *key_));
  ASSERT_EQ(cp_->wait_final(id), "succeeded");
  auto v = verify(id, "\"runbook\":\"host-diagnostics\"", "\"runbook\":\"host-diagnostic5\"");
  EXPECT_EQ(v.exit_code, 1);
  EXPECT_EQ(v.out.rfind("TAMPERED " + id + " seq=0: bad_hash", 0), 0u) << v.out;
  // The same file verifies under the right key but not under another agent's key.
  auto other = run({Bins::audit(), "verify", "--public-key", base64_encode(std::vector<std::uint8_t>(32, 1)),
                    (tmp_->path / (id + ".jsonl")).string()});
  EXPECT_EQ(other.exit_code, 1);
}

TEST_F(Flow, CancelFromControlPlaneStopsARunningJob) {
  auto id = cp_->submit(api_key_job("endless", *key_));
  // Running means the step has started: cancel must kill a live step, not a queued job.
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : cp_->records(id)) {
      if (r["kind"] == "step.start") return true;
    }
    return false;
  }));
  auto r = cp_->admin_post("/v1/jobs/" + id + "/cancel", Json::object());
  ASSERT_EQ(r.status, 200) << r.body;
  // The step would run for an hour: only the cancel can end the job.
  EXPECT_EQ(cp_->wait_final(id, std::chrono::seconds(120)), "cancelled");
  auto recs = cp_->records(id);
  ASSERT_GE(recs.size(), 2u);
  const auto& step_end = recs[recs.size() - 2];
  EXPECT_EQ(step_end["kind"], "step.end");
  EXPECT_EQ(step_end["data"]["status"], "cancelled") << step_end.dump();
  EXPECT_EQ(recs.back()["data"]["status"], "cancelled");
  EXPECT_EQ(verify(id).exit_code, 0);
}

TEST_F(Flow, AgentStopsCleanlyOnSigterm) {
  // ctest runs each test in its own process, so this agent is not shared with others.
  auto id = cp_->submit(api_key_job("host-diagnostics", *key_));
  ASSERT_EQ(cp_->wait_final(id), "succeeded");
  agent_->signal(SIGTERM);
  int st = agent_->wait(std::chrono::seconds(60));
  ASSERT_NE(st, -1) << "agent did not exit after SIGTERM";
  EXPECT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0);
  EXPECT_NE(agent_->log_text().find("stopped"), std::string::npos);
}

}  // namespace
}  // namespace delegate::testing
