#pragma once
// Development OAuth 2.0 issuer served by `delegate-controlplane serve` when init enabled
// it: a JWKS endpoint and a client-credentials token endpoint (RFC 6749 §4.4) issuing
// RFC 9068 access tokens signed with EdDSA. For demos and tests, not for production:
// real deployments point the agent at their own identity provider.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <delegate/common/crypto.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/time.hpp>

namespace delegate::controlplane {

struct DevClient {
  std::string client_id;
  std::string client_secret;
  std::vector<std::string> scopes;
  std::vector<std::string> roles;
};

class DevIssuer {
 public:
  // Reads DIR/oauth-signing.key and DIR/oauth-clients.json.
  [[nodiscard]] static Result<std::unique_ptr<DevIssuer>> load(const std::filesystem::path& dir, std::string issuer);
  // Writes a new signing key and one client into DIR (used by init).
  [[nodiscard]] static Result<void> init(const std::filesystem::path& dir);

  [[nodiscard]] Json jwks() const;
  // Answers a token request: HTTP status and JSON body (RFC 6749 §5.1 / §5.2).
  struct Answer {
    unsigned status;
    Json body;
  };
  [[nodiscard]] Answer token(std::string_view authorization_header, std::string_view form_body, TimePoint now) const;

 private:
  DevIssuer(Ed25519PrivateKey key, std::vector<DevClient> clients, std::string issuer)
      : key_(std::move(key)), clients_(std::move(clients)), issuer_(std::move(issuer)) {}
  Ed25519PrivateKey key_;
  std::vector<DevClient> clients_;
  std::string issuer_;
};

inline constexpr const char* kDevAudience = "delegate";
inline constexpr const char* kDevKid = "dev-1";

}  // namespace delegate::controlplane
