// The control plane's store on real SQLite files: registration, leasing, record ingest.
#include <gtest/gtest.h>
#include <unistd.h>

#include <delegate/audit/chain.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/controlplane/store.hpp>

#include "store_fixture.hpp"

namespace delegate::controlplane {
namespace {

class StoreTest : public testing::StoreFixture {
 protected:
  AgentRow register_agent(const Ed25519PrivateKey& key, Json tags = Json::array({"prod"})) {
    AgentRow a;
    a.name = "web-01";
    a.hostname = "web-01.example";
    a.tags = std::move(tags);
    a.version = "test";
    a.public_key = base64_encode(key.public_key());
    auto r = store_->register_agent(a, "tokenhash-" + a.public_key, 1000);
    EXPECT_TRUE(r) << r.error().message;
    return *r;
  }

  JobRow leased_job(const AgentRow& agent) {
    NewJob j;
    j.runbook = "host-diagnostics";
    auto id = store_->create_job(j, 1000);
    EXPECT_TRUE(id);
    auto leased = store_->acquire(agent, 1000, 30000);
    EXPECT_TRUE(leased && *leased);
    return **leased;
  }

  static Json batch(const std::vector<audit::Record>& recs) {
    Json a = Json::array();
    for (const auto& r : recs) a.push_back(audit::to_json(r));
    return a;
  }

  FixedClock clock_{TimePoint{} + std::chrono::hours(24 * 365 * 57)};
};

TEST_F(StoreTest, SamePublicKeyRegistersAsTheSameAgentAndReplacesItsToken) {
  auto key = Ed25519PrivateKey::generate();
  ASSERT_TRUE(key);
  auto first = register_agent(*key);
  AgentRow again = first;
  auto second = store_->register_agent(again, "new-hash", 2000);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->id, first.id);
  EXPECT_FALSE(store_->agent_by_token_hash("tokenhash-" + first.public_key).value().has_value());
  EXPECT_TRUE(store_->agent_by_token_hash("new-hash").value().has_value());
  auto other = Ed25519PrivateKey::generate();
  EXPECT_NE(register_agent(*other).id, first.id);
}

TEST_F(StoreTest, AcquireHonoursSelectorTagsAndLeasesOnce) {
  auto key = Ed25519PrivateKey::generate();
  auto prod = register_agent(*key, Json::array({"prod", "eu"}));
  NewJob wants_us;
  wants_us.runbook = "a";
  wants_us.selector_tags = Json::array({"us"});
  NewJob wants_eu;
  wants_eu.runbook = "b";
  wants_eu.selector_tags = Json::array({"eu"});
  ASSERT_TRUE(store_->create_job(wants_us, 1));
  auto eu_id = store_->create_job(wants_eu, 2);
  ASSERT_TRUE(eu_id);
  auto got = store_->acquire(prod, 10, 1000);
  ASSERT_TRUE(got && *got);
  EXPECT_EQ((*got)->id, *eu_id);
  EXPECT_EQ((*got)->status, "running");
  auto none = store_->acquire(prod, 10, 1000);
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->has_value());
}

TEST_F(StoreTest, ExpiredLeaseRequeuesAJobThatSentNothingAndInterruptsOneThatStarted) {
  auto key = Ed25519PrivateKey::generate();
  auto agent = register_agent(*key);
  auto quiet = leased_job(agent);
  auto started = leased_job(agent);
  audit::ChainWriter w(*key, clock_, agent.id, started.id);
  auto rec = w.append(audit::Kind::job_received, Json{{"runbook", "x"}});
  ASSERT_TRUE(rec);
  ASSERT_EQ(store_->ingest(started, key->public_key(), batch({*rec}))->status, IngestResult::Status::ok);
  // Heartbeats renew leases; without them, they expire.
  ASSERT_TRUE(store_->heartbeat(agent.id, {quiet.id}, 20000, 30000));
  EXPECT_EQ(*store_->expire_leases(40000), 0);
  EXPECT_EQ(*store_->expire_leases(60000), 1);
  EXPECT_EQ(store_->job(quiet.id).value()->status, "queued");
  EXPECT_EQ(store_->job(started.id).value()->status, "interrupted");
}

TEST_F(StoreTest, IngestChecksChainSignatureAndIsIdempotentBySeq) {
  auto key = Ed25519PrivateKey::generate();
  auto agent = register_agent(*key);
  auto job = leased_job(agent);
  audit::ChainWriter w(*key, clock_, agent.id, job.id);
  std::vector<audit::Record> recs;
  for (int i = 0; i < 4; ++i) recs.push_back(*w.append(audit::Kind::output, Json{{"step", "s"}, {"stream", "stdout"}, {"b64", ""}}));

  auto r = store_->ingest(job, key->public_key(), batch({recs[0], recs[1]}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, IngestResult::Status::ok);
  EXPECT_EQ(r->acked_seq, 1);
  // Re-sending is harmless.
  r = store_->ingest(job, key->public_key(), batch({recs[0], recs[1]}));
  EXPECT_EQ(r->status, IngestResult::Status::ok);
  EXPECT_EQ(r->acked_seq, 1);
  // A gap asks for the missing seq.
  r = store_->ingest(job, key->public_key(), batch({recs[3]}));
  EXPECT_EQ(r->status, IngestResult::Status::gap);
  EXPECT_EQ(r->expected_seq, 2);
  // A record signed by another key is refused, and nothing of its batch is kept.
  auto evil = Ed25519PrivateKey::generate();
  audit::Record forged = recs[2];
  ASSERT_TRUE(audit::seal(forged, *evil));
  r = store_->ingest(job, key->public_key(), batch({forged}));
  EXPECT_EQ(r->status, IngestResult::Status::invalid);
  // A different record under an already stored seq is refused.
  audit::Record altered = recs[1];
  altered.data["b64"] = "QQ==";
  ASSERT_TRUE(audit::seal(altered, *key));
  r = store_->ingest(job, key->public_key(), batch({altered}));
  EXPECT_EQ(r->status, IngestResult::Status::invalid);
  r = store_->ingest(job, key->public_key(), batch({recs[2], recs[3]}));
  EXPECT_EQ(r->status, IngestResult::Status::ok);
  EXPECT_EQ(r->acked_seq, 3);
  auto stored = store_->records(job.id);
  ASSERT_TRUE(stored);
  ASSERT_EQ(stored->size(), 4u);
  EXPECT_EQ((*stored)[2], audit::serialize(recs[2]));
}

TEST_F(StoreTest, IngestRefusesForeignRecordsBackwardsTimeAndRecordsAfterEnd) {
  auto key = Ed25519PrivateKey::generate();
  auto agent = register_agent(*key);
  auto job = leased_job(agent);
  auto other = leased_job(agent);
  audit::ChainWriter foreign(*key, clock_, agent.id, other.id);
  auto f = foreign.append(audit::Kind::job_received, Json::object());
  EXPECT_EQ(store_->ingest(job, key->public_key(), batch({*f}))->status, IngestResult::Status::invalid);

  FixedClock late(clock_.now() + std::chrono::hours(1));
  audit::ChainWriter w(*key, late, agent.id, job.id);
  auto first = w.append(audit::Kind::job_received, Json::object());
  ASSERT_EQ(store_->ingest(job, key->public_key(), batch({*first}))->status, IngestResult::Status::ok);
  // Re-seal a second record with an earlier timestamp.
  auto second = w.append(audit::Kind::authz_decision, Json{{"decision", "allow"}});
  audit::Record back = *second;
  back.ts = "2020-01-01T00:00:00.000Z";
  ASSERT_TRUE(audit::seal(back, *key));
  EXPECT_EQ(store_->ingest(job, key->public_key(), batch({back}))->status, IngestResult::Status::invalid);
  ASSERT_EQ(store_->ingest(job, key->public_key(), batch({*second}))->status, IngestResult::Status::ok);
  auto end = w.append(audit::Kind::job_end, Json{{"status", "denied"}, {"records", 3}});
  ASSERT_TRUE(end) << end.error().message;
  ASSERT_EQ(store_->ingest(job, key->public_key(), batch({*end}))->status, IngestResult::Status::ok);
  auto after = w.append(audit::Kind::output, Json{{"step", "s"}, {"stream", "stdout"}, {"b64", ""}});
  ASSERT_TRUE(after);
  EXPECT_EQ(store_->ingest(job, key->public_key(), batch({*after}))->status, IngestResult::Status::invalid);
}

TEST_F(StoreTest, StateSurvivesReopening) {
  auto key = Ed25519PrivateKey::generate();
  auto agent = register_agent(*key);
  auto job = leased_job(agent);
  audit::ChainWriter w(*key, clock_, agent.id, job.id);
  auto rec = w.append(audit::Kind::job_received, Json::object());
  ASSERT_EQ(store_->ingest(job, key->public_key(), batch({*rec}))->status, IngestResult::Status::ok);
  store_.reset();
  auto reopened = Store::open(dir_ / "cp.db");
  ASSERT_TRUE(reopened);
  EXPECT_EQ((*reopened)->records(job.id)->size(), 1u);
  EXPECT_EQ((*reopened)->job(job.id).value()->next_seq, 1);
}

TEST_F(StoreTest, CancelFlagsRunningJobsAndCancelsQueuedOnes) {
  auto key = Ed25519PrivateKey::generate();
  auto agent = register_agent(*key);
  auto running = leased_job(agent);
  NewJob q;
  q.runbook = "x";
  q.selector_tags = Json::array({"nowhere"});
  auto queued = store_->create_job(q, 5);
  EXPECT_TRUE(*store_->request_cancel(running.id, 10));
  EXPECT_TRUE(*store_->request_cancel(*queued, 10));
  EXPECT_EQ(store_->job(*queued).value()->status, "cancelled");
  auto cancel = store_->heartbeat(agent.id, {running.id}, 20, 1000);
  ASSERT_TRUE(cancel);
  EXPECT_EQ(*cancel, std::vector<std::string>{running.id});
  EXPECT_FALSE(*store_->request_cancel(*queued, 30));
}

TEST_F(StoreTest, AgentStreamIsStoredPerAgentWithTheSameChecksAsJobs) {
  auto key = Ed25519PrivateKey::generate();
  auto other_key = Ed25519PrivateKey::generate();
  auto a = register_agent(*key);
  auto b = register_agent(*other_key);
  audit::ChainWriter wa(*key, clock_, a.id, "_agent");
  audit::ChainWriter wb(*other_key, clock_, b.id, "_agent");
  auto a0 = wa.append(audit::Kind::agent_start, Json{{"boot_id", std::string(32, 'a')}});
  auto a1 = wa.append(audit::Kind::checkpoint, Json{{"boot_id", std::string(32, 'a')}, {"jobs", Json::array()}});
  auto b0 = wb.append(audit::Kind::agent_start, Json{{"boot_id", std::string(32, 'b')}});
  ASSERT_TRUE(a0 && a1 && b0);
  // Same job id "_agent", different agents: two independent streams.
  auto r = store_->ingest_agent_stream(a.id, key->public_key(), batch({*a0}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, IngestResult::Status::ok);
  r = store_->ingest_agent_stream(b.id, other_key->public_key(), batch({*b0}));
  ASSERT_TRUE(r);
  EXPECT_EQ(r->acked_seq, 0);
  // Idempotent re-send, then the next record; a gap answers the expected seq.
  auto a2 = wa.append(audit::Kind::agent_stop, Json{{"boot_id", std::string(32, 'a')}, {"reason", "shutdown"}});
  ASSERT_TRUE(a2);
  r = store_->ingest_agent_stream(a.id, key->public_key(), batch({*a2}));
  EXPECT_EQ(r->status, IngestResult::Status::gap);
  EXPECT_EQ(r->expected_seq, 1);
  r = store_->ingest_agent_stream(a.id, key->public_key(), batch({*a0, *a1, *a2}));
  EXPECT_EQ(r->status, IngestResult::Status::ok);
  EXPECT_EQ(r->acked_seq, 2);
  EXPECT_EQ(store_->agent_records(a.id)->size(), 3u);
  EXPECT_EQ(store_->agent_records(b.id)->size(), 1u);
  // Another agent's key, another agent's records, or job kinds are refused.
  audit::ChainWriter wb2(*other_key, clock_, b.id, "_agent", 1, b0->hash, b0->ts);
  auto b1 = wb2.append(audit::Kind::checkpoint, Json{{"boot_id", "x"}, {"jobs", Json::array()}});
  EXPECT_EQ(store_->ingest_agent_stream(b.id, key->public_key(), batch({*b1}))->status, IngestResult::Status::invalid);
  EXPECT_EQ(store_->ingest_agent_stream(a.id, key->public_key(), batch({*b1}))->status, IngestResult::Status::invalid);
  audit::ChainWriter wb3(*other_key, clock_, b.id, "_agent", 1, b0->hash, b0->ts);
  auto wrong_kind = wb3.append(audit::Kind::output, Json{{"step", "s"}});
  EXPECT_EQ(store_->ingest_agent_stream(b.id, other_key->public_key(), batch({*wrong_kind}))->status,
            IngestResult::Status::invalid);
  // And agent-stream kinds have no place in a job.
  auto job = leased_job(a);
  audit::ChainWriter wj(*key, clock_, a.id, job.id);
  auto cp = wj.append(audit::Kind::checkpoint, Json{{"jobs", Json::array()}});
  EXPECT_EQ(store_->ingest(job, key->public_key(), batch({*cp}))->status, IngestResult::Status::invalid);
}

TEST_F(StoreTest, RequeuedJobIsLeasedBackOnlyToTheAgentThatStartedItByItsStoredRecords) {
  auto key = Ed25519PrivateKey::generate();
  auto agent = register_agent(*key);
  auto other_key = Ed25519PrivateKey::generate();
  auto other = register_agent(*other_key);
  auto job = leased_job(agent);
  ASSERT_EQ(*store_->expire_leases(60000), 1);
  auto requeued = store_->job(job.id).value();
  ASSERT_EQ(requeued->status, "queued");
  EXPECT_EQ(requeued->requeued_from, agent.id);

  // Another agent's signed records do not make the job its own.
  audit::ChainWriter wo(*other_key, clock_, other.id, job.id);
  auto forged = wo.append(audit::Kind::job_received, Json{{"runbook", "x"}});
  auto r = store_->ingest_requeued(job.id, other.id, other_key->public_key(), batch({*forged}), 70000, 30000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, IngestResult::Status::invalid);
  // Records claiming to be the starting agent's but signed with another key: refused,
  // and nothing changes.
  audit::ChainWriter wbad(*other_key, clock_, agent.id, job.id);
  auto bad = wbad.append(audit::Kind::job_received, Json{{"runbook", "x"}});
  r = store_->ingest_requeued(job.id, agent.id, key->public_key(), batch({*bad}), 70000, 30000);
  EXPECT_EQ(r->status, IngestResult::Status::invalid);
  auto unchanged = store_->job(job.id).value();
  EXPECT_EQ(unchanged->status, "queued");
  EXPECT_EQ(unchanged->agent_id, "");
  EXPECT_EQ(unchanged->next_seq, 0);

  audit::ChainWriter w(*key, clock_, agent.id, job.id);
  auto rec = w.append(audit::Kind::job_received, Json{{"runbook", "x"}});
  r = store_->ingest_requeued(job.id, agent.id, key->public_key(), batch({*rec}), 70000, 30000);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, IngestResult::Status::ok);
  auto now = store_->job(job.id).value();
  EXPECT_EQ(now->status, "running");
  EXPECT_EQ(now->agent_id, agent.id);
  EXPECT_EQ(now->lease_expires_ms, 100000);
  EXPECT_EQ(now->next_seq, 1);
}

TEST_F(StoreTest, CompleteOnlyMovesARunningJobOfItsAgent) {
  auto key = Ed25519PrivateKey::generate();
  auto agent = register_agent(*key);
  auto other_key = Ed25519PrivateKey::generate();
  auto other = register_agent(*other_key);
  auto job = leased_job(agent);
  EXPECT_FALSE(*store_->complete(job.id, other.id, "succeeded", 2000));
  EXPECT_TRUE(*store_->complete(job.id, agent.id, "failed", 2000));
  EXPECT_FALSE(*store_->complete(job.id, agent.id, "succeeded", 3000));
  EXPECT_EQ(store_->job(job.id).value()->status, "failed");
}

TEST_F(StoreTest, RestartGraceExtendsRunningLeases) {
  auto key = Ed25519PrivateKey::generate();
  auto agent = register_agent(*key);
  auto job = leased_job(agent);  // lease until 31000
  ASSERT_TRUE(store_->extend_running_leases(100000));
  EXPECT_EQ(*store_->expire_leases(90000), 0);
  EXPECT_EQ(store_->job(job.id).value()->status, "running");
}

}  // namespace
}  // namespace delegate::controlplane
