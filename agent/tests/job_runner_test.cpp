// run_job fails closed on its own audit trail: a record that cannot be spooled, or whose
// data cannot be represented faithfully, stops the job before anything else runs.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <delegate/agent/job_runner.hpp>
#include <delegate/audit/record.hpp>
#include <delegate/policies/api_keys.hpp>
#include <delegate/policies/job.hpp>
#include <delegate/policies/runbook.hpp>

#include "runner_fixture.hpp"

namespace delegate::agent {
namespace {

namespace fs = std::filesystem;

// Records every append it is offered; refuses from the `fail_at`-th one on (0-based).
class ScriptedSink final : public RecordSink {
 public:
  explicit ScriptedSink(std::size_t fail_at) : fail_at_(fail_at) {}
  Result<void> append(const audit::Record& record) override {
    attempted.push_back(std::string(audit::to_string(record.kind)));
    if (attempted.size() > fail_at_) return fail(Errc::io, "spool closed");
    accepted.push_back(record);
    return {};
  }
  std::vector<std::string> attempted;
  std::vector<audit::Record> accepted;

 private:
  std::size_t fail_at_;
};

class JobRunnerTest : public testing::RunnerFixture {
 protected:
  void SetUp() override {
    RunnerFixture::SetUp();
    // The step writes a marker into a directory it is granted: proof that it ran.
    marker_dir_ = work_ / "out";
    fs::create_directories(marker_dir_);
    fs::permissions(marker_dir_, fs::perms::all);
    auto rb = policies::parse_runbook(
        "name: touch\n"
        "authorize: {scopes: [runbooks:execute]}\n"
        "params:\n  n: {type: integer}\n"
        "steps:\n"
        "  - name: touch\n"
        "    uses: command\n"
        "    with: {argv: [/usr/bin/touch, " +
        (marker_dir_ / "ran").string() + "]}\n    sandbox: {rw: [" + marker_dir_.string() + "]}\n");
    ASSERT_TRUE(rb) << rb.error().message;
    catalog_.add(std::move(*rb));
  }

  Json job_json(const Json& params) const { return RunnerFixture::job_json("touch", params); }
  bool step_ran() const { return fs::exists(marker_dir_ / "ran"); }

  fs::path marker_dir_;
};

TEST_F(JobRunnerTest, PositiveControlTheStepRunsWhenEveryRecordIsSpooled) {
  ScriptedSink sink(1000);
  auto r = run(job_json(Json::object()), sink);
  EXPECT_EQ(r.status, "succeeded");
  EXPECT_TRUE(step_ran());
  EXPECT_EQ(sink.attempted.front(), "job.received");
  EXPECT_EQ(sink.attempted.back(), "job.end");
}

TEST_F(JobRunnerTest, UnspooledArrivalStopsTheJobBeforeAuthorisation) {
  ScriptedSink sink(0);
  auto r = run(job_json(Json::object()), sink);
  EXPECT_EQ(r.status, "failed");
  EXPECT_FALSE(step_ran());
  // Nothing after the failed record is even attempted: the chain would have a hole.
  EXPECT_EQ(sink.attempted, (std::vector<std::string>{"job.received"}));
}

TEST_F(JobRunnerTest, UnspooledStepStartNeverRunsTheStep) {
  ScriptedSink sink(2);  // job.received, authz.decision accepted; step.start refused
  auto r = run(job_json(Json::object()), sink);
  EXPECT_EQ(r.status, "failed");
  EXPECT_FALSE(step_ran());
  EXPECT_EQ(sink.attempted, (std::vector<std::string>{"job.received", "authz.decision", "step.start"}));
}

TEST_F(JobRunnerTest, UnrepresentableParamsAreRecordedAsSuchAndNothingRuns) {
  ScriptedSink sink(1000);
  // Beyond 2^53: RFC 8785 cannot represent it, so job.received carries a placeholder.
  Json params{{"n", 9007199254740993ull}};
  auto r = run(job_json(params), sink);
  EXPECT_EQ(r.status, "failed");
  EXPECT_FALSE(step_ran());
  ASSERT_EQ(sink.accepted.size(), 2u);
  EXPECT_EQ(sink.accepted[0].data["unrepresentable"], true);
  // No authorisation decision was taken (no jti consumed) for a job whose arrival is
  // not faithfully on record; job.end says why it stopped.
  EXPECT_EQ(sink.attempted, (std::vector<std::string>{"job.received", "job.end"}));
  EXPECT_EQ(sink.accepted[1].data["status"], "failed");
  EXPECT_NE(sink.accepted[1].data["error"].get<std::string>().find("unrepresentable"), std::string::npos);
}

}  // namespace
}  // namespace delegate::agent
