// End-to-end step outputs: the real agent and control plane; step one prints an id,
// later steps receive it in argv and env, and step.end records it in the signed log.
#include <gtest/gtest.h>

#include <delegate/common/encoding.hpp>

#include "harness.hpp"

namespace delegate::testing {
namespace {

// create: a JSON line whose id comes from a parameter (so a test can make it hostile);
// count: a script printing a `n=` line; use: both in argv; script: both from env.
const char* kTicketFlow = R"(name: ticket-flow
description: an id from step one, used by the steps after it
authorize:
  scopes: [runbooks:execute]
params:
  id: {type: string, required: true, allow_leading_dash: true}
steps:
  - name: create
    uses: command
    with:
      argv: [/usr/bin/printf, 'progress\n{"id":"%s","open":true}\n', "${params.id}"]
      outputs:
        ticket: /id
    sandbox: {timeout_s: 20}
  - name: count
    uses: script
    with:
      script: 'echo "n=42"'
      outputs:
        n: {line: "n=", type: integer, max: 100}
    sandbox: {timeout_s: 20}
  - name: use
    uses: command
    with:
      argv: [/bin/echo, got, "${steps.create.outputs.ticket}", "n=${steps.count.outputs.n}"]
    sandbox: {timeout_s: 20}
  - name: script
    uses: script
    with:
      script: 'echo "script got $STEP_CREATE_TICKET/$STEP_COUNT_N"'
    sandbox: {timeout_s: 20}
)";

class Outputs : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    tmp_ = new TempDir();
    cp_ = new ControlPlane(tmp_->path / "cp");
    write_text(cp_->dir() / "runbooks" / "ticket-flow.yaml", kTicketFlow);
    const auto cfg = (cp_->dir() / "agent.yaml").string();
    auto key = run({Bins::agent(), "api-key", "create", "--config", cfg, "--id", "oncall", "--scope",
                    "runbooks:execute"});
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

  static std::string submit(const std::string& id) {
    return cp_->submit(Json{{"runbook", "ticket-flow"},
                            {"params", {{"id", id}}},
                            {"authorization", {{"type", "api_key"}, {"key", *key_}}}});
  }

  static std::vector<Json> of_kind(const std::vector<Json>& recs, const std::string& kind) {
    std::vector<Json> out;
    for (const auto& r : recs) {
      if (r["kind"] == kind) out.push_back(r["data"]);
    }
    return out;
  }

  static std::string stdout_of(const std::vector<Json>& recs, const std::string& step) {
    std::string out;
    for (const auto& d : of_kind(recs, "output")) {
      if (d["step"] != step || d["stream"] != "stdout") continue;
      auto b = base64_decode(d["b64"].get<std::string>());
      if (b) out.append(b->begin(), b->end());
    }
    return out;
  }

  static RunResult verify(const std::string& job_id) {
    auto file = tmp_->path / (job_id + ".jsonl");
    write_text(file, cp_->admin_get("/v1/jobs/" + job_id + "/records").body);
    return run({Bins::audit(), "verify", "--public-key", *pubkey_, file.string()});
  }

  static inline TempDir* tmp_ = nullptr;
  static inline ControlPlane* cp_ = nullptr;
  static inline Process* agent_ = nullptr;
  static inline std::string* key_ = nullptr;
  static inline std::string* pubkey_ = nullptr;
};

TEST_F(Outputs, AnIdFromStepOneArrivesInTheStepsAfterIt) {
  auto id = submit("INC-4711");
  ASSERT_EQ(cp_->wait_final(id), "succeeded");
  auto recs = cp_->records(id);
  auto ends = of_kind(recs, "step.end");
  ASSERT_EQ(ends.size(), 4u);
  EXPECT_EQ(ends[0]["outputs"], (Json{{"ticket", "INC-4711"}}));
  EXPECT_EQ(ends[1]["outputs"], (Json{{"n", 42}}));
  EXPECT_FALSE(ends[2].contains("outputs"));  // declares none
  auto starts = of_kind(recs, "step.start");
  ASSERT_EQ(starts.size(), 4u);
  EXPECT_EQ(starts[2]["argv"], (Json{"/bin/echo", "got", "INC-4711", "n=42"}));
  EXPECT_EQ(stdout_of(recs, "use"), "got INC-4711 n=42\n");
  EXPECT_EQ(stdout_of(recs, "script"), "script got INC-4711/42\n");
  auto v = verify(id);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_EQ(v.out, "OK " + id + " " + std::to_string(recs.size()) + " records\n");
}

TEST_F(Outputs, AnOutputThatWouldBeAnOptionStopsTheJob) {
  // The parameter may start with '-', the output may not: what step one printed must
  // not become an option of step three's command.
  auto id = submit("--version");
  ASSERT_EQ(cp_->wait_final(id), "failed");
  auto recs = cp_->records(id);
  auto ends = of_kind(recs, "step.end");
  ASSERT_EQ(ends.size(), 1u);  // nothing ran after the step whose output was refused
  EXPECT_EQ(ends[0]["status"], "exited");
  EXPECT_EQ(ends[0]["exit_code"], 0);
  EXPECT_FALSE(ends[0].contains("outputs"));
  EXPECT_EQ(ends[0]["error"], "output create.ticket starts with '-' (allow_leading_dash is not set)");
  EXPECT_EQ(of_kind(recs, "job.end").at(0)["status"], "failed");
  EXPECT_EQ(verify(id).exit_code, 0);
}

TEST_F(Outputs, AMissingOutputStopsTheJob) {
  // A quote in the id breaks the JSON line: the output is missing, not guessed.
  auto id = submit("INC\"1");
  ASSERT_EQ(cp_->wait_final(id), "failed");
  auto ends = of_kind(cp_->records(id), "step.end");
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_NE(ends[0]["error"].get<std::string>().find("output create.ticket: the last stdout line is not a JSON document"),
            std::string::npos)
      << ends[0].dump();
  EXPECT_EQ(verify(id).exit_code, 0);
}

}  // namespace
}  // namespace delegate::testing
