#include <delegate/agent/oauth_setup.hpp>

#include <delegate/agent/cp_client.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/log.hpp>

namespace delegate::agent {
namespace {

// Fetches an issuer's JWKS over HTTPS with the same transport guarantees as the
// control-plane client: TLS 1.3, chain and host name verified, size-capped answer.
class HttpsJwksSource final : public policies::JwksSource {
 public:
  // Same route as the control-plane link: the proxy settings apply to the JWKS host.
  HttpsJwksSource(std::string uri, std::filesystem::path ca_file, const ProxySettings& proxy)
      : client_(ClientOptions{.base_url = std::move(uri), .ca_file = std::move(ca_file), .max_response_bytes = 1u << 20,
                              .proxy = proxy}) {}
  Result<std::string> fetch() override {
    auto r = client_.get("", "", std::chrono::seconds(15));
    if (!r) return std::unexpected(r.error());
    if (r->status != 200) return fail(Errc::unavailable, "JWKS endpoint answered HTTP " + std::to_string(r->status));
    return std::move(r->body);
  }

 private:
  CpClient client_;
};

}  // namespace

Result<std::unique_ptr<OAuthSetup>> OAuthSetup::create(const Config& config, const Clock& clock, bool with_replay,
                                                       std::shared_ptr<policies::ReplayCache> replay) {
  auto setup = std::unique_ptr<OAuthSetup>(new OAuthSetup());
  setup->replay_ = replay;
  if (config.auth.oauth.empty()) return setup;
  if (with_replay && !replay) {
    if (auto r = ensure_dir(config.agent.state_dir, 0700); !r) return std::unexpected(r.error());
    auto cache = policies::FileReplayCache::open(config.agent.state_dir, clock);
    if (!cache) return fail(cache.error().code, "jti replay cache: " + cache.error().message);
    replay = std::move(*cache);
    setup->replay_ = replay;
  }
  std::vector<policies::OAuthIssuer> issuers;
  for (std::size_t i = 0; i < config.auth.oauth.size(); ++i) {
    const auto& c = config.auth.oauth[i];
    const std::string where = "auth.oauth[" + std::to_string(i) + "]";
    policies::IssuerPolicy p;
    p.issuer = c.issuer;
    p.audience = c.audience;
    p.algorithms.clear();
    for (const auto& name : c.algorithms) {
      auto alg = policies::parse_jws_alg(name);
      if (!alg) return fail(Errc::invalid_argument, where + ".algorithms: \"" + name + "\" is not an accepted algorithm");
      p.algorithms.push_back(*alg);
    }
    if (p.algorithms.empty()) return fail(Errc::invalid_argument, where + ".algorithms: required");
    p.scope_claim = c.scope_claim;
    p.roles_claim = c.roles_claim;
    p.max_lifetime = std::chrono::seconds(c.max_lifetime_s);
    p.skew = std::chrono::seconds(config.auth.clock_skew_s);
    p.accept_jwt_typ = c.accept_jwt_typ;
    p.require_authorization_details = c.require_authorization_details;
    p.require_locations = c.require_locations;
    p.authorization_details_type = c.authorization_details_type;
    p.agent_name = config.agent.name;
    p.agent_tags = config.agent.tags;
    if (!c.jwks_file.empty()) {
      setup->sources_.push_back(std::make_unique<policies::FileJwksSource>(c.jwks_file));
    } else {
      setup->sources_.push_back(std::make_unique<HttpsJwksSource>(c.jwks_uri, c.ca_file, config.control_plane.proxy_settings));
    }
    auto keys = std::make_shared<policies::JwksCache>(*setup->sources_.back(), clock, p.algorithms);
    issuers.push_back(policies::OAuthIssuer{std::move(p), std::move(keys), replay});
  }
  auto verifier = policies::OAuthVerifier::create(std::move(issuers));
  if (!verifier) return fail(Errc::invalid_argument, "auth.oauth: " + verifier.error().message);
  setup->verifier_ = std::move(*verifier);
  return setup;
}

}  // namespace delegate::agent
