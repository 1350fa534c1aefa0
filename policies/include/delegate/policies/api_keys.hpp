#pragma once
// API keys: high-entropy bearer secrets "dlg.<id>.<43 base64url chars>" (256 bits).
// The agent stores only id, a random salt and HMAC-SHA256(salt, secret), with scopes,
// roles, expiry and a revoked flag, in a YAML file (mode 0600). Verification is by id
// lookup then constant-time comparison.
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/crypto.hpp>
#include <delegate/common/error.hpp>
#include <delegate/common/time.hpp>
#include <delegate/policies/reason.hpp>

namespace delegate::policies {

struct ApiKeyEntry {
  std::string id;  // [A-Za-z0-9_-]{1,64}
  Bytes salt;      // 16 bytes
  Sha256 hash{};   // HMAC-SHA256(salt, full key string)
  std::vector<std::string> scopes;
  std::vector<std::string> roles;
  std::optional<TimePoint> expires;
  TimePoint created{};
  bool revoked = false;
};

struct ApiKeyCheck {
  std::optional<Reason> deny;          // api_key_unknown / api_key_expired / api_key_revoked / token_malformed
  const ApiKeyEntry* entry = nullptr;  // set when allowed (and for expired/revoked, for audit)
};

class ApiKeyStore {
 public:
  // A missing file is an empty store; an unreadable or malformed one is an error, as is a
  // file accessible by group/others.
  [[nodiscard]] static Result<ApiKeyStore> load(const std::filesystem::path& file);
  [[nodiscard]] Result<void> save(const std::filesystem::path& file) const;

  // Returns the new key's plaintext (shown once). Fails if id exists or is invalid.
  [[nodiscard]] Result<std::string> create(const std::string& id, std::vector<std::string> scopes,
                                           std::vector<std::string> roles,
                                           std::optional<TimePoint> expires, TimePoint now);
  [[nodiscard]] Result<void> revoke(const std::string& id);

  [[nodiscard]] ApiKeyCheck check(std::string_view presented, TimePoint now) const;
  [[nodiscard]] const std::vector<ApiKeyEntry>& entries() const { return entries_; }

 private:
  std::vector<ApiKeyEntry> entries_;
};

}  // namespace delegate::policies
