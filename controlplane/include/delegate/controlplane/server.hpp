#pragma once
// The reference control plane: HTTPS (TLS 1.3 only) over Boost.Beast, one I/O thread
// running C++20 coroutines, state in SQLite. Serves the agent and admin APIs of
// docs/protocol.md.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>

#include <delegate/common/error.hpp>
#include <delegate/common/metrics.hpp>

namespace delegate::controlplane {

struct ServerConfig {
  std::string listen_host = "127.0.0.1";
  std::uint16_t port = 8443;  // 0 = ephemeral (tests)
  std::filesystem::path cert_file;
  std::filesystem::path key_file;
  std::filesystem::path db_file;
  std::string admin_token;
  std::string enrollment_token;
  std::chrono::milliseconds lease{std::chrono::seconds(30)};
  std::size_t max_body_bytes = 4u << 20;
  std::uint32_t max_wait_s = 60;  // cap for long-poll wait_s
  std::size_t max_connections = 512;
  // Connections from one IP address at a time: one peer cannot hold every slot.
  std::size_t max_connections_per_peer = 32;
  // A connection that has not authenticated a request yet must complete the TLS
  // handshake, and then each request header, within this time (also its idle bound).
  std::chrono::milliseconds header_timeout{std::chrono::seconds(10)};
  // Development OAuth issuer (JWKS + client-credentials token endpoint); off when empty.
  std::string dev_oauth_issuer;
  std::filesystem::path dev_oauth_dir;
};

class Server {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Server>> create(ServerConfig config);
  ~Server();
  [[nodiscard]] std::uint16_t port() const;
  // Serves until stop() or SIGINT/SIGTERM.
  void run();
  void stop();
  // Brings the store-derived metrics (jobs by status, agents by state) up to date,
  // waiting at most `wait`; callable from any thread (the metrics listener's).
  void refresh_metrics(std::chrono::milliseconds wait);
  [[nodiscard]] static metrics::Registry& metrics_registry();

 private:
  struct Impl;
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// `init --dir DIR`: dev CA, server certificate (SAN localhost, 127.0.0.1), admin and
// enrollment tokens, controlplane.json and a ready agent config.
struct InitOptions {
  std::filesystem::path dir;
  std::string listen = "127.0.0.1:8443";
  std::filesystem::path runbooks_source;  // copied into DIR/runbooks when set and present
  bool force = false;
};
[[nodiscard]] Result<void> init_dir(const InitOptions& options);

// Reads DIR/controlplane.json (written by init) into a ServerConfig.
[[nodiscard]] Result<ServerConfig> load_dir_config(const std::filesystem::path& dir);

}  // namespace delegate::controlplane
