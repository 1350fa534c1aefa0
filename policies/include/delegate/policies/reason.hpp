#pragma once
// Deny reason codes (docs/reasons.md; an interface, never renamed). Every denial carries exactly one.
#include <optional>
#include <string_view>

namespace delegate::policies {

enum class Reason {
  no_authorization,    // the job carries no credential
  token_malformed,     // the credential is not well-formed
  alg_not_allowed,     // JWS alg is none, HMAC, or not in the issuer's list
  unknown_key,         // no JWKS key matches the token's kid
  bad_signature,       // the signature does not verify
  expired,             // exp (plus skew) is in the past
  not_yet_valid,       // nbf/iat (minus skew) is in the future
  wrong_issuer,        // iss is not a configured issuer
  wrong_audience,      // aud does not contain the configured audience
  wrong_type,          // typ is not at+jwt
  replayed,            // jti already seen
  missing_scope,       // a scope the runbook requires is absent
  role_not_allowed,    // none of the runbook's roles is held
  binding_mismatch,    // authorization_details do not name this runbook/params/agent
  api_key_unknown,     // no such key id, or the secret does not match
  api_key_expired,     // the key's expiry has passed
  api_key_revoked,     // the key was revoked
  unknown_runbook,     // the runbook is not in the local catalog (or not runnable)
  invalid_params,      // parameters fail the runbook's schema
  inline_not_allowed,  // the job carries inline steps and local policy forbids them
};

[[nodiscard]] std::string_view to_string(Reason r);
[[nodiscard]] std::optional<Reason> parse_reason(std::string_view s);

}  // namespace delegate::policies
