#include <delegate/agent/cp_client.hpp>

#include <curl/curl.h>

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

}  // namespace

void global_http_init() { curl_global_init(CURL_GLOBAL_DEFAULT); }

CpClient::CpClient(ClientOptions options, const std::atomic<bool>* abort)
    : options_(std::move(options)), abort_(abort), curl_(curl_easy_init()) {}

CpClient::~CpClient() { curl_easy_cleanup(curl_); }

Result<HttpResult> CpClient::post(std::string_view path, const Json& body, std::string_view bearer,
                                  std::chrono::seconds timeout) {
  std::string text = body.dump();
  return perform("POST", path, &text, bearer, timeout);
}

Result<HttpResult> CpClient::get(std::string_view path, std::string_view bearer, std::chrono::seconds timeout) {
  return perform("GET", path, nullptr, bearer, timeout);
}

Result<HttpResult> CpClient::perform(std::string_view method, std::string_view path, const std::string* body,
                                     std::string_view bearer, std::chrono::seconds timeout) {
  if (!curl_) return fail(Errc::internal, "curl_easy_init failed");
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
  } else if (method == "GET") {
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
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
    if (is_trust_failure(rc)) return fail(Errc::permission, "TLS verification of the control plane failed: " + msg);
    if (rc == CURLE_OPERATION_TIMEDOUT) return fail(Errc::timeout, "control plane request timed out: " + msg);
    return fail(Errc::unavailable, "control plane unreachable: " + msg);
  }
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &result.status);
  return result;
}

}  // namespace delegate::agent
