#pragma once
// HTTPS client for the control plane over libcurl. TLS 1.3 is the minimum, the peer
// certificate and host name are always verified (against ca_file, or the system trust
// store); there is deliberately no switch to turn verification off. With an identity
// key, every connection authenticates the agent by that key: a self-signed certificate
// made in memory for it is presented as the TLS client certificate, and the control
// plane pins it to the agent's registered public key.
#include <atomic>
#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include <delegate/common/crypto.hpp>
#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>
#include <delegate/agent/proxy.hpp>

typedef void CURL;
typedef struct x509_st X509;

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
  // The agent's identity key (owned by the caller, outlives the client); none for the
  // admin and OAuth clients.
  const Ed25519PrivateKey* identity = nullptr;
  // Direct unless the agent's proxy settings route base_url's host through a proxy
  // (proxy.hpp). Default: direct, whatever the environment says.
  ProxySettings proxy;
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
  [[nodiscard]] Result<HttpResult> del(std::string_view path, std::string_view bearer, std::chrono::seconds timeout);
  [[nodiscard]] Result<HttpResult> patch(std::string_view path, const Json& body, std::string_view bearer,
                                         std::chrono::seconds timeout);

 private:
  [[nodiscard]] Result<HttpResult> perform(std::string_view method, std::string_view path, const std::string* body,
                                           std::string_view bearer, std::chrono::seconds timeout);
  struct X509Deleter {
    void operator()(X509* x) const noexcept;
  };
  ClientOptions options_;
  const std::atomic<bool>* abort_;
  CURL* curl_;
  CurlRoute route_;
  std::unique_ptr<X509, X509Deleter> cert_;  // for options_.identity
  std::string cert_error_;                   // why cert_ could not be made
};

// Call once at process start, before threads.
void global_http_init();

}  // namespace delegate::agent
