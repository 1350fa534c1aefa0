#pragma once
// The agent's own authorisation decision for a job: credential → principal →
// RBAC against the runbook's authorize block → parameter validation.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/json.hpp>
#include <delegate/common/time.hpp>
#include <delegate/policies/api_keys.hpp>
#include <delegate/policies/job.hpp>
#include <delegate/policies/reason.hpp>
#include <delegate/policies/runbook.hpp>

namespace delegate::policies {

struct Decision {
  bool allow = false;
  std::optional<Reason> reason;  // set iff !allow
  std::string detail;            // one line for operators; never contains the secret
  std::string method;            // "api_key" | "oauth" | "none"
  std::string subject;           // API key id, or token sub/client_id
  std::string issuer;            // OAuth issuer of a verified token, else empty
  std::string credential_fingerprint;  // hex SHA-256 of the secret, or empty
  std::vector<std::string> scopes;
  std::vector<std::string> roles;
  const Runbook* runbook = nullptr;  // set when allowed
  Json params;                       // validated params (defaults filled) when allowed
};

// The audit payload of authz.decision (allow/deny, reason, subject, scopes, …).
[[nodiscard]] Json to_json(const Decision& d);

// The identity a verified credential speaks for.
struct Principal {
  std::string subject;
  std::vector<std::string> scopes;
  std::vector<std::string> roles;
  std::string issuer;  // OAuth `iss` of a verified token; empty for API keys
};

struct TokenCheck {
  std::optional<Reason> deny;  // alg_not_allowed, bad_signature, expired, wrong_issuer, ...
  std::string detail;          // one line, never the token itself
  Principal principal;         // meaningful when !deny
};

// Seam for OAuth access-token (JWT) verification. The job is passed so that a verifier
// can check RFC 9396 authorization_details binding against the runbook and params.
class TokenVerifier {
 public:
  virtual ~TokenVerifier() = default;
  [[nodiscard]] virtual TokenCheck verify(std::string_view token, const Job& job, TimePoint now) const = 0;
};

struct AuthorizerOptions {
  // Null: no OAuth issuer is configured, so every oauth credential is denied with
  // wrong_issuer. Must outlive the authorizer.
  const TokenVerifier* oauth = nullptr;
};

class Authorizer {
 public:
  // All references must outlive the authorizer.
  Authorizer(const Catalog& catalog, const ApiKeyStore& keys, AuthorizerOptions options = {});

  [[nodiscard]] Decision decide(const Job& job, TimePoint now) const;

 private:
  const Catalog& catalog_;
  const ApiKeyStore& keys_;
  AuthorizerOptions options_;
};

}  // namespace delegate::policies
