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
  // `replay`: the jti cache to use instead of opening one (a reload keeps the running
  // agent's, so a token seen before the reload stays seen).
  [[nodiscard]] static Result<std::unique_ptr<OAuthSetup>> create(const Config& config, const Clock& clock,
                                                                  bool with_replay,
                                                                  std::shared_ptr<policies::ReplayCache> replay = nullptr);
  [[nodiscard]] const policies::TokenVerifier* verifier() const { return verifier_.get(); }
  [[nodiscard]] const std::shared_ptr<policies::ReplayCache>& replay() const { return replay_; }

 private:
  std::vector<std::unique_ptr<policies::JwksSource>> sources_;
  std::unique_ptr<policies::OAuthVerifier> verifier_;
  std::shared_ptr<policies::ReplayCache> replay_;
};

}  // namespace delegate::agent
