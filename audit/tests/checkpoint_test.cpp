// The agent-stream data formats: builders round-trip through the strict parsers, and
// the parsers refuse everything outside the contract.
#include "export_test_util.hpp"

using namespace audit_test;

namespace {

const std::string kHash(64, 'c');

Json start_data() { return make_agent_start_data(kBoot1, base64_encode(key_from(1).public_key()), "0.1.0", "host-1"); }

}  // namespace

TEST(Checkpoint, BootIdIsFreshLowercaseHex) {
  const auto a = new_boot_id();
  const auto b = new_boot_id();
  EXPECT_EQ(a.size(), 32u);
  EXPECT_NE(a, b);
  EXPECT_TRUE(hex_decode(a));
}

TEST(Checkpoint, BuildersRoundTrip) {
  auto start = parse_agent_start_data(start_data());
  ASSERT_TRUE(start) << start.error().message;
  EXPECT_EQ(start->boot_id, kBoot1);
  EXPECT_EQ(start->public_key, key_from(1).public_key());
  EXPECT_EQ(start->version, "0.1.0");
  EXPECT_EQ(start->hostname, "host-1");

  auto stop = parse_agent_stop_data(make_agent_stop_data(kBoot1));
  ASSERT_TRUE(stop);
  EXPECT_EQ(stop->reason, "shutdown");

  std::vector<FinishedJob> jobs = {{"job_a", 7, kHash, "succeeded"}, {"job_b", 3, kHash, "denied"}};
  auto cp = parse_checkpoint_data(make_checkpoint_data(kBoot1, jobs));
  ASSERT_TRUE(cp) << cp.error().message;
  ASSERT_EQ(cp->jobs.size(), 2u);
  EXPECT_EQ(cp->jobs[1].job, "job_b");
  EXPECT_EQ(cp->jobs[1].records, 3u);
  EXPECT_EQ(cp->jobs[1].status, "denied");
  EXPECT_TRUE(parse_checkpoint_data(make_checkpoint_data(kBoot1, {})));
  // The exact member names are the contract.
  EXPECT_EQ(make_checkpoint_data(kBoot1, jobs).dump(),
            R"({"boot_id":"00112233445566778899aabbccddeeff","jobs":[{"job":"job_a","last_hash":")" + kHash +
                R"(","records":7,"status":"succeeded"},{"job":"job_b","last_hash":")" + kHash +
                R"(","records":3,"status":"denied"}]})");
}

TEST(Checkpoint, AgentStartParserIsStrict) {
  auto with = [](const char* member, Json value) {
    Json d = start_data();
    d[member] = std::move(value);
    return parse_agent_start_data(d);
  };
  EXPECT_FALSE(with("boot_id", "00112233445566778899AABBCCDDEEFF"));
  EXPECT_FALSE(with("boot_id", "0011"));
  EXPECT_FALSE(with("boot_id", 7));
  EXPECT_FALSE(with("public_key", base64url_encode(key_from(1).public_key())));  // url alphabet
  EXPECT_FALSE(with("public_key", base64_encode(std::vector<std::uint8_t>(31, 1))));
  EXPECT_FALSE(with("version", ""));
  EXPECT_FALSE(with("version", std::string(200, 'v')));
  EXPECT_FALSE(with("hostname", std::string(300, 'h')));
  EXPECT_TRUE(with("hostname", ""));
  EXPECT_FALSE(with("extra", 1));
  Json missing = start_data();
  missing.erase("version");
  EXPECT_FALSE(parse_agent_start_data(missing));
  EXPECT_FALSE(parse_agent_start_data(Json::array()));
}

TEST(Checkpoint, AgentStopParserIsStrict) {
  EXPECT_FALSE(parse_agent_stop_data({{"boot_id", kBoot1}, {"reason", "crash"}}));
  EXPECT_FALSE(parse_agent_stop_data({{"boot_id", kBoot1}}));
  EXPECT_FALSE(parse_agent_stop_data({{"boot_id", kBoot1}, {"reason", "shutdown"}, {"x", 1}}));
}

TEST(Checkpoint, CheckpointParserIsStrict) {
  auto entry = [](const char* member, Json value) {
    Json e = {{"job", "job_a"}, {"records", 7}, {"last_hash", kHash}, {"status", "succeeded"}};
    if (value.is_null()) {
      e.erase(member);
    } else {
      e[member] = std::move(value);
    }
    return parse_checkpoint_data({{"boot_id", kBoot1}, {"jobs", Json::array({e})}});
  };
  EXPECT_TRUE(entry("records", 1));
  EXPECT_FALSE(entry("records", 0));
  EXPECT_FALSE(entry("records", -1));
  EXPECT_FALSE(entry("records", 1.5));
  EXPECT_FALSE(entry("records", "7"));
  EXPECT_FALSE(entry("records", (std::uint64_t{1} << 53) + 1));
  EXPECT_FALSE(entry("last_hash", std::string(64, 'C')));
  EXPECT_FALSE(entry("last_hash", std::string(63, 'c')));
  EXPECT_FALSE(entry("status", "running"));
  EXPECT_FALSE(entry("job", ""));
  EXPECT_FALSE(entry("job", "_agent"));
  EXPECT_FALSE(entry("status", nullptr));
  EXPECT_FALSE(entry("extra", true));
  for (const char* s : {"succeeded", "failed", "denied", "timed_out", "cancelled", "interrupted"}) {
    EXPECT_TRUE(entry("status", s)) << s;
  }
  FinishedJob a{"job_a", 7, kHash, "succeeded"};
  EXPECT_FALSE(parse_checkpoint_data(make_checkpoint_data(kBoot1, {a, a})));
  EXPECT_FALSE(parse_checkpoint_data({{"boot_id", kBoot1}, {"jobs", Json::object()}}));
  EXPECT_FALSE(parse_checkpoint_data({{"boot_id", kBoot1}}));
}
