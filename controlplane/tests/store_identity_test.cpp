// The store's identity state on real SQLite files: enrollment tokens, enrolment,
// revocation of agents, and databases created before these existed.
#include <gtest/gtest.h>
#include <sqlite3.h>
#include <unistd.h>

#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/controlplane/store.hpp>

#include "store_fixture.hpp"

namespace delegate::controlplane {
namespace {

class StoreIdentity : public testing::StoreFixture {
 protected:
  static AgentRow proposal(const std::string& name, Json tags = Json::array({"prod"})) {
    auto key = Ed25519PrivateKey::generate();
    AgentRow a;
    a.name = name;
    a.hostname = name + ".example";
    a.tags = std::move(tags);
    a.version = "test";
    a.public_key = base64_encode(key->public_key());
    return a;
  }

  Enrolment enroll(const AgentRow& a, const std::string& secret_hash, std::int64_t now) {
    auto r = store_->enroll_agent(a, secret_hash, "agent-token-" + std::to_string(now) + a.name, now);
    EXPECT_TRUE(r) << r.error().message;
    return *r;
  }

};

TEST_F(StoreIdentity, UnknownAndRevokedTokensAdmitNobodyAndChangeNothing) {
  auto a = proposal("a");
  EXPECT_EQ(enroll(a, "no-such-hash", 1000).status, Enrolment::Status::token_refused);
  ASSERT_TRUE(store_->seed_enrollment_token("enr_default", "h-default", 1000));
  ASSERT_TRUE(store_->revoke_enrollment_token("enr_default", 2000).value());
  auto refused = enroll(a, "h-default", 3000);
  EXPECT_EQ(refused.status, Enrolment::Status::token_refused);
  EXPECT_EQ(refused.reason, "enrollment token revoked");
  EXPECT_TRUE(store_->agents()->empty());
  // Seeding again (a restart) updates the secret but keeps the revocation.
  ASSERT_TRUE(store_->seed_enrollment_token("enr_default", "h-rotated", 4000));
  EXPECT_NE(store_->enrollment_token("enr_default").value()->revoked_ms, 0);
  EXPECT_EQ(enroll(a, "h-rotated", 5000).status, Enrolment::Status::token_refused);
  EXPECT_FALSE(store_->revoke_enrollment_token("enr_nope", 6000).value());
}

TEST_F(StoreIdentity, OneTimeAndExpiringTokensLimitNewKeysOnly) {
  EnrollmentToken once;
  once.one_time = true;
  once.tags = Json::array({"db"});
  auto t1 = store_->create_enrollment_token(once, "h-once", 1000);
  ASSERT_TRUE(t1);
  EnrollmentToken expiring;
  expiring.expires_ms = 5000;
  ASSERT_TRUE(store_->create_enrollment_token(expiring, "h-exp", 1000));

  auto a = proposal("a");
  auto first = enroll(a, "h-once", 2000);
  ASSERT_EQ(first.status, Enrolment::Status::registered);
  EXPECT_TRUE(first.created);
  EXPECT_EQ(first.agent.tags, Json::array({"db"}));  // the token's, not the proposal's
  EXPECT_EQ(first.agent.enrollment_token, t1->id);
  auto b = proposal("b");
  auto second = enroll(b, "h-once", 2100);
  EXPECT_EQ(second.status, Enrolment::Status::token_refused);
  EXPECT_EQ(second.reason, "enrollment token already used");
  auto back = enroll(a, "h-once", 2200);  // the admitted key re-registers
  ASSERT_EQ(back.status, Enrolment::Status::registered);
  EXPECT_FALSE(back.created);
  EXPECT_EQ(back.agent.id, first.agent.id);
  EXPECT_EQ(store_->enrollment_token(t1->id).value()->uses, 1);

  EXPECT_EQ(enroll(b, "h-exp", 4999).status, Enrolment::Status::registered);
  auto c = proposal("c");
  auto late = enroll(c, "h-exp", 5000);
  EXPECT_EQ(late.status, Enrolment::Status::token_refused);
  EXPECT_EQ(late.reason, "enrollment token expired");
  EXPECT_EQ(enroll(b, "h-exp", 9000).status, Enrolment::Status::registered);
  EXPECT_EQ(store_->agents()->size(), 2u);
}

TEST_F(StoreIdentity, KnownKeyKeepsNameHostnameAndTags) {
  ASSERT_TRUE(store_->seed_enrollment_token("enr_default", "h", 1000));
  auto a = proposal("a", Json::array({"prod"}));
  auto first = enroll(a, "h", 2000);
  ASSERT_EQ(first.status, Enrolment::Status::registered);
  a.name = "evil";
  a.hostname = "evil";
  a.tags = Json::array({"prod", "payments"});
  a.version = "2";
  auto again = enroll(a, "h", 3000);
  ASSERT_EQ(again.status, Enrolment::Status::registered);
  auto stored = store_->agent(first.agent.id).value();
  ASSERT_TRUE(stored);
  EXPECT_EQ(stored->name, "a");
  EXPECT_EQ(stored->hostname, "a.example");
  EXPECT_EQ(stored->tags, Json::array({"prod"}));
  EXPECT_EQ(stored->version, "2");
}

TEST_F(StoreIdentity, AdminUpdateChangesOnlyTheGivenFields) {
  ASSERT_TRUE(store_->seed_enrollment_token("enr_default", "h", 1000));
  auto agent = enroll(proposal("a"), "h", 2000).agent;
  Store::AgentChange change;
  change.tags = Json::array({"db"});
  ASSERT_TRUE(store_->update_agent(agent.id, change).value());
  auto stored = store_->agent(agent.id).value();
  EXPECT_EQ(stored->name, "a");
  EXPECT_EQ(stored->hostname, "a.example");
  EXPECT_EQ(stored->tags, Json::array({"db"}));
  EXPECT_FALSE(store_->update_agent("agt_nope", change).value());
}

TEST_F(StoreIdentity, RevokedAgentCannotEnrollAgainAndItsRunningJobsAreInterrupted) {
  ASSERT_TRUE(store_->seed_enrollment_token("enr_default", "h", 1000));
  auto a = proposal("a");
  auto agent = enroll(a, "h", 2000).agent;
  NewJob j;
  j.runbook = "x";
  auto running = store_->create_job(j, 2000);
  ASSERT_TRUE(running && store_->acquire(agent, 2000, 30000).value());
  auto queued = store_->create_job(j, 2100);
  ASSERT_TRUE(queued);
  auto interrupted = store_->revoke_agent(agent.id, 3000);
  ASSERT_TRUE(interrupted && *interrupted);
  EXPECT_EQ(**interrupted, std::vector<std::string>{*running});
  EXPECT_EQ(store_->job(*running).value()->status, "interrupted");
  EXPECT_EQ(store_->job(*queued).value()->status, "queued");
  EXPECT_EQ(store_->agent(agent.id).value()->revoked_ms, 3000);
  EXPECT_EQ(enroll(a, "h", 4000).status, Enrolment::Status::agent_revoked);
  EXPECT_FALSE(store_->revoke_agent("agt_nope", 5000).value().has_value());
}

TEST_F(StoreIdentity, DatabaseFromBeforeTheIdentityColumnsOpens) {
  store_.reset();
  std::filesystem::remove(dir_ / "cp.db");
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open((dir_ / "cp.db").c_str(), &db), SQLITE_OK);
  const char* old_schema =
      "CREATE TABLE agents (id TEXT PRIMARY KEY, name TEXT NOT NULL, hostname TEXT NOT NULL, tags TEXT NOT NULL, "
      "version TEXT NOT NULL, public_key TEXT NOT NULL UNIQUE, token_hash TEXT NOT NULL, created_ms INTEGER NOT NULL, "
      "last_seen_ms INTEGER NOT NULL);"
      "INSERT INTO agents VALUES ('agt_old','old','old.example','[\"prod\"]','0.1','key','hash',1,1);";
  ASSERT_EQ(sqlite3_exec(db, old_schema, nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(db);
  auto s = Store::open(dir_ / "cp.db");
  ASSERT_TRUE(s) << s.error().message;
  auto old = (*s)->agent("agt_old");
  ASSERT_TRUE(old && *old);
  EXPECT_EQ((*old)->revoked_ms, 0);
  EXPECT_EQ((*old)->tags, Json::array({"prod"}));
}

}  // namespace
}  // namespace delegate::controlplane
