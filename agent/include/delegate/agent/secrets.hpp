#pragma once
// Secrets for runbook steps (docs/secrets.md). Providers, tried in the order agent.yaml
// lists them: the local encrypted store in state_dir, systemd credentials
// ($CREDENTIALS_DIRECTORY/NAME) and HashiCorp Vault KV v2 (secret_vault.hpp). Values never leave the agent: they are not logged,
// not sent to the control plane, and records name them only by keyed fingerprint.
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <delegate/agent/config.hpp>
#include <delegate/agent/secret_vault.hpp>
#include <delegate/agent/spool.hpp>
#include <delegate/common/error.hpp>

namespace delegate::agent {

// The local store: state_dir/secrets.enc, AES-256-GCM under the 32-byte key in
// state_dir/secrets.key (0600, created race-free on first use). The file is rewritten
// atomically on every change, under an exclusive lock on the key file.
class SecretStore {
 public:
  [[nodiscard]] static Result<SecretStore> open(const std::filesystem::path& state_dir);
  [[nodiscard]] static std::filesystem::path file_in(const std::filesystem::path& state_dir);
  [[nodiscard]] static std::filesystem::path key_file_in(const std::filesystem::path& state_dir);

  // nullopt: no such secret. An error: the store is unreadable, tampered with or
  // encrypted under another key (never silently empty).
  [[nodiscard]] Result<std::optional<std::string>> get(const std::string& name) const;
  [[nodiscard]] Result<std::vector<std::string>> names() const;
  [[nodiscard]] Result<void> set(const std::string& name, std::string_view value);
  // False: there was no such secret.
  [[nodiscard]] Result<bool> remove(const std::string& name);
  // Key for the fingerprints records carry, derived from the store key.
  [[nodiscard]] const SpoolKey& fingerprint_key() const { return fp_key_; }

 private:
  SecretStore(std::filesystem::path file, std::filesystem::path key_file, SpoolKey key);
  std::filesystem::path file_, key_file_;
  SpoolKey key_, fp_key_;
};

// Resolves the secrets a step references from the configured providers.
class SecretResolver {
 public:
  // credentials_dir: $CREDENTIALS_DIRECTORY of the agent's process (empty if unset); a
  // configuration that lists systemd without it is refused here. `clock` (which must
  // outlive the resolver) times Vault's leases and cache.
  [[nodiscard]] static Result<SecretResolver> create(const Config& config, const std::string& credentials_dir,
                                                     const Clock& clock = default_clock());
  // The value, or an error naming the secret (never containing its value).
  [[nodiscard]] Result<std::string> resolve(const std::string& name) const;
  // HMAC-SHA256 under the agent's fingerprint key, first 16 bytes in hex: lets a
  // reader of the records tell whether two steps got the same value, not what it is.
  [[nodiscard]] std::string fingerprint(std::string_view value) const;
  // Empty unless the systemd provider is configured; steps never see it.
  [[nodiscard]] const std::filesystem::path& credentials_dir() const { return credentials_dir_; }

 private:
  SecretResolver(std::vector<SecretProvider> providers, SecretStore store, std::filesystem::path credentials_dir,
                 std::shared_ptr<VaultProvider> vault)
      : providers_(std::move(providers)),
        store_(std::move(store)),
        credentials_dir_(std::move(credentials_dir)),
        vault_(std::move(vault)) {}
  static const Clock& default_clock();
  std::vector<SecretProvider> providers_;
  SecretStore store_;
  std::filesystem::path credentials_dir_;
  // Shared so the resolver stays movable; it has its own lock and cache.
  std::shared_ptr<VaultProvider> vault_;
};

}  // namespace delegate::agent
