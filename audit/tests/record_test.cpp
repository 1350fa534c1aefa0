#include "audit_test_util.hpp"

#include <delegate/audit/jcs.hpp>

using namespace audit_test;

namespace {

Record sample() {
  Record r;
  r.agent = "agt_1";
  r.job = "job_1";
  r.seq = 3;
  r.ts = "2026-11-28T20:00:00.123Z";
  r.kind = Kind::output;
  r.data = {{"step", "s"}, {"stream", "stdout"}, {"b64", "aGk="}};
  r.prev = std::string(64, '0');
  return r;
}

std::string sealed_line() {
  auto key = key_from(1);
  Record r = sample();
  EXPECT_TRUE(seal(r, key));
  return serialize(r);
}

// Replaces the first occurrence of `from` in `s`.
std::string replace(std::string s, const std::string& from, const std::string& to) {
  const auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  if (pos != std::string::npos) s.replace(pos, from.size(), to);
  return s;
}

}  // namespace

TEST(Record, KindStringsAreTheContract) {
  const std::pair<Kind, const char*> table[] = {
      {Kind::job_received, "job.received"}, {Kind::authz_decision, "authz.decision"},
      {Kind::step_start, "step.start"},     {Kind::output, "output"},
      {Kind::step_end, "step.end"},         {Kind::job_end, "job.end"},
      {Kind::checkpoint, "checkpoint"},     {Kind::agent_start, "agent.start"},
      {Kind::agent_stop, "agent.stop"},
  };
  for (auto [k, s] : table) {
    EXPECT_EQ(to_string(k), s);
    EXPECT_EQ(parse_kind(s), k);
  }
  EXPECT_FALSE(parse_kind("job_end"));
  EXPECT_FALSE(parse_kind("JOB.END"));
  EXPECT_FALSE(parse_kind(""));
}

TEST(Record, GenesisPrev) {
  EXPECT_EQ(genesis_prev("agt_1", "job_1"), sha256_hex("delegate/v1/genesis\nagt_1\njob_1"));
  EXPECT_NE(genesis_prev("agt_1", "job_1"), genesis_prev("agt_1", "job_2"));
  // The separator keeps ("a\nb", "c") and ("a", "b\nc") apart only if ids have no
  // newline; what matters here is that the formula is exactly the documented one (docs/audit.md).
  EXPECT_EQ(genesis_prev("", "").size(), 64u);
}

TEST(Record, HashCoversCanonicalFormWithoutHashAndSig) {
  Record r = sample();
  const std::string canonical =
      R"({"agent":"agt_1","data":{"b64":"aGk=","step":"s","stream":"stdout"},"job":"job_1",)"
      R"("kind":"output","prev":")" + std::string(64, '0') +
      R"(","seq":3,"ts":"2026-11-28T20:00:00.123Z","v":1})";
  auto h = compute_hash(r);
  ASSERT_TRUE(h);
  EXPECT_EQ(*h, sha256(canonical));
  r.hash = std::string(64, 'f');
  r.sig = "x";
  EXPECT_EQ(*compute_hash(r), sha256(canonical));
}

TEST(Record, SealSignsTheRawHash) {
  auto key = key_from(7);
  Record r = sample();
  ASSERT_TRUE(seal(r, key));
  auto h = compute_hash(r);
  ASSERT_TRUE(h);
  EXPECT_EQ(r.hash, hex_encode(*h));
  EXPECT_EQ(r.sig.size(), 86u);
  auto sig = base64url_decode(r.sig);
  ASSERT_TRUE(sig);
  EXPECT_TRUE(ed25519_verify(key.public_key(), *h, *sig));
  EXPECT_FALSE(ed25519_verify(key_from(8).public_key(), *h, *sig));
}

TEST(Record, SerializeIsCanonicalAndRoundTrips) {
  auto key = key_from(1);
  Record r = sample();
  ASSERT_TRUE(seal(r, key));
  const std::string line = serialize(r);
  EXPECT_EQ(line, *canonicalize(to_json(r)));
  EXPECT_EQ(line.find('\n'), std::string::npos);
  EXPECT_EQ(line.rfind(R"({"agent":"agt_1","data":)", 0), 0u);
  auto back = parse_record(line);
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(serialize(*back), line);
  EXPECT_EQ(back->seq, 3u);
  EXPECT_EQ(back->kind, Kind::output);
  EXPECT_EQ(back->hash, r.hash);
  EXPECT_EQ(back->sig, r.sig);
  EXPECT_EQ(back->data, r.data);
}

TEST(Record, SealFailsOnUncanonicalizableData) {
  auto key = key_from(1);
  Record r = sample();
  r.data["bad"] = std::numeric_limits<double>::quiet_NaN();
  EXPECT_FALSE(seal(r, key));
  r = sample();
  r.seq = (std::uint64_t{1} << 53) + 1;
  EXPECT_FALSE(seal(r, key));
}

TEST(Record, ParseRejectsMalformed) {
  const std::string good = sealed_line();
  ASSERT_TRUE(parse_record(good));
  const std::string sig_value = good.substr(good.find(R"("sig":")") + 7, 86);
  const std::string hash_value = good.substr(good.find(R"("hash":")") + 8, 64);
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"not json", "{"},
      {"array", "[]"},
      {"extra member", replace(good, R"("v":1})", R"("v":1,"x":0})")},
      {"missing member", replace(good, R"("kind":"output",)", "")},
      {"duplicate member", replace(good, R"("v":1})", R"("v":1,"v":1})")},
      {"v string", replace(good, R"("v":1})", R"("v":"1"})")},
      {"v float", replace(good, R"("v":1})", R"("v":1.5})")},
      {"seq negative", replace(good, R"("seq":3)", R"("seq":-3)")},
      {"seq float", replace(good, R"("seq":3)", R"("seq":3.5)")},
      {"seq string", replace(good, R"("seq":3)", R"("seq":"3")")},
      {"seq too big", replace(good, R"("seq":3)", R"("seq":9007199254740993)")},
      {"ts not rfc3339", replace(good, "2026-11-28T20:00:00.123Z", "2026-11-28 20:00:00")},
      {"ts far future", replace(good, "2026-11-28T20:00:00.123Z", "9999-11-28T20:00:00.123Z")},
      {"ts before 1970", replace(good, "2026-11-28T20:00:00.123Z", "1969-11-28T20:00:00.123Z")},
      {"ts number", replace(good, R"("2026-11-28T20:00:00.123Z")", "0")},
      {"unknown kind", replace(good, R"("output")", R"("stdout")")},
      {"data array", replace(good, R"({"b64":"aGk=","step":"s","stream":"stdout"})", "[1]")},
      {"data null", replace(good, R"("data":{"b64":"aGk=","step":"s","stream":"stdout"})", R"("data":null)")},
      {"prev short", replace(good, std::string(64, '0'), std::string(63, '0'))},
      {"prev uppercase", replace(good, std::string(64, '0'), std::string(64, 'A'))},
      {"hash non hex", replace(good, hash_value, std::string(64, 'g'))},
      {"sig padded", replace(good, sig_value, sig_value.substr(0, 84) + "==")},
      {"sig short", replace(good, sig_value, sig_value.substr(0, 85))},
      {"sig std alphabet", replace(good, sig_value, "+" + sig_value.substr(1))},
      {"agent empty", replace(good, R"("agent":"agt_1")", R"("agent":"")")},
      {"job not string", replace(good, R"("job":"job_1")", R"("job":1)")},
      {"trailing garbage", good + "x"},
      {"two records", good + good},
      {"invalid utf8", replace(good, "agt_1", "agt_\xff")},
  };
  for (const auto& [name, text] : cases) {
    auto r = parse_record(text);
    EXPECT_FALSE(r) << name;
    if (!r) {
      EXPECT_EQ(r.error().code, Errc::parse) << name << ": " << r.error().message;
    }
  }
}

// A record with a duplicated member verifies one way for one reader and another way
// for the next: refused, naming the key path, at the top level and nested in data.
TEST(Record, DuplicateMembersAreRefusedByPath) {
  const std::string good = sealed_line();
  const std::pair<std::string, std::string> cases[] = {
      {replace(good, R"("v":1})", R"("v":1,"v":1})"), "duplicate key v"},
      {replace(good, R"({"b64":"aGk=",)", R"({"b64":"aGk=","b64":"aGk=",)"), "duplicate key data.b64"},
  };
  for (const auto& [text, want] : cases) {
    ASSERT_NE(text, good);
    auto r = parse_record(text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code, Errc::parse);
    EXPECT_NE(r.error().message.find(want), std::string::npos) << r.error().message;
  }
  auto extra = parse_record(replace(good, R"("v":1})", R"("v":1,"x":0})"));
  ASSERT_FALSE(extra);
  EXPECT_NE(extra.error().message.find("record.x: unknown key"), std::string::npos) << extra.error().message;
}

TEST(Record, VersionMismatchIsReportedDistinctly) {
  const std::string good = sealed_line();
  auto r = parse_record(replace(good, R"("v":1})", R"("v":2})"));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("version"), std::string::npos);
}

TEST(Record, SizeCapAppliesBeforeParsing) {
  std::string huge(kMaxRecordBytes + 1, ' ');
  auto r = parse_record(huge);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::too_large);
}

TEST(Record, RecordFromJsonNeverThrows) {
  for (const char* text : {"null", "1", "\"s\"", "{}", R"({"v":1})", "[1,2]"}) {
    EXPECT_FALSE(record_from_json(Json::parse(text))) << text;
  }
}

TEST(ChainWriter, LinksSequencesAndSigns) {
  auto key = key_from(3);
  auto records = make_job(key, "agt_1", "job_1");
  ASSERT_EQ(records.size(), 7u);
  EXPECT_EQ(records[0].prev, genesis_prev("agt_1", "job_1"));
  for (std::size_t i = 0; i < records.size(); ++i) {
    EXPECT_EQ(records[i].seq, i);
    if (i > 0) {
      EXPECT_EQ(records[i].prev, records[i - 1].hash);
    }
    EXPECT_FALSE(check_record(records[i], key.public_key(), i, records[i].prev));
  }
  EXPECT_EQ(records.back().data.at("records"), 7);
}

TEST(ChainWriter, TimestampsNeverGoBackwards) {
  auto key = key_from(3);
  FixedClock clock(base_time());
  ChainWriter w(key, clock, "a", "j");
  auto r0 = w.append(Kind::job_received, Json::object());
  ASSERT_TRUE(r0);
  clock.set(base_time() - std::chrono::hours(1));
  auto r1 = w.append(Kind::step_start, Json::object());
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->ts, r0->ts);
  clock.set(base_time() + std::chrono::milliseconds(5));
  auto r2 = w.append(Kind::step_start, Json::object());
  ASSERT_TRUE(r2);
  EXPECT_EQ(r2->ts, "2026-11-28T20:00:00.128Z");
}

TEST(ChainWriter, JobEndCountIsFilledOrChecked) {
  auto key = key_from(3);
  FixedClock clock(base_time());
  ChainWriter w(key, clock, "a", "j");
  ASSERT_TRUE(w.append(Kind::job_received, Json::object()));
  auto bad = w.append(Kind::job_end, {{"status", "failed"}, {"records", 5}});
  EXPECT_FALSE(bad);
  EXPECT_EQ(w.next_seq(), 1u);  // a refused append does not advance the chain
  auto good = w.append(Kind::job_end, {{"status", "failed"}, {"records", 2}});
  ASSERT_TRUE(good);
  EXPECT_EQ(good->data.at("records"), 2);
}

TEST(ChainWriter, RefusesNonObjectAndOversizeData) {
  auto key = key_from(3);
  FixedClock clock(base_time());
  ChainWriter w(key, clock, "a", "j");
  EXPECT_FALSE(w.append(Kind::output, Json::array()));
  auto big = w.append(Kind::output, {{"b64", std::string(kMaxRecordBytes, 'A')}});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
  EXPECT_EQ(w.next_seq(), 0u);
  EXPECT_EQ(w.last_hash(), genesis_prev("a", "j"));
  // A full 16 KiB output chunk, base64-encoded, fits.
  EXPECT_TRUE(w.append(Kind::output, {{"step", "s"}, {"stream", "stdout"},
                                      {"b64", std::string((kMaxOutputChunk + 2) / 3 * 4, 'A')}}));
}

TEST(ChainWriter, ResumesAnExistingChain) {
  auto key = key_from(3);
  FixedClock clock(base_time());
  ChainWriter first(key, clock, "a", "j");
  auto r0 = first.append(Kind::job_received, Json::object());
  ASSERT_TRUE(r0);
  clock.set(base_time() - std::chrono::seconds(10));  // clock stepped back across a restart
  ChainWriter resumed(key, clock, "a", "j", first.next_seq(), first.last_hash(), r0->ts);
  auto r1 = resumed.append(Kind::authz_decision, {{"decision", "allow"}});
  ASSERT_TRUE(r1);
  EXPECT_EQ(r1->seq, 1u);
  EXPECT_EQ(r1->prev, r0->hash);
  EXPECT_EQ(r1->ts, r0->ts);
  ChainVerifier v(key.public_key());
  EXPECT_FALSE(v.push(*r0));
  EXPECT_FALSE(v.push(*r1));
}
