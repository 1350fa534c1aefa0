#pragma once
// RAII owners for the OpenSSL objects used by JWKS parsing and JWS verification.
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>
#include <openssl/params.h>

#include <memory>

namespace delegate::policies::ossl {

template <auto Fn>
struct Deleter {
  template <class T>
  void operator()(T* p) const noexcept {
    Fn(p);
  }
};

using Bn = std::unique_ptr<BIGNUM, Deleter<BN_free>>;
using PkeyCtx = std::unique_ptr<EVP_PKEY_CTX, Deleter<EVP_PKEY_CTX_free>>;
using MdCtx = std::unique_ptr<EVP_MD_CTX, Deleter<EVP_MD_CTX_free>>;
using ParamBld = std::unique_ptr<OSSL_PARAM_BLD, Deleter<OSSL_PARAM_BLD_free>>;
using Params = std::unique_ptr<OSSL_PARAM, Deleter<OSSL_PARAM_free>>;
using EcdsaSig = std::unique_ptr<ECDSA_SIG, Deleter<ECDSA_SIG_free>>;

inline std::shared_ptr<EVP_PKEY> share(EVP_PKEY* p) {
  return {p, [](EVP_PKEY* k) { EVP_PKEY_free(k); }};
}

}  // namespace delegate::policies::ossl
