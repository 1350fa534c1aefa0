// Group commit on a real SQLite file: an answer waits for the commit of what its request
// wrote, several requests share one commit, and a refused request inside a batch undoes
// only its own writes.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <delegate/audit/chain.hpp>
#include <delegate/common/encoding.hpp>

#include "../src/group_commit.hpp"
#include "store_fixture.hpp"

namespace delegate::controlplane {
namespace {
namespace asio = boost::asio;

class GroupCommitTest : public testing::StoreFixture {
 protected:
  // What another process would see: a second connection reads only committed data.
  std::int64_t committed_jobs() {
    sqlite3* db = nullptr;
    EXPECT_EQ(sqlite3_open_v2((dir_ / "cp.db").c_str(), &db, SQLITE_OPEN_READONLY, nullptr), SQLITE_OK);
    sqlite3_stmt* s = nullptr;
    std::int64_t n = -1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM jobs", -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
      n = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    sqlite3_close(db);
    return n;
  }
  std::string new_job() {
    NewJob j;
    j.runbook = "host-diagnostics";
    auto id = store_->create_job(j, 1000);
    EXPECT_TRUE(id) << id.error().message;
    return id ? *id : std::string();
  }
  AgentRow agent(const Ed25519PrivateKey& key) {
    AgentRow a;
    a.name = a.hostname = a.version = "t";
    a.tags = Json::array();
    a.public_key = base64_encode(key.public_key());
    auto r = store_->register_agent(a, "hash-" + a.public_key, 1000);
    EXPECT_TRUE(r);
    return *r;
  }

  asio::io_context ioc_;
};

TEST_F(GroupCommitTest, AnAnswerWaitsUntilWhatItsRequestWroteIsCommitted) {
  GroupCommit gc(ioc_, *store_);
  GroupCommit::Ticket ticket;
  gc.join(ticket);
  new_job();
  EXPECT_EQ(committed_jobs(), 0);  // written, not committed: no answer may go out yet
  std::optional<std::int64_t> seen_when_answered;
  asio::co_spawn(ioc_, [&]() -> asio::awaitable<void> {
    const bool ok = co_await gc.durable(ticket);
    EXPECT_TRUE(ok);
    seen_when_answered = committed_jobs();
  }, asio::detached);
  ioc_.run();
  ASSERT_TRUE(seen_when_answered);
  EXPECT_EQ(*seen_when_answered, 1);
  EXPECT_EQ(gc.commits(), 1u);
}

TEST_F(GroupCommitTest, RequestsHandledWhileABatchIsOpenShareItsOneCommit) {
  GroupCommit gc(ioc_, *store_);
  GroupCommit::Ticket a, b, c;
  int answered = 0;
  auto answer = [&](GroupCommit::Ticket& t) -> asio::awaitable<void> {
    const bool ok = co_await gc.durable(t);
    EXPECT_TRUE(ok);
    EXPECT_EQ(committed_jobs(), 3);
    ++answered;
  };
  gc.join(a);
  new_job();
  asio::co_spawn(ioc_, answer(a), asio::detached);
  // Arrives on the I/O thread while the first request waits for its commit.
  asio::post(ioc_, [&] {
    gc.join(b);
    new_job();
    asio::co_spawn(ioc_, answer(b), asio::detached);
    asio::post(ioc_, [&] {
      gc.join(c);
      new_job();
      asio::co_spawn(ioc_, answer(c), asio::detached);
    });
  });
  ioc_.run();
  EXPECT_EQ(answered, 3);
  EXPECT_EQ(gc.commits(), 1u);
}

TEST_F(GroupCommitTest, ARequestThatJoinsALaterBatchWaitsForThatOneToo) {
  GroupCommit gc(ioc_, *store_);
  GroupCommit::Ticket poll;
  gc.join(poll);  // a long poll arrives, writes nothing, parks
  bool answered = false;
  asio::co_spawn(ioc_, [&]() -> asio::awaitable<void> {
    // Parked past the first batch's commit, then woken: it leases in a new batch.
    while (gc.commits() < 1) co_await asio::post(ioc_, asio::use_awaitable);
    gc.join(poll);
    new_job();
    const bool ok = co_await gc.durable(poll);
    EXPECT_TRUE(ok);
    EXPECT_EQ(committed_jobs(), 1);
    answered = true;
  }, asio::detached);
  ioc_.run();
  EXPECT_TRUE(answered);
  EXPECT_EQ(gc.commits(), 2u);
}

TEST_F(GroupCommitTest, ARefusedRequestInABatchUndoesOnlyItsOwnWrites) {
  auto key = Ed25519PrivateKey::generate();
  auto a = agent(*key);
  new_job();
  new_job();
  auto j1 = store_->acquire(a, 1000, 30000);
  auto j2 = store_->acquire(a, 1000, 30000);
  ASSERT_TRUE(j1 && *j1 && j2 && *j2);
  FixedClock clock(TimePoint{} + std::chrono::hours(24 * 365 * 57));
  auto records = [&](const JobRow& job, bool forge_second) {
    audit::ChainWriter w(*key, clock, a.id, job.id);
    Json batch = Json::array();
    for (int i = 0; i < 2; ++i) {
      auto r = w.append(audit::Kind::output, Json{{"step", "s"}, {"stream", "stdout"}, {"b64", ""}});
      EXPECT_TRUE(r);
      if (forge_second && i == 1) r->data["b64"] = "QQ==";  // no longer matches its signature
      batch.push_back(audit::to_json(*r));
    }
    return batch;
  };

  GroupCommit gc(ioc_, *store_);
  GroupCommit::Ticket good, bad;
  gc.join(good);
  auto ok = store_->ingest(**j1, key->public_key(), records(**j1, false));
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->status, IngestResult::Status::ok);
  gc.join(bad);
  // Its first record is valid and was inserted before the second was found forged.
  auto refused = store_->ingest(**j2, key->public_key(), records(**j2, true));
  ASSERT_TRUE(refused) << refused.error().message;
  EXPECT_EQ(refused->status, IngestResult::Status::invalid);
  bool committed = false;
  asio::co_spawn(ioc_, [&]() -> asio::awaitable<void> {
    const bool first = co_await gc.durable(good);
    const bool second = co_await gc.durable(bad);
    committed = first && second;
  }, asio::detached);
  ioc_.run();
  EXPECT_TRUE(committed);
  EXPECT_EQ(store_->records((*j1)->id)->size(), 2u);
  EXPECT_TRUE(store_->records((*j2)->id)->empty());
  EXPECT_EQ((*store_->job((*j2)->id))->next_seq, 0);
}

}  // namespace
}  // namespace delegate::controlplane
