// Claims checks of the RFC 9068 profile plus the RFC 9396 runbook binding. Runs only
// after the signature verified, so every value here is the issuer's statement.
#include <algorithm>
#include <cctype>
#include <cmath>
#include <delegate/common/strict.hpp>
#include <delegate/policies/jwt.hpp>
#include <exception>

namespace delegate::policies {
namespace {

std::unexpected<JwtFailure> failure(JwtStatus s, std::string detail) {
  return std::unexpected(JwtFailure{s, std::move(detail)});
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// NumericDate (RFC 7519 §2): seconds since the epoch, "non-integer values can be
// represented", within [0, 2^40]. Held as microseconds so that a fractional exp or nbf
// is compared exactly at the boundary instead of being refused or truncated. `round_up`
// picks the conservative direction for the claim (exp rounds down, nbf/iat up), so the
// conversion can only shorten a token's validity.
using Micros = std::int64_t;
constexpr Micros kMicros = 1'000'000;

std::expected<std::optional<Micros>, JwtFailure> numeric_date(const Json& payload, const char* name,
                                                              bool round_up) {
  auto it = payload.find(name);
  if (it == payload.end()) return std::optional<Micros>{};
  const auto bad = [&] {
    return failure(JwtStatus::bad_claim,
                   std::string("\"") + name + "\" is not a valid NumericDate");
  };
  if (it->is_number_unsigned()) {
    const auto v = it->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(kMaxNumericDate)) return bad();
    return std::optional<Micros>(static_cast<Micros>(v) * kMicros);
  }
  if (it->is_number_integer()) {
    const auto v = it->get<std::int64_t>();
    if (v < 0 || v > kMaxNumericDate) return bad();
    return std::optional<Micros>(v * kMicros);
  }
  if (it->is_number_float()) {
    const double v = it->get<double>();
    if (!std::isfinite(v) || v < 0 || v > static_cast<double>(kMaxNumericDate)) return bad();
    // 2^40 s in µs is below 2^60: no overflow.
    const double us = v * static_cast<double>(kMicros);
    return std::optional<Micros>(static_cast<Micros>(round_up ? std::ceil(us) : std::floor(us)));
  }
  return bad();
}

// A claim that is a list of strings: an array of strings, or (when `split`) a
// space-separated string (OAuth `scope`), or else a single string (one role).
std::expected<std::vector<std::string>, JwtFailure> string_list(const Json& payload,
                                                                const std::string& name,
                                                                bool split) {
  std::vector<std::string> out;
  if (name.empty()) return out;
  auto it = payload.find(name);
  if (it == payload.end()) return out;
  if (it->is_string()) {
    const auto& s = it->get_ref<const std::string&>();
    if (!split) {
      if (!s.empty()) out.push_back(s);
      return out;
    }
    std::size_t pos = 0;
    while (pos < s.size()) {
      auto end = s.find(' ', pos);
      if (end == std::string::npos) end = s.size();
      if (end > pos) out.push_back(s.substr(pos, end - pos));
      pos = end + 1;
    }
    return out;
  }
  if (it->is_array()) {
    for (const auto& v : *it) {
      if (!v.is_string())
        return failure(JwtStatus::bad_claim, "\"" + name + "\" contains a non-string");
      out.push_back(v.get<std::string>());
    }
    return out;
  }
  return failure(JwtStatus::bad_claim,
                 "\"" + name + "\" is neither a string nor an array of strings");
}

bool contains_string(const Json& arr, std::string_view s) {
  return std::any_of(arr.begin(), arr.end(), [&](const Json& v) {
    return v.is_string() && v.get_ref<const std::string&>() == s;
  });
}

bool string_array(const Json& v) {
  return v.is_array() &&
         std::all_of(v.begin(), v.end(), [](const Json& e) { return e.is_string(); });
}

// Why one authorization_details entry does not authorise this job; empty = it does.
std::string binding_gap(const Json& entry, const IssuerPolicy& policy, const Job& job) {
  if (!entry.is_object()) return "entry is not an object";
  auto type = entry.find("type");
  if (type == entry.end() || !type->is_string() ||
      type->get_ref<const std::string&>() != policy.authorization_details_type) {
    return "type is not " + printable(policy.authorization_details_type);
  }
  auto id = entry.find("identifier");
  if (id == entry.end() || !id->is_string() || id->get_ref<const std::string&>() != job.runbook) {
    return "identifier does not name runbook " + printable(job.runbook);
  }
  auto actions = entry.find("actions");
  if (actions == entry.end() || !string_array(*actions) || !contains_string(*actions, "execute")) {
    return "actions do not include execute";
  }
  if (auto loc = entry.find("locations"); loc != entry.end()) {
    if (!string_array(*loc)) return "locations is not an array of strings";
    const bool by_name = !policy.agent_name.empty() && contains_string(*loc, policy.agent_name);
    bool here = by_name;
    for (const auto& tag : policy.agent_tags) here = here || contains_string(*loc, tag);
    if (!here) return "locations name neither this agent nor one of its tags";
    // A tag names a group of agents: only the agent's own name binds the token to it.
    if (policy.require_locations && !by_name) return "locations do not name this agent";
  } else if (policy.require_locations) {
    return "locations missing (this agent requires tokens bound to it)";
  }
  if (auto params = entry.find("params"); params != entry.end()) {
    if (*params != job.params) return "params differ from the job's";
  }
  return {};
}

// RFC 9396: a token that states what it authorises is held to it, whatever the
// issuer's settings; require_authorization_details only decides whether a token that
// states nothing is acceptable, and require_locations whether it must name this agent.
std::optional<JwtFailure> check_binding(const Json& payload, const IssuerPolicy& policy,
                                        const VerifyContext& ctx) {
  auto ad = payload.find("authorization_details");
  if (ad == payload.end()) {
    if (policy.require_locations)
      return JwtFailure{JwtStatus::binding_mismatch,
                        "authorization_details missing (this agent requires tokens bound to it)"};
    if (policy.require_authorization_details)
      return JwtFailure{JwtStatus::binding_mismatch, "authorization_details missing"};
    return std::nullopt;
  }
  if (!ad->is_array())
    return JwtFailure{JwtStatus::binding_mismatch, "authorization_details is not an array"};
  if (ctx.job == nullptr)
    return JwtFailure{JwtStatus::binding_mismatch, "no job to bind authorization_details to"};
  std::string last = "no entry of type " + printable(policy.authorization_details_type);
  for (const auto& entry : *ad) {
    std::string gap = binding_gap(entry, policy, *ctx.job);
    if (gap.empty()) return std::nullopt;
    // Prefer explaining the entry of our type over unrelated entries.
    if (entry.is_object() && entry.value("type", Json()) == Json(policy.authorization_details_type))
      last = gap;
  }
  return JwtFailure{JwtStatus::binding_mismatch, "authorization_details: " + last};
}

std::optional<JwtFailure> check_type(const Json& header, const IssuerPolicy& policy) {
  auto typ = header.find("typ");
  if (typ == header.end()) return JwtFailure{JwtStatus::wrong_type, "typ missing (want at+jwt)"};
  // Media types are case-insensitive (RFC 9068 §2.1, RFC 7515 §4.1.9).
  const std::string t = lower(typ->get_ref<const std::string&>());
  if (t == "at+jwt" || t == "application/at+jwt") return std::nullopt;
  if (policy.accept_jwt_typ && (t == "jwt" || t == "application/jwt")) return std::nullopt;
  return JwtFailure{JwtStatus::wrong_type, "typ is not at+jwt"};
}

std::optional<JwtFailure> check_audience(const Json& payload, const std::string& audience) {
  auto aud = payload.find("aud");
  if (aud == payload.end()) return JwtFailure{JwtStatus::wrong_audience, "aud missing"};
  if (aud->is_string()) {
    if (aud->get_ref<const std::string&>() == audience) return std::nullopt;
    return JwtFailure{JwtStatus::wrong_audience, "aud does not name this agent's audience"};
  }
  if (!string_array(*aud))
    return JwtFailure{JwtStatus::bad_claim, "aud is neither a string nor an array of strings"};
  if (contains_string(*aud, audience)) return std::nullopt;
  return JwtFailure{JwtStatus::wrong_audience, "aud does not name this agent's audience"};
}

}  // namespace

JwtResult verify_parsed(const ParsedJwt& jwt, const Jwk& key, const IssuerPolicy& policy,
                        const VerifyContext& ctx) {
  if (!jwt.alg)
    return failure(JwtStatus::alg_not_allowed,
                   "alg \"" + printable(jwt.alg_name, 32) + "\" is never accepted");
  const JwsAlg alg = *jwt.alg;
  if (std::find(policy.algorithms.begin(), policy.algorithms.end(), alg) ==
      policy.algorithms.end()) {
    return failure(JwtStatus::alg_not_allowed,
                   "alg " + std::string(to_string(alg)) + " is not allowed for this issuer");
  }
  // The key decides the algorithm, never the token.
  if (key.alg != alg) {
    return failure(JwtStatus::key_alg_mismatch, "key is bound to " +
                                                    std::string(to_string(key.alg)) +
                                                    ", token says " + std::string(to_string(alg)));
  }
  if (!verify_jws_signature(alg, key.key.get(), jwt.signing_input, jwt.signature)) {
    return failure(JwtStatus::bad_signature, "signature does not verify");
  }

  const Json& p = jwt.payload;
  if (auto f = check_type(jwt.header, policy)) return std::unexpected(*f);
  auto iss = p.find("iss");
  if (iss == p.end() || !iss->is_string() || iss->get_ref<const std::string&>() != policy.issuer) {
    return failure(JwtStatus::wrong_issuer, "iss is not the configured issuer");
  }
  if (auto f = check_audience(p, policy.audience)) return std::unexpected(*f);

  auto exp = numeric_date(p, "exp", /*round_up=*/false);
  if (!exp) return std::unexpected(exp.error());
  if (!exp->has_value()) return failure(JwtStatus::bad_claim, "exp missing");
  auto nbf = numeric_date(p, "nbf", /*round_up=*/true);
  if (!nbf) return std::unexpected(nbf.error());
  auto iat = numeric_date(p, "iat", /*round_up=*/true);
  if (!iat) return std::unexpected(iat.error());

  const Micros now = std::chrono::floor<std::chrono::microseconds>(ctx.now.time_since_epoch()).count();
  const Micros skew = policy.skew.count() * kMicros;
  if (now >= **exp + skew) return failure(JwtStatus::expired, "token expired");
  if (nbf->has_value() && **nbf > now + skew)
    return failure(JwtStatus::not_yet_valid, "nbf is in the future");
  if (iat->has_value() && **iat > now + skew)
    return failure(JwtStatus::not_yet_valid, "iat is in the future");
  // A lifetime violation is a token this issuer should never have minted: it is
  // malformed for us (neither expired nor not yet valid describes it).
  const Micros lifetime = **exp - (iat->has_value() ? **iat : now);
  if (lifetime > policy.max_lifetime.count() * kMicros) {
    return failure(JwtStatus::lifetime_exceeded, "lifetime exceeds the issuer's maximum of " +
                                                     std::to_string(policy.max_lifetime.count()) +
                                                     " s");
  }

  JwtVerified out;
  out.issuer = policy.issuer;
  for (const char* name : {"sub", "client_id"}) {
    auto it = p.find(name);
    if (it == p.end()) continue;
    if (!it->is_string() || it->get_ref<const std::string&>().empty() ||
        it->get_ref<const std::string&>().size() > 256) {
      return failure(JwtStatus::bad_claim,
                     std::string("\"") + name + "\" is not a string of 1..256 bytes");
    }
    if (out.subject.empty()) out.subject = it->get<std::string>();
  }
  if (out.subject.empty())
    return failure(JwtStatus::bad_claim, "neither sub nor client_id present");

  auto scopes = string_list(p, policy.scope_claim, /*split=*/true);
  if (!scopes) return std::unexpected(scopes.error());
  out.scopes = std::move(*scopes);
  auto roles = string_list(p, policy.roles_claim, /*split=*/false);
  if (!roles) return std::unexpected(roles.error());
  out.roles = std::move(*roles);

  if (auto jti = p.find("jti"); jti != p.end()) {
    if (!jti->is_string() || jti->get_ref<const std::string&>().empty() ||
        jti->get_ref<const std::string&>().size() > 256) {
      return failure(JwtStatus::bad_claim, "jti is not a string of 1..256 bytes");
    }
    out.jti = jti->get<std::string>();
  }
  if (ctx.replay != nullptr && out.jti.empty())
    return failure(JwtStatus::bad_claim, "jti missing (replay protection is on)");

  if (auto f = check_binding(p, policy, ctx)) return std::unexpected(*f);

  // Last: only a token that would otherwise be accepted consumes its jti.
  if (ctx.replay != nullptr) {
    const TimePoint exp_tp{std::chrono::microseconds(**exp + skew)};
    if (ctx.replay->seen_or_insert(policy.issuer, out.jti, exp_tp))
      return failure(JwtStatus::replayed, "jti already used");
  }
  return out;
}

JwtResult verify_jwt(std::string_view token, const JwkSet& jwks, const IssuerPolicy& policy,
                     const VerifyContext& ctx) try {
  auto parsed = parse_jwt(token);
  if (!parsed) return std::unexpected(parsed.error());
  if (!parsed->alg)
    return failure(JwtStatus::alg_not_allowed,
                   "alg \"" + printable(parsed->alg_name, 32) + "\" is never accepted");
  if (std::find(policy.algorithms.begin(), policy.algorithms.end(), *parsed->alg) ==
      policy.algorithms.end()) {
    return failure(JwtStatus::alg_not_allowed, "alg is not allowed for this issuer");
  }
  const Jwk* key = jwks.find(parsed->kid);
  if (key == nullptr) return failure(JwtStatus::unknown_key, "no key with this kid");
  return verify_parsed(*parsed, *key, policy, ctx);
} catch (const std::exception& e) {
  // No exception escapes into the caller's job loop; a verifier that cannot finish denies.
  return failure(JwtStatus::bad_claim, std::string("verification aborted: ") + e.what());
}

}  // namespace delegate::policies
