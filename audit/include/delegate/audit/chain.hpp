#pragma once
// Produces the records of one stream (a job, or the agent stream): assigns seq, ts,
// prev, then hashes and signs. Not thread-safe; one writer per stream.
#include <cstdint>
#include <string>

#include <delegate/audit/record.hpp>
#include <delegate/common/time.hpp>

namespace delegate::audit {

class ChainWriter {
 public:
  // key and clock must outlive the writer.
  ChainWriter(const Ed25519PrivateKey& key, const Clock& clock, std::string agent, std::string job);

  // Resumes an existing chain (crash replay): next seq and the hash of the last record.
  ChainWriter(const Ed25519PrivateKey& key, const Clock& clock, std::string agent, std::string job,
              std::uint64_t next_seq, std::string last_hash, std::string last_ts);

  // Timestamps never go backwards within a chain even if the wall clock does.
  [[nodiscard]] Result<Record> append(Kind kind, Json data);

  [[nodiscard]] std::uint64_t next_seq() const { return next_seq_; }
  [[nodiscard]] const std::string& last_hash() const { return prev_; }
  [[nodiscard]] const std::string& job() const { return job_; }

 private:
  const Ed25519PrivateKey& key_;
  const Clock& clock_;
  std::string agent_;
  std::string job_;
  std::uint64_t next_seq_ = 0;
  std::string prev_;
  std::string last_ts_;
};

}  // namespace delegate::audit
