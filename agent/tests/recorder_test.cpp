// JobRecorder's queued output records and Spool::enqueue under them: records of one
// stream share group commits yet are durable in order, nothing is readable before it is
// durable, every other record waits for the output before it, and output that cannot be
// spooled stops the recorder within kQueuedOutput records.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include <delegate/agent/recorder.hpp>
#include <delegate/agent/spool.hpp>
#include <delegate/audit/record.hpp>
#include <delegate/common/encoding.hpp>

namespace delegate::agent {
namespace {

namespace fs = std::filesystem;

struct Tmp {
  Tmp() {
    std::string t = (fs::temp_directory_path() / "recorder-test-XXXXXX").string();
    if (!::mkdtemp(t.data())) throw std::runtime_error("mkdtemp");
    path = t;
  }
  ~Tmp() {
    std::error_code ec;
    fs::remove_all(path, ec);
  }
  fs::path path;
};

Ed25519PrivateKey test_key() {
  auto k = Ed25519PrivateKey::from_seed(std::vector<std::uint8_t>(32, 9));
  if (!k) throw std::runtime_error("key");
  return std::move(*k);
}

SpoolOptions options(const fs::path& dir) {
  SpoolOptions o;
  o.dir = dir / "spool";
  o.key.bytes.fill(3);
  // A long window: the writer waits for company, so queued records really share batches.
  o.commit_window = std::chrono::milliseconds(20);
  return o;
}

Json output(int i) {
  return Json{{"step", "s"}, {"stream", "stdout"}, {"b64", base64_encode(as_bytes("line " + std::to_string(i) + "\n"))}};
}

// The spool as the daemon's sink (Uploader without the network side).
class SpoolSink final : public RecordSink {
 public:
  explicit SpoolSink(Spool& s) : spool_(s) {}
  Result<void> append(const audit::Record& r) override { return spool_.append(r); }
  Result<Durable> append_queued(const audit::Record& r) override {
    auto q = spool_.enqueue(r);
    if (!q) return std::unexpected(q.error());
    return Durable([q = std::move(*q)]() mutable { return q.wait(); });
  }

 private:
  Spool& spool_;
};

// Accepts queued appends whose durability then fails (a spool closing under the job).
class FailingQueueSink final : public RecordSink {
 public:
  Result<void> append(const audit::Record& r) override {
    appended.push_back(std::string(audit::to_string(r.kind)));
    return {};
  }
  Result<Durable> append_queued(const audit::Record& r) override {
    queued.push_back(r.seq);
    return Durable([] { return Result<void>(fail(Errc::unavailable, "spool is closed")); });
  }
  std::vector<std::string> appended;
  std::vector<std::uint64_t> queued;
};

TEST(SpoolEnqueue, QueuedRecordsOfOneStreamShareCommitsAndLandInOrder) {
  Tmp tmp;
  auto key = test_key();
  FixedClock clock(std::chrono::system_clock::now());
  auto spool = Spool::open(options(tmp.path));
  ASSERT_TRUE(spool) << spool.error().message;
  audit::ChainWriter w(key, clock, "agt_1", "job_q");
  std::vector<Spool::Queued> queued;
  std::vector<std::string> hashes;
  for (int i = 0; i < 40; ++i) {
    auto r = w.append(audit::Kind::output, output(i));
    ASSERT_TRUE(r);
    hashes.push_back(r->hash);
    auto q = (*spool)->enqueue(*r);
    ASSERT_TRUE(q) << q.error().message;
    queued.push_back(std::move(*q));
  }
  for (auto& q : queued) ASSERT_TRUE(q.wait());
  // Fewer commits than records: one producer's records were grouped.
  EXPECT_LT((*spool)->stats().commits, 40u);
  EXPECT_EQ((*spool)->stats().records, 40u);
  auto read = (*spool)->read(StreamKey{"agt_1", "job_q"}, 0, 100, 1u << 20);
  ASSERT_TRUE(read);
  ASSERT_EQ(read->size(), 40u);
  for (std::size_t i = 0; i < read->size(); ++i) {
    auto rec = audit::parse_record((*read)[i]);
    ASSERT_TRUE(rec);
    EXPECT_EQ(rec->seq, i);
    EXPECT_EQ(rec->hash, hashes[i]);
  }
}

TEST(SpoolEnqueue, NothingQueuedIsReadableBeforeItsCommitAndCloseFailsTheRest) {
  Tmp tmp;
  auto key = test_key();
  FixedClock clock(std::chrono::system_clock::now());
  auto opt = options(tmp.path);
  opt.commit_window = std::chrono::hours(1);  // the writer waits for 512 records or close()
  auto spool = Spool::open(std::move(opt));
  ASSERT_TRUE(spool);
  audit::ChainWriter w(key, clock, "agt_1", "job_c");
  std::vector<Spool::Queued> queued;
  for (int i = 0; i < 5; ++i) {
    auto r = w.append(audit::Kind::output, output(i));
    ASSERT_TRUE(r);
    auto q = (*spool)->enqueue(*r);
    ASSERT_TRUE(q);
    queued.push_back(std::move(*q));
  }
  // Queued, not committed: invisible to the uploader and to the stream tails.
  auto read = (*spool)->read(StreamKey{"agt_1", "job_c"}, 0, 100, 1u << 20);
  ASSERT_TRUE(read);
  EXPECT_TRUE(read->empty());
  EXPECT_FALSE((*spool)->stream(StreamKey{"agt_1", "job_c"}).has_value());
  (*spool)->close();
  // close() drains what was queued (as for append): either all durable or all failed,
  // never a later record durable after an earlier one failed.
  bool failed_before = false;
  for (auto& q : queued) {
    auto r = q.wait();
    EXPECT_FALSE(failed_before && r.has_value());
    failed_before = failed_before || !r;
  }
}

TEST(JobRecorder, OutputSharesCommitsAndEveryOtherRecordWaitsForIt) {
  Tmp tmp;
  auto key = test_key();
  FixedClock clock(std::chrono::system_clock::now());
  auto spool = Spool::open(options(tmp.path));
  ASSERT_TRUE(spool);
  SpoolSink sink(**spool);
  {
    JobRecorder rec(key, clock, "agt_1", "job_r", sink);
    for (int i = 0; i < 100; ++i) ASSERT_TRUE(rec.add(audit::Kind::output, output(i)));
    ASSERT_TRUE(rec.add(audit::Kind::step_end, Json{{"step", "s"}, {"index", 0}, {"status", "exited"}}));
    // step.end returned: it and every output record before it are durable.
    auto tail = (*spool)->stream(StreamKey{"agt_1", "job_r"});
    ASSERT_TRUE(tail);
    EXPECT_EQ(tail->next_seq, 101u);
    EXPECT_EQ(tail->last_hash, rec.last_hash());
  }
  EXPECT_LT((*spool)->stats().commits, 101u);
}

TEST(JobRecorder, UnspooledOutputStopsTheRecorderWithinTheQueueBound) {
  auto key = test_key();
  FixedClock clock(std::chrono::system_clock::now());
  FailingQueueSink sink;
  JobRecorder rec(key, clock, "agt_1", "job_f", sink);
  std::size_t accepted = 0;
  while (rec.add(audit::Kind::output, output(static_cast<int>(accepted)))) {
    ++accepted;
    ASSERT_LE(accepted, JobRecorder::kQueuedOutput + 1);
  }
  EXPECT_FALSE(rec.ok());
  EXPECT_NE(rec.failure().find("spool is closed"), std::string::npos);
  // Nothing after the failure reaches the sink: the chain would have a hole.
  const std::size_t queued = sink.queued.size();
  EXPECT_FALSE(rec.add(audit::Kind::step_end, Json{{"step", "s"}}));
  EXPECT_FALSE(rec.add(audit::Kind::output, output(0)));
  EXPECT_EQ(sink.queued.size(), queued);
  EXPECT_TRUE(sink.appended.empty());
}

TEST(JobRecorder, ANonOutputRecordAfterFailedOutputIsNeverAppended) {
  auto key = test_key();
  FixedClock clock(std::chrono::system_clock::now());
  FailingQueueSink sink;
  JobRecorder rec(key, clock, "agt_1", "job_g", sink);
  // Queued: the failure is not known yet.
  EXPECT_TRUE(rec.add(audit::Kind::output, output(0)));
  // step.end waits for it first, learns of the failure and is not appended.
  EXPECT_FALSE(rec.add(audit::Kind::step_end, Json{{"step", "s"}}));
  EXPECT_TRUE(sink.appended.empty());
  EXPECT_FALSE(rec.ok());
}

}  // namespace
}  // namespace delegate::agent
