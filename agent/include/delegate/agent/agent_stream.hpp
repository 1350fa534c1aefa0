#pragma once
// The agent stream (DESIGN §6): one signed, hash-chained stream per agent identity with
// job id "_agent", continued across restarts (its tail is recovered from the spool).
// It carries agent.start / agent.stop with a boot id and `checkpoint` records listing the
// jobs that finished since the previous checkpoint, so that deleting or truncating a
// whole job's log is detectable one level up.
//
// Data formats (a contract shared with the verifier):
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
#include <delegate/common/crypto.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/time.hpp>

namespace delegate::agent {

struct FinishedJob {
  std::string job;
  std::uint64_t records = 0;  // the job's record count (= job.end "records")
  std::string last_hash;      // hash of the job's job.end record
  std::string status;         // its final status
};

// 16 random bytes as 32 lowercase hex characters.
[[nodiscard]] std::string new_boot_id();
[[nodiscard]] Json agent_start_data(const std::string& boot_id, const Ed25519PublicKey& key,
                                    const std::string& version, const std::string& hostname);
[[nodiscard]] Json agent_stop_data(const std::string& boot_id, const std::string& reason);
[[nodiscard]] Json checkpoint_data(const std::string& boot_id, const std::vector<FinishedJob>& jobs);

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
  [[nodiscard]] Result<void> stop(const std::string& reason);
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
