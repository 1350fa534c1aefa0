#include <openssl/core_names.h>

#include <algorithm>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/strict.hpp>
#include <delegate/policies/jwks.hpp>
#include <exception>
#include <map>

#include "jwt_ossl.hpp"

namespace delegate::policies {

std::string_view to_string(JwsAlg a) {
  switch (a) {
    case JwsAlg::rs256:
      return "RS256";
    case JwsAlg::ps256:
      return "PS256";
    case JwsAlg::es256:
      return "ES256";
    case JwsAlg::es384:
      return "ES384";
    case JwsAlg::eddsa:
      return "EdDSA";
  }
  return "?";
}

std::optional<JwsAlg> parse_jws_alg(std::string_view name) {
  // Case-sensitive on purpose (RFC 7515 §4.1.1): "none", "NONE", "hs256" all fall out.
  for (JwsAlg a : {JwsAlg::rs256, JwsAlg::ps256, JwsAlg::es256, JwsAlg::es384, JwsAlg::eddsa}) {
    if (to_string(a) == name) return a;
  }
  return std::nullopt;
}

const Jwk* JwkSet::find(std::string_view kid) const {
  for (const auto& k : keys) {
    if (k.kid == kid) return &k;
  }
  return nullptr;
}

namespace {

using KeyResult = std::expected<Jwk, std::string>;  // error = why the key is ignored

std::unexpected<std::string> ignore(std::string why) { return std::unexpected(std::move(why)); }

bool is_rsa(JwsAlg a) { return a == JwsAlg::rs256 || a == JwsAlg::ps256; }

std::expected<Bytes, std::string> b64_member(const Json& jwk, const char* name) {
  auto it = jwk.find(name);
  if (it == jwk.end() || !it->is_string())
    return ignore(std::string("member \"") + name + "\" missing or not a string");
  auto b = base64url_decode(it->get_ref<const std::string&>());
  if (!b || b->empty()) return ignore(std::string("member \"") + name + "\" is not base64url");
  return *b;
}

std::expected<std::shared_ptr<EVP_PKEY>, std::string> from_params(const char* type,
                                                                  OSSL_PARAM* params) {
  ossl::PkeyCtx ctx(EVP_PKEY_CTX_new_from_name(nullptr, type, nullptr));
  EVP_PKEY* raw = nullptr;
  if (!ctx || EVP_PKEY_fromdata_init(ctx.get()) != 1 ||
      EVP_PKEY_fromdata(ctx.get(), &raw, EVP_PKEY_PUBLIC_KEY, params) != 1 || raw == nullptr) {
    return ignore(std::string("OpenSSL rejected the ") + type + " public key");
  }
  auto key = ossl::share(raw);
  // fromdata does not promise full validation; a point off the curve or an even
  // modulus must not reach a verify call.
  ossl::PkeyCtx check(EVP_PKEY_CTX_new_from_pkey(nullptr, key.get(), nullptr));
  if (!check || EVP_PKEY_public_check(check.get()) != 1) {
    return ignore(std::string("the ") + type + " public key fails validation");
  }
  return key;
}

std::expected<std::shared_ptr<EVP_PKEY>, std::string> rsa_key(const Json& jwk) {
  auto n = b64_member(jwk, "n");
  if (!n) return std::unexpected(n.error());
  auto e = b64_member(jwk, "e");
  if (!e) return std::unexpected(e.error());
  if (e->size() > 8) return ignore("RSA exponent longer than 64 bits");
  ossl::Bn bn_n(BN_bin2bn(n->data(), static_cast<int>(n->size()), nullptr));
  ossl::Bn bn_e(BN_bin2bn(e->data(), static_cast<int>(e->size()), nullptr));
  if (!bn_n || !bn_e) return ignore("cannot allocate RSA numbers");
  if (BN_num_bits(bn_n.get()) < 2048) {
    return ignore("RSA key of " + std::to_string(BN_num_bits(bn_n.get())) + " bits is below 2048");
  }
  if (BN_num_bits(bn_n.get()) > 8192) return ignore("RSA key above 8192 bits");
  ossl::ParamBld bld(OSSL_PARAM_BLD_new());
  if (!bld || OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_N, bn_n.get()) != 1 ||
      OSSL_PARAM_BLD_push_BN(bld.get(), OSSL_PKEY_PARAM_RSA_E, bn_e.get()) != 1) {
    return ignore("cannot build RSA parameters");
  }
  ossl::Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return ignore("cannot build RSA parameters");
  return from_params("RSA", params.get());
}

std::expected<std::shared_ptr<EVP_PKEY>, std::string> ec_key(const Json& jwk, JwsAlg alg) {
  const bool p256 = alg == JwsAlg::es256;
  const std::size_t len = p256 ? 32 : 48;
  auto x = b64_member(jwk, "x");
  if (!x) return std::unexpected(x.error());
  auto y = b64_member(jwk, "y");
  if (!y) return std::unexpected(y.error());
  // RFC 7518 §6.2.1.2: coordinates are the full field size, no shorter spelling.
  if (x->size() != len || y->size() != len) return ignore("EC coordinate of the wrong length");
  Bytes point;
  point.reserve(1 + 2 * len);
  point.push_back(0x04);
  point.insert(point.end(), x->begin(), x->end());
  point.insert(point.end(), y->begin(), y->end());
  ossl::ParamBld bld(OSSL_PARAM_BLD_new());
  const char* group = p256 ? "prime256v1" : "secp384r1";
  if (!bld ||
      OSSL_PARAM_BLD_push_utf8_string(bld.get(), OSSL_PKEY_PARAM_GROUP_NAME, group, 0) != 1 ||
      OSSL_PARAM_BLD_push_octet_string(bld.get(), OSSL_PKEY_PARAM_PUB_KEY, point.data(),
                                       point.size()) != 1) {
    return ignore("cannot build EC parameters");
  }
  ossl::Params params(OSSL_PARAM_BLD_to_param(bld.get()));
  if (!params) return ignore("cannot build EC parameters");
  return from_params("EC", params.get());
}

std::expected<std::shared_ptr<EVP_PKEY>, std::string> ed25519_key(const Json& jwk) {
  auto x = b64_member(jwk, "x");
  if (!x) return std::unexpected(x.error());
  if (x->size() != 32) return ignore("Ed25519 key is not 32 bytes");
  EVP_PKEY* raw = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, x->data(), x->size());
  if (raw == nullptr) return ignore("OpenSSL rejected the Ed25519 key");
  return ossl::share(raw);
}

std::optional<std::string> string_member(const Json& jwk, const char* name, bool& bad) {
  auto it = jwk.find(name);
  if (it == jwk.end()) return std::nullopt;
  if (!it->is_string()) {
    bad = true;
    return std::nullopt;
  }
  return it->get<std::string>();
}

// Binds one JWK to its algorithm and builds the key, or says why it is unusable.
KeyResult parse_key(const Json& jwk, std::span<const JwsAlg> allowed) {
  if (!jwk.is_object()) return ignore("entry is not an object");
  bool bad = false;
  auto kty = string_member(jwk, "kty", bad);
  auto alg_name = string_member(jwk, "alg", bad);
  auto use = string_member(jwk, "use", bad);
  auto crv = string_member(jwk, "crv", bad);
  auto kid = string_member(jwk, "kid", bad);
  if (bad) return ignore("kty, alg, use, crv or kid is not a string");
  if (!kty) return ignore("no kty");
  if (kid && kid->size() > kMaxKidBytes) return ignore("kid longer than 256 bytes");
  // A published private key is compromised by definition; refusing it also keeps
  // symmetric `oct` secrets (member "k") out.
  for (const char* m : {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}) {
    if (jwk.contains(m)) return ignore(std::string("private key member \"") + m + "\" present");
  }
  if (*kty == "oct") return ignore("symmetric (oct) keys are never used");
  if (use && *use != "sig") return ignore("use is \"" + printable(*use, 16) + "\", not sig");
  if (auto ops = jwk.find("key_ops"); ops != jwk.end()) {
    if (!ops->is_array() || std::find(ops->begin(), ops->end(), Json("verify")) == ops->end()) {
      return ignore("key_ops does not include verify");
    }
  }

  std::optional<JwsAlg> alg;
  if (alg_name) {
    alg = parse_jws_alg(*alg_name);
    if (!alg) return ignore("unsupported alg \"" + printable(*alg_name, 16) + "\"");
  }

  Jwk out;
  out.kid = kid.value_or("");
  if (*kty == "RSA") {
    if (!alg) {
      // Ambiguous between RS256 and PS256 unless the issuer allows only one.
      std::vector<JwsAlg> rsa;
      for (JwsAlg a : allowed) {
        if (is_rsa(a) && std::find(rsa.begin(), rsa.end(), a) == rsa.end()) rsa.push_back(a);
      }
      if (rsa.size() != 1)
        return ignore("RSA key without alg and the issuer allows not exactly one RSA alg");
      alg = rsa.front();
    }
    if (!is_rsa(*alg)) return ignore("RSA key with non-RSA alg " + std::string(to_string(*alg)));
    if (crv) return ignore("RSA key with crv");
    auto k = rsa_key(jwk);
    if (!k) return std::unexpected(k.error());
    out.key = std::move(*k);
  } else if (*kty == "EC") {
    if (!crv) return ignore("EC key without crv");
    JwsAlg derived;
    if (*crv == "P-256") {
      derived = JwsAlg::es256;
    } else if (*crv == "P-384") {
      derived = JwsAlg::es384;
    } else {
      return ignore("unsupported EC curve \"" + printable(*crv, 16) + "\"");
    }
    if (alg && *alg != derived)
      return ignore("alg " + std::string(to_string(*alg)) + " does not match crv " + *crv);
    alg = derived;
    auto k = ec_key(jwk, derived);
    if (!k) return std::unexpected(k.error());
    out.key = std::move(*k);
  } else if (*kty == "OKP") {
    if (!crv || *crv != "Ed25519") return ignore("unsupported OKP curve");
    if (alg && *alg != JwsAlg::eddsa)
      return ignore("alg " + std::string(to_string(*alg)) + " does not match Ed25519");
    alg = JwsAlg::eddsa;
    auto k = ed25519_key(jwk);
    if (!k) return std::unexpected(k.error());
    out.key = std::move(*k);
  } else {
    return ignore("unsupported kty \"" + printable(*kty, 16) + "\"");
  }
  if (std::find(allowed.begin(), allowed.end(), *alg) == allowed.end()) {
    return ignore("alg " + std::string(to_string(*alg)) + " is not allowed for this issuer");
  }
  out.alg = *alg;
  return out;
}

std::string describe(const Json& jwk, std::size_t index) {
  if (jwk.is_object()) {
    auto it = jwk.find("kid");
    if (it != jwk.end() && it->is_string()) {
      return "kid \"" + printable(it->get_ref<const std::string&>()) + "\"";
    }
  }
  return "key #" + std::to_string(index);
}

}  // namespace

Result<JwkSet> parse_jwks(std::string_view text, std::span<const JwsAlg> issuer_algs) try {
  if (text.size() > kMaxJwksBytes)
    return fail(Errc::too_large, "JWKS document larger than 256 KiB");
  auto doc = parse_json_strict(text, JsonLimits{kMaxJwksBytes, 8});
  if (!doc) return fail(Errc::parse, "JWKS: " + doc.error().message);
  if (!doc->is_object()) return fail(Errc::parse, "JWKS: not a JSON object");
  auto keys = doc->find("keys");
  if (keys == doc->end() || !keys->is_array())
    return fail(Errc::parse, "JWKS: \"keys\" missing or not an array");
  if (keys->size() > kMaxJwksKeys) return fail(Errc::too_large, "JWKS: more than 64 keys");

  // A kid that appears twice is ambiguous: which key a token gets would depend on order,
  // so neither is used.
  std::map<std::string, int> kid_count;
  for (const auto& k : *keys) {
    if (!k.is_object()) continue;
    auto it = k.find("kid");
    kid_count[it != k.end() && it->is_string() ? it->get<std::string>() : std::string()]++;
  }

  JwkSet set;
  std::size_t index = 0;
  for (const auto& k : *keys) {
    auto parsed = parse_key(k, issuer_algs);
    if (!parsed) {
      set.ignored.push_back(describe(k, index) + ": " + parsed.error());
    } else if (kid_count[parsed->kid] > 1) {
      set.ignored.push_back(describe(k, index) + ": duplicate kid");
    } else {
      set.keys.push_back(std::move(*parsed));
    }
    ++index;
  }
  return set;
} catch (const std::exception& e) {
  return fail(Errc::parse, std::string("JWKS: ") + e.what());
}

Result<std::string> FileJwksSource::fetch() { return read_file(path_, kMaxJwksBytes); }

}  // namespace delegate::policies
