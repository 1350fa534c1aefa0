#pragma once
// The control plane's state in one SQLite file (WAL, synchronous=FULL so an
// acknowledged record survives a crash). Not thread-safe: the server calls it from
// its single I/O thread.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <delegate/common/crypto.hpp>
#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>

struct sqlite3;

namespace delegate::controlplane {

struct AgentRow {
  std::string id;
  std::string name;
  std::string hostname;
  Json tags = Json::array();
  std::string version;
  std::string public_key;  // base64 of 32 raw bytes
  std::int64_t created_ms = 0;
  std::int64_t last_seen_ms = 0;
  std::int64_t revoked_ms = 0;   // 0: not revoked
  std::string enrollment_token;  // id of the token it enrolled with
};

// An admin-managed enrollment token. Only the hash of its secret is stored.
struct EnrollmentToken {
  std::string id;
  std::string description;
  std::optional<Json> tags;  // set: every agent enrolling with it gets exactly these
  bool one_time = false;     // admits one new agent
  std::int64_t expires_ms = 0;  // 0: never; admits no new agent from then on
  std::int64_t created_ms = 0;
  std::int64_t uses = 0;  // new agents admitted
  std::int64_t last_used_ms = 0;
  std::int64_t revoked_ms = 0;
};

struct Enrolment {
  enum class Status { registered, token_refused, agent_revoked };
  Status status = Status::registered;
  std::string reason;  // why it was refused
  AgentRow agent;
  bool created = false;  // a new agent (not a known key re-registering)
};

struct JobRow {
  std::string id;
  std::string runbook;
  Json params = Json::object();
  std::string incident;
  std::int64_t timeout_s = 0;
  Json authorization;  // passed through to the agent; never returned by the admin API
  Json selector_tags = Json::array();
  std::string status;  // queued | running | <final status>
  std::string agent_id;
  std::int64_t lease_expires_ms = 0;
  std::int64_t created_ms = 0;
  std::int64_t updated_ms = 0;
  std::int64_t next_seq = 0;
  std::string last_hash;
  std::int64_t attempts = 0;
  bool cancel_requested = false;
  std::string requeued_from;  // queued again after this agent's lease ran out unlogged
};

struct NewJob {
  std::string runbook;
  Json params = Json::object();
  std::string incident;
  std::int64_t timeout_s = 0;
  Json authorization;
  Json selector_tags = Json::array();
};

// Outcome of a records batch.
struct IngestResult {
  enum class Status { ok, gap, invalid };
  Status status = Status::ok;
  std::int64_t acked_seq = -1;     // highest contiguous seq stored
  std::int64_t expected_seq = 0;   // for gap
  std::string error;               // for invalid
  std::int64_t stored = 0;         // records newly stored by this batch
};

// Metrics (store_metrics.cpp): jobs by status, agents by state.
struct StoreCounts {
  std::map<std::string, std::int64_t> jobs;
  std::int64_t agents_online = 0, agents_offline = 0, agents_revoked = 0;
};

class Store {
 public:
  [[nodiscard]] static Result<std::unique_ptr<Store>> open(const std::filesystem::path& file);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // Group commit (the server's GroupCommit): one transaction that the writes of several
  // requests join, each request's own transaction a savepoint inside it. commit_batch
  // returns once the batch is on disk (synchronous=FULL); on failure it is rolled back.
  [[nodiscard]] Result<void> begin_batch();
  [[nodiscard]] Result<void> commit_batch();

  // Same public key again -> same agent id, name, hostname and tags (the proposed ones
  // are ignored); the token hash is replaced (the old agent token stops working). The
  // caller has checked that the registrant holds the key.
  [[nodiscard]] Result<AgentRow> register_agent(const AgentRow& proposed, const std::string& token_hash,
                                                std::int64_t now_ms);
  // Registration under an enrollment token (looked up by the hash of its secret), in one
  // transaction: a revoked token, or for a new key an expired or used one-time token, is
  // refused; a known key re-registers (unless revoked) keeping its name, hostname and
  // tags; a new key gets the token's tags when it fixes them. A refusal changes nothing.
  [[nodiscard]] Result<Enrolment> enroll_agent(const AgentRow& proposed, const std::string& enrollment_hash,
                                               const std::string& token_hash, std::int64_t now_ms);
  [[nodiscard]] Result<std::optional<AgentRow>> agent_by_public_key(const std::string& public_key);
  // The admin's way to rename or retag an agent (registration never does). Unset fields
  // stay; false when there is no such agent.
  struct AgentChange {
    std::optional<std::string> name;
    std::optional<std::string> hostname;
    std::optional<Json> tags;
  };
  [[nodiscard]] Result<bool> update_agent(const std::string& agent_id, const AgentChange& change);
  // Refuses the agent from now on and interrupts its running jobs; its records stay.
  // nullopt: no such agent; otherwise the jobs interrupted now.
  [[nodiscard]] Result<std::optional<std::vector<std::string>>> revoke_agent(const std::string& agent_id,
                                                                            std::int64_t now_ms);

  // `token.id` empty: a fresh id. Returns the stored token.
  [[nodiscard]] Result<EnrollmentToken> create_enrollment_token(EnrollmentToken token, const std::string& secret_hash,
                                                                std::int64_t now_ms);
  // The development default token (the secret in enrollment_token_file), under a fixed id.
  [[nodiscard]] Result<void> seed_enrollment_token(const std::string& id, const std::string& secret_hash,
                                                   std::int64_t now_ms);
  [[nodiscard]] Result<std::optional<EnrollmentToken>> enrollment_token(const std::string& id);
  [[nodiscard]] Result<std::optional<EnrollmentToken>> enrollment_token_by_hash(const std::string& secret_hash);
  [[nodiscard]] Result<std::vector<EnrollmentToken>> enrollment_tokens();
  // False when there is no such token; revoking twice is harmless.
  [[nodiscard]] Result<bool> revoke_enrollment_token(const std::string& id, std::int64_t now_ms);
  [[nodiscard]] Result<std::optional<AgentRow>> agent_by_token_hash(const std::string& token_hash);
  [[nodiscard]] Result<std::optional<AgentRow>> agent(const std::string& id);
  [[nodiscard]] Result<std::vector<AgentRow>> agents();
  [[nodiscard]] Result<void> touch_agent(const std::string& id, std::int64_t now_ms);

  [[nodiscard]] Result<std::string> create_job(const NewJob& job, std::int64_t now_ms);
  [[nodiscard]] Result<std::optional<JobRow>> job(const std::string& id);
  // Leases the oldest queued job whose selector tags are all among the agent's tags;
  // nothing to a revoked agent.
  [[nodiscard]] Result<std::optional<JobRow>> acquire(const AgentRow& agent, std::int64_t now_ms,
                                                      std::int64_t lease_ms);
  // Renews leases of the listed jobs held by the agent; returns jobs to cancel.
  [[nodiscard]] Result<std::vector<std::string>> heartbeat(const std::string& agent_id,
                                                           const std::vector<std::string>& running,
                                                           std::int64_t now_ms, std::int64_t lease_ms);
  [[nodiscard]] Result<bool> request_cancel(const std::string& job_id, std::int64_t now_ms);
  // Jobs whose lease expired: requeued when the agent sent nothing yet, otherwise marked
  // interrupted (they started; running them again could repeat side effects).
  [[nodiscard]] Result<int> expire_leases(std::int64_t now_ms);

  // Appends a batch in a single transaction. Each record's hash, chain link and
  // signature are checked against the job's assigned agent key.
  [[nodiscard]] Result<IngestResult> ingest(const JobRow& job, const Ed25519PublicKey& key,
                                            const Json& records);
  // The agent stream (job "_agent") of one agent, stored under that agent: the same
  // checks as for jobs, plus only agent-stream kinds (and no agent-stream kind in jobs).
  [[nodiscard]] Result<IngestResult> ingest_agent_stream(const std::string& agent_id, const Ed25519PublicKey& key,
                                                         const Json& records);
  [[nodiscard]] Result<std::vector<std::string>> agent_records(const std::string& agent_id);
  // Records for a job requeued because its lease expired before any record arrived,
  // from the agent whose lease that was (`requeued_from`): that agent did start it. In
  // one transaction the batch is checked against that agent's key exactly as ingest
  // does, and only when at least one record was stored is the job leased back to it
  // (rather than run a second time elsewhere). A refused batch changes nothing.
  [[nodiscard]] Result<IngestResult> ingest_requeued(const std::string& job_id, const std::string& agent_id,
                                                     const Ed25519PublicKey& key, const Json& records,
                                                     std::int64_t now_ms, std::int64_t lease_ms);
  // At start: leases of running jobs last at least until `until_ms`. Agents could not
  // heartbeat while the control plane was down; that is no reason to give up on them.
  [[nodiscard]] Result<void> extend_running_leases(std::int64_t until_ms);
  // running -> `status` for the agent holding the job; false when the job is not
  // running under that agent (nothing changed).
  [[nodiscard]] Result<bool> complete(const std::string& job_id, const std::string& agent_id,
                                      const std::string& status, std::int64_t now_ms);
  // The last stored record of a job (serialized), if any.
  [[nodiscard]] Result<std::optional<std::string>> last_record(const std::string& job_id);
  [[nodiscard]] Result<std::vector<std::string>> records(const std::string& job_id);
  // Agents seen at or after `seen_since_ms` (and not revoked) count as online.
  [[nodiscard]] Result<StoreCounts> counts(std::int64_t seen_since_ms);

 private:
  struct StreamRef {
    std::string key;    // records.job_id
    std::string agent;  // expected record agent
    std::string job;    // expected record job
    bool agent_stream;
  };
  struct LeaseBack {
    std::int64_t now_ms;
    std::int64_t lease_ms;
  };
  [[nodiscard]] Result<IngestResult> ingest_stream(const StreamRef& ref, const Ed25519PublicKey& key,
                                                   const Json& records, const LeaseBack* lease_back = nullptr);
  [[nodiscard]] Result<AgentRow> register_in_tx(const AgentRow& proposed, const std::string& token_hash,
                                                std::int64_t now_ms);
  explicit Store(sqlite3* db) : db_(db) {}
  // SQLite's commit hook: while a batch is open, no commit but the batch's own may
  // happen. SQLite can roll a transaction back by itself (I/O error, disk full, out of
  // memory); a later request's write would then run in autocommit mode and be durable
  // while the batch, and so that request's answer, fails. Vetoed, such a write fails.
  static int veto_commit_outside_batch(void* store) noexcept;
  sqlite3* db_;
  bool batch_open_ = false;
  bool committing_batch_ = false;
};

}  // namespace delegate::controlplane
