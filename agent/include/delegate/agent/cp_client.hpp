#pragma once
// HTTPS client for the control plane over libcurl. TLS 1.3 is the minimum, the peer
// certificate and host name are always verified (against ca_file, or the system trust
// store); there is deliberately no switch to turn verification off.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <string>
#include <string_view>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>

typedef void CURL;

namespace delegate::agent {

struct HttpResult {
  long status = 0;
  std::string body;
};

struct ClientOptions {
  std::string base_url;                 // https://host:port
  std::filesystem::path ca_file;        // empty: system trust store
  std::size_t max_response_bytes = 8u << 20;
  std::chrono::seconds connect_timeout{10};
};

class CpClient {
 public:
  // `abort` (optional) makes an in-flight request return Errc::unavailable promptly,
  // so a long poll does not delay shutdown.
  explicit CpClient(ClientOptions options, const std::atomic<bool>* abort = nullptr);
  ~CpClient();
  CpClient(const CpClient&) = delete;
  CpClient& operator=(const CpClient&) = delete;

  // Transport failures are errors (Errc::permission for TLS trust failures,
  // Errc::unavailable otherwise); any HTTP status is a result.
  [[nodiscard]] Result<HttpResult> post(std::string_view path, const Json& body, std::string_view bearer,
                                        std::chrono::seconds timeout);
  [[nodiscard]] Result<HttpResult> get(std::string_view path, std::string_view bearer,
                                       std::chrono::seconds timeout);

 private:
  [[nodiscard]] Result<HttpResult> perform(std::string_view method, std::string_view path, const std::string* body,
                                           std::string_view bearer, std::chrono::seconds timeout);
  ClientOptions options_;
  const std::atomic<bool>* abort_;
  CURL* curl_;
};

// Call once at process start, before threads.
void global_http_init();

}  // namespace delegate::agent
