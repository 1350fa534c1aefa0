#pragma once
// The agent's OAuth access-token verifier: one or more trusted issuers, each with its
// own key set. The token's unverified `iss` only selects which key set to try; the
// issuer is then checked again after the signature, and a key of issuer A can never
// verify a token that claims issuer B because A's keys are never consulted for it.
#include <delegate/common/error.hpp>
#include <delegate/policies/authorizer.hpp>
#include <delegate/policies/jwks.hpp>
#include <delegate/policies/jwt.hpp>
#include <memory>
#include <string_view>
#include <vector>

namespace delegate::policies {

struct OAuthIssuer {
  IssuerPolicy policy;
  std::shared_ptr<JwksCache> keys;      // required
  std::shared_ptr<ReplayCache> replay;  // optional; when set, jti is required
};

class OAuthVerifier final : public TokenVerifier {
 public:
  // Fails on an empty list, an issuer without issuer/audience/algorithms/keys, or two
  // issuers with the same `issuer` (selection by iss must be unambiguous).
  [[nodiscard]] static Result<std::unique_ptr<OAuthVerifier>> create(
      std::vector<OAuthIssuer> issuers);

  // `now` judges the token (exp/nbf/iat); the key caches use their own injected Clock,
  // so `check-job --now` cannot make a stale key set look fresh.
  [[nodiscard]] TokenCheck verify(std::string_view token, const Job& job,
                                  TimePoint now) const override;
  [[nodiscard]] JwtResult verify_detailed(std::string_view token, const Job& job,
                                          TimePoint now) const;

 private:
  explicit OAuthVerifier(std::vector<OAuthIssuer> issuers) : issuers_(std::move(issuers)) {}
  [[nodiscard]] JwtResult verify_unguarded(std::string_view token, const Job& job,
                                           TimePoint now) const;
  std::vector<OAuthIssuer> issuers_;
};

}  // namespace delegate::policies
