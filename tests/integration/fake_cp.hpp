#pragma once
// A scriptable stand-in for the control plane: real TLS on loopback, every answer
// chosen by the test. For what the real control plane never says: hostile, malformed
// or unusual answers, and TLS settings the real one refuses to offer.
#include <openssl/ssl.h>

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace delegate::testing {

struct FakeRequest {
  std::string method;
  std::string target;
  std::string authorization;
  std::map<std::string, std::string> headers;  // every header, names lower-cased
  std::string body;
};

struct FakeAnswer {
  int status = 200;
  std::string body = "{}";
  std::string content_type = "application/json";
  std::vector<std::pair<std::string, std::string>> headers;  // extra response headers
};

class FakeControlPlane {
 public:
  using Handler = std::function<FakeAnswer(const FakeRequest&)>;
  struct Tls {
    std::filesystem::path cert, key;           // PEM chain and key
    int min_version = TLS1_3_VERSION;
    int max_version = TLS1_3_VERSION;
  };
  FakeControlPlane(Tls tls, Handler handler);
  ~FakeControlPlane();
  FakeControlPlane(const FakeControlPlane&) = delete;
  FakeControlPlane& operator=(const FakeControlPlane&) = delete;

  [[nodiscard]] std::uint16_t port() const { return port_; }
  // Every request received so far, in order (including ones the handler refused).
  [[nodiscard]] std::vector<FakeRequest> requests() const;
  [[nodiscard]] std::size_t count(const std::string& target_suffix) const;
  // Completed TLS handshakes.
  [[nodiscard]] int handshakes() const { return handshakes_; }

 private:
  void accept_loop();
  void serve(int fd);

  SSL_CTX* ctx_ = nullptr;
  int listen_fd_ = -1;
  std::uint16_t port_ = 0;
  Handler handler_;
  std::atomic<bool> stop_{false};
  std::atomic<int> handshakes_{0};
  std::thread accept_thread_;
  mutable std::mutex mu_;
  std::vector<std::thread> conns_;
  std::vector<int> open_fds_;
  std::vector<FakeRequest> requests_;
};

// A JSON body of records from a fake's request, or an empty array.
std::vector<Json> records_in(const FakeRequest& r);
// "job_x" from "/v1/jobs/job_x/records" (or "" for other targets).
std::string job_of(const std::string& target);

// The agent config that `controlplane init` wrote into `cp_dir`, pointed at `port`.
std::string agent_config_for(const fs::path& cp_dir, std::uint16_t port, const std::string& extra_agent_keys = "");

}  // namespace delegate::testing
