#pragma once
// agent.yaml (every key in docs/configuration.md; they are an interface, never renamed). Every key is known; an unknown key, a wrong
// type or an invalid value is an error naming the key. DELEGATE_<SECTION>_<KEY>
// environment variables override single values (containers).
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include <delegate/agent/proxy.hpp>
#include <delegate/common/error.hpp>
#include <delegate/common/metrics_http.hpp>
#include <delegate/common/log.hpp>

namespace YAML {
class Node;
}

namespace delegate::agent {

struct OAuthIssuerConfig {
  std::string issuer;
  std::string audience;
  std::filesystem::path jwks_file;
  std::string jwks_uri;
  std::vector<std::string> algorithms;
  std::string scope_claim = "scope";
  std::string roles_claim = "roles";
  // Optional additions:
  std::filesystem::path ca_file;                     // trust for jwks_uri; default system store
  std::uint32_t max_lifetime_s = 3600;               // exp - iat (or exp - now) must not exceed
  bool accept_jwt_typ = false;                       // also accept typ "JWT"
  bool require_authorization_details = false;        // RFC 9396 binding to runbook/params/agent
  bool require_locations = false;  // tokens must name this agent (by name) in authorization_details locations
  std::string authorization_details_type = "delegate_runbook";
};

// Where `${secrets.NAME}` values come from (agent.yaml secrets.providers).
enum class SecretProvider { local, systemd, vault };

// secrets.vault: HashiCorp Vault KV v2 (docs/secrets.md). Only the names mapped in
// `secrets` can be read; a runbook never names a Vault path.
struct VaultConfig {
  enum class Auth { token, approle };
  struct Entry {
    std::string path;   // under the KV v2 mount: GET /v1/<mount>/data/<path>
    std::string field;  // the string member of data.data
  };
  std::string address;                  // https://host[:port], no path
  std::filesystem::path ca_file;        // empty: the system trust store
  std::string vault_namespace;          // X-Vault-Namespace when non-empty
  std::string mount = "secret";
  Auth auth = Auth::token;
  std::filesystem::path token_file;     // auth token: the token (0600 or stricter)
  std::string role_id;                  // auth approle
  std::filesystem::path secret_id_file; // auth approle (0600 or stricter)
  std::string auth_mount = "approle";   // auth approle: POST /v1/auth/<auth_mount>/login
  std::map<std::string, Entry> secrets; // secret NAME -> where it lives
  std::uint32_t cache_s = 300;          // 0: every step reads Vault again
};

struct Config {
  struct ControlPlane {
    std::string url;                                // https:// only
    std::filesystem::path ca_file;                  // empty = system trust store
    std::filesystem::path enrollment_token_file;
    // "" (not set: the environment's https_proxy/HTTPS_PROXY), "none", or an http:// URL.
    std::string proxy;
    std::optional<std::vector<std::string>> no_proxy;  // nullopt: not set
    // What the three above and the environment resolve to, for the control-plane link
    // and the JWKS fetches (proxy.hpp).
    ProxySettings proxy_settings;
  } control_plane;
  struct Agent {
    std::string name;
    std::vector<std::string> tags;
    std::filesystem::path state_dir = "/var/lib/delegate";
    std::uint32_t concurrency = 4;
    std::uint32_t poll_wait_s = 20;        // long-poll wait per acquire
    std::uint32_t heartbeat_s = 10;        // must be well under the control plane's lease
    std::uint32_t shutdown_grace_s = 30;   // SIGTERM: running steps get this long to finish
    bool allow_inline = false;             // must stay false: inline steps are not supported
    std::filesystem::path spool_key_file;  // AES-256 spool key (32 raw bytes, 0600); empty: state_dir/spool.key
    std::uint64_t spool_max_bytes = 256ull << 20;  // spool quota; appends block (back-pressure) when reached
    std::uint32_t checkpoint_interval_s = 10;      // agent-stream checkpoints while jobs finish
  } agent;
  struct Sandbox {
    // The host account steps run as when the agent is root (name or numeric uid); it is
    // resolved when the configuration loads, and an unknown user is an error.
    std::string step_user = "nobody";
    std::uint32_t step_uid = 65534;
    std::uint32_t step_gid = 65534;
    // Lets runbook steps that say `sandbox: {root: true}` run as uid 0 (in their own
    // user namespace, without capabilities). Off: such steps fail closed.
    bool allow_root_steps = false;
    // Host paths covered in every step's view, in addition to state_dir, the enrollment
    // token, the API-key file and the spool key file, which are always hidden.
    std::vector<std::filesystem::path> hide_paths;
    // Host Unix sockets a runbook step may be granted (`sandbox: {sockets: [...]}`);
    // a step gets only those it asks for that are listed here. Empty: none, and no
    // step can create a Unix socket at all.
    std::vector<std::filesystem::path> allow_sockets;
    // Lets runbook steps that say `sandbox: {network: true}` share the host's network
    // namespace (no egress control at all). Off: such steps fail closed.
    bool allow_host_network = false;
    // Address ranges the egress proxy may connect to although they are loopback,
    // private, link-local, ... (docs/egress.md). Empty: public addresses only.
    std::vector<std::string> egress_allow_cidrs;
  } sandbox;
  struct Auth {
    std::uint32_t clock_skew_s = 60;
    std::vector<OAuthIssuerConfig> oauth;
    std::filesystem::path api_keys_file;
  } auth;
  struct Secrets {
    // Tried in this order; the first that has the name wins. Default: the local store.
    std::vector<SecretProvider> providers{SecretProvider::local};
    // Present exactly when providers lists vault.
    std::optional<VaultConfig> vault;
  } secrets;
  struct Connectors {
    // Extra trust anchors for http steps (PEM files), on top of the system store.
    std::vector<std::filesystem::path> ca_files;
    // Their contents, read when the configuration loads: an unreadable or empty file is a
    // configuration error (fail closed), and steps never need to read them.
    std::string ca_pem;
  } connectors;
  struct Metrics {
    // metrics.listen: loopback HOST:PORT or unix:/PATH (docs/operations.md); absent or
    // empty: no listener.
    std::optional<metrics::ListenAddress> address;
  } metrics;
  std::filesystem::path runbooks_dir = "/etc/delegate/runbooks";
  // log: the daemon's stderr (docs/operations.md, "Logs"); --log-level/--log-format win.
  struct Log {
    log::Format format = log::Format::text;
    log::Level level = log::Level::info;
  } log;
};

using Environment = std::map<std::string, std::string>;

// The process environment (only DELEGATE_* variables and the proxy variables
// https_proxy, HTTPS_PROXY, no_proxy, NO_PROXY).
[[nodiscard]] Environment process_environment();

// secrets.vault (config_vault.cpp); `where` is "secrets.vault".
[[nodiscard]] Result<VaultConfig> parse_vault_config(const YAML::Node& node, const std::string& where);

[[nodiscard]] Result<Config> parse_config(std::string_view yaml_text, const Environment& env);
[[nodiscard]] Result<Config> load_config(const std::filesystem::path& file, const Environment& env);

}  // namespace delegate::agent
