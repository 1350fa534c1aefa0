#pragma once
// Offline verification of exported audit logs, and the per-record check the control
// plane applies at ingest. The public key is pinned by the caller.
#include <cstdint>
#include <istream>
#include <optional>
#include <string>
#include <vector>

#include <delegate/audit/record.hpp>

namespace delegate::audit {

enum class Fault {
  malformed,        // not a record (JSON, members, types, sizes)
  bad_version,      // v != 1
  bad_hash,         // hash does not match the canonical content
  bad_signature,    // Ed25519 signature does not verify under the pinned key
  broken_chain,     // prev does not equal the previous record's hash (or genesis)
  gap,              // a seq is missing
  duplicate,        // a seq appears twice
  reordered,        // seq lower than one already seen
  foreign_record,   // agent or job differs from the rest of the stream
  time_backwards,   // ts earlier than the previous record's
  truncated,        // no job.end at the end
  count_mismatch,   // job.end "records" differs from the number of records
  after_end,        // records after job.end
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

// Incremental verifier for one stream.
class ChainVerifier {
 public:
  explicit ChainVerifier(const Ed25519PublicKey& key) : key_(key) {}
  // Returns the first fault; after a fault the verifier must not be fed further.
  [[nodiscard]] std::optional<RecordFault> push(const Record& r);
  // End of input: a job stream must end with job.end whose "records" equals the count,
  // unless allow_incomplete.
  [[nodiscard]] std::optional<RecordFault> finish(bool allow_incomplete) const;
  [[nodiscard]] std::uint64_t count() const { return count_; }
  [[nodiscard]] const std::string& job() const { return job_; }

 private:
  Ed25519PublicKey key_;
  std::uint64_t count_ = 0;
  std::string agent_, job_, prev_, last_ts_;
  bool ended_ = false;
};

struct JobVerdict {
  std::string job;
  std::uint64_t records = 0;
  std::optional<RecordFault> fault;
};

struct VerifyOptions {
  bool allow_incomplete = false;
};

// Reads JSON Lines (records of one or more jobs, each job's records contiguous and in
// seq order) and verifies each job's chain. Stops at the first fault.
[[nodiscard]] std::vector<JobVerdict> verify_stream(std::istream& in, const Ed25519PublicKey& key,
                                                    const VerifyOptions& options);

}  // namespace delegate::audit
