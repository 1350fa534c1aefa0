#include <delegate/agent/cp_client.hpp>
#include <delegate/agent/metrics.hpp>

#include <curl/curl.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstring>

namespace delegate::agent {
namespace {

struct Sink {
  std::string* out;
  std::size_t max;
  bool overflow = false;
};

size_t on_write(char* data, size_t size, size_t nmemb, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t n = size * nmemb;
  if (sink->out->size() + n > sink->max) {
    sink->overflow = true;
    return 0;  // aborts the transfer: an oversized answer is refused, not truncated
  }
  sink->out->append(data, n);
  return n;
}

int on_progress(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  auto* abort = static_cast<const std::atomic<bool>*>(user);
  return (abort && abort->load()) ? 1 : 0;
}

bool is_trust_failure(CURLcode rc) {
  switch (rc) {
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      return true;
    default:
      return false;
  }
}

// A self-signed certificate for the identity key. Only its public key matters: the
// control plane pins that to the registered key and ignores names and validity, and the
// TLS 1.3 CertificateVerify message proves possession of the private key on every
// connection.
Result<X509*> make_identity_certificate(EVP_PKEY* key) {
  X509* x = X509_new();
  if (!x) return fail(Errc::crypto, "cannot allocate the client certificate");
  const auto serial = random_bytes(16);
  BIGNUM* bn = BN_bin2bn(serial.data(), static_cast<int>(serial.size()), nullptr);
  X509_NAME* name = X509_get_subject_name(x);
  const bool ok = bn && X509_set_version(x, 2) == 1 && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) &&
                  X509_gmtime_adj(X509_getm_notBefore(x), -3600) && X509_gmtime_adj(X509_getm_notAfter(x), 3650L * 86400) &&
                  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                             reinterpret_cast<const unsigned char*>("delegate-agent"), -1, -1, 0) == 1 &&
                  X509_set_issuer_name(x, name) == 1 && X509_set_pubkey(x, key) == 1 &&
                  X509_sign(x, key, nullptr) > 0;  // Ed25519 signs without a separate digest
  BN_free(bn);
  if (!ok) {
    X509_free(x);
    return fail(Errc::crypto, "cannot make the client certificate for the identity key");
  }
  return x;
}

struct CertAndKey {
  X509* cert;
  EVP_PKEY* key;
};

// Called by libcurl for each new TLS connection.
CURLcode use_identity(CURL*, void* ssl_ctx, void* user) {
  auto* id = static_cast<const CertAndKey*>(user);
  auto* ctx = static_cast<SSL_CTX*>(ssl_ctx);
  if (SSL_CTX_use_certificate(ctx, id->cert) != 1 || SSL_CTX_use_PrivateKey(ctx, id->key) != 1 ||
      SSL_CTX_check_private_key(ctx) != 1) {
    return CURLE_SSL_CERTPROBLEM;
  }
  return CURLE_OK;
}

}  // namespace

void CpClient::X509Deleter::operator()(X509* x) const noexcept { X509_free(x); }

void global_http_init() { curl_global_init(CURL_GLOBAL_DEFAULT); }

CpClient::CpClient(ClientOptions options, const std::atomic<bool>* abort)
    : options_(std::move(options)),
      abort_(abort),
      curl_(curl_easy_init()),
      route_(options_.proxy, options_.base_url, options_.connect_timeout, abort) {
  if (options_.identity) {
    auto cert = make_identity_certificate(options_.identity->native_handle());
    if (cert) {
      cert_.reset(*cert);
    } else {
      cert_error_ = cert.error().message;
    }
  }
}

CpClient::~CpClient() { curl_easy_cleanup(curl_); }

Result<HttpResult> CpClient::post(std::string_view path, const Json& body, std::string_view bearer,
                                  std::chrono::seconds timeout) {
  std::string text = body.dump();
  return perform("POST", path, &text, bearer, timeout);
}

Result<HttpResult> CpClient::get(std::string_view path, std::string_view bearer, std::chrono::seconds timeout) {
  return perform("GET", path, nullptr, bearer, timeout);
}

Result<HttpResult> CpClient::del(std::string_view path, std::string_view bearer, std::chrono::seconds timeout) {
  return perform("DELETE", path, nullptr, bearer, timeout);
}

Result<HttpResult> CpClient::patch(std::string_view path, const Json& body, std::string_view bearer,
                                   std::chrono::seconds timeout) {
  std::string text = body.dump();
  return perform("PATCH", path, &text, bearer, timeout);
}

Result<HttpResult> CpClient::perform(std::string_view method, std::string_view path, const std::string* body,
                                     std::string_view bearer, std::chrono::seconds timeout) {
  if (!curl_) return fail(Errc::internal, "curl_easy_init failed");
  // Without its certificate the agent cannot authenticate: fail rather than call anyway.
  if (options_.identity && !cert_) return fail(Errc::crypto, cert_error_);
  CURL* c = curl_;
  curl_easy_reset(c);
  HttpResult result;
  Sink sink{&result.body, options_.max_response_bytes};
  std::string url = options_.base_url + std::string(path);
  char errbuf[CURL_ERROR_SIZE] = {0};

  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(c, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_3));
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!options_.ca_file.empty()) curl_easy_setopt(c, CURLOPT_CAINFO, options_.ca_file.c_str());
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, static_cast<long>(options_.connect_timeout.count()));
  curl_easy_setopt(c, CURLOPT_TIMEOUT, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
  curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
  curl_easy_setopt(c, CURLOPT_XFERINFODATA, abort_);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "delegate-agent/" DELEGATE_VERSION);
  route_.apply(c);
  CertAndKey identity{cert_.get(), options_.identity ? options_.identity->native_handle() : nullptr};
  if (cert_) {
    curl_easy_setopt(c, CURLOPT_SSL_CTX_FUNCTION, use_identity);
    curl_easy_setopt(c, CURLOPT_SSL_CTX_DATA, &identity);
    // No TLS session resumption: every connection proves the key afresh.
    curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
  }

  struct curl_slist* headers = nullptr;
  std::string auth;
  if (!bearer.empty()) {
    auth = "Authorization: Bearer " + std::string(bearer);
    headers = curl_slist_append(headers, auth.c_str());
  }
  headers = curl_slist_append(headers, "Accept: application/json");
  if (body) {
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
    if (method == "PATCH") curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "PATCH");
  } else if (method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
  } else if (method == "DELETE") {
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, "DELETE");
  }
  curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);

  CURLcode rc = curl_easy_perform(c);
  curl_slist_free_all(headers);
  // The bearer token lived in `auth`; wipe it rather than leave it in freed heap.
  std::fill(auth.begin(), auth.end(), '\0');

  if (rc != CURLE_OK) {
    std::string msg = errbuf[0] ? errbuf : curl_easy_strerror(rc);
    if (sink.overflow) return fail(Errc::too_large, "response from control plane exceeds " + std::to_string(sink.max) + " bytes");
    if (rc == CURLE_ABORTED_BY_CALLBACK) return fail(Errc::unavailable, "request aborted (shutting down)");
    agent_metrics().control_plane_unreachable();
    // The tunnel's own message names the proxy and what it answered; libcurl's would
    // only say that it could not connect.
    if (!route_.tunnel_error().empty()) return fail(Errc::unavailable, "control plane unreachable: " + route_.tunnel_error());
    if (is_trust_failure(rc)) return fail(Errc::permission, "TLS verification of the control plane failed: " + msg);
    if (rc == CURLE_OPERATION_TIMEDOUT) return fail(Errc::timeout, "control plane request timed out: " + msg);
    return fail(Errc::unavailable, "control plane unreachable: " + msg);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &result.status);
  agent_metrics().control_plane_answered(result.status >= 200 && result.status < 300);
  return result;
}

}  // namespace delegate::agent
