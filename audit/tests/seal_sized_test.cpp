// seal_sized() reports the serialised size without serialising again (ChainWriter's
// size check): it must equal serialize(r).size() for every record, and seal the record
// exactly as seal() does.
#include <delegate/audit/record.hpp>

#include <string>
#include <vector>

#include <gtest/gtest.h>

using delegate::Json;
namespace audit = delegate::audit;

TEST(SealSized, EqualsTheSerialisedSizeAndSealsLikeSeal) {
  auto key = delegate::Ed25519PrivateKey::from_seed(std::vector<std::uint8_t>(32, 5));
  ASSERT_TRUE(key);
  const std::vector<Json> datas = {
      Json::object(),
      Json{{"step", "s"}, {"stream", "stdout"}, {"b64", std::string(21848, 'Q')}},
      Json{{"\xc3\xa9t\xc3\xa9", "\xf0\x9f\x98\x80\"\\\n"}, {"\xee\x80\x80", Json::array({1, 2.5, nullptr, true})}},
      Json{{"big", 9007199254740992ull}, {"nested", Json{{"a", Json{{"b", "\x7f\x01"}}}}}},
  };
  std::uint64_t seq = 0;
  for (const auto& d : datas) {
    for (auto kind : {audit::Kind::output, audit::Kind::job_received, audit::Kind::net_connect}) {
      audit::Record r;
      r.agent = "agt_\xc3\xa9";
      r.job = "job-1";
      r.seq = seq++ * 1000003;
      r.ts = "2026-12-02T07:00:00.123Z";
      r.kind = kind;
      r.data = d;
      r.prev = std::string(64, 'a');
      audit::Record plain = r;
      auto size = audit::seal_sized(r, *key);
      ASSERT_TRUE(size) << size.error().message;
      EXPECT_EQ(*size, audit::serialize(r).size());
      ASSERT_TRUE(audit::seal(plain, *key));
      EXPECT_EQ(plain.hash, r.hash);
      EXPECT_EQ(plain.sig, r.sig);
      auto h = audit::compute_hash(r);
      ASSERT_TRUE(h);
      EXPECT_EQ(delegate::hex_encode(*h), r.hash);
    }
  }
}
