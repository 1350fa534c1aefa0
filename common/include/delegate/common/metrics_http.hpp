#pragma once
// The plain-HTTP health and metrics listener (docs/operations.md, "Metrics and health").
// Loopback TCP or a Unix socket only: it has no authentication, so it must not be
// reachable from the network. One thread serves one small request at a time under a
// size and time limit, apart from everything else the process does.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include <delegate/common/error.hpp>
#include <delegate/common/metrics.hpp>

namespace delegate::metrics {

struct ListenAddress {
  enum class Kind { tcp, unix_socket };
  Kind kind = Kind::tcp;
  std::string host;               // tcp: a loopback IP literal (127.0.0.0/8 or ::1)
  std::uint16_t port = 0;         // tcp: 0 picks a free port
  std::filesystem::path path;     // unix_socket: absolute
};

// "127.0.0.1:9464", "[::1]:9464" or "unix:/run/delegate/metrics.sock". Any other host
// (a name, 0.0.0.0, a routable address) is refused: fail closed.
[[nodiscard]] Result<ListenAddress> parse_listen_address(std::string_view text);

struct Endpoints {
  const Registry* registry = nullptr;
  // /readyz answers 200 when this returns true, else 503.
  std::function<bool()> ready;
};

// Limits for one request (a slow or oversized client only delays other scrapes).
inline constexpr std::size_t kMaxRequestBytes = 8192;
inline constexpr int kRequestTimeoutMs = 2000;

class HttpListener {
 public:
  [[nodiscard]] static Result<std::unique_ptr<HttpListener>> start(const ListenAddress& address, Endpoints endpoints);
  ~HttpListener();  // stops and joins the thread; removes the Unix socket
  HttpListener(const HttpListener&) = delete;
  HttpListener& operator=(const HttpListener&) = delete;
  [[nodiscard]] std::uint16_t port() const;  // tcp: the bound port
  [[nodiscard]] std::string describe() const;

 private:
  struct Impl;
  explicit HttpListener(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// The answer to one request's bytes (exposed for tests and the fuzzer): the full HTTP
// response, or empty when the request is incomplete (more bytes may follow).
[[nodiscard]] std::string answer_request(std::string_view request, const Endpoints& endpoints, bool complete);

}  // namespace delegate::metrics
