#pragma once
// The data objects of the agent stream (job id "_agent"): agent.start, agent.stop and
// checkpoint. The agent builds them with the make_* helpers; the verifier reads them
// with the strict parsers below. Formats are a contract (docs/audit.md):
//   agent.start {"boot_id":"<32 hex>","public_key":"<base64 std, 32 bytes>",
//                "version":"<string>","hostname":"<string>"}
//   agent.stop  {"boot_id":"<32 hex>","reason":"shutdown"}
//   checkpoint  {"boot_id":"<32 hex>","jobs":[{"job","records","last_hash","status"}...]}
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/crypto.hpp>
#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>

namespace delegate::audit {

// The only agent.stop reason the contract defines.
inline constexpr std::string_view kStopReasonShutdown = "shutdown";

// One job listed by a checkpoint: it wrote job.end since the previous checkpoint.
struct FinishedJob {
  std::string job;
  std::uint64_t records = 0;  // the job's total record count (job.end "records")
  std::string last_hash;      // hash of the job's job.end record
  std::string status;         // job.end "status", one of the final statuses
};

struct AgentStart {
  std::string boot_id;
  Ed25519PublicKey public_key{};
  std::string version;
  std::string hostname;
};

struct AgentStop {
  std::string boot_id;
  std::string reason;
};

struct Checkpoint {
  std::string boot_id;
  std::vector<FinishedJob> jobs;  // in finishing order
};

// 16 random bytes from the CSPRNG as 32 lowercase hex digits; one per agent process.
[[nodiscard]] std::string new_boot_id();

// Builders. They do not validate (the agent passes values it produced itself); the
// parsers below are the check, and a record the agent writes must pass them.
[[nodiscard]] Json make_agent_start_data(std::string_view boot_id, std::string_view public_key_b64,
                                         std::string_view version, std::string_view hostname);
[[nodiscard]] Json make_agent_stop_data(std::string_view boot_id);
[[nodiscard]] Json make_checkpoint_data(std::string_view boot_id, const std::vector<FinishedJob>& jobs);

// Strict parsers: exactly the listed members with the listed types and shapes; see
// docs/audit.md for each field's rules. Errors are Errc::parse naming the member.
[[nodiscard]] Result<AgentStart> parse_agent_start_data(const Json& data);
[[nodiscard]] Result<AgentStop> parse_agent_stop_data(const Json& data);
[[nodiscard]] Result<Checkpoint> parse_checkpoint_data(const Json& data);

// True for the final statuses (docs/audit.md): succeeded, failed, denied, timed_out,
// cancelled, interrupted.
[[nodiscard]] bool is_final_status(std::string_view status);

}  // namespace delegate::audit
