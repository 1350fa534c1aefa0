// The encrypted spool: durability, recovery, authentication, key handling, acks and
// quota back-pressure. No sleep decides an outcome: blocking is observed through the
// spool's own counters and threads are joined.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include <delegate/agent/agent_stream.hpp>
#include <delegate/agent/spool.hpp>
#include <delegate/audit/chain.hpp>
#include <delegate/common/encoding.hpp>

namespace delegate::agent {
namespace {

namespace fs = std::filesystem;

struct Tmp {
  Tmp() {
    std::string t = (fs::temp_directory_path() / "spool-test-XXXXXX").string();
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
  auto k = Ed25519PrivateKey::from_seed(std::vector<std::uint8_t>(32, 7));
  if (!k) throw std::runtime_error("key");
  return std::move(*k);
}

SpoolKey spool_key(std::uint8_t fill = 1) {
  SpoolKey k;
  k.bytes.fill(fill);
  return k;
}

SpoolOptions options(const fs::path& dir, std::uint64_t max_bytes = 1u << 20, std::uint64_t segment_bytes = 0) {
  SpoolOptions o;
  o.dir = dir / "spool";
  o.key = spool_key();
  o.max_bytes = max_bytes;
  o.segment_bytes = segment_bytes;
  o.commit_window = std::chrono::milliseconds(0);
  return o;
}

std::string read_all(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_all(const fs::path& p, const std::string& data) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << data;
}

std::vector<fs::path> segments(const fs::path& spool_dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(spool_dir)) {
    if (e.path().extension() == ".seg") out.push_back(e.path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

// Offsets of the blocks of a segment (after the 44-byte header).
std::vector<std::pair<std::size_t, std::size_t>> blocks_of(const std::string& seg) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  std::size_t off = 44;
  while (off + 4 <= seg.size()) {
    std::size_t len = (std::size_t(std::uint8_t(seg[off])) << 24) | (std::size_t(std::uint8_t(seg[off + 1])) << 16) |
                      (std::size_t(std::uint8_t(seg[off + 2])) << 8) | std::size_t(std::uint8_t(seg[off + 3]));
    out.emplace_back(off, 4 + len);
    off += 4 + len;
  }
  return out;
}

// A chain of records for one job, written through a ChainWriter like the job runner does.
class Chain {
 public:
  Chain(const Ed25519PrivateKey& key, std::string job, std::string agent = "agt_1")
      : clock_(std::chrono::system_clock::now()), writer_(key, clock_, std::move(agent), std::move(job)) {}
  audit::Record next(const std::string& text = "hello") {
    auto r = writer_.append(audit::Kind::output, Json{{"step", "s"}, {"stream", "stdout"}, {"b64", base64_encode(as_bytes(text))}});
    if (!r) throw std::runtime_error(r.error().message);
    return *r;
  }
  audit::Record end(const std::string& status) {
    auto r = writer_.append(audit::Kind::job_end, Json{{"status", status}});
    if (!r) throw std::runtime_error(r.error().message);
    return *r;
  }

 private:
  FixedClock clock_;
  audit::ChainWriter writer_;
};

TEST(Spool, RecordsRoundTripInOrderPerStream) {
  Tmp tmp;
  auto key = test_key();
  auto spool = Spool::open(options(tmp.path));
  ASSERT_TRUE(spool) << spool.error().message;
  Chain a(key, "job_a"), b(key, "job_b");
  std::vector<std::string> want_a, want_b;
  for (int i = 0; i < 20; ++i) {
    auto ra = a.next("a" + std::to_string(i));
    auto rb = b.next("b" + std::to_string(i));
    ASSERT_TRUE((*spool)->append(ra));
    ASSERT_TRUE((*spool)->append(rb));
    want_a.push_back(audit::serialize(ra));
    want_b.push_back(audit::serialize(rb));
  }
  auto got = (*spool)->read({"agt_1", "job_a"}, 0, 1000, 1u << 20);
  ASSERT_TRUE(got) << got.error().message;
  EXPECT_EQ(*got, want_a);
  auto tail = (*spool)->read({"agt_1", "job_b"}, 15, 3, 1u << 20);
  ASSERT_TRUE(tail);
  EXPECT_EQ(*tail, std::vector<std::string>(want_b.begin() + 15, want_b.begin() + 18));
  auto info = (*spool)->stream({"agt_1", "job_a"});
  ASSERT_TRUE(info);
  EXPECT_EQ(info->next_seq, 20u);
  EXPECT_EQ(info->acked, -1);
}

TEST(Spool, RecordsMustArriveInSeqOrder) {
  Tmp tmp;
  auto key = test_key();
  auto spool = Spool::open(options(tmp.path));
  ASSERT_TRUE(spool);
  Chain a(key, "job_a");
  auto r0 = a.next();
  auto r1 = a.next();
  auto bad = (*spool)->append(r1);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().code, Errc::conflict);
  EXPECT_TRUE((*spool)->append(r0));
  EXPECT_TRUE((*spool)->append(r1));
}

TEST(Spool, RestartRecoversChainTailsAndContinuesInANewSegment) {
  Tmp tmp;
  auto key = test_key();
  Chain a(key, "job_a");
  audit::Record last;
  {
    auto spool = Spool::open(options(tmp.path));
    ASSERT_TRUE(spool);
    for (int i = 0; i < 5; ++i) ASSERT_TRUE((*spool)->append(last = a.next()));
    // No close(): like a crash, everything appended is already durable.
  }
  const auto before = segments(tmp.path / "spool");
  ASSERT_EQ(before.size(), 1u);
  const auto size_before = fs::file_size(before[0]);
  auto spool = Spool::open(options(tmp.path));
  ASSERT_TRUE(spool) << spool.error().message;
  auto info = (*spool)->stream({"agt_1", "job_a"});
  ASSERT_TRUE(info);
  EXPECT_EQ(info->next_seq, 5u);
  EXPECT_EQ(info->last_hash, last.hash);
  EXPECT_EQ(info->last_ts, last.ts);
  EXPECT_FALSE(info->ended);
  ASSERT_TRUE((*spool)->append(a.end("interrupted")));
  EXPECT_EQ(segments(tmp.path / "spool").size(), 2u);
  EXPECT_EQ(fs::file_size(before[0]), size_before);  // an old segment is never appended to
  info = (*spool)->stream({"agt_1", "job_a"});
  EXPECT_TRUE(info->ended);
  EXPECT_EQ(info->status, "interrupted");
  auto all = (*spool)->read({"agt_1", "job_a"}, 0, 100, 1u << 20);
  ASSERT_TRUE(all);
  EXPECT_EQ(all->size(), 6u);
}

TEST(Spool, TornTailIsTruncatedOnOpen) {
  Tmp tmp;
  auto key = test_key();
  Chain a(key, "job_a");
  {
    auto spool = Spool::open(options(tmp.path));
    ASSERT_TRUE(spool);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*spool)->append(a.next()));
  }
  auto seg = segments(tmp.path / "spool").at(0);
  const auto good = fs::file_size(seg);
  {
    // A block whose write never completed: length says 500, 10 bytes made it.
    std::ofstream f(seg, std::ios::binary | std::ios::app);
    f << std::string("\x00\x00\x01\xf4", 4) << std::string(10, 'x');
  }
  auto spool = Spool::open(options(tmp.path));
  ASSERT_TRUE(spool) << spool.error().message;
  EXPECT_EQ(fs::file_size(seg), good);
  EXPECT_EQ((*spool)->stream({"agt_1", "job_a"})->next_seq, 3u);
}

TEST(Spool, ZeroFilledTailIsTreatedAsTorn) {
  Tmp tmp;
  auto key = test_key();
  Chain a(key, "job_a");
  {
    auto spool = Spool::open(options(tmp.path));
    ASSERT_TRUE(spool);
    ASSERT_TRUE((*spool)->append(a.next()));
  }
  auto seg = segments(tmp.path / "spool").at(0);
  const auto good = fs::file_size(seg);
  {
    std::ofstream f(seg, std::ios::binary | std::ios::app);
    f << std::string(4096, '\0');
  }
  auto spool = Spool::open(options(tmp.path));
  ASSERT_TRUE(spool) << spool.error().message;
  EXPECT_EQ(fs::file_size(seg), good);
}

class SpoolTamper : public ::testing::Test {
 protected:
  void SetUp() override {
    auto key = test_key();
    Chain a(key, "job_a");
    auto spool = Spool::open(options(tmp_.path));
    ASSERT_TRUE(spool);
    for (int i = 0; i < 4; ++i) ASSERT_TRUE((*spool)->append(a.next("same-size-" + std::to_string(i))));
    (*spool)->close();
    seg_ = segments(tmp_.path / "spool").at(0);
    data_ = read_all(seg_);
    blocks_ = blocks_of(data_);
    ASSERT_EQ(blocks_.size(), 4u);
  }
  // Opening must fail with an authentication error, never yield records.
  void expect_refused(const std::string& modified) {
    write_all(seg_, modified);
    auto spool = Spool::open(options(tmp_.path));
    ASSERT_FALSE(spool) << "tampered spool opened";
    EXPECT_EQ(spool.error().code, Errc::crypto) << spool.error().message;
  }
  Tmp tmp_;
  fs::path seg_;
  std::string data_;
  std::vector<std::pair<std::size_t, std::size_t>> blocks_;
};

TEST_F(SpoolTamper, FlippedCiphertextBitInTheMiddleIsAnAuthenticationError) {
  auto d = data_;
  d[blocks_[1].first + blocks_[1].second - 3] ^= 0x01;
  expect_refused(d);
}

TEST_F(SpoolTamper, FlippedBitInTheLastBlockIsAnErrorToo) {
  auto d = data_;
  d[blocks_[3].first + blocks_[3].second - 1] ^= 0x80;
  expect_refused(d);
}

TEST_F(SpoolTamper, SwappedBlocksAreDetected) {
  const auto& [o1, n1] = blocks_[1];
  const auto& [o2, n2] = blocks_[2];
  std::string d = data_.substr(0, o1) + data_.substr(o2, n2) + data_.substr(o1, n1) + data_.substr(o2 + n2);
  expect_refused(d);
}

TEST_F(SpoolTamper, SwappedBlocksWithRewrittenIndexesFailAuthentication) {
  const auto& [o1, n1] = blocks_[1];
  const auto& [o2, n2] = blocks_[2];
  std::string b1 = data_.substr(o1, n1), b2 = data_.substr(o2, n2);
  std::swap(b1[7], b2[7]);  // low byte of the plaintext block index
  expect_refused(data_.substr(0, o1) + b2 + b1 + data_.substr(o2 + n2));
}

TEST_F(SpoolTamper, ChangedJobOrSeqInTheAssociatedDataIsDetected) {
  // Head layout after the length: index(4) type(1) alen(2) agent jlen(2) job seq(8).
  const std::size_t job_at = blocks_[1].first + 4 + 4 + 1 + 2 + 5 + 2;  // agent "agt_1"
  ASSERT_EQ(data_.substr(job_at, 5), "job_a");
  auto d = data_;
  d[job_at + 4] = 'b';
  expect_refused(d);
  d = data_;
  d[job_at + 5 + 7] ^= 0x01;  // low byte of seq
  expect_refused(d);
}

TEST_F(SpoolTamper, ABlockMovedToAnotherSegmentFailsAuthentication) {
  // A second segment (from a second run) with one block at index 0.
  {
    auto key = test_key();
    Chain other(key, "job_z");
    auto spool = Spool::open(options(tmp_.path));
    ASSERT_TRUE(spool);
    ASSERT_TRUE((*spool)->append(other.next()));
  }
  auto segs = segments(tmp_.path / "spool");
  ASSERT_EQ(segs.size(), 2u);
  auto second = read_all(segs[1]);
  auto b = blocks_of(second).at(0);
  // Put the first segment's block 0 (same index 0) in place of the second's.
  std::string moved = second.substr(0, b.first) + data_.substr(blocks_[0].first, blocks_[0].second);
  write_all(segs[1], moved);
  auto spool = Spool::open(options(tmp_.path));
  ASSERT_FALSE(spool);
  EXPECT_EQ(spool.error().code, Errc::crypto);
}

TEST_F(SpoolTamper, AnotherKeyCannotOpenTheSpool) {
  auto o = options(tmp_.path);
  o.key = spool_key(2);
  auto spool = Spool::open(o);
  ASSERT_FALSE(spool);
  EXPECT_EQ(spool.error().code, Errc::crypto);
}

TEST_F(SpoolTamper, EditedMetadataIsRefused) {
  auto meta = tmp_.path / "spool" / "meta.json";
  auto text = read_all(meta);
  auto pos = text.find("\"acked\":-1");
  ASSERT_NE(pos, std::string::npos);
  text.replace(pos, 10, "\"acked\":99");
  write_all(meta, text);
  auto spool = Spool::open(options(tmp_.path));
  ASSERT_FALSE(spool);
  EXPECT_EQ(spool.error().code, Errc::crypto);
}

TEST(Spool, NoncesAreNeverReusedAcrossRestarts) {
  Tmp tmp;
  auto key = test_key();
  Chain a(key, "job_a");
  for (int run = 0; run < 3; ++run) {
    auto spool = Spool::open(options(tmp.path));
    ASSERT_TRUE(spool);
    for (int i = 0; i < 3; ++i) ASSERT_TRUE((*spool)->append(a.next()));
  }
  // Each run wrote its own segment; a segment's key derives from its random uuid and
  // the nonce is the block index, so (key, nonce) pairs are unique iff uuids are unique
  // and indexes within a segment are 0..n-1.
  std::set<std::string> uuids;
  for (const auto& seg : segments(tmp.path / "spool")) {
    auto d = read_all(seg);
    uuids.insert(d.substr(12, 16));
    auto blocks = blocks_of(d);
    for (std::size_t i = 0; i < blocks.size(); ++i) {
      const auto* p = reinterpret_cast<const std::uint8_t*>(d.data() + blocks[i].first + 4);
      EXPECT_EQ((std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3], i);
    }
  }
  EXPECT_EQ(uuids.size(), 3u);
}

TEST(SpoolKey, FilePermissionsSizeAndCreation) {
  Tmp tmp;
  auto file = tmp.path / "k";
  write_all(file, std::string(32, 'k'));
  ::chmod(file.c_str(), 0644);
  auto open_key = load_spool_key(file, tmp.path / "unused");
  ASSERT_FALSE(open_key);
  EXPECT_EQ(open_key.error().code, Errc::permission);
  ::chmod(file.c_str(), 0600);
  auto k = load_spool_key(file, tmp.path / "unused");
  ASSERT_TRUE(k) << k.error().message;
  EXPECT_EQ(k->bytes[0], 'k');
  write_all(file, std::string(31, 'k'));
  EXPECT_FALSE(load_spool_key(file, tmp.path / "unused"));
  EXPECT_FALSE(load_spool_key(tmp.path / "missing", tmp.path / "unused"));

  auto created = load_spool_key("", tmp.path / "spool.key");
  ASSERT_TRUE(created) << created.error().message;
  struct stat st {};
  ASSERT_EQ(::stat((tmp.path / "spool.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(st.st_size, 32);
  auto again = load_spool_key("", tmp.path / "spool.key");
  ASSERT_TRUE(again);
  EXPECT_EQ(again->bytes, created->bytes);
}

TEST(Spool, AcknowledgedSegmentsAreDeletedAndAckProgressSurvivesRestart) {
  Tmp tmp;
  auto key = test_key();
  Chain a(key, "job_a"), b(key, "job_b");
  {
    auto spool = Spool::open(options(tmp.path, 1u << 20, 2048));
    ASSERT_TRUE(spool);
    for (int i = 0; i < 30; ++i) {
      ASSERT_TRUE((*spool)->append(a.next(std::string(100, 'a'))));
      ASSERT_TRUE((*spool)->append(b.next(std::string(100, 'b'))));
    }
    EXPECT_GT(segments(tmp.path / "spool").size(), 3u);
    (*spool)->ack({"agt_1", "job_a"}, 29);
    // job_b holds every segment open until it is acknowledged too.
    EXPECT_GT(segments(tmp.path / "spool").size(), 3u);
    (*spool)->ack({"agt_1", "job_b"}, 19);
    (*spool)->ack({"agt_1", "job_b"}, 29);
    EXPECT_TRUE(segments(tmp.path / "spool").empty());
    EXPECT_EQ((*spool)->bytes_used(), 0u);
    EXPECT_TRUE((*spool)->pending().empty());
  }
  auto spool = Spool::open(options(tmp.path));
  ASSERT_TRUE(spool) << spool.error().message;
  EXPECT_TRUE((*spool)->pending().empty());  // nothing is re-sent after a restart
  auto info = (*spool)->stream({"agt_1", "job_b"});
  ASSERT_TRUE(info);  // the tail survives compaction: a chain can still be continued
  EXPECT_EQ(info->next_seq, 30u);
  EXPECT_EQ(info->acked, 29);
  ASSERT_TRUE((*spool)->append(b.end("interrupted")));
}

TEST(Spool, QuotaBlocksAppendUntilAnAckFreesSpace) {
  Tmp tmp;
  auto key = test_key();
  Chain a(key, "job_a");
  auto spool = Spool::open(options(tmp.path, 8192, 2048));
  ASSERT_TRUE(spool);
  auto& s = **spool;
  // Fill until the next record no longer fits (deterministic: a block's size is the
  // record plus a fixed head of 47 bytes for this agent and job id).
  std::int64_t appended = 0;
  audit::Record next = a.next(std::string(600, 'x'));
  while (s.bytes_used() + audit::serialize(next).size() + 47 <= 8192) {
    ASSERT_TRUE(s.append(next));
    ++appended;
    next = a.next(std::string(600, 'x'));
  }
  ASSERT_GT(appended, 2);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    EXPECT_TRUE(s.append(next));
    done = true;
  });
  // Observed, not timed: the appender is counted while it waits for space.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (s.stats().waiting_for_space == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(s.stats().waiting_for_space, 1u);
  EXPECT_FALSE(done);
  s.ack({"agt_1", "job_a"}, appended - 1);
  writer.join();
  EXPECT_TRUE(done);
  EXPECT_LE(s.bytes_used(), 8192u);
  EXPECT_EQ(s.stream({"agt_1", "job_a"})->next_seq, static_cast<std::uint64_t>(appended + 1));
}

TEST(Spool, LiftingTheQuotaAtShutdownReleasesBlockedAppenders) {
  Tmp tmp;
  auto key = test_key();
  Chain a(key, "job_a");
  auto spool = Spool::open(options(tmp.path, 4096, 2048));
  ASSERT_TRUE(spool);
  auto& s = **spool;
  audit::Record next = a.next(std::string(600, 'y'));
  while (s.bytes_used() + audit::serialize(next).size() + 47 <= 4096) {
    ASSERT_TRUE(s.append(next));
    next = a.next(std::string(600, 'y'));
  }
  std::thread writer([&] { EXPECT_TRUE(s.append(next)); });
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (s.stats().waiting_for_space == 0 && std::chrono::steady_clock::now() < deadline) std::this_thread::yield();
  ASSERT_EQ(s.stats().waiting_for_space, 1u);
  s.lift_quota();  // no ack: the record is written over quota, not dropped
  writer.join();
  EXPECT_EQ(s.stream({"agt_1", "job_a"})->next_seq, next.seq + 1);
  EXPECT_GT(s.bytes_used(), 4096u);
}

TEST(Spool, ConcurrentAppendsAreGroupCommitted) {
  Tmp tmp;
  auto key = test_key();
  auto o = options(tmp.path);
  // The window only bounds the wait; the batch closes as soon as 8 records are queued.
  o.commit_window = std::chrono::seconds(60);
  o.commit_max_records = 8;
  auto spool = Spool::open(o);
  ASSERT_TRUE(spool);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      Chain c(key, "job_" + std::to_string(t));
      EXPECT_TRUE((*spool)->append(c.next()));
    });
  }
  for (auto& t : threads) t.join();
  auto st = (*spool)->stats();
  EXPECT_EQ(st.records, 8u);
  EXPECT_EQ(st.commits, 1u);
}

TEST(Spool, FilesHoldNoPlaintext) {
  Tmp tmp;
  auto key = test_key();
  const std::string marker = "SPOOL-PLAINTEXT-MARKER-7f3a";
  Chain a(key, "job_a");
  const std::string b64 = base64_encode(as_bytes(marker));
  auto scan = [&] {
    std::size_t files = 0;
    for (const auto& e : fs::recursive_directory_iterator(tmp.path / "spool")) {
      if (!e.is_regular_file()) continue;
      ++files;
      auto raw = read_all(e.path());
      EXPECT_EQ(raw.find(marker), std::string::npos) << e.path();
      EXPECT_EQ(raw.find(b64.substr(0, 20)), std::string::npos) << e.path();
    }
    return files;
  };
  {
    auto spool = Spool::open(options(tmp.path));
    ASSERT_TRUE(spool);
    for (int i = 0; i < 10; ++i) {
      auto r = a.next(marker);
      r.data["note"] = marker;  // re-sealing is not needed: the spool stores what it is given
      ASSERT_TRUE((*spool)->append(r));
    }
  }
  EXPECT_EQ(scan(), 2u);  // segment and metadata
  {
    auto spool = Spool::open(options(tmp.path));
    ASSERT_TRUE(spool);
    ASSERT_TRUE((*spool)->dead_letter({"agt_1", "job_a"}));
  }
  EXPECT_EQ(scan(), 2u);  // dead-letter file and metadata; the acknowledged segment is gone
  EXPECT_FALSE(fs::is_empty(tmp.path / "spool" / "dead"));
}

TEST(Spool, DeadLetteredStreamsStopBlockingTheSpool) {
  Tmp tmp;
  auto key = test_key();
  Chain a(key, "job_a");
  auto spool = Spool::open(options(tmp.path, 1u << 20, 2048));
  ASSERT_TRUE(spool);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE((*spool)->append(a.next(std::string(200, 'd'))));
  ASSERT_TRUE((*spool)->dead_letter({"agt_1", "job_a"}));
  EXPECT_TRUE((*spool)->pending().empty());
  EXPECT_TRUE((*spool)->stream({"agt_1", "job_a"})->dead);
  EXPECT_FALSE((*spool)->wait_acked({"agt_1", "job_a"}, 19, std::chrono::steady_clock::now()));
  EXPECT_LE(segments(tmp.path / "spool").size(), 1u);
  std::size_t dead = 0;
  for (const auto& e : fs::directory_iterator(tmp.path / "spool" / "dead")) dead += e.is_regular_file();
  EXPECT_EQ(dead, 1u);
}

TEST(AgentStream, ResumesOneChainAcrossRestartsAndCheckpointsFinishedJobs) {
  Tmp tmp;
  auto key = test_key();
  FixedClock clock(std::chrono::system_clock::now());
  std::string first_boot;
  {
    auto spool = Spool::open(options(tmp.path));
    ASSERT_TRUE(spool);
    AgentStream stream(key, clock, **spool, "1.2.3");
    ASSERT_TRUE(stream.start("agt_1", "host"));
    first_boot = stream.boot_id();
    EXPECT_EQ(first_boot.size(), 32u);
    ASSERT_TRUE(stream.checkpoint());  // nothing finished: no record
    EXPECT_EQ((*spool)->stream({"agt_1", "_agent"})->next_seq, 1u);
    Chain j(key, "job_a");
    ASSERT_TRUE((*spool)->append(j.next()));
    auto end = j.end("succeeded");
    ASSERT_TRUE((*spool)->append(end));
    ASSERT_TRUE(stream.checkpoint());
    auto recs = (*spool)->read({"agt_1", "_agent"}, 0, 10, 1u << 20);
    ASSERT_TRUE(recs);
    ASSERT_EQ(recs->size(), 2u);
    auto cp = audit::parse_record(recs->at(1));
    ASSERT_TRUE(cp);
    EXPECT_EQ(cp->kind, audit::Kind::checkpoint);
    EXPECT_EQ(cp->data, (Json{{"boot_id", first_boot},
                              {"jobs", Json::array({Json{{"job", "job_a"}, {"records", 2}, {"last_hash", end.hash},
                                                         {"status", "succeeded"}}})}}));
    ASSERT_TRUE(stream.stop());
  }
  auto spool = Spool::open(options(tmp.path));
  ASSERT_TRUE(spool);
  AgentStream stream(key, clock, **spool, "1.2.3");
  ASSERT_TRUE(stream.start("agt_1", "host"));
  EXPECT_NE(stream.boot_id(), first_boot);
  auto recs = (*spool)->read({"agt_1", "_agent"}, 0, 10, 1u << 20);
  ASSERT_TRUE(recs);
  ASSERT_EQ(recs->size(), 4u);  // start, checkpoint, stop, start: one chain
  auto stop = audit::parse_record(recs->at(2));
  auto start = audit::parse_record(recs->at(3));
  ASSERT_TRUE(stop && start);
  EXPECT_EQ(stop->kind, audit::Kind::agent_stop);
  EXPECT_EQ(stop->data, (Json{{"boot_id", first_boot}, {"reason", "shutdown"}}));
  EXPECT_EQ(start->prev, stop->hash);
  EXPECT_EQ(start->seq, 3u);
  EXPECT_EQ(start->data["public_key"], base64_encode(key.public_key()));
}

}  // namespace
}  // namespace delegate::agent
