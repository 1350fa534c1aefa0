#include "pki.hpp"

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <memory>

namespace delegate::controlplane {
namespace {

template <class T, void (*F)(T*)>
struct Deleter {
  void operator()(T* p) const { F(p); }
};
using X509Ptr = std::unique_ptr<X509, Deleter<X509, X509_free>>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, Deleter<EVP_PKEY, EVP_PKEY_free>>;
using BioPtr = std::unique_ptr<BIO, Deleter<BIO, BIO_free_all>>;

Result<PkeyPtr> make_key() {
  PkeyPtr k(EVP_EC_gen("P-256"));
  if (!k) return fail(Errc::crypto, "cannot generate EC P-256 key");
  return k;
}

bool add_ext(X509* cert, X509* issuer, int nid, const std::string& value) {
  X509V3_CTX ctx;
  X509V3_set_ctx_nodb(&ctx);
  X509V3_set_ctx(&ctx, issuer, cert, nullptr, nullptr, 0);
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value.c_str());
  if (!ext) return false;
  bool ok_add = X509_add_ext(cert, ext, -1) == 1;
  X509_EXTENSION_free(ext);
  return ok_add;
}

Result<X509Ptr> make_cert(EVP_PKEY* subject_key, const std::string& cn, X509* issuer, EVP_PKEY* issuer_key,
                          int days, bool is_ca, const std::string& san) {
  X509Ptr cert(X509_new());
  if (!cert) return fail(Errc::crypto, "X509_new failed");
  X509_set_version(cert.get(), 2);
  unsigned char serial[16];
  if (RAND_bytes(serial, sizeof serial) != 1) return fail(Errc::crypto, "RAND_bytes failed");
  serial[0] &= 0x7f;
  BIGNUM* bn = BN_bin2bn(serial, sizeof serial, nullptr);
  BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(cert.get()));
  BN_free(bn);
  X509_gmtime_adj(X509_getm_notBefore(cert.get()), -300);
  X509_gmtime_adj(X509_getm_notAfter(cert.get()), static_cast<long>(days) * 86400L);
  X509_set_pubkey(cert.get(), subject_key);
  X509_NAME* name = X509_get_subject_name(cert.get());
  X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("delegate dev"), -1, -1, 0);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(cn.c_str()), -1, -1, 0);
  X509* iss = issuer ? issuer : cert.get();
  X509_set_issuer_name(cert.get(), X509_get_subject_name(iss));
  bool good = true;
  if (is_ca) {
    good = add_ext(cert.get(), iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
           add_ext(cert.get(), iss, NID_key_usage, "critical,keyCertSign,cRLSign") &&
           add_ext(cert.get(), iss, NID_subject_key_identifier, "hash");
  } else {
    good = add_ext(cert.get(), iss, NID_basic_constraints, "critical,CA:FALSE") &&
           add_ext(cert.get(), iss, NID_key_usage, "critical,digitalSignature") &&
           add_ext(cert.get(), iss, NID_ext_key_usage, "serverAuth") &&
           add_ext(cert.get(), iss, NID_subject_alt_name, san) &&
           add_ext(cert.get(), iss, NID_authority_key_identifier, "keyid:always");
  }
  if (!good) return fail(Errc::crypto, "cannot add certificate extensions");
  if (X509_sign(cert.get(), issuer_key, EVP_sha256()) <= 0) return fail(Errc::crypto, "cannot sign certificate");
  return cert;
}

std::string cert_pem(X509* cert) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_X509(bio.get(), cert);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

std::string key_pem(EVP_PKEY* key) {
  BioPtr bio(BIO_new(BIO_s_mem()));
  PEM_write_bio_PrivateKey(bio.get(), key, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio.get(), &data);
  return std::string(data, static_cast<std::size_t>(len));
}

}  // namespace

Result<DevPki> make_dev_pki(const std::vector<std::string>& dns_names, const std::vector<std::string>& ip_addresses,
                            int valid_days) {
  auto ca_key = make_key();
  if (!ca_key) return std::unexpected(ca_key.error());
  auto ca = make_cert(ca_key->get(), "delegate dev CA", nullptr, ca_key->get(), valid_days, true, "");
  if (!ca) return std::unexpected(ca.error());
  auto srv_key = make_key();
  if (!srv_key) return std::unexpected(srv_key.error());
  std::string san;
  for (const auto& d : dns_names) san += (san.empty() ? "" : ",") + std::string("DNS:") + d;
  for (const auto& ip : ip_addresses) san += (san.empty() ? "" : ",") + std::string("IP:") + ip;
  auto srv = make_cert(srv_key->get(), dns_names.empty() ? "delegate control plane" : dns_names.front(), ca->get(),
                       ca_key->get(), valid_days, false, san);
  if (!srv) return std::unexpected(srv.error());
  return DevPki{cert_pem(ca->get()), cert_pem(srv->get()), key_pem(srv_key->get())};
}

}  // namespace delegate::controlplane
