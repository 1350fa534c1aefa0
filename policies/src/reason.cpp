#include <delegate/policies/reason.hpp>

#include <array>

namespace delegate::policies {

std::string_view to_string(Reason r) {
  // Exhaustive switch: adding a Reason without a wire string must fail to compile
  // (-Wswitch under -Werror), because these strings are an interface (docs/authorization.md).
  switch (r) {
    case Reason::no_authorization: return "no_authorization";
    case Reason::token_malformed: return "token_malformed";
    case Reason::alg_not_allowed: return "alg_not_allowed";
    case Reason::unknown_key: return "unknown_key";
    case Reason::bad_signature: return "bad_signature";
    case Reason::expired: return "expired";
    case Reason::not_yet_valid: return "not_yet_valid";
    case Reason::wrong_issuer: return "wrong_issuer";
    case Reason::wrong_audience: return "wrong_audience";
    case Reason::wrong_type: return "wrong_type";
    case Reason::replayed: return "replayed";
    case Reason::missing_scope: return "missing_scope";
    case Reason::role_not_allowed: return "role_not_allowed";
    case Reason::binding_mismatch: return "binding_mismatch";
    case Reason::api_key_unknown: return "api_key_unknown";
    case Reason::api_key_expired: return "api_key_expired";
    case Reason::api_key_revoked: return "api_key_revoked";
    case Reason::unknown_runbook: return "unknown_runbook";
    case Reason::invalid_params: return "invalid_params";
    case Reason::inline_not_allowed: return "inline_not_allowed";
  }
  return "unknown";
}

std::optional<Reason> parse_reason(std::string_view s) {
  static constexpr std::array kAll = {
      Reason::no_authorization, Reason::token_malformed, Reason::alg_not_allowed,
      Reason::unknown_key,      Reason::bad_signature,   Reason::expired,
      Reason::not_yet_valid,    Reason::wrong_issuer,    Reason::wrong_audience,
      Reason::wrong_type,       Reason::replayed,        Reason::missing_scope,
      Reason::role_not_allowed, Reason::binding_mismatch, Reason::api_key_unknown,
      Reason::api_key_expired,  Reason::api_key_revoked, Reason::unknown_runbook,
      Reason::invalid_params,   Reason::inline_not_allowed,
  };
  for (Reason r : kAll) {
    if (to_string(r) == s) return r;
  }
  return std::nullopt;
}

}  // namespace delegate::policies
