// JWS signature verification over OpenSSL 3 EVP. The signature's exact shape is checked
// before OpenSSL is called, so lenient decoders (DER with trailing bytes, short RSA
// signatures, ECDSA malleability through r or s ≥ n) never get a say.
#include <openssl/rsa.h>

#include <array>
#include <cstdint>
#include <delegate/policies/jwt.hpp>

#include "jwt_ossl.hpp"

namespace delegate::policies {
namespace {

// Group orders n of P-256 and P-384 (SEC 2), big-endian.
constexpr std::array<std::uint8_t, 32> kP256Order = {
    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xbc, 0xe6, 0xfa, 0xad, 0xa7, 0x17, 0x9e, 0x84, 0xf3, 0xb9, 0xca, 0xc2, 0xfc, 0x63, 0x25, 0x51};
constexpr std::array<std::uint8_t, 48> kP384Order = {
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xc7, 0x63, 0x4d, 0x81, 0xf4, 0x37, 0x2d, 0xdf,
    0x58, 0x1a, 0x0d, 0xb2, 0x48, 0xb0, 0xa7, 0x7a, 0xec, 0xec, 0x19, 0x6a, 0xcc, 0xc5, 0x29, 0x73};

const std::uint8_t* bytes(std::string_view s) {
  return reinterpret_cast<const std::uint8_t*>(s.data());
}

// 0 < v < order, both big-endian of the same length. Signatures are public, so a
// plain comparison is fine here.
bool in_range(std::span<const std::uint8_t> v, std::span<const std::uint8_t> order) {
  bool nonzero = false;
  for (auto b : v) nonzero |= b != 0;
  if (!nonzero) return false;
  for (std::size_t i = 0; i < v.size(); ++i) {
    if (v[i] != order[i]) return v[i] < order[i];
  }
  return false;  // equal to the order
}

// r‖s → DER ECDSA-Sig-Value, the only form EVP accepts.
std::optional<std::vector<std::uint8_t>> ecdsa_der(std::string_view sig, std::size_t half) {
  ossl::Bn r(BN_bin2bn(bytes(sig), static_cast<int>(half), nullptr));
  ossl::Bn s(BN_bin2bn(bytes(sig) + half, static_cast<int>(half), nullptr));
  ossl::EcdsaSig es(ECDSA_SIG_new());
  if (!r || !s || !es) return std::nullopt;
  if (ECDSA_SIG_set0(es.get(), r.get(), s.get()) != 1) return std::nullopt;
  (void)r.release();  // now owned by es
  (void)s.release();
  const int len = i2d_ECDSA_SIG(es.get(), nullptr);
  if (len <= 0) return std::nullopt;
  std::vector<std::uint8_t> der(static_cast<std::size_t>(len));
  std::uint8_t* p = der.data();
  if (i2d_ECDSA_SIG(es.get(), &p) != len) return std::nullopt;
  return der;
}

bool digest_verify(EVP_PKEY* key, const EVP_MD* md, std::string_view input,
                   std::span<const std::uint8_t> sig, bool pss) {
  ossl::MdCtx ctx(EVP_MD_CTX_new());
  if (!ctx) return false;
  EVP_PKEY_CTX* pctx = nullptr;  // owned by ctx
  if (EVP_DigestVerifyInit(ctx.get(), &pctx, md, nullptr, key) != 1) return false;
  if (pss) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) != 1 ||
        EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, EVP_sha256()) != 1 ||
        EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, 32) != 1) {
      return false;
    }
  } else if (md != nullptr && EVP_PKEY_get_base_id(key) == EVP_PKEY_RSA) {
    if (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PADDING) != 1) return false;
  }
  return EVP_DigestVerify(ctx.get(), sig.data(), sig.size(), bytes(input), input.size()) == 1;
}

}  // namespace

bool verify_jws_signature(JwsAlg alg, EVP_PKEY* key, std::string_view input,
                          std::string_view signature) {
  if (key == nullptr) return false;
  const std::span<const std::uint8_t> sig(bytes(signature), signature.size());
  const int base = EVP_PKEY_get_base_id(key);
  switch (alg) {
    case JwsAlg::rs256:
    case JwsAlg::ps256: {
      if (base != EVP_PKEY_RSA) return false;
      // RFC 8017 §8: exactly k bytes; OpenSSL would left-pad a short one.
      if (EVP_PKEY_get_size(key) <= 0 ||
          sig.size() != static_cast<std::size_t>(EVP_PKEY_get_size(key)))
        return false;
      return digest_verify(key, EVP_sha256(), input, sig, alg == JwsAlg::ps256);
    }
    case JwsAlg::es256:
    case JwsAlg::es384: {
      if (base != EVP_PKEY_EC) return false;
      const bool p256 = alg == JwsAlg::es256;
      const std::size_t half = p256 ? 32 : 48;
      if (EVP_PKEY_get_bits(key) != (p256 ? 256 : 384)) return false;
      if (sig.size() != 2 * half) return false;
      std::span<const std::uint8_t> order = p256 ? std::span<const std::uint8_t>(kP256Order)
                                                 : std::span<const std::uint8_t>(kP384Order);
      if (!in_range(sig.first(half), order) || !in_range(sig.subspan(half), order)) return false;
      auto der = ecdsa_der(signature, half);
      if (!der) return false;
      return digest_verify(key, p256 ? EVP_sha256() : EVP_sha384(), input, *der, false);
    }
    case JwsAlg::eddsa: {
      if (base != EVP_PKEY_ED25519) return false;
      if (sig.size() != 64) return false;
      return digest_verify(key, nullptr, input, sig, false);
    }
  }
  return false;
}

}  // namespace delegate::policies
