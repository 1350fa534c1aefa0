#pragma once
// Verification of a whole export: the agent stream ("_agent": agent.start, agent.stop,
// checkpoint) plus any number of job streams of one agent, in any interleaving. Each
// stream is verified in the order its records are given; at the end, every job must be
// complete and every job a checkpoint lists must be present with the listed record
// count, last hash and status. Memory is bounded by the number of streams, not records.
#include <cstdint>
#include <istream>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/audit/checkpoint.hpp>
#include <delegate/audit/verifier.hpp>

namespace delegate::audit {

class ExportVerifier {
 public:
  ExportVerifier(const Ed25519PublicKey& key, VerifyOptions options);

  // Feeds one input line (one serialized record, without its newline; a trailing '\r'
  // is ignored, blank lines are skipped). Returns false once a fault is known; further
  // input is then ignored.
  bool push_line(std::string_view line);
  // Feeds an already parsed record.
  bool push(const Record& r);
  // Reads JSON Lines from `in` to its end or to the first fault. A line longer than
  // kMaxRecordBytes is consumed without being buffered and reported as malformed.
  bool read(std::istream& in);

  // End of input: job completeness, then the checkpoint cross-check. Returns one OK
  // verdict per stream in order of first appearance, or, if any fault was found, only
  // the verdict naming the first fault. Empty when the input held no records.
  [[nodiscard]] std::vector<JobVerdict> finish();

  // Non-blank lines consumed so far (a file that adds none held no records).
  [[nodiscard]] std::uint64_t lines() const { return lines_; }
  [[nodiscard]] bool failed() const { return fault_.has_value(); }

 private:
  // A checkpoint entry awaiting the end-of-input cross-check.
  struct Listed {
    FinishedJob job;
    std::uint64_t checkpoint_seq = 0;
    std::string boot_id;
  };

  bool report(std::string job, RecordFault f);
  [[nodiscard]] std::optional<RecordFault> check_agent_record(const Record& r);
  [[nodiscard]] std::optional<JobVerdict> cross_check() const;

  Ed25519PublicKey key_;
  VerifyOptions options_;
  std::optional<JobVerdict> fault_;
  std::uint64_t lines_ = 0;
  std::string agent_;  // pinned by the first record
  // Streams by job id; order_ keeps first appearance for the report.
  std::map<std::string, ChainVerifier> streams_;
  std::vector<std::string> order_;
  std::string last_job_;  // stream of the previous record: where an unreadable line lies

  // Agent stream state.
  bool booted_ = false;   // an agent.start has been seen
  bool stopped_ = false;  // the current boot wrote agent.stop
  std::string boot_id_;   // boot id of the current boot
  std::vector<Listed> listed_;
  std::map<std::string, std::size_t> listed_at_;  // job -> index in listed_
};

// Verifies one input holding a whole export.
[[nodiscard]] std::vector<JobVerdict> verify_export(std::istream& in, const Ed25519PublicKey& key,
                                                    const VerifyOptions& options);

}  // namespace delegate::audit
