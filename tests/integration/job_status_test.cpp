// Job status follows the signed log: completion and lease-back against the real control
// plane over TLS 1.3, driven by scripted agents with their own identity keys.
#include <gtest/gtest.h>

#include "harness.hpp"
#include "sim_agent.hpp"

namespace delegate::testing {
namespace {

using audit::Kind;

class JobStatus : public ::testing::Test {
 protected:
  JobStatus() : JobStatus(0) {}
  explicit JobStatus(int lease_s) : cp(tmp.path / "cp", lease_s) {}
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- control plane log ----\n" << cp.process().log_text();
  }
  std::string status(const std::string& job) { return Json::parse(cp.admin_get("/v1/jobs/" + job).body)["status"]; }
  Json job_view(const std::string& job) { return Json::parse(cp.admin_get("/v1/jobs/" + job).body); }
  // A job queued and leased to `agent`.
  std::string leased(SimAgent& agent) {
    auto id = cp.submit(Json{{"runbook", "host-diagnostics"}});
    auto r = agent.acquire();
    EXPECT_EQ(r.status, 200) << r.body;
    return id;
  }

  TempDir tmp;
  ControlPlane cp;
};

const Json kReceived{{"runbook", "host-diagnostics"}};

TEST_F(JobStatus, CompletionNeedsALogEndingInJobEnd) {
  SimAgent agent(cp, "a");
  ASSERT_EQ(agent.enroll().status, 201);
  const auto job = leased(agent);
  auto w = agent.writer(job);
  // No records at all.
  auto r = agent.complete(job, "succeeded", w);
  EXPECT_EQ(r.status, 409) << r.body;
  // Records, but no job.end.
  ASSERT_EQ(agent.post_records(job, agent.records(w, {{Kind::job_received, kReceived}})).status, 200);
  r = agent.complete(job, "succeeded", w);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(status(job), "running");
}

TEST_F(JobStatus, FinalStatusIsTheOneItsJobEndStatesAndCompletionIsIdempotent) {
  SimAgent agent(cp, "a");
  ASSERT_EQ(agent.enroll().status, 201);
  const auto job = leased(agent);
  auto w = agent.writer(job);
  ASSERT_EQ(agent.post_records(job, agent.records(w, {{Kind::job_received, kReceived},
                                                      {Kind::job_end, Json{{"status", "failed"}, {"records", 2}}}}))
                .status,
            200);
  auto r = agent.complete(job, "succeeded", w);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(status(job), "running");
  r = agent.complete(job, "failed", w);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(status(job), "failed");
  const auto updated = job_view(job)["updated_ms"];
  // The same completion again: acknowledged, no second transition.
  r = agent.complete(job, "failed", w);
  EXPECT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(job_view(job)["updated_ms"], updated);
  // A different one: refused, the status stays.
  r = agent.complete(job, "succeeded", w);
  EXPECT_EQ(r.status, 409) << r.body;
  EXPECT_EQ(status(job), "failed");
}

TEST_F(JobStatus, OnlyTheAgentHoldingTheJobCompletesIt) {
  SimAgent holder(cp, "holder");
  SimAgent other(cp, "other");
  ASSERT_EQ(holder.enroll().status, 201);
  ASSERT_EQ(other.enroll().status, 201);
  const auto job = leased(holder);
  auto w = holder.writer(job);
  ASSERT_EQ(holder.post_records(job, holder.records(w, {{Kind::job_received, kReceived},
                                                        {Kind::job_end, Json{{"status", "succeeded"}, {"records", 2}}}}))
                .status,
            200);
  auto r = other.complete(job, "succeeded", w);
  EXPECT_EQ(r.status, 404) << r.body;
  EXPECT_EQ(status(job), "running");
}

// A job whose lease ran out before anything was logged goes back to the queue,
// remembering whose lease that was. One-second leases, so that happens soon.
class Requeued : public JobStatus {
 protected:
  Requeued() : JobStatus(1) {}
  std::string requeued_job(SimAgent& starter) {
    const auto job = leased(starter);
    EXPECT_TRUE(eventually([&] { return status(job) == "queued"; })) << status(job);
    return job;
  }
};

TEST_F(Requeued, AnotherAgentsSignedRecordsDoNotTakeItOver) {
  SimAgent starter(cp, "starter");
  SimAgent thief(cp, "thief");
  ASSERT_EQ(starter.enroll().status, 201);
  ASSERT_EQ(thief.enroll().status, 201);
  const auto job = requeued_job(starter);
  auto wt = thief.writer(job);
  auto r = thief.post_records(job, thief.records(wt, {{Kind::job_received, kReceived}}));
  EXPECT_EQ(r.status, 404) << r.body;
  auto view = job_view(job);
  EXPECT_EQ(view["status"], "queued");
  EXPECT_EQ(view["agent_id"], "");
  EXPECT_EQ(view["records"], 0);
  // The starter's own records take it back.
  auto ws = starter.writer(job);
  r = starter.post_records(job, starter.records(ws, {{Kind::job_received, kReceived}}));
  ASSERT_EQ(r.status, 200) << r.body;
  view = job_view(job);
  EXPECT_EQ(view["status"], "running");
  EXPECT_EQ(view["agent_id"], starter.id);
}

// End to end through the lease sweep: the starter's late records take its job back,
// nobody else is handed it from then on, and the starter's signed job.end decides.
TEST_F(Requeued, LateRecordsOfItsStarterFinishItAndNoOneElseRunsIt) {
  SimAgent starter(cp, "starter");
  SimAgent other(cp, "other");
  ASSERT_EQ(starter.enroll().status, 201);
  ASSERT_EQ(other.enroll().status, 201);
  const auto job = requeued_job(starter);
  auto w = starter.writer(job);
  ASSERT_EQ(starter.post_records(job, starter.records(w, {{Kind::job_received, kReceived}})).status, 200);
  EXPECT_EQ(status(job), "running");
  // Leased back, not queued: another agent polling now gets nothing.
  EXPECT_EQ(other.acquire().status, 204);
  ASSERT_EQ(starter.post_records(job, starter.records(w, {{Kind::job_end, Json{{"status", "succeeded"}, {"records", 2}}}}))
                .status,
            200);
  ASSERT_EQ(starter.complete(job, "succeeded", w).status, 200);
  EXPECT_EQ(status(job), "succeeded");
  EXPECT_EQ(job_view(job)["records"], 2);
  EXPECT_EQ(other.acquire().status, 204);
}

TEST_F(Requeued, ARefusedBatchChangesNothing) {
  SimAgent starter(cp, "starter");
  SimAgent other(cp, "other");
  ASSERT_EQ(starter.enroll().status, 201);
  ASSERT_EQ(other.enroll().status, 201);
  const auto job = requeued_job(starter);
  // Records under the starter's id but signed with another key, and a malformed body.
  SystemClock clock;
  audit::ChainWriter forged(other.key(), clock, starter.id, job);
  auto r = starter.post_records(job, starter.records(forged, {{Kind::job_received, kReceived}}));
  EXPECT_EQ(r.status, 422) << r.body;
  r = starter.post("/v1/jobs/" + job + "/records", Json{{"records", "nope"}}, starter.token);
  EXPECT_EQ(r.status, 400) << r.body;
  auto view = job_view(job);
  EXPECT_EQ(view["status"], "queued");
  EXPECT_EQ(view["agent_id"], "");
  EXPECT_EQ(view["records"], 0);
}

}  // namespace
}  // namespace delegate::testing
