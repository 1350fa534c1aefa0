#pragma once
// A scripted agent for control-plane tests: its own Ed25519 identity, HTTPS calls with
// or without that identity as the TLS client certificate, and signed job records.
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <delegate/agent/cp_client.hpp>
#include <delegate/audit/chain.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/json.hpp>

#include "harness.hpp"

namespace delegate::testing {

class SimAgent {
 public:
  // A fresh identity key.
  explicit SimAgent(ControlPlane& cp, std::string name = "sim");

  [[nodiscard]] std::string public_key() const;
  [[nodiscard]] const Ed25519PrivateKey& key() const { return key_; }
  // The registration body an agent with this key would send.
  [[nodiscard]] Json registration(Json tags = Json::array()) const;

  // POST over a connection authenticated by `as` (nullptr: no client certificate).
  agent::HttpResult post(const std::string& path, const Json& body, const std::string& bearer,
                         const Ed25519PrivateKey* as);
  // Same, as this agent.
  agent::HttpResult post(const std::string& path, const Json& body, const std::string& bearer) {
    return post(path, body, bearer, &key_);
  }
  // Registers with `enrollment` (default: the one `init` wrote); fills id/token on 201.
  agent::HttpResult enroll(Json tags = Json::array(), const std::string& enrollment = "");
  agent::HttpResult acquire(int wait_s = 0);
  agent::HttpResult heartbeat(const std::vector<std::string>& running);
  // Signed records of `job` under this agent's id, continuing the writer's chain.
  Json records(audit::ChainWriter& w, const std::vector<std::pair<audit::Kind, Json>>& kinds);
  [[nodiscard]] audit::ChainWriter writer(const std::string& job) const;
  agent::HttpResult post_records(const std::string& job, const Json& records);
  agent::HttpResult complete(const std::string& job, const std::string& status, const audit::ChainWriter& w);

  std::string id;
  std::string token;
  std::string name;

 private:
  ControlPlane& cp_;
  Ed25519PrivateKey key_;
  SystemClock clock_;
};

std::string enrollment_token(const ControlPlane& cp);

}  // namespace delegate::testing
