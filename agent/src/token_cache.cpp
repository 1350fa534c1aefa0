#include <delegate/agent/token_cache.hpp>

#include <algorithm>
#include <cctype>

#include <delegate/common/json.hpp>

namespace delegate::agent {
namespace {

// RFC 6750 section 2.1: b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
bool valid_b64token(std::string_view t) {
  std::size_t i = 0;
  while (i < t.size() && (std::isalnum(static_cast<unsigned char>(t[i])) ||
                          std::string_view("-._~+/").find(t[i]) != std::string_view::npos)) {
    ++i;
  }
  if (i == 0) return false;
  while (i < t.size() && t[i] == '=') ++i;
  return i == t.size();
}

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) == std::tolower(static_cast<unsigned char>(y));
         });
}

}  // namespace

Result<TokenResponse> parse_token_response(std::string_view body) {
  if (body.size() > kMaxTokenResponse) return fail(Errc::too_large, "token response larger than 16 KiB");
  auto doc = parse_json_strict(body, JsonLimits{.max_bytes = kMaxTokenResponse, .max_depth = 4});
  if (!doc) return fail(Errc::parse, "token response is not valid JSON: " + doc.error().message);
  if (!doc->is_object()) return fail(Errc::parse, "token response is not a JSON object");
  const Json& o = *doc;
  if (!o.contains("access_token") || !o["access_token"].is_string()) {
    return fail(Errc::parse, "token response has no access_token string");
  }
  const auto& token = o["access_token"].get_ref<const std::string&>();
  if (token.empty() || token.size() > kMaxAccessToken) return fail(Errc::parse, "access_token must be 1..8192 bytes");
  // It becomes a header value: nothing but the token characters may reach the request.
  if (!valid_b64token(token)) return fail(Errc::parse, "access_token has characters a bearer token cannot have");
  if (!o.contains("token_type") || !o["token_type"].is_string() ||
      !iequals(o["token_type"].get_ref<const std::string&>(), "bearer")) {
    return fail(Errc::parse, "token_type must be Bearer");
  }
  if (!o.contains("expires_in") || !o["expires_in"].is_number_integer()) {
    return fail(Errc::parse, "token response has no integer expires_in");
  }
  const auto& e = o["expires_in"];
  const std::int64_t expires_in = e.is_number_unsigned()
                                      ? (e.get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxTokenLifetime)
                                             ? kMaxTokenLifetime + 1
                                             : static_cast<std::int64_t>(e.get<std::uint64_t>()))
                                      : e.get<std::int64_t>();
  if (expires_in < 1 || expires_in > kMaxTokenLifetime) return fail(Errc::parse, "expires_in must be 1..86400");
  return TokenResponse{token, expires_in};
}

std::optional<std::string> TokenCache::get(const TokenKey& key) const {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end() || clock_.now() >= it->second.refresh_at) return std::nullopt;
  return it->second.token;
}

void TokenCache::put(const TokenKey& key, std::string token, std::int64_t expires_in) {
  std::lock_guard lock(mu_);
  // A token that lives no longer than the margin is used for this request only.
  entries_[key] = Entry{std::move(token), clock_.now() + std::chrono::seconds(expires_in - kTokenExpiryMargin)};
}

void TokenCache::invalidate(const TokenKey& key, const std::string& token) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end() && it->second.token == token) entries_.erase(it);
}

}  // namespace delegate::agent
