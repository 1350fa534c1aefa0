#pragma once
// A job as the agent receives it from the control plane (docs/protocol.md). The control plane
// is not trusted: parsing is strict and the result is only a claim until authorised.
#include <cstdint>
#include <string>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>

namespace delegate::policies {

enum class CredentialType { none, oauth, api_key };

struct Credential {
  CredentialType type = CredentialType::none;
  std::string secret;  // the JWT or the API key; never logged or audited
};

struct Job {
  std::string id;        // [A-Za-z0-9_.-]{1,128}
  std::string runbook;
  Json params = Json::object();
  std::string incident;  // optional, free text up to 256 bytes
  std::uint32_t timeout_s = 0;  // 0 = runbook defaults
  Credential credential;
  bool has_inline_steps = false;  // "steps" present: refused unless policy allows
  // Set when the job object was structurally malformed but an id could be recovered;
  // the agent still audits and denies it (token_malformed / invalid_params).
  std::string malformed;
  // True when the defect recorded in `malformed` is in the "authorization" member, so
  // the denial is token_malformed rather than invalid_params.
  bool malformed_authorization = false;
};

// Fails only when not even a valid id can be recovered (then nothing can be audited or
// completed); every other defect is reported in Job::malformed.
[[nodiscard]] Result<Job> parse_job(const Json& j);

// SHA-256 hex of the job's canonical JSON with the credential replaced by its
// fingerprint: the "digest" of the job.received record.
[[nodiscard]] std::string job_digest(const Json& raw_job);

}  // namespace delegate::policies
