// JWS/JWT verification against a fixed key set: every negative case asserts the exact
// documented reason code (docs/authorization.md).
#include <gtest/gtest.h>

#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/strict.hpp>
#include <delegate/policies/jwt.hpp>
#include <optional>
#include <string>
#include <tuple>

#include "jwt_test_util.hpp"

namespace delegate::policies {
namespace {

using namespace testing;
using R = Reason;

class JwtTest : public ::testing::Test {
 protected:
  void SetUp() override {
    rsa = make_key("rsa2048", "RSA", "rsa-1");
    rsa3072 = make_key("rsa3072", "RSA", "rsa-3072", 3072);
    rsa4096 = make_key("rsa4096", "RSA", "rsa-4096", 4096);
    ps = with_alg(make_key("rsa-ps", "RSA", "rsa-ps"), JwsAlg::ps256);
    ec256 = make_key("p256", "P-256", "ec-256");
    ec384 = make_key("p384", "P-384", "ec-384");
    ed = make_key("ed", "Ed25519", "ed-1");
    auto set =
        parse_jwks(jwks_of({rsa, rsa3072, rsa4096, ps, ec256, ec384, ed}), policy.algorithms);
    ASSERT_TRUE(set.has_value()) << set.error().message;
    ASSERT_EQ(set->keys.size(), 7u);
    jwks = std::move(*set);
  }

  // nullopt = accepted.
  std::optional<Reason> check(const std::string& tok, std::int64_t now = kNow) {
    VerifyContext ctx{now_tp(now), &job, replay};
    auto r = verify_jwt(tok, jwks, policy, ctx);
    if (r) return std::nullopt;
    return to_reason(r.error().status);
  }
  std::optional<Reason> check_claims(const Json& claims, std::int64_t now = kNow) {
    return check(token(claims, rsa), now);
  }
  // `now` with sub-second precision (ms after kNow + `s`).
  std::optional<Reason> check_claims_at(const Json& claims, std::int64_t s, std::int64_t ms) {
    VerifyContext ctx{now_tp(s) + std::chrono::milliseconds(ms), &job, replay};
    auto r = verify_jwt(token(claims, rsa), jwks, policy, ctx);
    if (r) return std::nullopt;
    return to_reason(r.error().status);
  }
  std::optional<Reason> check_header(const Json& header) {
    return check(token(header, default_claims(), rsa));
  }

  TestKey rsa, rsa3072, rsa4096, ps, ec256, ec384, ed;
  JwkSet jwks;
  IssuerPolicy policy = default_policy();
  Job job;
  ReplayCache* replay = nullptr;
};

TEST_F(JwtTest, AcceptsEveryAlgorithm) {
  for (const TestKey* k : {&rsa, &rsa3072, &rsa4096, &ps, &ec256, &ec384, &ed}) {
    auto tok = token(default_claims(), *k);
    VerifyContext ctx{now_tp(), &job, nullptr};
    auto r = verify_jwt(tok, jwks, policy, ctx);
    ASSERT_TRUE(r.has_value()) << k->kid << ": " << r.error().detail;
    EXPECT_EQ(r->subject, "alice");
    EXPECT_EQ(r->issuer, kIssuer);
    EXPECT_EQ(r->scopes, (std::vector<std::string>{"runbooks:execute", "diag"}));
  }
}

TEST_F(JwtTest, PrincipalFromClaims) {
  Json c = default_claims();
  c.erase("sub");
  c["scope"] = Json::array({"a", "b"});
  c["roles"] = "operator";
  auto r = verify_jwt(token(c, ec256), jwks, policy, VerifyContext{now_tp(), &job, nullptr});
  ASSERT_TRUE(r.has_value()) << r.error().detail;
  EXPECT_EQ(r->subject, "ops-console");
  EXPECT_EQ(r->scopes, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(r->roles, (std::vector<std::string>{"operator"}));
  c["roles"] = Json::array({"x", "y"});
  policy.roles_claim = "roles";
  r = verify_jwt(token(c, ec256), jwks, policy, VerifyContext{now_tp(), &job, nullptr});
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->roles.size(), 2u);
  auto tc = to_token_check(r);
  EXPECT_FALSE(tc.deny.has_value());
  EXPECT_EQ(tc.principal.subject, "ops-console");
}

TEST_F(JwtTest, AlgNoneInAnyCase) {
  for (const char* a : {"none", "None", "NONE", "nOnE"}) {
    Json h = {{"alg", a}, {"typ", "at+jwt"}, {"kid", "rsa-1"}};
    std::string input = b64(h) + "." + b64(default_claims());
    EXPECT_EQ(check(input + "." + b64(std::string("x"))), R::alg_not_allowed) << a;
    // Unsigned form (empty third segment) is not even structurally a JWS.
    EXPECT_EQ(check(input + "."), R::token_malformed) << a;
  }
}

TEST_F(JwtTest, HmacKeyedWithPublicKeyMaterial) {
  for (const TestKey* k : {&rsa, &ec256, &ed}) {
    for (const char* a : {"HS256", "HS384", "HS512"}) {
      Json h = {{"alg", a}, {"typ", "at+jwt"}, {"kid", k->kid}};
      std::string input = b64(h) + "." + b64(default_claims());
      const std::string secret = k->jwk().dump();
      auto mac = hmac_sha256(as_bytes(secret), as_bytes(input));
      EXPECT_EQ(check(input + "." + b64(Bytes(mac.begin(), mac.end()))), R::alg_not_allowed) << a;
    }
  }
}

TEST_F(JwtTest, UnknownAndLookalikeAlgs) {
  for (const char* a : {"rs256", "RS512", "ES512", "Ed25519", "EDDSA", "RSA-OAEP", ""}) {
    Json h = {{"alg", a}, {"typ", "at+jwt"}, {"kid", "rsa-1"}};
    std::string input = b64(h) + "." + b64(default_claims());
    EXPECT_EQ(check(input + "." + b64(rsa.sign(input))), R::alg_not_allowed) << a;
  }
  EXPECT_EQ(check_header(Json{{"typ", "at+jwt"}, {"kid", "rsa-1"}}), R::token_malformed);  // no alg
  EXPECT_EQ(check_header(Json{{"alg", 256}, {"typ", "at+jwt"}, {"kid", "rsa-1"}}),
            R::token_malformed);
}

TEST_F(JwtTest, AlgOutsideIssuerAllowlist) {
  policy.algorithms = {JwsAlg::es256};
  EXPECT_EQ(check(token(default_claims(), rsa)), R::alg_not_allowed);
}

TEST_F(JwtTest, KeyBoundToAnotherAlg) {
  // RS256 header whose kid names an EC key.
  Json h = default_header(rsa);
  h["kid"] = ec256.kid;
  EXPECT_EQ(check(token(h, default_claims(), rsa)), R::alg_not_allowed);
  // PS256 on a key marked RS256.
  auto as_ps = with_alg(rsa, JwsAlg::ps256);
  EXPECT_EQ(check(token(default_claims(), as_ps)), R::alg_not_allowed);
  // RS256 on a key marked PS256.
  EXPECT_EQ(check(token(default_claims(), with_alg(ps, JwsAlg::rs256))), R::alg_not_allowed);
  // ES384 header on the P-256 key.
  Json h2 = default_header(ec384);
  h2["kid"] = ec256.kid;
  EXPECT_EQ(check(token(h2, default_claims(), ec384)), R::alg_not_allowed);
}

TEST_F(JwtTest, EcdsaSignatureShapes) {
  const std::string tok = token(default_claims(), ec256);
  const std::string sig = raw_signature(tok);
  ASSERT_EQ(sig.size(), 64u);
  EXPECT_EQ(check(tok), std::nullopt);
  EXPECT_EQ(check(with_signature(tok, std::string(64, '\0'))), R::bad_signature);
  EXPECT_EQ(check(with_signature(tok, sig.substr(0, 63))), R::bad_signature);
  EXPECT_EQ(check(with_signature(tok, sig + '\0')), R::bad_signature);
  EXPECT_EQ(check(with_signature(tok, sig + "trailing")), R::bad_signature);
  // r = 0 / s = 0.
  EXPECT_EQ(check(with_signature(tok, std::string(32, '\0') + sig.substr(32))), R::bad_signature);
  EXPECT_EQ(check(with_signature(tok, sig.substr(0, 32) + std::string(32, '\0'))),
            R::bad_signature);
  // r or s ≥ n: all-ones is above the P-256 order.
  EXPECT_EQ(check(with_signature(tok, std::string(32, '\xff') + sig.substr(32))), R::bad_signature);
  EXPECT_EQ(check(with_signature(tok, sig.substr(0, 32) + std::string(32, '\xff'))),
            R::bad_signature);
  // s + n (malleated high form) must not slip through either: s' = n exactly.
  const std::string n256(
      "\xff\xff\xff\xff\x00\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff"
      "\xbc\xe6\xfa\xad\xa7\x17\x9e\x84\xf3\xb9\xca\xc2\xfc\x63\x25\x51",
      32);
  EXPECT_EQ(check(with_signature(tok, sig.substr(0, 32) + n256)), R::bad_signature);
  EXPECT_EQ(check(with_signature(tok, n256 + sig.substr(32))), R::bad_signature);
  // DER-encoded signature (what OpenSSL produces natively).
  ECDSA_SIG* es = ECDSA_SIG_new();
  ECDSA_SIG_set0(es, BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()), 32, nullptr),
                 BN_bin2bn(reinterpret_cast<const unsigned char*>(sig.data()) + 32, 32, nullptr));
  unsigned char* der = nullptr;
  int len = i2d_ECDSA_SIG(es, &der);
  EXPECT_EQ(check(with_signature(
                tok, std::string(reinterpret_cast<char*>(der), static_cast<std::size_t>(len)))),
            R::bad_signature);
  OPENSSL_free(der);
  ECDSA_SIG_free(es);
  // ES384 with a 64-byte (ES256-sized) signature.
  const std::string tok384 = token(default_claims(), ec384);
  EXPECT_EQ(check(tok384), std::nullopt);
  EXPECT_EQ(check(with_signature(tok384, raw_signature(tok384).substr(0, 64))), R::bad_signature);
}

TEST_F(JwtTest, Ps256RequiresSaltLength32) {
  const std::string input = b64(default_header(ps)) + "." + b64(default_claims());
  EXPECT_EQ(check(input + "." + b64(ps.sign(input, JwsAlg::ps256, 32))), std::nullopt);
  EXPECT_EQ(check(input + "." + b64(ps.sign(input, JwsAlg::ps256, 20))), R::bad_signature);
  EXPECT_EQ(check(input + "." + b64(ps.sign(input, JwsAlg::ps256, RSA_PSS_SALTLEN_MAX))),
            R::bad_signature);
  // A PKCS#1 v1.5 signature under a PS256 header and key.
  EXPECT_EQ(check(input + "." + b64(ps.sign(input, JwsAlg::rs256))), R::bad_signature);
}

TEST_F(JwtTest, Ed25519AndRsaSignatureLengths) {
  const std::string tok = token(default_claims(), ed);
  const std::string sig = raw_signature(tok);
  EXPECT_EQ(check(with_signature(tok, sig.substr(0, 63))), R::bad_signature);
  EXPECT_EQ(check(with_signature(tok, sig + '\0')), R::bad_signature);
  const std::string rtok = token(default_claims(), rsa);
  const std::string rsig = raw_signature(rtok);
  ASSERT_EQ(rsig.size(), 256u);
  // A leading-zero-stripped or zero-prefixed signature has the wrong length.
  EXPECT_EQ(check(with_signature(rtok, rsig.substr(1))), R::bad_signature);
  EXPECT_EQ(check(with_signature(rtok, std::string(1, '\0') + rsig)), R::bad_signature);
  // A 4096-bit key's token with a 2048-bit-sized signature.
  const std::string t4 = token(default_claims(), rsa4096);
  EXPECT_EQ(check(with_signature(t4, rsig)), R::bad_signature);
}

// Every single-bit flip of the signature (and a sample of header/payload flips) and every
// truncation is rejected.
TEST_F(JwtTest, BitFlipsAndTruncations) {
  for (const TestKey* k : {&ec256, &ed, &rsa}) {
    const std::string tok = token(default_claims(), *k);
    const std::string sig = raw_signature(tok);
    for (std::size_t i = 0; i < sig.size() * 8; ++i) {
      std::string s = sig;
      s[i / 8] = static_cast<char>(s[i / 8] ^ (1 << (i % 8)));
      ASSERT_EQ(check(with_signature(tok, s)), R::bad_signature) << k->kid << " bit " << i;
    }
    for (std::size_t n = 0; n < sig.size(); n += (k == &rsa ? 17 : 1)) {
      auto r = check(with_signature(tok, sig.substr(0, n)));
      ASSERT_TRUE(r == R::bad_signature || (n == 0 && r == R::token_malformed)) << n;
    }
  }
  // Header/payload: flip each bit of the decoded JSON and re-encode. A damaged token
  // that still parses must be refused by the signature (bad_signature exactly), not
  // by luck in the parser; one that does not parse is token_malformed.
  const std::string tok = token(default_claims(), ed);
  const std::string sig_b64 = tok.substr(tok.rfind('.') + 1);
  const std::string payload = default_claims().dump();
  std::size_t parsed_flips = 0;
  for (std::size_t i = 0; i < payload.size() * 8; ++i) {
    std::string p = payload;
    p[i / 8] = static_cast<char>(p[i / 8] ^ (1 << (i % 8)));
    std::string forged = b64(default_header(ed)) + "." + b64(p) + "." + sig_b64;
    const bool parses = parse_json_strict(p).has_value();
    parsed_flips += parses;
    auto r = check(forged);
    if (parses && parse_jwt(forged).has_value()) {
      ASSERT_EQ(r, R::bad_signature) << "payload bit " << i << ": " << printable(p, 300);
    } else {
      ASSERT_EQ(r, R::token_malformed) << "payload bit " << i << ": " << printable(p, 300);
    }
  }
  EXPECT_GT(parsed_flips, payload.size());  // the signature path is really exercised
  const Json header_json = default_header(ed);
  const std::string header = header_json.dump();
  parsed_flips = 0;
  for (std::size_t i = 0; i < header.size() * 8; ++i) {
    std::string h = header;
    h[i / 8] = static_cast<char>(h[i / 8] ^ (1 << (i % 8)));
    std::string forged = b64(h) + "." + b64(payload) + "." + sig_b64;
    auto r = check(forged);
    ASSERT_TRUE(r.has_value()) << i;
    // Same alg and kid (only typ or a member name damaged into one we tolerate): only
    // the signature can refuse it.
    auto parsed = parse_jwt(forged);
    if (parsed && parsed->alg_name == header_json["alg"].get<std::string>() &&
        parsed->kid == header_json["kid"].get<std::string>()) {
      ++parsed_flips;
      ASSERT_EQ(r, R::bad_signature) << "header bit " << i << ": " << printable(h, 300);
    }
  }
  EXPECT_GT(parsed_flips, 0u);
}

// Duplicate members in the header or the claims, top level or nested, are
// token_malformed: two readers of one token must never see two different tokens.
TEST_F(JwtTest, DuplicateMembersAreMalformed) {
  const std::string header = default_header(rsa).dump();
  const std::string claims = default_claims().dump();
  const std::string h_dup = header.substr(0, header.size() - 1) + R"(,"alg":"none"})";
  const std::string c_dup = claims.substr(0, claims.size() - 1) + R"(,"sub":"root"})";
  const std::string c_nested = claims.substr(0, claims.size() - 1) +
                               R"(,"authorization_details":[{"type":"delegate_runbook","identifier":"a","identifier":"b"}]})";
  for (const auto& [h, c, want] : {std::tuple{h_dup, claims, "duplicate key alg"},
                                   std::tuple{header, c_dup, "duplicate key sub"},
                                   std::tuple{header, c_nested, "duplicate key authorization_details[0].identifier"}}) {
    auto r = verify_jwt(token_raw(h, c, rsa), jwks, policy, VerifyContext{now_tp(), &job, nullptr});
    ASSERT_FALSE(r);
    EXPECT_EQ(to_reason(r.error().status), R::token_malformed);
    EXPECT_NE(r.error().detail.find(want), std::string::npos) << r.error().detail;
  }
}

TEST_F(JwtTest, Base64AndSegments) {
  const std::string tok = token(default_claims(), rsa);
  EXPECT_EQ(check(tok), std::nullopt);
  EXPECT_EQ(check(tok + "="), R::token_malformed);
  EXPECT_EQ(check(tok + "=="), R::token_malformed);
  const std::string std_b64 =
      base64_encode(as_bytes(default_claims().dump() + "\x3f\x3f\x3e\x3e\xfb\xff"));  // has + or /
  const auto d1 = tok.find('.');
  const auto d2 = tok.rfind('.');
  EXPECT_EQ(check(tok.substr(0, d1 + 1) + std_b64 + tok.substr(d2)), R::token_malformed);
  std::string plus = tok;
  plus[d2 + 3] = '+';
  EXPECT_EQ(check(plus), R::token_malformed);
  std::string slash = tok;
  slash[2] = '/';
  EXPECT_EQ(check(slash), R::token_malformed);
  EXPECT_EQ(check(tok.substr(0, d2)), R::token_malformed);         // 2 segments
  EXPECT_EQ(check(tok + ".x"), R::token_malformed);                // 4 segments
  EXPECT_EQ(check(tok + ".x.y"), R::token_malformed);              // 5 segments (JWE shape)
  EXPECT_EQ(check("." + tok.substr(d1 + 1)), R::token_malformed);  // empty header
  EXPECT_EQ(check(tok.substr(0, d1) + ".." + tok.substr(d2 + 1)),
            R::token_malformed);  // empty payload
  EXPECT_EQ(check(""), R::token_malformed);
  EXPECT_EQ(check(" " + tok), R::token_malformed);
}

TEST_F(JwtTest, JsonStrictness) {
  std::string h = default_header(rsa).dump();
  // Duplicate alg / exp.
  EXPECT_EQ(check(token_raw(R"({"alg":"RS256","alg":"RS256","typ":"at+jwt","kid":"rsa-1"})",
                            default_claims().dump(), rsa)),
            R::token_malformed);
  std::string claims = default_claims().dump();
  claims.insert(1, "\"exp\":1,");
  EXPECT_EQ(check(token_raw(h, claims, rsa)), R::token_malformed);
  // Non-UTF-8 bytes inside a JSON string.
  std::string bad = default_claims().dump();
  bad.replace(bad.find("alice"), 5,
              "al\xff\xfe"
              "e");
  EXPECT_EQ(check(token_raw(h, bad, rsa)), R::token_malformed);
  // Not an object.
  EXPECT_EQ(check(token_raw(h, "[1,2]", rsa)), R::token_malformed);
  EXPECT_EQ(check(token_raw("\"RS256\"", claims, rsa)), R::token_malformed);
  EXPECT_EQ(check(token_raw(h, default_claims().dump() + "x", rsa)), R::token_malformed);
  // Depth over 16.
  Json deep = default_claims();
  Json nest = 1;
  for (int i = 0; i < 20; ++i) nest = Json::array({nest});
  deep["x"] = nest;
  EXPECT_EQ(check(token(deep, rsa)), R::token_malformed);
}

TEST_F(JwtTest, OversizedToken) {
  Json c = default_claims();
  c["pad"] = std::string(8000, 'a');
  EXPECT_EQ(check(token(c, rsa)), R::token_malformed);
  EXPECT_EQ(check(std::string(9000, 'a')), R::token_malformed);
}

TEST_F(JwtTest, HostileKids) {
  for (const std::string& kid :
       {std::string("../../../../etc/passwd"), std::string("' OR 1=1; --"),
        std::string("rsa-1 "), std::string("RSA-1")}) {
    Json h = default_header(rsa);
    h["kid"] = kid;
    EXPECT_EQ(check(token(h, default_claims(), rsa)), R::unknown_key) << kid;
  }
  Json h = default_header(rsa);
  h["kid"] = std::string(10 * 1024, 'k');
  EXPECT_EQ(check(token(h, default_claims(), rsa)), R::token_malformed);
  h["kid"] = std::string(300, 'k');
  EXPECT_EQ(check(token(h, default_claims(), rsa)), R::token_malformed);
  h["kid"] = 7;
  EXPECT_EQ(check(token(h, default_claims(), rsa)), R::token_malformed);
  // Control characters in a header value are refused before any key lookup.
  h["kid"] = std::string("rsa-1\0x", 7);
  EXPECT_EQ(check(token(h, default_claims(), rsa)), R::token_malformed);
  h.erase("kid");  // no kid: no key without a kid in the set
  EXPECT_EQ(check(token(h, default_claims(), rsa)), R::unknown_key);
}

TEST_F(JwtTest, ForbiddenHeaders) {
  const Json extra[] = {
      {{"jku", "https://evil.example/jwks"}},
      {{"x5u", "https://evil.example/cert"}},
      {{"jwk", rsa.jwk()}},
      {{"x5c", Json::array({"MIIB"})}},
      {{"crit", Json::array({"exp"})}},
      {{"b64", false}},
      {{"zip", "DEF"}},
      {{"cty", "JWT"}},
      {{"cty", "jwt"}},
      {{"enc", "A256GCM"}},
  };
  for (const auto& e : extra) {
    Json h = default_header(rsa);
    h.update(e);
    EXPECT_EQ(check(token(h, default_claims(), rsa)), R::token_malformed) << e.dump();
  }
}

TEST_F(JwtTest, Type) {
  Json h = default_header(rsa);
  for (const char* ok : {"at+jwt", "AT+JWT", "application/at+jwt", "Application/AT+JWT"}) {
    h["typ"] = ok;
    EXPECT_EQ(check_header(h), std::nullopt) << ok;
  }
  for (const char* bad : {"JWT", "jwt", "at+jwt ", "id+jwt", ""}) {
    h["typ"] = bad;
    EXPECT_EQ(check_header(h), R::wrong_type) << bad;
  }
  h.erase("typ");
  EXPECT_EQ(check_header(h), R::wrong_type);
  policy.accept_jwt_typ = true;
  EXPECT_EQ(check_header(h), R::wrong_type);
  h["typ"] = "JWT";
  EXPECT_EQ(check_header(h), std::nullopt);
  h["typ"] = 1;
  EXPECT_EQ(check_header(h), R::token_malformed);
}

TEST_F(JwtTest, Issuer) {
  for (const char* iss : {"http://idp.example.com", "https://idp.example.com/",
                          "https://IDP.example.com", "https://idp.example.com.evil", ""}) {
    Json c = default_claims();
    c["iss"] = iss;
    EXPECT_EQ(check_claims(c), R::wrong_issuer) << iss;
  }
  Json c = default_claims();
  c.erase("iss");
  EXPECT_EQ(check_claims(c), R::wrong_issuer);
  c["iss"] = Json::array({kIssuer});
  EXPECT_EQ(check_claims(c), R::wrong_issuer);
}

TEST_F(JwtTest, Audience) {
  Json c = default_claims();
  c["aud"] = Json::array({"other", kAudience});
  EXPECT_EQ(check_claims(c), std::nullopt);
  c["aud"] = Json::array({"other", "third"});
  EXPECT_EQ(check_claims(c), R::wrong_audience);
  c["aud"] = "someone-else";
  EXPECT_EQ(check_claims(c), R::wrong_audience);
  c["aud"] = Json::array();
  EXPECT_EQ(check_claims(c), R::wrong_audience);
  c.erase("aud");
  EXPECT_EQ(check_claims(c), R::wrong_audience);
  c["aud"] = 5;
  EXPECT_EQ(check_claims(c), R::token_malformed);
}

TEST_F(JwtTest, ExpiryAndSkew) {
  Json c = default_claims();
  c.erase("exp");
  EXPECT_EQ(check_claims(c), R::token_malformed);
  c = default_claims();
  const std::int64_t exp = c["exp"].get<std::int64_t>();
  EXPECT_EQ(check_claims(c, exp + 60 - 1), std::nullopt);  // one second inside the skew
  EXPECT_EQ(check_claims(c, exp + 60), R::expired);
  EXPECT_EQ(check_claims(c, exp + 60 + 1), R::expired);  // one second beyond
  c["nbf"] = kNow + 61;
  EXPECT_EQ(check_claims(c), R::not_yet_valid);
  c["nbf"] = kNow + 60;
  EXPECT_EQ(check_claims(c), std::nullopt);
  c = default_claims();
  c["iat"] = kNow + 61;
  EXPECT_EQ(check_claims(c), R::not_yet_valid);
}

TEST_F(JwtTest, NumericDatesOnly) {
  const Json bad_values[] = {Json("1800000300"),
                             Json(true),
                             Json(nullptr),
                             Json(-1),
                             Json(1e300),
                             Json(-0.5),
                             Json(1.7976931348623157e308),
                             Json(-1e300),
                             Json(std::int64_t{1} << 41),
                             Json::array({kNow}),
                             Json(18446744073709551615ull)};
  for (const char* name : {"exp", "nbf", "iat"}) {
    for (const auto& v : bad_values) {
      Json c = default_claims();
      c[name] = v;
      EXPECT_EQ(check_claims(c), R::token_malformed) << name << "=" << v.dump();
    }
  }
  Json c = default_claims();
  c["exp"] = static_cast<double>(kNow + 300);  // zero fraction is a valid NumericDate
  EXPECT_EQ(check_claims(c), std::nullopt);
}

// RFC 7519 §2: "non-integer values can be represented". Fractional dates are accepted
// and compared to the sub-second, on both sides of each boundary (skew is 60 s).
TEST_F(JwtTest, FractionalNumericDatesAreComparedExactly) {
  Json c = default_claims();
  c["exp"] = kNow + 300.5;
  c["iat"] = kNow - 10.25;
  EXPECT_EQ(check_claims(c), std::nullopt);
  EXPECT_EQ(check_claims_at(c, kNow + 360, 499), std::nullopt);  // exp + skew − 1 ms
  EXPECT_EQ(check_claims_at(c, kNow + 360, 500), R::expired);     // exactly exp + skew
  EXPECT_EQ(check_claims_at(c, kNow + 360, 501), R::expired);

  c = default_claims();
  c["nbf"] = kNow + 60.75;
  EXPECT_EQ(check_claims_at(c, kNow, 749), R::not_yet_valid);  // nbf − skew − 1 ms
  EXPECT_EQ(check_claims_at(c, kNow, 750), std::nullopt);
  c = default_claims();
  c["iat"] = kNow + 60.5;
  c["exp"] = kNow + 300;
  EXPECT_EQ(check_claims_at(c, kNow, 499), R::not_yet_valid);
  EXPECT_EQ(check_claims_at(c, kNow, 500), std::nullopt);

  // Lifetime (max 3600 s) measured with the fractions: 3600 s is fine, 3600.001 is not.
  c = default_claims();
  c["iat"] = kNow - 0.5;
  c["exp"] = kNow + 3599.5;
  EXPECT_EQ(check_claims(c), std::nullopt);
  c["exp"] = kNow + 3599.501;
  EXPECT_EQ(check_claims(c), R::token_malformed);
}

// Names and values of the header and the claims with control characters end in a
// deny with a reason code (never an exception), and so do bytes that are not UTF-8.
TEST_F(JwtTest, ControlCharactersAndInvalidUtf8AreMalformed) {
  for (const std::string& bad : {std::string("a\nb"), std::string("\x1b[31m"), std::string("x\x7f"),
                                 std::string("\xc2\x85next-line"), std::string("nul\0", 4)}) {
    Json c = default_claims();
    c["sub"] = bad;
    EXPECT_EQ(check_claims(c), R::token_malformed) << printable(bad);
    c = default_claims();
    c[bad] = "x";
    EXPECT_EQ(check_claims(c), R::token_malformed) << printable(bad);
    c = default_claims();
    c["authorization_details"] = Json::array({Json{{"type", "delegate_runbook"}, {"params", {{"p", bad}}}}});
    EXPECT_EQ(check_claims(c), R::token_malformed) << printable(bad);
    Json h = default_header(rsa);
    h["typ"] = "at+jwt" + bad;
    EXPECT_EQ(check(token(h, default_claims(), rsa)), R::token_malformed) << printable(bad);
  }
  // Printable non-ASCII is fine.
  Json c = default_claims();
  c["sub"] = "jos\xc3\xa9";
  EXPECT_EQ(check_claims(c), std::nullopt);

  // Raw bytes that are not UTF-8, signed like any other payload, and an alg whose name
  // is cut inside a multi-byte character by the detail message: each yields a reason
  // and a detail that serialises as JSON.
  const std::string raw_payload = R"({"iss":")" + std::string(kIssuer) + "\xff\xfe\"}";
  auto r = verify_jwt(token_raw(default_header(rsa).dump(), raw_payload, rsa), jwks, policy,
                      VerifyContext{now_tp(), &job, nullptr});
  ASSERT_FALSE(r);
  EXPECT_EQ(to_reason(r.error().status), R::token_malformed);
  EXPECT_NO_THROW((void)Json(r.error().detail).dump());
  Json h = default_header(rsa);
  std::string alg = "x";
  for (int i = 0; i < 20; ++i) alg += "\xc3\xa9";
  h["alg"] = alg;
  r = verify_jwt(token(h, default_claims(), rsa), jwks, policy, VerifyContext{now_tp(), &job, nullptr});
  ASSERT_FALSE(r);
  EXPECT_EQ(to_reason(r.error().status), R::alg_not_allowed);
  EXPECT_NO_THROW((void)Json(r.error().detail).dump()) << printable(r.error().detail);
}

TEST_F(JwtTest, MaxLifetime) {
  Json c = default_claims();
  c["iat"] = kNow;
  c["exp"] = kNow + 3601;
  EXPECT_EQ(check_claims(c), R::token_malformed);
  c["exp"] = kNow + 3600;
  EXPECT_EQ(check_claims(c), std::nullopt);
  c.erase("iat");  // then measured from now
  c["exp"] = kNow + 4000;
  EXPECT_EQ(check_claims(c), R::token_malformed);
  c["iat"] = kNow;
  c["exp"] = kNow - 100;  // exp before iat is nonsense, but expired first
  EXPECT_EQ(check_claims(c), R::expired);
}

TEST_F(JwtTest, IllTypedClaims) {
  Json c = default_claims();
  c["scope"] = 5;
  EXPECT_EQ(check_claims(c), R::token_malformed);
  c = default_claims();
  c["roles"] = Json::array({"a", 1});
  EXPECT_EQ(check_claims(c), R::token_malformed);
  c = default_claims();
  c.erase("sub");
  c.erase("client_id");
  EXPECT_EQ(check_claims(c), R::token_malformed);
  c = default_claims();
  c["sub"] = Json::object();
  EXPECT_EQ(check_claims(c), R::token_malformed);
  c = default_claims();
  c["jti"] = 12;
  EXPECT_EQ(check_claims(c), R::token_malformed);
}

TEST_F(JwtTest, JsonErrorDetailNeverContainsToken) {
  const std::string tok = token(default_claims(), rsa);
  auto r =
      verify_jwt(with_signature(tok, "x"), jwks, policy, VerifyContext{now_tp(), &job, nullptr});
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().detail.find(tok.substr(0, 20)), std::string::npos);
  auto tc = to_token_check(r);
  EXPECT_EQ(tc.deny, R::bad_signature);
}

}  // namespace
}  // namespace delegate::policies
