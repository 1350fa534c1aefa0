#pragma once
// Test-only token minting: keys generated at test time with OpenSSL, tokens signed with
// EVP (ECDSA DER converted to r‖s), JWKS built from the same keys.
#include <gtest/gtest.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include <cstdint>
#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/json.hpp>
#include <delegate/policies/jwks.hpp>
#include <delegate/policies/jwt.hpp>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace delegate::policies::testing {

struct EvpPkeyFree {
  void operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }
};

inline std::string b64(std::string_view s) { return base64url_encode(as_bytes(s)); }
inline std::string b64(const Bytes& b) { return base64url_encode(b); }
inline std::string b64(const std::string& s) { return b64(std::string_view(s)); }
inline std::string b64(const Json& j) { return b64(std::string_view(j.dump())); }

inline std::string bn_param(EVP_PKEY* k, const char* name, int pad = 0) {
  BIGNUM* bn = nullptr;
  if (EVP_PKEY_get_bn_param(k, name, &bn) != 1) {
    ADD_FAILURE() << "no param " << name;
    return {};
  }
  int len = pad > 0 ? pad : BN_num_bytes(bn);
  Bytes out(static_cast<std::size_t>(len));
  BN_bn2binpad(bn, out.data(), len);
  BN_free(bn);
  return b64(out);
}

// A signing key: kind is "RSA", "P-256", "P-384" or "Ed25519".
struct TestKey {
  std::shared_ptr<EVP_PKEY> pkey;
  std::string kind;
  JwsAlg alg = JwsAlg::rs256;
  std::string kid;

  [[nodiscard]] static std::shared_ptr<EVP_PKEY> generate(const std::string& kind,
                                                          unsigned bits = 2048) {
    EVP_PKEY* k = nullptr;
    if (kind == "RSA") {
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", static_cast<size_t>(bits));
    } else if (kind == "P-256" || kind == "P-384") {
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", kind.c_str());
    } else {
      k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
    }
    EXPECT_NE(k, nullptr) << kind;
    return {k, EvpPkeyFree{}};
  }

  // The public JWK; `with_alg` adds "alg".
  [[nodiscard]] Json jwk(bool with_alg = true) const {
    Json j = Json::object();
    if (kind == "RSA") {
      j["kty"] = "RSA";
      j["n"] = bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_N);
      j["e"] = bn_param(pkey.get(), OSSL_PKEY_PARAM_RSA_E);
    } else if (kind == "P-256" || kind == "P-384") {
      int len = kind == "P-256" ? 32 : 48;
      j["kty"] = "EC";
      j["crv"] = kind;
      j["x"] = bn_param(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_X, len);
      j["y"] = bn_param(pkey.get(), OSSL_PKEY_PARAM_EC_PUB_Y, len);
    } else {
      Bytes raw(32);
      size_t len = raw.size();
      EVP_PKEY_get_raw_public_key(pkey.get(), raw.data(), &len);
      j["kty"] = "OKP";
      j["crv"] = "Ed25519";
      j["x"] = b64(raw);
    }
    if (!kid.empty()) j["kid"] = kid;
    if (with_alg) j["alg"] = std::string(to_string(alg));
    j["use"] = "sig";
    return j;
  }

  // Raw JWS signature bytes over `input` using this key as `alg`.
  [[nodiscard]] std::string sign(std::string_view input, JwsAlg as, int pss_salt = 32) const {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    EVP_PKEY_CTX* pctx = nullptr;
    const EVP_MD* md = as == JwsAlg::eddsa   ? nullptr
                       : as == JwsAlg::es384 ? EVP_sha384()
                                             : EVP_sha256();
    EXPECT_EQ(EVP_DigestSignInit(ctx, &pctx, md, nullptr, pkey.get()), 1);
    if (as == JwsAlg::ps256) {
      EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING);
      EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256());
      EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt);
    }
    size_t len = 0;
    EVP_DigestSign(ctx, nullptr, &len, reinterpret_cast<const unsigned char*>(input.data()),
                   input.size());
    std::string sig(len, '\0');
    EXPECT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len,
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()),
              1);
    sig.resize(len);
    EVP_MD_CTX_free(ctx);
    if (as == JwsAlg::es256 || as == JwsAlg::es384) {
      const int half = as == JwsAlg::es256 ? 32 : 48;
      const unsigned char* p = reinterpret_cast<const unsigned char*>(sig.data());
      ECDSA_SIG* es = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
      std::string rs(static_cast<std::size_t>(2 * half), '\0');
      BN_bn2binpad(ECDSA_SIG_get0_r(es), reinterpret_cast<unsigned char*>(rs.data()), half);
      BN_bn2binpad(ECDSA_SIG_get0_s(es), reinterpret_cast<unsigned char*>(rs.data()) + half, half);
      ECDSA_SIG_free(es);
      return rs;
    }
    return sig;
  }
  [[nodiscard]] std::string sign(std::string_view input) const { return sign(input, alg); }
};

inline JwsAlg default_alg(const std::string& kind) {
  if (kind == "P-256") return JwsAlg::es256;
  if (kind == "P-384") return JwsAlg::es384;
  if (kind == "Ed25519") return JwsAlg::eddsa;
  return JwsAlg::rs256;
}

// Keys are expensive (RSA 4096): generated once per process and shared.
inline std::shared_ptr<EVP_PKEY> shared_pkey(const std::string& name, const std::string& kind,
                                             unsigned bits = 2048) {
  static std::map<std::string, std::shared_ptr<EVP_PKEY>> cache;
  auto& slot = cache[name];
  if (!slot) slot = TestKey::generate(kind, bits);
  return slot;
}

inline TestKey make_key(const std::string& name, const std::string& kind, std::string kid,
                        unsigned bits = 2048) {
  TestKey k;
  k.pkey = shared_pkey(name, kind, bits);
  k.kind = kind;
  k.alg = default_alg(kind);
  k.kid = std::move(kid);
  return k;
}

inline TestKey with_alg(TestKey k, JwsAlg a) {
  k.alg = a;
  return k;
}

inline std::string jwks_of(const std::vector<Json>& jwks) {
  Json doc = {{"keys", Json::array()}};
  for (const auto& j : jwks) doc["keys"].push_back(j);
  return doc.dump();
}
inline std::string jwks_of(const std::vector<TestKey>& keys) {
  std::vector<Json> j;
  for (const auto& k : keys) j.push_back(k.jwk());
  return jwks_of(j);
}

inline constexpr std::int64_t kNow = 1'800'000'000;  // 2027-01-15
inline TimePoint now_tp(std::int64_t s = kNow) { return TimePoint{std::chrono::seconds(s)}; }

inline const char* kIssuer = "https://idp.example.com";
inline const char* kAudience = "delegate-agent";

inline Json default_header(const TestKey& k) {
  Json h = {{"alg", std::string(to_string(k.alg))}, {"typ", "at+jwt"}};
  if (!k.kid.empty()) h["kid"] = k.kid;
  return h;
}

inline Json default_claims() {
  return Json{{"iss", kIssuer},
              {"aud", kAudience},
              {"sub", "alice"},
              {"exp", kNow + 300},
              {"iat", kNow - 10},
              {"jti", "jti-1"},
              {"scope", "runbooks:execute diag"},
              {"client_id", "ops-console"}};
}

// header.payload.signature from JSON texts, signed by `key` as its alg.
inline std::string token_raw(const std::string& header_json, const std::string& payload_json,
                             const TestKey& key) {
  std::string input = b64(header_json) + "." + b64(payload_json);
  return input + "." + b64(key.sign(input));
}
inline std::string token(const Json& header, const Json& payload, const TestKey& key) {
  return token_raw(header.dump(), payload.dump(), key);
}
inline std::string token(const Json& payload, const TestKey& key) {
  return token(default_header(key), payload, key);
}

// Replaces the signature segment of a token.
inline std::string with_signature(const std::string& tok, std::string_view sig) {
  return tok.substr(0, tok.rfind('.') + 1) + b64(sig);
}
inline std::string signing_input(const std::string& tok) { return tok.substr(0, tok.rfind('.')); }
inline std::string raw_signature(const std::string& tok) {
  auto b = base64url_decode(tok.substr(tok.rfind('.') + 1));
  return b ? std::string(b->begin(), b->end()) : std::string();
}

inline IssuerPolicy default_policy() {
  IssuerPolicy p;
  p.issuer = kIssuer;
  p.audience = kAudience;
  p.skew = std::chrono::seconds(60);
  p.max_lifetime = std::chrono::seconds(3600);
  p.agent_name = "web-01";
  p.agent_tags = {"prod", "eu"};
  return p;
}

}  // namespace delegate::policies::testing
