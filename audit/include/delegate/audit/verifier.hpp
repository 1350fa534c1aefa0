#pragma once
// Verification of one stream of audit records, and the per-record check the control
// plane applies at ingest. The public key is pinned by the caller. Whole exports (the
// agent stream plus jobs, checkpoints cross-checked) are in export_verifier.hpp.
#include <cstdint>
#include <optional>
#include <string>

#include <delegate/audit/record.hpp>

namespace delegate::audit {

enum class Fault {
  // ---- Per record: what an editor without the key cannot hide.
  malformed,        // not a record (JSON, members, types, sizes), or agent-stream data
                    // that does not match its contract format
  bad_version,      // v != 1
  bad_hash,         // hash does not match the canonical content
  bad_signature,    // Ed25519 signature does not verify (strictly) under the pinned key
  // ---- Per stream: the chain of one job.
  broken_chain,     // a job's prev does not equal the previous record's hash (or genesis)
  gap,              // a seq is missing (including a stream that does not start at 0)
  duplicate,        // a seq equal to the previous one; a boot id or checkpoint entry repeated
  reordered,        // seq lower than the previous one in its stream
  foreign_record,   // another agent's record, or an agent.stop/checkpoint of another boot
  misplaced_kind,   // an agent-stream kind in a job stream, a job kind in "_agent", or an
                    // agent.stop/checkpoint outside a boot (before agent.start, after stop)
  time_backwards,   // ts earlier than the previous record's in the same stream
  truncated,        // a job without job.end (one a checkpoint lists, even when incomplete
                    // jobs are allowed), or an input without records
  count_mismatch,   // job.end "records" differs from the number of records
  after_end,        // the record after job.end (the next seq) exists
  // ---- Whole export: the agent stream and what its checkpoints vouch for.
  checkpoint_chain_broken,  // the agent stream's own chain is broken: prev mismatch or a
                            // missing seq (a deleted checkpoint or agent.start/stop)
  job_missing,      // a checkpoint lists a job of which the export has no record
  job_mismatch,     // a checkpoint lists a job whose record count, last hash or final
                    // status differs from the job in the export
  key_mismatch,     // an agent.start names a public key other than the pinned one
};

[[nodiscard]] std::string_view to_string(Fault f);

struct RecordFault {
  Fault fault;
  std::uint64_t seq;
  std::string detail;
};

// Checks one record against the expected position in its stream: seq, prev link,
// hash and signature. Used by ingest, and by ChainVerifier below.
[[nodiscard]] std::optional<RecordFault> check_record(const Record& r, const Ed25519PublicKey& key,
                                                      std::uint64_t expected_seq,
                                                      const std::string& expected_prev);

// Incremental verifier for one stream (a job, or the agent stream). Holds O(1) state:
// the next seq, the last hash and timestamp, whether job.end was seen.
class ChainVerifier {
 public:
  explicit ChainVerifier(const Ed25519PublicKey& key) : key_(key) {}
  // Returns the first fault; after a fault the verifier must not be fed further.
  [[nodiscard]] std::optional<RecordFault> push(const Record& r);
  // End of input: a job stream must end with job.end whose "records" equals the count,
  // unless allow_incomplete. The agent stream may end anywhere.
  [[nodiscard]] std::optional<RecordFault> finish(bool allow_incomplete) const;
  [[nodiscard]] std::uint64_t count() const { return count_; }
  [[nodiscard]] const std::string& job() const { return job_; }
  [[nodiscard]] const std::string& agent() const { return agent_; }
  // Hash of the last accepted record (genesis before the first).
  [[nodiscard]] const std::string& last_hash() const { return prev_; }
  [[nodiscard]] bool ended() const { return ended_; }
  // job.end "status" (empty before job.end, or if it was not a string).
  [[nodiscard]] const std::string& final_status() const { return status_; }

 private:
  Ed25519PublicKey key_;
  std::uint64_t count_ = 0;
  std::string agent_, job_, prev_, last_ts_, status_;
  bool ended_ = false;
};

struct JobVerdict {
  std::string job;
  std::uint64_t records = 0;
  std::optional<RecordFault> fault;
};

struct VerifyOptions {
  // Accept jobs that have not reached job.end, unless a checkpoint lists them.
  bool allow_incomplete = false;
};

}  // namespace delegate::audit
