#include <algorithm>
#include <delegate/common/strict.hpp>
#include <delegate/policies/oauth.hpp>
#include <exception>
#include <set>

namespace delegate::policies {

Result<std::unique_ptr<OAuthVerifier>> OAuthVerifier::create(std::vector<OAuthIssuer> issuers) {
  if (issuers.empty()) return fail(Errc::invalid_argument, "oauth: no issuers");
  std::set<std::string> seen;
  for (const auto& i : issuers) {
    if (i.policy.issuer.empty())
      return fail(Errc::invalid_argument, "oauth: issuer with an empty issuer");
    if (i.policy.audience.empty())
      return fail(Errc::invalid_argument, "oauth: issuer " + i.policy.issuer + " has no audience");
    if (i.policy.algorithms.empty())
      return fail(Errc::invalid_argument,
                  "oauth: issuer " + i.policy.issuer + " allows no algorithm");
    if (!i.keys)
      return fail(Errc::invalid_argument, "oauth: issuer " + i.policy.issuer + " has no key set");
    if (i.policy.skew.count() < 0 || i.policy.max_lifetime.count() <= 0) {
      return fail(Errc::invalid_argument,
                  "oauth: issuer " + i.policy.issuer + " has a negative skew or no lifetime");
    }
    if (!seen.insert(i.policy.issuer).second)
      return fail(Errc::invalid_argument, "oauth: duplicate issuer " + i.policy.issuer);
  }
  return std::unique_ptr<OAuthVerifier>(new OAuthVerifier(std::move(issuers)));
}

JwtResult OAuthVerifier::verify_detailed(std::string_view token, const Job& job,
                                         TimePoint now) const {
  // Nothing thrown below (allocation, a JSON accessor, an injected fetch) may escape into
  // the agent's job loop; a verifier that cannot finish denies.
  try {
    return verify_unguarded(token, job, now);
  } catch (const std::exception& e) {
    return std::unexpected(
        JwtFailure{JwtStatus::bad_claim, std::string("verification aborted: ") + e.what()});
  } catch (...) {
    return std::unexpected(JwtFailure{JwtStatus::bad_claim, "verification aborted"});
  }
}

JwtResult OAuthVerifier::verify_unguarded(std::string_view token, const Job& job,
                                          TimePoint now) const {
  auto parsed = parse_jwt(token);
  if (!parsed) return std::unexpected(parsed.error());
  if (!parsed->alg) {
    return std::unexpected(
        JwtFailure{JwtStatus::alg_not_allowed,
                   "alg \"" + printable(parsed->alg_name, 32) + "\" is never accepted"});
  }
  // The unverified iss only picks the key set; verify_parsed checks it again, exactly,
  // once the signature is known to come from that issuer's key.
  auto iss = parsed->payload.find("iss");
  if (iss == parsed->payload.end() || !iss->is_string()) {
    return std::unexpected(JwtFailure{JwtStatus::wrong_issuer, "iss missing or not a string"});
  }
  const auto& name = iss->get_ref<const std::string&>();
  auto it = std::find_if(issuers_.begin(), issuers_.end(),
                         [&](const OAuthIssuer& i) { return i.policy.issuer == name; });
  if (it == issuers_.end())
    return std::unexpected(JwtFailure{JwtStatus::wrong_issuer, "iss is not a configured issuer"});
  const OAuthIssuer& issuer = *it;

  // Checked before the key lookup so a disallowed alg can never trigger a JWKS refresh.
  const auto& algs = issuer.policy.algorithms;
  if (std::find(algs.begin(), algs.end(), *parsed->alg) == algs.end()) {
    return std::unexpected(JwtFailure{
        JwtStatus::alg_not_allowed,
        "alg " + std::string(to_string(*parsed->alg)) + " is not allowed for this issuer"});
  }
  KeyLookup lookup = issuer.keys->lookup(parsed->kid);
  switch (lookup.status) {
    case KeyLookupStatus::found:
      break;
    case KeyLookupStatus::unknown_kid:
    case KeyLookupStatus::unavailable:
      return std::unexpected(JwtFailure{JwtStatus::unknown_key, lookup.detail});
  }
  if (!lookup.key)
    return std::unexpected(JwtFailure{JwtStatus::unknown_key, "key lookup returned no key"});
  VerifyContext ctx{now, &job, issuer.replay.get()};
  return verify_parsed(*parsed, *lookup.key, issuer.policy, ctx);
}

TokenCheck OAuthVerifier::verify(std::string_view token, const Job& job, TimePoint now) const {
  return to_token_check(verify_detailed(token, job, now));
}

}  // namespace delegate::policies
