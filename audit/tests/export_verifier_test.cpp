// The tamper suite: real signed exports (agent stream + jobs + checkpoints), one
// tampering each, and the exact fault, stream and seq the export verifier must name.
#include "export_test_util.hpp"

#include <algorithm>

using namespace audit_test;

namespace {

class Tamper : public ::testing::Test {
 protected:
  Ed25519PrivateKey key = key_from(1);
  Ed25519PrivateKey other_key = key_from(2);
  Ed25519PublicKey pub = key.public_key();
  Export ex = standard_export(key);

  static void expect_ok(const std::vector<JobVerdict>& verdicts) {
    ASSERT_FALSE(verdicts.empty());
    for (const auto& v : verdicts) {
      EXPECT_FALSE(v.fault) << v.job << ": " << to_string(v.fault->fault) << ": " << v.fault->detail;
    }
  }
  // Asserts that verification stops at exactly this fault, stream and seq; the result
  // is then the single faulted verdict.
  void expect_fault(const std::string& text, Fault fault, const std::string& job, std::uint64_t seq,
                    bool allow_incomplete = false) {
    auto verdicts = verify_text(text, pub, allow_incomplete);
    ASSERT_EQ(verdicts.size(), 1u);
    const auto& v = verdicts.front();
    ASSERT_TRUE(v.fault.has_value()) << "no fault detected";
    EXPECT_EQ(to_string(v.fault->fault), to_string(fault)) << v.fault->detail;
    EXPECT_EQ(v.job, job) << v.fault->detail;
    EXPECT_EQ(v.fault->seq, seq) << v.fault->detail;
  }
  void expect_fault(Fault fault, const std::string& job, std::uint64_t seq) {
    expect_fault(ex.text(), fault, job, seq);
  }
  // Re-seals a job (or the agent stream) from `from` on with the right key: what only
  // the key holder (or a compromised agent) can do.
  void reseal(std::vector<Record>& stream, std::size_t from) { reseal_from(stream, from, key); }
};

// ---- Positive cases.

TEST_F(Tamper, CleanExportVerifies) {
  auto verdicts = verify_text(ex.text(), pub);
  expect_ok(verdicts);
  ASSERT_EQ(verdicts.size(), 4u);
  EXPECT_EQ(verdicts[0].job, "_agent");
  EXPECT_EQ(verdicts[0].records, 4u);
  for (std::size_t i = 1; i < 4; ++i) EXPECT_EQ(verdicts[i].records, 7u);
}

TEST_F(Tamper, AnyFileOrderAndRecordInterleavingVerifies) {
  // Files in reverse order: jobs first, agent stream last.
  std::string reversed;
  for (auto it = ex.jobs.rbegin(); it != ex.jobs.rend(); ++it) reversed += join(to_lines(it->second));
  reversed += join(to_lines(ex.agent));
  expect_ok(verify_text(reversed, pub));
  // Records of all streams interleaved round-robin, as a live collector would see them.
  std::vector<std::vector<std::string>> streams = {to_lines(ex.agent)};
  for (const auto& [n, recs] : ex.jobs) streams.push_back(to_lines(recs));
  std::string mixed;
  for (std::size_t i = 0; i < 7; ++i) {
    for (const auto& s : streams) {
      if (i < s.size()) mixed += s[i] + "\n";
    }
  }
  auto verdicts = verify_text(mixed, pub);
  expect_ok(verdicts);
  EXPECT_EQ(verdicts.size(), 4u);
}

TEST_F(Tamper, IdenticalRelistingAfterARestartVerifies) {
  ExportBuilder b(key);
  b.start(kBoot1).run_job("job_a").checkpoint().start(kBoot2).relist().stop();
  const auto verdicts = verify_text(b.done().text(), pub);
  expect_ok(verdicts);
  EXPECT_EQ(verdicts.size(), 2u);
}

TEST_F(Tamper, RelistingInTheSameBootIsADuplicate) {
  ExportBuilder b(key);
  b.start(kBoot1).run_job("job_a").checkpoint().relist().stop();
  expect_fault(b.done().text(), Fault::duplicate, std::string(kAgentStreamJob), 2);
}

TEST_F(Tamper, RelistingWithOtherValuesIsADuplicate) {
  ExportBuilder b(key);
  b.start(kBoot1).run_job("job_a").checkpoint().start(kBoot2).relist([](auto& jobs) { jobs[0].records = 3; }).stop();
  expect_fault(b.done().text(), Fault::duplicate, std::string(kAgentStreamJob), 3);
}

TEST_F(Tamper, RestartWithoutStopVerifies) {
  // A crash: the second agent.start follows without agent.stop, seq continues.
  ExportBuilder b(key);
  b.start(kBoot1).run_job("job_a").checkpoint().run_job("job_b");
  b.start(kBoot2).checkpoint().run_job("job_c").checkpoint().stop();
  auto crashed = b.done();
  auto verdicts = verify_text(crashed.text(), pub);
  expect_ok(verdicts);
  EXPECT_EQ(verdicts[0].records, 6u);
}

TEST_F(Tamper, AllowIncompleteAcceptsRunningJobsOnly) {
  ExportBuilder b(key);
  b.start(kBoot1).run_job("job_a").checkpoint().open_job("job_run");
  auto live = b.done();
  expect_fault(live.text(), Fault::truncated, "job_run", 3);
  auto verdicts = verify_text(live.text(), pub, /*allow_incomplete=*/true);
  expect_ok(verdicts);
  EXPECT_EQ(verdicts.back().job, "job_run");
  EXPECT_EQ(verdicts.back().records, 4u);
  // A job a checkpoint lists as finished must be whole even then.
  ex.job("job_c").resize(5);
  expect_fault(ex.text(), Fault::truncated, "job_c", 4, /*allow_incomplete=*/true);
}

TEST_F(Tamper, ExportWithoutAgentStreamStillVerifiesJobs) {
  // What the control plane's per-job export holds; nothing vouches for absent jobs then.
  expect_ok(verify_text(join(to_lines(ex.job("job_b"))), pub));
}

// ---- One tampering each.

TEST_F(Tamper, EditDataByte) {
  auto lines = ex.lines();
  auto& line = lines[4 + 7 + 3];  // job_b seq 3
  const auto pos = line.find("aGVsbG8K");
  ASSERT_NE(pos, std::string::npos);
  line[pos] = 'b';
  expect_fault(join(lines), Fault::bad_hash, "job_b", 3);
}

TEST_F(Tamper, EditTimestamp) {
  ex.job("job_a")[2].ts = "2026-11-28T20:00:03.124Z";
  expect_fault(Fault::bad_hash, "job_a", 2);
}

TEST_F(Tamper, DeleteMiddleRecord) {
  auto& b = ex.job("job_b");
  b.erase(b.begin() + 3);
  expect_fault(Fault::gap, "job_b", 4);
}

TEST_F(Tamper, DeleteTailIncludingJobEnd) {
  ex.job("job_c").resize(5);
  expect_fault(Fault::truncated, "job_c", 4);
}

TEST_F(Tamper, InsertForgedRecordSignedWithAnotherKey) {
  auto& a = ex.job("job_a");
  Record forged = a[3];
  forged.data["b64"] = "cm0gLXJmIC8K";
  ASSERT_TRUE(seal(forged, other_key));
  a.insert(a.begin() + 3, forged);
  expect_fault(Fault::bad_signature, "job_a", 3);
}

TEST_F(Tamper, InsertForgedRecordWithRecomputedHash) {
  // The attacker can recompute the hash but not sign it: the old signature stays.
  auto& a = ex.job("job_a");
  Record forged = a[3];
  forged.data["b64"] = "cm0gLXJmIC8K";
  auto h = compute_hash(forged);
  ASSERT_TRUE(h);
  forged.hash = hex_encode(*h);
  a[3] = forged;
  expect_fault(Fault::bad_signature, "job_a", 3);
}

TEST_F(Tamper, SwapTwoRecords) {
  auto& b = ex.job("job_b");
  std::swap(b[3], b[4]);
  // Seq 4 arrives where 3 is due: the first thing wrong is the missing 3.
  expect_fault(Fault::gap, "job_b", 4);
}

TEST_F(Tamper, DuplicateRecord) {
  auto& b = ex.job("job_b");
  b.insert(b.begin() + 3, b[3]);
  expect_fault(Fault::duplicate, "job_b", 3);
}

TEST_F(Tamper, ReplayOlderRecord) {
  auto& b = ex.job("job_b");
  b.insert(b.begin() + 5, b[1]);
  expect_fault(Fault::reordered, "job_b", 1);
}

TEST_F(Tamper, SpliceRecordFromAnotherJob) {
  // The copy keeps its job id (changing it breaks the hash), so it is judged in its
  // own stream: before that stream's own records it is a stream starting mid-way ...
  auto b3 = ex.job("job_b")[3];
  auto& a = ex.job("job_a");
  a.insert(a.begin() + 3, b3);
  expect_fault(Fault::gap, "job_b", 3);
  // ... after them, a repeated, older seq.
  a.erase(a.begin() + 3);
  auto& c = ex.job("job_c");
  c.insert(c.begin() + 3, b3);
  expect_fault(Fault::reordered, "job_b", 3);
  // And relabelled as job_a's, it no longer matches its hash.
  c.erase(c.begin() + 3);
  b3.job = "job_a";
  b3.seq = 3;
  b3.prev = a[2].hash;
  a.insert(a.begin() + 3, b3);
  expect_fault(Fault::bad_hash, "job_a", 3);
}

TEST_F(Tamper, SpliceRecordFromAnotherAgent) {
  auto other = standard_export(other_key, "agt_2");
  auto& a = ex.job("job_a");
  a.insert(a.begin() + 3, other.job("job_a")[3]);
  expect_fault(Fault::foreign_record, "job_a", 3);
  // The other agent's checkpoint in our agent stream, likewise.
  a.erase(a.begin() + 3);
  ex.agent.insert(ex.agent.begin() + 2, other.agent[2]);
  expect_fault(Fault::foreign_record, "_agent", 2);
}

TEST_F(Tamper, ReplaceSignatureWithAnotherRecords) {
  auto& a = ex.job("job_a");
  a[2].sig = a[1].sig;
  expect_fault(Fault::bad_signature, "job_a", 2);
}

TEST_F(Tamper, ResignWithAnotherKey) {
  // Hash recomputed and the signature valid, under the wrong key.
  auto& b = ex.job("job_b");
  b[3].data["b64"] = "ZXZpbAo=";
  ASSERT_TRUE(seal(b[3], other_key));
  expect_fault(Fault::bad_signature, "job_b", 3);
}

TEST_F(Tamper, MalleatedSignature) {
  // S + L: the same signature modulo the group order, accepted by lax verifiers.
  auto& a = ex.job("job_a");
  auto raw = base64url_decode(a[4].sig);
  ASSERT_TRUE(raw);
  constexpr std::uint8_t kL[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                                   0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
                                   0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};
  unsigned carry = 0;
  for (std::size_t i = 0; i < 32; ++i) {
    const unsigned sum = (*raw)[32 + i] + kL[i] + carry;
    (*raw)[32 + i] = static_cast<std::uint8_t>(sum & 0xff);
    carry = sum >> 8;
  }
  ASSERT_EQ(carry, 0u);
  a[4].sig = base64url_encode(*raw);
  expect_fault(Fault::bad_signature, "job_a", 4);
}

TEST_F(Tamper, AgentStartWithAnotherPublicKey) {
  ExportBuilder b(key);
  b.start(kBoot1, base64_encode(other_key.public_key())).run_job("job_a").checkpoint();
  expect_fault(b.done().text(), Fault::key_mismatch, "_agent", 0);
}

TEST_F(Tamper, DeleteWholeJobThatACheckpointLists) {
  ex.erase_job("job_b");
  // Reported at the seq of the job.end the checkpoint vouches for.
  expect_fault(Fault::job_missing, "job_b", 6);
}

TEST_F(Tamper, DeleteCheckpoint) {
  ex.agent.erase(ex.agent.begin() + 1);
  expect_fault(Fault::checkpoint_chain_broken, "_agent", 2);
}

TEST_F(Tamper, RelinkAgentStream) {
  // Deleting a checkpoint and renumbering the rest: the prev link gives it away.
  ex.agent.erase(ex.agent.begin() + 1);
  ex.agent[1].seq = 1;
  ex.agent[2].seq = 2;
  expect_fault(Fault::checkpoint_chain_broken, "_agent", 1);
  // Relinked as well (prev rewritten): the hash no longer matches.
  ex.agent[1].prev = ex.agent[0].hash;
  expect_fault(Fault::bad_hash, "_agent", 1);
}

TEST_F(Tamper, EditCheckpointCount) {
  // Without the key: the checkpoint's hash breaks.
  auto lines = ex.lines();
  const auto pos = lines[1].find(R"("records":7)");
  ASSERT_NE(pos, std::string::npos);
  lines[1].replace(pos, 11, R"("records":8)");
  expect_fault(join(lines), Fault::bad_hash, "_agent", 1);
  // With the key (agent stream re-signed): the listing disagrees with the job.
  ex.agent[1].data["jobs"][0]["records"] = 8;
  reseal(ex.agent, 1);
  expect_fault(Fault::job_mismatch, "job_a", 7);
}

TEST_F(Tamper, JobRewrittenByKeyHolderDisagreesWithCheckpoint) {
  // A job shortened and re-sealed end to end: its own chain is whole, but the
  // checkpoint written when it finished remembers the original.
  auto& b = ex.job("job_b");
  b.erase(b.begin() + 4);
  for (std::size_t i = 4; i < b.size(); ++i) b[i].seq = i;
  b.back().data["records"] = b.size();
  reseal(b, 4);
  expect_fault(Fault::job_mismatch, "job_b", 6);
  // Same count, other content: the last hash differs.
  ex = standard_export(key);
  ex.job("job_c")[3].data["b64"] = "ZXZpbAo=";
  reseal(ex.job("job_c"), 3);
  expect_fault(Fault::job_mismatch, "job_c", 6);
}

TEST_F(Tamper, BackdateTimestampEvenWithTheKey) {
  auto& a = ex.job("job_a");
  a[3].ts = "2026-11-28T19:00:00.000Z";
  reseal(a, 3);
  expect_fault(Fault::time_backwards, "job_a", 3);
  // In the agent stream too.
  ex = standard_export(key);
  ex.agent[2].ts = "2026-11-28T19:00:00.000Z";
  reseal(ex.agent, 2);
  expect_fault(Fault::time_backwards, "_agent", 2);
}

TEST_F(Tamper, ChangeVersion) {
  auto lines = ex.lines();
  const auto pos = lines[2].rfind(R"("v":1})");
  ASSERT_NE(pos, std::string::npos);
  lines[2].replace(pos, 6, R"("v":2})");
  expect_fault(join(lines), Fault::bad_version, "_agent", 2);
}

TEST_F(Tamper, JobKindInsideAgentStream) {
  ExportBuilder b(key);
  b.start(kBoot1).agent_record(Kind::step_start, {{"step", "s1"}});
  expect_fault(b.done().text(), Fault::misplaced_kind, "_agent", 1);
}

TEST_F(Tamper, AgentKindInsideJobStream) {
  FixedClock clock(base_time());
  ChainWriter w(key, clock, "agt_1", "job_x");
  auto r = w.append(Kind::checkpoint, make_checkpoint_data(kBoot1, {}));
  ASSERT_TRUE(r);
  expect_fault(ex.text() + serialize(*r) + "\n", Fault::misplaced_kind, "job_x", 0);
}

TEST_F(Tamper, AgentStreamOutOfBoot) {
  // A checkpoint before any agent.start ...
  ExportBuilder early(key);
  early.agent_record(Kind::checkpoint, make_checkpoint_data(kBoot1, {}));
  expect_fault(early.done().text(), Fault::misplaced_kind, "_agent", 0);
  // ... after agent.stop ...
  ExportBuilder late(key);
  late.start(kBoot1).stop().checkpoint();
  expect_fault(late.done().text(), Fault::misplaced_kind, "_agent", 2);
  // ... or naming another boot.
  ExportBuilder other(key);
  other.start(kBoot1).agent_record(Kind::checkpoint, make_checkpoint_data(kBoot2, {}));
  expect_fault(other.done().text(), Fault::foreign_record, "_agent", 1);
  // A restart reusing the boot id is a replayed start.
  ExportBuilder again(key);
  again.start(kBoot1).start(kBoot1);
  expect_fault(again.done().text(), Fault::duplicate, "_agent", 1);
}

TEST_F(Tamper, JobListedByTwoCheckpoints) {
  ExportBuilder b(key);
  b.start(kBoot1).run_job("job_a").checkpoint();
  auto first = b.done().agent[1].data;
  b.agent_record(Kind::checkpoint, first);
  expect_fault(b.done().text(), Fault::duplicate, "_agent", 2);
}

TEST_F(Tamper, MalformedAgentStreamData) {
  ExportBuilder b(key);
  b.start(kBoot1).agent_record(Kind::checkpoint, {{"boot_id", kBoot1}, {"jobs", {{{"job", "job_a"}}}}});
  expect_fault(b.done().text(), Fault::malformed, "_agent", 1);
}

// ---- Exhaustive edits of whole lines: never a crash, never a pass.

TEST_F(Tamper, EveryBitFlipOfACheckpointLineIsCaught) {
  const auto lines = ex.lines();
  const std::size_t target = 2;  // the second checkpoint
  for (std::size_t bit = 0; bit < lines[target].size() * 8; ++bit) {
    auto copy = lines;
    copy[target][bit / 8] = static_cast<char>(copy[target][bit / 8] ^ (1 << (bit % 8)));
    // A flip that makes a newline splits the line; either way it must not verify.
    auto verdicts = verify_text(join(copy), pub);
    ASSERT_EQ(verdicts.size(), 1u) << "bit " << bit;
    ASSERT_TRUE(verdicts[0].fault) << "bit " << bit;
  }
}

TEST_F(Tamper, EveryBitFlipOfAJobLineIsCaught) {
  auto lines = ex.lines();
  // Put job_c's job.end first so that each run stops early.
  const std::string target = lines.back();
  lines.pop_back();
  for (std::size_t bit = 0; bit < target.size() * 8; ++bit) {
    std::string flipped = target;
    flipped[bit / 8] = static_cast<char>(flipped[bit / 8] ^ (1 << (bit % 8)));
    auto verdicts = verify_text(flipped + "\n" + join(lines), pub);
    ASSERT_EQ(verdicts.size(), 1u) << "bit " << bit;
    ASSERT_TRUE(verdicts[0].fault) << "bit " << bit;
  }
}

TEST_F(Tamper, EveryTruncationOfTheLastLine) {
  // The export cut anywhere inside job_c's job.end: at the line boundary the job lacks
  // its end; anywhere else the last line is torn.
  auto lines = ex.lines();
  const std::string last = lines.back();
  lines.pop_back();
  const std::string head = join(lines);
  for (std::size_t n = 0; n < last.size(); ++n) {
    const std::string text = head + last.substr(0, n);
    if (n == 0) {
      expect_fault(text, Fault::truncated, "job_c", 5);
    } else {
      expect_fault(text, Fault::malformed, "job_c", 6);
    }
    if (HasFatalFailure() || HasNonfatalFailure()) FAIL() << "cut at " << n;
  }
}

TEST_F(Tamper, EveryTruncationOfAMiddleLine) {
  auto lines = ex.lines();
  const std::size_t target = 4 + 7 + 3;  // job_b seq 3
  const std::string full = lines[target];
  for (std::size_t n = 0; n < full.size(); ++n) {
    lines[target] = full.substr(0, n);
    // An empty line is skipped, so seq 4 then arrives where 3 is due.
    if (n == 0) {
      expect_fault(join(lines), Fault::gap, "job_b", 4);
    } else {
      expect_fault(join(lines), Fault::malformed, "job_b", 3);
    }
    if (HasFatalFailure() || HasNonfatalFailure()) FAIL() << "cut at " << n;
  }
}

// ---- The limit the docs describe: the agent stream's own tail.

TEST_F(Tamper, TruncatedAgentTailAfterLastCheckpointIsUndetectable) {
  // Dropping agent.stop and the last checkpoint together with the jobs it lists leaves
  // a consistent-looking export: job_b and job_c were never vouched for by what remains.
  ex.agent.resize(2);
  ex.erase_job("job_b");
  ex.erase_job("job_c");
  expect_ok(verify_text(ex.text(), pub));
}

}  // namespace
