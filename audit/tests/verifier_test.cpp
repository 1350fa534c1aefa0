#include "audit_test_util.hpp"

#include <delegate/audit/checkpoint.hpp>

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>

using namespace audit_test;

namespace {

const std::string kAgent = "agt_1";
const std::string kJob = "job_1";

class Verifier : public ::testing::Test {
 protected:
  Ed25519PrivateKey key = key_from(1);
  Ed25519PrivateKey other_key = key_from(2);
  Ed25519PublicKey pub = key.public_key();
  std::vector<Record> job = make_job(key, kAgent, kJob);

  // Asserts that verification stops at exactly this fault and seq.
  void expect_fault(const std::string& text, Fault fault, std::uint64_t seq, const std::string& job_name = kJob) {
    auto verdicts = verify_text(text, pub);
    ASSERT_FALSE(verdicts.empty());
    const auto& last = verdicts.back();
    ASSERT_TRUE(last.fault.has_value()) << "no fault detected";
    EXPECT_EQ(to_string(last.fault->fault), to_string(fault)) << last.fault->detail;
    EXPECT_EQ(last.fault->seq, seq) << last.fault->detail;
    EXPECT_EQ(last.job, job_name);
  }
  void expect_fault(const std::vector<Record>& records, Fault fault, std::uint64_t seq) {
    expect_fault(join(to_lines(records)), fault, seq);
  }
};

}  // namespace

TEST_F(Verifier, AcceptsAnIntactJob) {
  auto verdicts = verify_text(join(to_lines(job)), pub);
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_EQ(verdicts[0].job, kJob);
  EXPECT_EQ(verdicts[0].records, 7u);
  EXPECT_FALSE(verdicts[0].fault);
}

TEST_F(Verifier, IgnoresBlankLinesAndCrLf) {
  std::string text = "\n  \n";
  for (const auto& l : to_lines(job)) text += l + "\r\n\n";
  auto verdicts = verify_text(text, pub);
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_FALSE(verdicts[0].fault);
}

TEST_F(Verifier, AcceptsSeveralJobsAndTheAgentStream) {
  auto job2 = make_job(key, kAgent, "job_2");
  FixedClock clock(base_time());
  ChainWriter agent_stream(key, clock, kAgent, std::string(kAgentStreamJob));
  const std::string boot = new_boot_id();
  auto a0 = agent_stream.append(Kind::agent_start, make_agent_start_data(boot, base64_encode(pub), "0.1.0", "h"));
  auto a1 = agent_stream.append(Kind::checkpoint,
                                make_checkpoint_data(boot, {FinishedJob{kJob, 7, job.back().hash, "succeeded"}}));
  ASSERT_TRUE(a0 && a1);
  auto lines = to_lines(job);
  for (const auto& l : to_lines(job2)) lines.push_back(l);
  lines.push_back(serialize(*a0));
  lines.push_back(serialize(*a1));
  auto verdicts = verify_text(join(lines), pub);
  ASSERT_EQ(verdicts.size(), 3u);
  EXPECT_EQ(verdicts[0].job, kJob);
  EXPECT_EQ(verdicts[1].job, "job_2");
  EXPECT_EQ(verdicts[2].job, "_agent");
  EXPECT_EQ(verdicts[2].records, 2u);
  for (const auto& v : verdicts) EXPECT_FALSE(v.fault) << v.job;
}

// ---- The tamper table: every edit an attacker without the key can make, and the
// exact fault it must produce.

TEST_F(Verifier, TamperEditDataByte) {
  auto lines = to_lines(job);
  const auto pos = lines[3].find("aGVsbG8K");
  ASSERT_NE(pos, std::string::npos);
  lines[3][pos] = 'b';
  expect_fault(join(lines), Fault::bad_hash, 3);
}

TEST_F(Verifier, TamperEditTimestamp) {
  job[2].ts = "2026-11-28T20:00:02.124Z";
  expect_fault(job, Fault::bad_hash, 2);
}

TEST_F(Verifier, TamperDeleteMiddleRecord) {
  job.erase(job.begin() + 3);
  expect_fault(job, Fault::gap, 4);
}

TEST_F(Verifier, TamperDeleteFirstRecord) {
  job.erase(job.begin());
  expect_fault(job, Fault::gap, 1);
}

TEST_F(Verifier, TamperDeleteTailIncludingJobEnd) {
  job.resize(5);
  expect_fault(job, Fault::truncated, 4);
}

TEST_F(Verifier, TamperInsertForgedRecord) {
  Record forged = job[3];
  forged.data["b64"] = "cm0gLXJmIC8K";
  ASSERT_TRUE(seal(forged, other_key));
  job.insert(job.begin() + 3, forged);
  expect_fault(job, Fault::bad_signature, 3);
}

TEST_F(Verifier, TamperSwapTwoRecords) {
  std::swap(job[3], job[4]);
  expect_fault(job, Fault::gap, 4);
}

TEST_F(Verifier, TamperDuplicateRecord) {
  job.insert(job.begin() + 3, job[3]);
  expect_fault(job, Fault::duplicate, 3);
}

TEST_F(Verifier, TamperReplayOlderRecord) {
  job.insert(job.begin() + 4, job[1]);
  expect_fault(job, Fault::reordered, 1);
}

TEST_F(Verifier, TamperSpliceFromAnotherJob) {
  // The record keeps its job id, so it is judged in job_2's stream, which it would
  // start at seq 3.
  auto job2 = make_job(key, kAgent, "job_2");
  job.insert(job.begin() + 3, job2[3]);
  expect_fault(join(to_lines(job)), Fault::gap, 3, "job_2");
}

TEST_F(Verifier, TamperSpliceFromAnotherAgent) {
  auto foreign = make_job(other_key, "agt_2", kJob);
  job.insert(job.begin() + 3, foreign[3]);
  expect_fault(job, Fault::foreign_record, 3);
}

TEST_F(Verifier, TamperReplaceSignature) {
  job[2].sig = job[1].sig;
  expect_fault(job, Fault::bad_signature, 2);
}

TEST_F(Verifier, TamperResignWithAnotherKey) {
  reseal_from(job, 0, other_key);
  expect_fault(job, Fault::bad_signature, 0);
}

TEST_F(Verifier, TamperBackdateTimestamp) {
  // Even the key holder cannot make time run backwards within a chain.
  job[3].ts = "2026-11-28T19:00:00.000Z";
  reseal_from(job, 3, key);
  expect_fault(job, Fault::time_backwards, 3);
}

TEST_F(Verifier, TamperChangeVersion) {
  auto lines = to_lines(job);
  const auto pos = lines[2].rfind(R"("v":1})");
  ASSERT_NE(pos, std::string::npos);
  lines[2].replace(pos, 6, R"("v":2})");
  expect_fault(join(lines), Fault::bad_version, 2);
}

TEST_F(Verifier, TamperChangeVersionInRecord) {
  job[2].v = 2;
  EXPECT_EQ(check_record(job[2], pub, 2, job[1].hash)->fault, Fault::bad_version);
  expect_fault(job, Fault::bad_version, 2);
}

TEST_F(Verifier, TamperFlipEverySignatureBit) {
  auto raw = base64url_decode(job[2].sig);
  ASSERT_TRUE(raw);
  ASSERT_EQ(raw->size(), 64u);
  auto flip_and_expect = [&](std::size_t bit) {
    auto copy = *raw;
    copy[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    auto tampered = job;
    tampered[2].sig = base64url_encode(copy);
    auto verdicts = verify_text(join(to_lines(tampered)), pub);
    ASSERT_FALSE(verdicts.empty());
    ASSERT_TRUE(verdicts.back().fault) << "bit " << bit;
    EXPECT_EQ(verdicts.back().fault->fault, Fault::bad_signature) << "bit " << bit;
    EXPECT_EQ(verdicts.back().fault->seq, 2u) << "bit " << bit;
  };
  for (std::size_t bit = 0; bit < 512; ++bit) flip_and_expect(bit);
}

TEST_F(Verifier, TamperTruncatedLineInTheMiddle) {
  auto lines = to_lines(job);
  lines[3].resize(lines[3].size() / 2);
  expect_fault(join(lines), Fault::malformed, 3);
}

TEST_F(Verifier, TamperTruncatedLastLine) {
  auto text = join(to_lines(job));
  text.resize(text.size() - 40);  // a partial final write, no newline
  expect_fault(text, Fault::malformed, 6);
}

TEST_F(Verifier, TamperTruncatedFirstLine) {
  auto lines = to_lines(job);
  lines[0].resize(10);
  expect_fault(join(lines), Fault::malformed, 0, "unknown");
}

TEST_F(Verifier, TamperRenameJob) {
  for (auto& r : job) r.job = "job_9";
  auto verdicts = verify_text(join(to_lines(job)), pub);
  ASSERT_EQ(verdicts.size(), 1u);
  ASSERT_TRUE(verdicts[0].fault);
  EXPECT_EQ(verdicts[0].fault->fault, Fault::broken_chain);
  EXPECT_EQ(verdicts[0].fault->seq, 0u);
}

TEST_F(Verifier, TamperRelinkPrev) {
  job[3].prev = job[1].hash;
  expect_fault(job, Fault::broken_chain, 3);
}

TEST_F(Verifier, RecordAfterJobEnd) {
  FixedClock clock(base_time() + std::chrono::hours(1));
  ChainWriter cont(key, clock, kAgent, kJob, job.size(), job.back().hash, job.back().ts);
  auto extra = cont.append(Kind::output, {{"step", "x"}, {"stream", "stdout"}, {"b64", ""}});
  ASSERT_TRUE(extra);
  job.push_back(*extra);
  expect_fault(job, Fault::after_end, 7);
}

TEST_F(Verifier, JobEndCountMismatch) {
  job.back().data["records"] = 6;
  reseal_from(job, job.size() - 1, key);
  expect_fault(job, Fault::count_mismatch, 6);
  job.back().data.erase("records");
  reseal_from(job, job.size() - 1, key);
  expect_fault(job, Fault::count_mismatch, 6);
}

TEST_F(Verifier, DuplicateWholeJob) {
  // The copy's seq 0 follows seq 6 of the same stream, whether right after it or after
  // another job.
  auto lines = to_lines(job);
  auto twice = lines;
  twice.insert(twice.end(), lines.begin(), lines.end());
  expect_fault(join(twice), Fault::reordered, 0);
  auto with_other = lines;
  for (const auto& l : to_lines(make_job(key, kAgent, "job_2"))) with_other.push_back(l);
  with_other.insert(with_other.end(), lines.begin(), lines.end());
  expect_fault(join(with_other), Fault::reordered, 0);
}

TEST_F(Verifier, JobKindInAgentStreamIsMisplaced) {
  FixedClock clock(base_time());
  ChainWriter w(key, clock, kAgent, std::string(kAgentStreamJob));
  auto r = w.append(Kind::step_start, Json::object());
  ASSERT_TRUE(r);
  expect_fault(serialize(*r) + "\n", Fault::misplaced_kind, 0, "_agent");
}

TEST_F(Verifier, OverlongLineIsMalformed) {
  auto lines = to_lines(job);
  lines.insert(lines.begin() + 2, std::string(kMaxRecordBytes + 10, 'x'));
  expect_fault(join(lines), Fault::malformed, 2);
}

TEST_F(Verifier, AllowIncompleteAcceptsAnOpenJob) {
  job.resize(4);
  auto verdicts = verify_text(join(to_lines(job)), pub, /*allow_incomplete=*/true);
  ASSERT_EQ(verdicts.size(), 1u);
  EXPECT_FALSE(verdicts[0].fault);
  EXPECT_EQ(verdicts[0].records, 4u);
}

TEST_F(Verifier, IncompleteJobFollowedByAnotherIsTruncated) {
  auto job2 = make_job(key, kAgent, "job_2");
  job.resize(4);
  auto lines = to_lines(job);
  for (const auto& l : to_lines(job2)) lines.push_back(l);
  expect_fault(join(lines), Fault::truncated, 3);
  auto verdicts = verify_text(join(lines), pub, /*allow_incomplete=*/true);
  ASSERT_EQ(verdicts.size(), 2u);
  EXPECT_FALSE(verdicts[1].fault);
}

TEST_F(Verifier, ChainVerifierFinish) {
  ChainVerifier v(pub);
  EXPECT_EQ(v.finish(false)->fault, Fault::truncated);
  for (std::size_t i = 0; i + 1 < job.size(); ++i) ASSERT_FALSE(v.push(job[i]));
  EXPECT_EQ(v.finish(false)->fault, Fault::truncated);
  EXPECT_FALSE(v.finish(true));
  ASSERT_FALSE(v.push(job.back()));
  EXPECT_FALSE(v.finish(false));
  EXPECT_EQ(v.count(), 7u);
  EXPECT_EQ(v.job(), kJob);
}

TEST_F(Verifier, CheckRecordForIngest) {
  EXPECT_FALSE(check_record(job[0], pub, 0, genesis_prev(kAgent, kJob)));
  EXPECT_FALSE(check_record(job[4], pub, 4, job[3].hash));
  EXPECT_EQ(check_record(job[4], pub, 3, job[2].hash)->fault, Fault::gap);
  EXPECT_EQ(check_record(job[4], pub, 5, job[4].hash)->fault, Fault::duplicate);
  EXPECT_EQ(check_record(job[4], pub, 4, job[2].hash)->fault, Fault::broken_chain);
  EXPECT_EQ(check_record(job[4], other_key.public_key(), 4, job[3].hash)->fault, Fault::bad_signature);
  Record r = job[4];
  r.sig = "AAAA";
  EXPECT_EQ(check_record(r, pub, 4, job[3].hash)->fault, Fault::bad_signature);
}

TEST(FaultNames, AreStable) {
  EXPECT_EQ(to_string(Fault::malformed), "malformed");
  EXPECT_EQ(to_string(Fault::bad_version), "bad_version");
  EXPECT_EQ(to_string(Fault::bad_hash), "bad_hash");
  EXPECT_EQ(to_string(Fault::bad_signature), "bad_signature");
  EXPECT_EQ(to_string(Fault::broken_chain), "broken_chain");
  EXPECT_EQ(to_string(Fault::gap), "gap");
  EXPECT_EQ(to_string(Fault::duplicate), "duplicate");
  EXPECT_EQ(to_string(Fault::reordered), "reordered");
  EXPECT_EQ(to_string(Fault::foreign_record), "foreign_record");
  EXPECT_EQ(to_string(Fault::time_backwards), "time_backwards");
  EXPECT_EQ(to_string(Fault::truncated), "truncated");
  EXPECT_EQ(to_string(Fault::count_mismatch), "count_mismatch");
  EXPECT_EQ(to_string(Fault::after_end), "after_end");
  EXPECT_EQ(to_string(Fault::misplaced_kind), "misplaced_kind");
  EXPECT_EQ(to_string(Fault::checkpoint_chain_broken), "checkpoint_chain_broken");
  EXPECT_EQ(to_string(Fault::job_missing), "job_missing");
  EXPECT_EQ(to_string(Fault::job_mismatch), "job_mismatch");
  EXPECT_EQ(to_string(Fault::key_mismatch), "key_mismatch");
}

// ---- The delegate-audit binary.

namespace {

struct RunResult {
  int exit_code;
  std::string out;
  std::string err;
};

std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

class Cli : public Verifier {
 protected:
  std::filesystem::path dir;

  void SetUp() override {
    dir = std::filesystem::path(::testing::TempDir()) /
          ("audit_cli_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  std::string write(const std::string& name, const std::string& content) {
    auto p = dir / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }

  // Arguments are test-controlled paths and base64 text: no shell metacharacters.
  RunResult run(const std::string& args, const std::string& stdin_file = "") {
    const auto out = dir / "stdout";
    const auto err = dir / "stderr";
    std::string cmd = std::string(DELEGATE_AUDIT_BIN) + " " + args + " >" + out.string() + " 2>" + err.string();
    cmd += " <" + (stdin_file.empty() ? std::string("/dev/null") : stdin_file);
    const int status = std::system(cmd.c_str());
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, slurp(out), slurp(err)};
  }

  std::string key_b64() const { return base64_encode(pub); }
};

}  // namespace

TEST_F(Cli, GoodFileExitsZero) {
  const auto file = write("good.jsonl", join(to_lines(job)));
  auto r = run("verify --public-key " + key_b64() + " " + file);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK job_1 7 records\n");
  EXPECT_EQ(r.err, "");
}

TEST_F(Cli, KeyFromFileAndStdin) {
  const auto file = write("good.jsonl", join(to_lines(job)));
  const auto keyfile = write("key.pub", key_b64() + "\n");
  auto r = run("verify --public-key @" + keyfile, file);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, "OK job_1 7 records\n");
}

TEST_F(Cli, TamperedFileExitsOne) {
  job[3].data["b64"] = "ZXZpbAo=";
  const auto file = write("bad.jsonl", join(to_lines(job)));
  auto r = run("verify --public-key " + key_b64() + " " + file);
  EXPECT_EQ(r.exit_code, 1) << r.err;
  EXPECT_EQ(r.out.rfind("TAMPERED job_1 seq=3: bad_hash: ", 0), 0u) << r.out;
}

TEST_F(Cli, OnlyTheFaultIsPrintedOnFailure) {
  auto job2 = make_job(key, kAgent, "job_2");
  job2.pop_back();
  auto lines = to_lines(job);
  for (const auto& l : to_lines(job2)) lines.push_back(l);
  const auto file = write("two.jsonl", join(lines));
  auto r = run("verify --public-key " + key_b64() + " " + file);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out, "TAMPERED job_2 seq=5: truncated: stream ends at seq 5 without job.end\n");
  auto lenient = run("verify --allow-incomplete --public-key " + key_b64() + " " + file);
  EXPECT_EQ(lenient.exit_code, 0);
  EXPECT_EQ(lenient.out, "OK job_1 7 records\nOK job_2 6 records\n");
}

TEST_F(Cli, WrongKeyIsTampered) {
  const auto file = write("good.jsonl", join(to_lines(job)));
  auto r = run("verify --public-key " + base64_encode(other_key.public_key()) + " " + file);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out.rfind("TAMPERED job_1 seq=0: bad_signature: ", 0), 0u) << r.out;
}

TEST_F(Cli, EmptyInputIsTruncated) {
  const auto file = write("empty.jsonl", "");
  auto r = run("verify --public-key " + key_b64() + " " + file);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("truncated"), std::string::npos);
}

TEST_F(Cli, UsageErrorsExitTwo) {
  const auto file = write("good.jsonl", join(to_lines(job)));
  for (const std::string& args :
       {std::string("verify --public-key not-a-key ") + file,
        std::string("verify --public-key AAAA ") + file,
        std::string("verify --public-key @") + (dir / "missing.pub").string() + " " + file,
        std::string("verify ") + file,
        "verify --public-key " + key_b64() + " " + (dir / "missing.jsonl").string(),
        "verify --public-key " + key_b64() + " " + dir.string(),
        std::string("frobnicate"),
        std::string(""),
        "verify --bogus --public-key " + key_b64()}) {
    auto r = run(args);
    EXPECT_EQ(r.exit_code, 2) << args;
    EXPECT_EQ(r.out, "") << args;
    EXPECT_FALSE(r.err.empty()) << args;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << args << ": " << r.err;
  }
}

TEST_F(Cli, HelpAndVersion) {
  auto help = run("--help");
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_NE(help.out.find("delegate-audit verify --public-key KEY"), std::string::npos);
  auto vhelp = run("verify --help");
  EXPECT_EQ(vhelp.exit_code, 0);
  auto version = run("--version");
  EXPECT_EQ(version.exit_code, 0);
  EXPECT_EQ(version.out, std::string("delegate-audit ") + DELEGATE_VERSION + "\n");
}
