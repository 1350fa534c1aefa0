#pragma once
// The audit record (docs/audit.md; an interface for auditors). One JSON object per record:
// {"v":1,"agent","job","seq","ts","kind","data","prev","hash","sig"}.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <delegate/common/crypto.hpp>
#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>

namespace delegate::audit {

inline constexpr int kRecordVersion = 1;
// Output records carry at most this many raw bytes of a stream.
inline constexpr std::size_t kMaxOutputChunk = 16 * 1024;
// Hard cap on one serialized record (a 16 KiB chunk base64-encoded plus envelope).
inline constexpr std::size_t kMaxRecordBytes = 64 * 1024;
// The job id of the agent-level stream (checkpoints, agent.start/stop).
inline constexpr std::string_view kAgentStreamJob = "_agent";

enum class Kind {
  job_received,    // job digest, runbook, params
  authz_decision,  // allow/deny, reason, subject, scopes
  step_start,
  output,          // {"step","stream":"stdout|stderr","b64"}
  step_end,        // exit code, signal, duration, limits hit, bytes dropped
  job_end,         // final status, "records": total count including this one
  checkpoint,      // agent stream: jobs finished since the previous checkpoint
  agent_start,     // agent stream: boot id
  agent_stop,      // agent stream
  net_connect,     // a step's egress attempt: host, port, address, allowed, reason
};

[[nodiscard]] std::string_view to_string(Kind k);
[[nodiscard]] std::optional<Kind> parse_kind(std::string_view s);

struct Record {
  int v = kRecordVersion;
  std::string agent;
  std::string job;
  std::uint64_t seq = 0;
  std::string ts;  // RFC 3339 UTC with milliseconds
  Kind kind = Kind::job_received;
  Json data = Json::object();
  std::string prev;  // 64 lowercase hex
  std::string hash;  // 64 lowercase hex
  std::string sig;   // base64url, no padding, of the 64-byte Ed25519 signature
};

// hex SHA-256 of "delegate/v1/genesis\n" + agent + "\n" + job.
[[nodiscard]] std::string genesis_prev(std::string_view agent, std::string_view job);

// The record as a JSON object, all ten members.
[[nodiscard]] Json to_json(const Record& r);
// Serialized form used on the wire and in exports (canonical JCS, one line).
[[nodiscard]] std::string serialize(const Record& r);

// Strict: exactly the ten members with the right types, v == 1, a known kind, hex and
// base64url fields of the right length, seq a non-negative integer, data an object.
[[nodiscard]] Result<Record> record_from_json(const Json& j);
[[nodiscard]] Result<Record> parse_record(std::string_view line);

// SHA-256 over the JCS form of the record without "hash" and "sig".
[[nodiscard]] Result<Sha256> compute_hash(const Record& r);

// Fills hash and sig.
[[nodiscard]] Result<void> seal(Record& r, const Ed25519PrivateKey& key);
// seal() that also returns serialize(r).size() without serialising again: the hashed
// form plus the two members it lacks, "hash" (64 hex) and "sig" (86 base64url).
[[nodiscard]] Result<std::size_t> seal_sized(Record& r, const Ed25519PrivateKey& key);

}  // namespace delegate::audit
