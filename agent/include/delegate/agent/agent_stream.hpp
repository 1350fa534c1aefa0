#pragma once
// The agent stream (docs/audit.md): one signed, hash-chained stream per agent identity with
// job id "_agent", continued across restarts (its tail is recovered from the spool).
// It carries agent.start / agent.stop with a boot id and `checkpoint` records listing the
// jobs that finished since the previous checkpoint, so that deleting or truncating a
// whole job's log is detectable one level up.
//
// Data formats (built and parsed by <delegate/audit/checkpoint.hpp>):
//   agent.start  {"boot_id","public_key","version","hostname"}
//   agent.stop   {"boot_id","reason":"shutdown"}
//   checkpoint   {"boot_id","jobs":[{"job","records","last_hash","status"}…]}
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include <delegate/agent/spool.hpp>
#include <delegate/audit/chain.hpp>
#include <delegate/audit/checkpoint.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/time.hpp>

namespace delegate::agent {

// The data builders live in audit/checkpoint.hpp, next to the verifier that parses them.
using audit::FinishedJob;

class AgentStream {
 public:
  // key, clock and spool must outlive the stream.
  AgentStream(const Ed25519PrivateKey& key, const Clock& clock, Spool& spool, std::string version);

  // Resumes the chain of `agent_id` and records agent.start. Idempotent per agent id.
  [[nodiscard]] Result<void> start(const std::string& agent_id, const std::string& hostname);
  [[nodiscard]] bool started() const;
  // Records a checkpoint of this agent's jobs that ended and were not yet listed; does
  // nothing when there are none.
  [[nodiscard]] Result<void> checkpoint();
  // A final checkpoint, then agent.stop.
  [[nodiscard]] Result<void> stop();
  [[nodiscard]] const std::string& boot_id() const { return boot_id_; }

 private:
  [[nodiscard]] Result<void> append_locked(audit::Kind kind, Json data);
  [[nodiscard]] Result<void> checkpoint_locked();

  const Ed25519PrivateKey& key_;
  const Clock& clock_;
  Spool& spool_;
  std::string version_;
  std::string boot_id_;
  mutable std::mutex mu_;
  std::string agent_id_;
  std::unique_ptr<audit::ChainWriter> writer_;
};

}  // namespace delegate::agent
