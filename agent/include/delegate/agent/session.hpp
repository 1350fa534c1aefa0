#pragma once
// The agent's identity and its standing with the control plane: the Ed25519 key in
// state_dir, and the agent id/token obtained by registration (persisted, mode 0600).
#include <mutex>
#include <string>

#include <delegate/agent/config.hpp>
#include <delegate/agent/cp_client.hpp>
#include <delegate/common/crypto.hpp>

namespace delegate::agent {

struct Credentials {
  std::string agent_id;
  std::string token;
};

class Session {
 public:
  Session(const Config& config, const Ed25519PrivateKey& key) : config_(config), key_(key) {}

  // Loads saved credentials, or registers with the enrollment token.
  [[nodiscard]] Result<Credentials> credentials(CpClient& client);
  // A call answered 401 with these credentials: register again before the next call.
  void invalidate(const Credentials& stale);

 private:
  [[nodiscard]] Result<Credentials> register_agent(CpClient& client);

  const Config& config_;
  const Ed25519PrivateKey& key_;
  std::mutex mu_;
  Credentials current_;
};

}  // namespace delegate::agent
