#pragma once
// OAuth2 client-credentials access tokens for http steps (docs/connectors.md, "Token
// cache"). Tokens live only in the agent's memory, as long as the agent: reused across
// steps and jobs, until 30 s before they expire, and dropped on a 401 from the API.
// The token endpoint's answer is untrusted input parsed in the agent itself, so the
// parser is strict and bounded (token_response_fuzz).
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>

#include <delegate/common/error.hpp>
#include <delegate/common/time.hpp>

namespace delegate::agent {

inline constexpr std::size_t kMaxTokenResponse = 16 * 1024;
inline constexpr std::size_t kMaxAccessToken = 8 * 1024;
inline constexpr std::int64_t kMaxTokenLifetime = 86400;
// A token is not used in its last 30 s: it could expire between the check and the call.
inline constexpr std::int64_t kTokenExpiryMargin = 30;

struct TokenResponse {
  std::string access_token;
  std::int64_t expires_in = 0;  // seconds
};

// RFC 6749 section 5.1: a JSON object, at most kMaxTokenResponse bytes, with
// access_token (1..8 KiB of RFC 6750 b64token characters), token_type "Bearer" (any
// case) and expires_in (integer 1..86400). Other members are ignored; duplicates,
// bad UTF-8 and deep nesting are refused. The error never quotes the token.
[[nodiscard]] Result<TokenResponse> parse_token_response(std::string_view body);

struct TokenKey {
  std::string token_url, client_id, scopes;  // scopes space-joined
  std::string secret_fingerprint;            // keyed fingerprint of the client secret
  auto operator<=>(const TokenKey&) const = default;
};

class TokenCache {
 public:
  explicit TokenCache(const Clock& clock) : clock_(clock) {}
  // A token with more than kTokenExpiryMargin seconds left, if any.
  [[nodiscard]] std::optional<std::string> get(const TokenKey& key) const;
  void put(const TokenKey& key, std::string token, std::int64_t expires_in);
  // Drops the entry if it still holds `token` (another step may have refreshed it).
  void invalidate(const TokenKey& key, const std::string& token);

 private:
  struct Entry {
    std::string token;
    TimePoint refresh_at;
  };
  const Clock& clock_;
  mutable std::mutex mu_;
  std::map<TokenKey, Entry> entries_;
};

}  // namespace delegate::agent
