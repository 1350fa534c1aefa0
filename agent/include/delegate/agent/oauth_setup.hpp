#pragma once
// Builds the agent's OAuth verifier from `auth.oauth`: one key cache per issuer (from a
// JWKS file, or fetched over HTTPS with TLS 1.3 and certificate verification), and the
// jti replay cache persisted in state_dir.
#include <memory>
#include <vector>

#include <delegate/agent/config.hpp>
#include <delegate/common/time.hpp>
#include <delegate/policies/oauth.hpp>

namespace delegate::agent {

class OAuthSetup {
 public:
  // `with_replay`: false for offline evaluation (check-job must not use up a jti).
  // Returns a setup whose verifier() is null when no issuer is configured.
  [[nodiscard]] static Result<std::unique_ptr<OAuthSetup>> create(const Config& config, const Clock& clock,
                                                                  bool with_replay);
  [[nodiscard]] const policies::TokenVerifier* verifier() const { return verifier_.get(); }

 private:
  std::vector<std::unique_ptr<policies::JwksSource>> sources_;
  std::unique_ptr<policies::OAuthVerifier> verifier_;
};

}  // namespace delegate::agent
