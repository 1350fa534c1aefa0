// JWKS parsing (key/alg binding, weak keys ignored with a reason) and the caching key
// source (max age, rate-limited refresh on unknown kid, staleness fail-closed).
#include <gtest/gtest.h>

#include <delegate/policies/jwks.hpp>
#include <string>
#include <vector>

#include "jwt_test_util.hpp"
#include "test_util.hpp"

namespace delegate::policies {
namespace {

using namespace testing;

const std::vector<JwsAlg> kAll{JwsAlg::rs256, JwsAlg::ps256, JwsAlg::es256, JwsAlg::es384,
                               JwsAlg::eddsa};

bool ignored_mentions(const JwkSet& s, std::string_view what) {
  for (const auto& line : s.ignored) {
    if (line.find(what) != std::string::npos) return true;
  }
  return false;
}

TEST(JwksParse, BindsEachKeyToOneAlg) {
  auto rsa = make_key("rsa2048", "RSA", "r");
  auto ec = make_key("p256", "P-256", "e");
  auto ec3 = make_key("p384", "P-384", "e3");
  auto ed = make_key("ed", "Ed25519", "d");
  auto set = parse_jwks(
      jwks_of(std::vector<Json>{rsa.jwk(), ec.jwk(false), ec3.jwk(false), ed.jwk(false)}), kAll);
  ASSERT_TRUE(set.has_value()) << set.error().message;
  ASSERT_EQ(set->keys.size(), 4u);
  EXPECT_EQ(set->find("r")->alg, JwsAlg::rs256);
  EXPECT_EQ(set->find("e")->alg, JwsAlg::es256);
  EXPECT_EQ(set->find("e3")->alg, JwsAlg::es384);
  EXPECT_EQ(set->find("d")->alg, JwsAlg::eddsa);
  EXPECT_EQ(set->find("nope"), nullptr);
  EXPECT_TRUE(set->ignored.empty());
}

TEST(JwksParse, RsaWithoutAlgNeedsExactlyOneRsaAlgAllowed) {
  auto rsa = make_key("rsa2048", "RSA", "r");
  const std::string doc = jwks_of(std::vector<Json>{rsa.jwk(false)});
  auto both = parse_jwks(doc, kAll);
  ASSERT_TRUE(both.has_value());
  EXPECT_TRUE(both->keys.empty());
  EXPECT_TRUE(ignored_mentions(*both, "without alg"));
  const std::vector<JwsAlg> ps_only{JwsAlg::ps256, JwsAlg::es256};
  auto one = parse_jwks(doc, ps_only);
  ASSERT_TRUE(one.has_value());
  ASSERT_EQ(one->keys.size(), 1u);
  EXPECT_EQ(one->keys[0].alg, JwsAlg::ps256);
}

TEST(JwksParse, IgnoresWeakAndUnusableKeys) {
  auto weak = TestKey{TestKey::generate("RSA", 1024), "RSA", JwsAlg::rs256, "weak"};
  auto ec = make_key("p256", "P-256", "ec");
  auto ed = make_key("ed", "Ed25519", "ed");
  auto good = make_key("rsa2048", "RSA", "good");
  std::vector<Json> keys;
  keys.push_back(weak.jwk());
  keys.push_back(Json{{"kty", "oct"}, {"kid", "hmac"}, {"k", "c2VjcmV0"}, {"alg", "HS256"}});
  Json enc = good.jwk();
  enc["kid"] = "enc";
  enc["use"] = "enc";
  keys.push_back(enc);
  Json mismatch = ec.jwk();
  mismatch["kid"] = "mismatch";
  mismatch["alg"] = "ES384";
  keys.push_back(mismatch);
  Json rsa_as_ec = good.jwk();
  rsa_as_ec["kid"] = "rsa-es";
  rsa_as_ec["alg"] = "ES256";
  keys.push_back(rsa_as_ec);
  Json priv = ec.jwk();
  priv["kid"] = "priv";
  priv["d"] = "AAAA";
  keys.push_back(priv);
  keys.push_back(
      Json{{"kty", "EC"}, {"crv", "secp256k1"}, {"kid", "k1"}, {"x", "AA"}, {"y", "AA"}});
  keys.push_back(Json{{"kty", "OKP"}, {"crv", "Ed448"}, {"kid", "ed448"}, {"x", "AA"}});
  keys.push_back(Json{{"kty", "XYZ"}, {"kid", "xyz"}});
  keys.push_back(
      Json{{"kty", "RSA"}, {"kid", "hs"}, {"alg", "HS256"}, {"n", "AQAB"}, {"e", "AQAB"}});
  Json off_curve = ec.jwk();
  off_curve["kid"] = "offcurve";
  off_curve["y"] = off_curve["x"];
  keys.push_back(off_curve);
  Json short_x = ed.jwk();
  short_x["kid"] = "short";
  short_x["x"] = "AAAA";
  keys.push_back(short_x);
  keys.push_back(Json("not an object"));
  keys.push_back(good.jwk());
  auto set = parse_jwks(jwks_of(keys), kAll);
  ASSERT_TRUE(set.has_value()) << set.error().message;
  ASSERT_EQ(set->keys.size(), 1u);
  EXPECT_EQ(set->keys[0].kid, "good");
  EXPECT_EQ(set->ignored.size(), keys.size() - 1);
  EXPECT_TRUE(ignored_mentions(*set, "1024 bits"));
  EXPECT_TRUE(ignored_mentions(*set, "kid \"enc\""));
  EXPECT_TRUE(ignored_mentions(*set, "does not match"));
  EXPECT_TRUE(ignored_mentions(*set, "private key member"));
}

TEST(JwksParse, DuplicateKidIgnoresBoth) {
  auto a = make_key("p256", "P-256", "same");
  auto b = make_key("ed", "Ed25519", "same");
  auto c = make_key("p384", "P-384", "other");
  auto set = parse_jwks(jwks_of({a, b, c}), kAll);
  ASSERT_TRUE(set.has_value());
  ASSERT_EQ(set->keys.size(), 1u);
  EXPECT_EQ(set->keys[0].kid, "other");
  EXPECT_EQ(set->find("same"), nullptr);
}

TEST(JwksParse, KeysOutsideAllowlistIgnored) {
  auto ec = make_key("p256", "P-256", "ec");
  const std::vector<JwsAlg> eddsa_only{JwsAlg::eddsa};
  auto set = parse_jwks(jwks_of({ec}), eddsa_only);
  ASSERT_TRUE(set.has_value());
  EXPECT_TRUE(set->keys.empty());
}

TEST(JwksParse, WholeDocumentErrors) {
  for (const char* doc :
       {"", "[]", "{}", R"({"keys":{}})", R"({"keys":[],"keys":[]})", "{\"keys\":[", "null"}) {
    EXPECT_FALSE(parse_jwks(doc, kAll).has_value()) << doc;
  }
  EXPECT_FALSE(parse_jwks(std::string(300 * 1024, ' '), kAll).has_value());
  std::vector<Json> many(65, Json{{"kty", "oct"}});
  EXPECT_FALSE(parse_jwks(jwks_of(many), kAll).has_value());
  auto empty = parse_jwks(R"({"keys":[]})", kAll);
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->keys.empty());
}

// A duplicated member inside a key ("n" twice: which modulus is it?) refuses the
// whole document, naming the key path, like a duplicated "keys".
TEST(JwksParse, DuplicateMembersRefuseTheDocument) {
  auto ed = make_key("ed", "Ed25519", "d");
  std::string key = ed.jwk().dump();
  const std::string nested = R"({"keys":[)" + key.substr(0, key.size() - 1) + R"(,"kid":"other"}]})";
  const std::pair<std::string, const char*> cases[] = {
      {R"({"keys":[],"keys":[]})", "duplicate key keys"},
      {nested, "duplicate key keys[0].kid"},
  };
  for (const auto& [doc, want] : cases) {
    auto r = parse_jwks(doc, kAll);
    ASSERT_FALSE(r.has_value()) << doc;
    EXPECT_NE(r.error().message.find(want), std::string::npos) << r.error().message;
  }
}

TEST(JwksParse, FileSource) {
  TempDir dir;
  auto k = make_key("ed", "Ed25519", "f");
  dir.write("jwks.json", jwks_of({k}));
  FileJwksSource src(dir / "jwks.json");
  auto doc = src.fetch();
  ASSERT_TRUE(doc.has_value());
  EXPECT_TRUE(parse_jwks(*doc, kAll).has_value());
  FileJwksSource missing(dir / "nope.json");
  EXPECT_FALSE(missing.fetch().has_value());
}

class JwksCacheTest : public ::testing::Test {
 protected:
  JwksCache make(JwksCacheOptions opts = {std::chrono::seconds(300), std::chrono::seconds(30),
                                          std::chrono::seconds(3600)}) {
    return JwksCache(
        [this]() -> Result<std::string> {
          ++calls;
          if (!available) return fail(Errc::unavailable, "issuer down");
          return doc;
        },
        clock, kAll, opts);
  }
  FixedClock clock{now_tp()};
  std::string doc = jwks_of({make_key("p256", "P-256", "k1")});
  bool available = true;
  int calls = 0;
};

TEST_F(JwksCacheTest, FetchesOnceThenServesFromCache) {
  auto cache = make();
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);
  EXPECT_EQ(calls, 1);
  clock.set(now_tp(kNow + 301));  // past max_age: refetch
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);
  EXPECT_EQ(calls, 2);
  EXPECT_EQ(cache.fetch_count(), 2u);
}

TEST_F(JwksCacheTest, UnknownKidRefreshesAtMostOncePerInterval) {
  auto cache = make();
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);
  clock.set(now_tp(kNow + 31));
  // Rotation: the issuer now publishes k2 as well.
  doc = jwks_of({make_key("p256", "P-256", "k1"), make_key("ed", "Ed25519", "k2")});
  auto r = cache.lookup("k2");
  EXPECT_EQ(r.status, KeyLookupStatus::found);
  ASSERT_TRUE(r.key.has_value());
  EXPECT_EQ(r.key->alg, JwsAlg::eddsa);
  EXPECT_EQ(calls, 2);
  // A burst of random kids within the interval: no refresh storm.
  for (int i = 0; i < 1000; ++i) {
    EXPECT_EQ(cache.lookup("random-" + std::to_string(i)).status, KeyLookupStatus::unknown_kid);
  }
  EXPECT_EQ(calls, 2);
  clock.set(now_tp(kNow + 62));
  EXPECT_EQ(cache.lookup("random-x").status, KeyLookupStatus::unknown_kid);
  EXPECT_EQ(calls, 3);
}

TEST_F(JwksCacheTest, RemovedKidIsUnknownAfterRefresh) {
  auto cache = make();
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);
  doc = jwks_of({make_key("ed", "Ed25519", "k2")});
  clock.set(now_tp(kNow + 301));
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::unknown_kid);
}

TEST_F(JwksCacheTest, KeepsLastGoodSetUntilMaxStaleness) {
  auto cache = make();
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);
  available = false;
  clock.set(now_tp(kNow + 1000));
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);
  EXPECT_FALSE(cache.diagnostics().empty());
  doc = "{not json";
  available = true;
  clock.set(now_tp(kNow + 2000));
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);  // broken publication: old set kept
  available = false;
  clock.set(now_tp(kNow + 3601));
  auto r = cache.lookup("k1");
  EXPECT_EQ(r.status, KeyLookupStatus::unavailable);
  EXPECT_NE(r.detail.find("staleness"), std::string::npos);
  // Recovery.
  available = true;
  doc = jwks_of({make_key("p256", "P-256", "k1")});
  clock.set(now_tp(kNow + 3700));
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);
}

TEST_F(JwksCacheTest, NeverFetchedIsUnavailableAndRateLimited) {
  available = false;
  auto cache = make();
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::unavailable);
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::unavailable);
  EXPECT_EQ(calls, 1);
  clock.set(now_tp(kNow + 30));
  available = true;
  EXPECT_EQ(cache.lookup("k1").status, KeyLookupStatus::found);
  EXPECT_EQ(calls, 2);
}

}  // namespace
}  // namespace delegate::policies
