#pragma once
// The HashiCorp Vault KV v2 secret provider (docs/secrets.md). Only names mapped in
// agent.yaml secrets.vault.secrets are read. HTTPS with TLS 1.3 minimum; token or
// AppRole authentication; values cached per name for min(cache_s, lease). Errors are one
// line and never carry a token, a secret_id, a value or a response body.
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include <delegate/agent/config.hpp>
#include <delegate/common/error.hpp>
#include <delegate/common/time.hpp>

namespace delegate::agent {

// No Vault answer larger than this is read (the transfer is aborted).
inline constexpr std::size_t kMaxVaultAnswer = 64 * 1024;

struct VaultLogin {
  std::string token;       // auth.client_token
  std::uint64_t lease_s;   // auth.lease_duration; 0: does not expire
};

struct VaultValue {
  std::string value;       // data.data.<field>
  std::uint64_t lease_s;   // lease_duration; 0 for KV v2 (no lease)
};

// Strict parsers of Vault's answers (untrusted input: fuzzed by vault_response_fuzz).
// Errors never quote the body.
[[nodiscard]] Result<VaultLogin> parse_vault_login(std::string_view body);
[[nodiscard]] Result<VaultValue> parse_vault_kv(std::string_view body, std::string_view field);

// Reads a credential file (token, secret_id): a regular file, not a symlink, not
// accessible by group/others, at most 4 KiB, one line of printable ASCII.
[[nodiscard]] Result<std::string> read_vault_credential(const std::filesystem::path& file, std::string_view what);

class VaultProvider {
 public:
  // Checks the credential file now, so that a wrong mode fails the agent's start.
  [[nodiscard]] static Result<std::unique_ptr<VaultProvider>> create(VaultConfig config, const Clock& clock);
  ~VaultProvider();
  VaultProvider(const VaultProvider&) = delete;
  VaultProvider& operator=(const VaultProvider&) = delete;

  // nullopt: the name is not mapped (another provider may have it). Thread-safe.
  [[nodiscard]] Result<std::optional<std::string>> read(const std::string& name);

 private:
  struct Cached {
    std::string value;
    TimePoint until;
  };
  VaultProvider(VaultConfig config, const Clock& clock) : config_(std::move(config)), clock_(clock) {}
  Result<void> ensure_token();
  Result<void> login();
  void forget_token();

  VaultConfig config_;
  const Clock& clock_;
  std::mutex mu_;
  std::string token_;
  std::optional<TimePoint> token_until_;  // nullopt: no expiry known
  std::map<std::string, Cached> cache_;
};

}  // namespace delegate::agent
