#include <delegate/agent/config.hpp>

#include <delegate/egress/address_policy.hpp>
#include <pwd.h>

#include <yaml-cpp/yaml.h>

#include <set>

#include <delegate/common/fs.hpp>
#include <delegate/common/strict.hpp>
#include <algorithm>

extern char** environ;

namespace delegate::agent {
namespace {

using Keys = std::initializer_list<std::string_view>;

Result<void> only_keys(const YAML::Node& node, const std::string& where, Keys allowed) {
  if (auto r = yaml_only_keys(node, where, allowed); !r) return fail(Errc::invalid_argument, r.error().message);
  return ok();
}

Result<std::string> get_string(const YAML::Node& n, const std::string& where) {
  if (!n.IsScalar()) return fail(Errc::invalid_argument, where + ": must be a string");
  return n.as<std::string>();
}

Result<std::uint32_t> parse_u32(const std::string& text, const std::string& where, std::uint32_t min, std::uint32_t max) {
  std::size_t used = 0;
  unsigned long v = 0;
  try {
    v = std::stoul(text, &used, 10);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || text.front() == '-' || v < min || v > max) {
    return fail(Errc::invalid_argument, where + ": must be an integer in " + std::to_string(min) + ".." + std::to_string(max));
  }
  return static_cast<std::uint32_t>(v);
}

Result<std::uint64_t> parse_u64(const std::string& text, const std::string& where, std::uint64_t min, std::uint64_t max) {
  std::size_t used = 0;
  unsigned long long v = 0;
  try {
    v = std::stoull(text, &used, 10);
  } catch (const std::exception&) {
    used = 0;
  }
  if (used == 0 || used != text.size() || text.front() == '-' || v < min || v > max) {
    return fail(Errc::invalid_argument, where + ": must be an integer in " + std::to_string(min) + ".." + std::to_string(max));
  }
  return static_cast<std::uint64_t>(v);
}

Result<bool> parse_bool(const std::string& s, const std::string& where) {
  if (s == "true") return true;
  if (s == "false") return false;
  return fail(Errc::invalid_argument, where + ": must be true or false");
}

Result<std::vector<std::string>> get_strings(const YAML::Node& n, const std::string& where) {
  if (!n.IsSequence()) return fail(Errc::invalid_argument, where + ": must be a list of strings");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n.size(); ++i) {
    if (!n[i].IsScalar()) return fail(Errc::invalid_argument, where + "[" + std::to_string(i) + "]: must be a string");
    out.push_back(n[i].as<std::string>());
  }
  return out;
}

std::vector<std::string> split_csv(const std::string& s) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i <= s.size()) {
    auto j = s.find(',', i);
    if (j == std::string::npos) j = s.size();
    if (j > i) out.push_back(s.substr(i, j - i));
    i = j + 1;
  }
  return out;
}

bool valid_tag(const std::string& t) {
  if (t.empty() || t.size() > 64) return false;
  for (char c : t) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_' || c == '.' || c == ':')) return false;
  }
  return true;
}

Result<OAuthIssuerConfig> parse_issuer(const YAML::Node& n, const std::string& where) {
  if (auto r = only_keys(n, where, {"issuer", "audience", "jwks_file", "jwks_uri", "algorithms", "scope_claim", "roles_claim",
                                   "ca_file", "max_lifetime_s", "accept_jwt_typ", "require_authorization_details",
                                   "require_locations", "authorization_details_type"});
      !r) {
    return std::unexpected(r.error());
  }
  OAuthIssuerConfig c;
  for (const auto& kv : n) {
    auto key = kv.first.as<std::string>();
    auto w = where + "." + key;
    if (key == "algorithms") {
      auto v = get_strings(kv.second, w);
      if (!v) return std::unexpected(v.error());
      c.algorithms = *v;
      continue;
    }
    auto v = get_string(kv.second, w);
    if (!v) return std::unexpected(v.error());
    if (key == "issuer") c.issuer = *v;
    else if (key == "audience") c.audience = *v;
    else if (key == "jwks_file") c.jwks_file = *v;
    else if (key == "jwks_uri") c.jwks_uri = *v;
    else if (key == "scope_claim") c.scope_claim = *v;
    else if (key == "roles_claim") c.roles_claim = *v;
    else if (key == "ca_file") c.ca_file = *v;
    else if (key == "authorization_details_type") c.authorization_details_type = *v;
    else if (key == "max_lifetime_s") {
      auto n = parse_u32(*v, w, 1, 86400);
      if (!n) return std::unexpected(n.error());
      c.max_lifetime_s = *n;
    } else if (key == "accept_jwt_typ" || key == "require_authorization_details" || key == "require_locations") {
      auto b = parse_bool(*v, w);
      if (!b) return std::unexpected(b.error());
      (key == "accept_jwt_typ" ? c.accept_jwt_typ
       : key == "require_locations" ? c.require_locations
                                    : c.require_authorization_details) = *b;
    }
  }
  if (!c.jwks_uri.empty() && c.jwks_uri.rfind("https://", 0) != 0) {
    return fail(Errc::invalid_argument, where + ".jwks_uri: must be an https:// URL");
  }
  if (c.issuer.empty()) return fail(Errc::invalid_argument, where + ".issuer: required");
  if (c.audience.empty()) return fail(Errc::invalid_argument, where + ".audience: required");
  if (c.jwks_file.empty() == c.jwks_uri.empty()) {
    return fail(Errc::invalid_argument, where + ": exactly one of jwks_file or jwks_uri is required");
  }
  return c;
}

Result<void> parse_providers(const std::vector<std::string>& names, const std::string& where,
                             std::vector<SecretProvider>& out) {
  out.clear();
  if (names.empty()) return fail(Errc::invalid_argument, where + ": must list at least one provider");
  for (const auto& n : names) {
    SecretProvider p{};
    if (n == "local") p = SecretProvider::local;
    else if (n == "systemd") p = SecretProvider::systemd;
    else if (n == "vault") p = SecretProvider::vault;
    else return fail(Errc::invalid_argument, where + ": unknown provider \"" + n + "\" (local, systemd, vault)");
    if (std::find(out.begin(), out.end(), p) != out.end()) {
      return fail(Errc::invalid_argument, where + ": provider " + n + " listed twice");
    }
    out.push_back(p);
  }
  return ok();
}

// Applies one scalar setting, from YAML or from the environment.
Result<void> apply(Config& c, const std::string& section, const std::string& key, const std::string& value,
                   const std::string& where) {
  auto u32 = [&](std::uint32_t& dst, std::uint32_t min, std::uint32_t max) -> Result<void> {
    auto v = parse_u32(value, where, min, max);
    if (!v) return std::unexpected(v.error());
    dst = *v;
    return ok();
  };
  if (section == "control_plane") {
    if (key == "url") c.control_plane.url = value;
    else if (key == "ca_file") c.control_plane.ca_file = value;
    else if (key == "enrollment_token_file") c.control_plane.enrollment_token_file = value;
    else if (key == "proxy") c.control_plane.proxy = value;
    else if (key == "no_proxy") c.control_plane.no_proxy = split_csv(value);
    else return fail(Errc::invalid_argument, where + ": unknown key");
    return ok();
  }
  if (section == "agent") {
    if (key == "name") c.agent.name = value;
    else if (key == "state_dir") c.agent.state_dir = value;
    else if (key == "concurrency") return u32(c.agent.concurrency, 1, 256);
    else if (key == "poll_wait_s") return u32(c.agent.poll_wait_s, 0, 60);
    else if (key == "heartbeat_s") return u32(c.agent.heartbeat_s, 1, 300);
    else if (key == "shutdown_grace_s") return u32(c.agent.shutdown_grace_s, 0, 3600);
    else if (key == "checkpoint_interval_s") return u32(c.agent.checkpoint_interval_s, 1, 3600);
    else if (key == "spool_key_file") c.agent.spool_key_file = value;
    else if (key == "spool_max_bytes") {
      // At least a few maximal records (64 KiB each), at most 1 TiB.
      auto v = parse_u64(value, where, 256 * 1024, 1ull << 40);
      if (!v) return std::unexpected(v.error());
      c.agent.spool_max_bytes = *v;
    }
    else if (key == "allow_inline") {
      auto b = parse_bool(value, where);
      if (!b) return std::unexpected(b.error());
      c.agent.allow_inline = *b;
    } else if (key == "tags") c.agent.tags = split_csv(value);
    else return fail(Errc::invalid_argument, where + ": unknown key");
    return ok();
  }
  if (section == "sandbox") {
    if (key == "step_user") {
      c.sandbox.step_user = value;
    } else if (key == "allow_root_steps") {
      auto b = parse_bool(value, where);
      if (!b) return std::unexpected(b.error());
      c.sandbox.allow_root_steps = *b;
    } else if (key == "hide_paths") {
      c.sandbox.hide_paths.clear();
      for (const auto& p : split_csv(value)) c.sandbox.hide_paths.emplace_back(p);
    } else if (key == "allow_sockets") {
      c.sandbox.allow_sockets.clear();
      for (const auto& p : split_csv(value)) c.sandbox.allow_sockets.emplace_back(p);
    } else if (key == "allow_host_network") {
      auto b = parse_bool(value, where);
      if (!b) return std::unexpected(b.error());
      c.sandbox.allow_host_network = *b;
    } else if (key == "egress_allow_cidrs") {
      c.sandbox.egress_allow_cidrs = split_csv(value);
    } else {
      return fail(Errc::invalid_argument, where + ": unknown key");
    }
    return ok();
  }
  if (section == "auth") {
    if (key == "clock_skew_s") return u32(c.auth.clock_skew_s, 0, 600);
    if (key == "api_keys_file") {
      c.auth.api_keys_file = value;
      return ok();
    }
    return fail(Errc::invalid_argument, where + ": unknown key");
  }
  if (section == "secrets") {
    if (key == "providers") return parse_providers(split_csv(value), where, c.secrets.providers);
    return fail(Errc::invalid_argument, where + ": unknown key");
  }
  if (section == "connectors") {
    if (key == "ca_files") {
      c.connectors.ca_files.clear();
      for (const auto& p : split_csv(value)) c.connectors.ca_files.emplace_back(p);
      return ok();
    }
    return fail(Errc::invalid_argument, where + ": unknown key");
  }
  if (section == "metrics") {
    if (key != "listen") return fail(Errc::invalid_argument, where + ": unknown key");
    c.metrics.address.reset();
    if (value.empty()) return ok();
    auto a = metrics::parse_listen_address(value);
    if (!a) return fail(Errc::invalid_argument, where + ": " + a.error().message);
    c.metrics.address = *a;
    return ok();
  }
  if (section == "log") {
    if (key == "format") {
      auto f = log::parse_format(value);
      if (!f) return fail(Errc::invalid_argument, where + ": must be text or json");
      c.log.format = *f;
    } else if (key == "level") {
      auto l = log::parse_level(value);
      if (!l) return fail(Errc::invalid_argument, where + ": must be debug, info, warn or error");
      c.log.level = *l;
    } else {
      return fail(Errc::invalid_argument, where + ": unknown key");
    }
    return ok();
  }
  if (section.empty() && key == "runbooks_dir") {
    c.runbooks_dir = value;
    return ok();
  }
  return fail(Errc::invalid_argument, where + ": unknown key");
}

Result<void> validate(const Config& c) {
  if (c.control_plane.url.rfind("https://", 0) != 0) {
    return fail(Errc::invalid_argument, "control_plane.url: must be an https:// URL (TLS is not optional)");
  }
  if (c.control_plane.url.size() <= 8) return fail(Errc::invalid_argument, "control_plane.url: missing host");
  if (c.control_plane.enrollment_token_file.empty()) {
    return fail(Errc::invalid_argument, "control_plane.enrollment_token_file: required");
  }
  if (!c.control_plane.ca_file.empty()) {
    std::error_code ec;
    if (!std::filesystem::is_regular_file(c.control_plane.ca_file, ec)) {
      return fail(Errc::invalid_argument, "control_plane.ca_file: " + c.control_plane.ca_file.string() + " is not a readable file");
    }
  }
  if (c.agent.name.empty() || c.agent.name.size() > 128) return fail(Errc::invalid_argument, "agent.name: required (1..128 characters)");
  for (const auto& t : c.agent.tags) {
    if (!valid_tag(t)) return fail(Errc::invalid_argument, "agent.tags: invalid tag \"" + t + "\"");
  }
  if (c.agent.state_dir.empty() || !c.agent.state_dir.is_absolute()) {
    return fail(Errc::invalid_argument, "agent.state_dir: must be an absolute path");
  }
  if (!c.agent.spool_key_file.empty() && !c.agent.spool_key_file.is_absolute()) {
    return fail(Errc::invalid_argument, "agent.spool_key_file: must be an absolute path");
  }
  if (c.agent.allow_inline) {
    // Refused rather than accepted and ignored: an operator who set it would expect the
    // control plane's inline steps to run, and they would not.
    return fail(Errc::invalid_argument,
                "agent.allow_inline: inline steps are not supported; this agent runs catalog runbooks only");
  }
  for (const auto& p : c.sandbox.hide_paths) {
    if (!p.is_absolute()) return fail(Errc::invalid_argument, "sandbox.hide_paths: " + p.string() + " is not absolute");
  }
  for (const auto& p : c.sandbox.allow_sockets) {
    if (!p.is_absolute()) return fail(Errc::invalid_argument, "sandbox.allow_sockets: " + p.string() + " is not absolute");
  }
  for (const auto& cidr : c.sandbox.egress_allow_cidrs) {
    if (auto r = egress::parse_cidr(cidr); !r) {
      return fail(Errc::invalid_argument, "sandbox.egress_allow_cidrs: " + cidr + ": " + r.error().message);
    }
  }
  const bool vault = std::find(c.secrets.providers.begin(), c.secrets.providers.end(), SecretProvider::vault) !=
                     c.secrets.providers.end();
  if (vault != c.secrets.vault.has_value()) {
    return fail(Errc::invalid_argument, vault ? "secrets.vault: required when secrets.providers lists vault"
                                              : "secrets.vault: configured, but secrets.providers does not list vault");
  }
  if (c.auth.api_keys_file.empty() && c.auth.oauth.empty()) {
    return fail(Errc::invalid_argument, "auth: configure api_keys_file and/or oauth issuers (no job could ever be authorised)");
  }
  return ok();
}

// getpwnam_r: the configuration may load while other threads run.
Result<void> resolve_step_user(Config::Sandbox& s) {
  const std::string& u = s.step_user;
  if (u.empty()) return fail(Errc::invalid_argument, "sandbox.step_user: must not be empty");
  passwd pw{};
  passwd* found = nullptr;
  std::vector<char> buf(16384);
  int rc = 0;
  if (u.find_first_not_of("0123456789") == std::string::npos) {
    auto uid = parse_u32(u, "sandbox.step_user", 1, 0xfffffffe);
    if (!uid) return fail(Errc::invalid_argument, "sandbox.step_user: a numeric uid must be 1..4294967294 (not root)");
    rc = ::getpwuid_r(*uid, &pw, buf.data(), buf.size(), &found);
    if (rc != 0 || found == nullptr) {
      // A uid without a passwd entry is fine for a sandbox account: its group is its uid.
      s.step_uid = s.step_gid = *uid;
      return ok();
    }
  } else {
    rc = ::getpwnam_r(u.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc != 0 || found == nullptr) return fail(Errc::invalid_argument, "sandbox.step_user: unknown user \"" + u + "\"");
  }
  if (pw.pw_uid == 0) {
    return fail(Errc::invalid_argument, "sandbox.step_user: must not be root (use allow_root_steps for runbooks that need it)");
  }
  s.step_uid = pw.pw_uid;
  s.step_gid = pw.pw_gid;
  return ok();
}

// connectors.ca_files: read now, so that a missing or unreadable anchor stops the agent
// at start instead of every http step later; a file without a certificate is refused.
Result<void> load_ca_files(Config::Connectors& c) {
  c.ca_pem.clear();
  for (const auto& f : c.ca_files) {
    if (!f.is_absolute()) return fail(Errc::invalid_argument, "connectors.ca_files: " + f.string() + " is not absolute");
    auto text = read_file(f, 1u << 20);
    if (!text) return fail(Errc::invalid_argument, "connectors.ca_files: " + f.string() + ": " + text.error().message);
    if (text->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
      return fail(Errc::invalid_argument, "connectors.ca_files: " + f.string() + " holds no PEM certificate");
    }
    c.ca_pem += *text;
    if (!c.ca_pem.empty() && c.ca_pem.back() != '\n') c.ca_pem += '\n';
  }
  return ok();
}

}  // namespace

Environment process_environment() {
  Environment env;
  for (char** e = environ; e && *e; ++e) {
    std::string kv = *e;
    auto eq = kv.find('=');
    if (eq == std::string::npos) continue;
    const std::string name = kv.substr(0, eq);
    if (name.rfind("DELEGATE_", 0) != 0 && name != "https_proxy" && name != "HTTPS_PROXY" && name != "no_proxy" &&
        name != "NO_PROXY") {
      continue;
    }
    env[name] = kv.substr(eq + 1);
  }
  return env;
}

Result<Config> parse_config(std::string_view yaml_text, const Environment& env) {
  Config c;
  // Duplicate keys anywhere (e.g. sandbox.allow_root_steps twice) are refused here.
  auto parsed = parse_yaml_strict(yaml_text);
  if (!parsed) return std::unexpected(parsed.error());
  const YAML::Node& root = *parsed;
  try {
    if (!root.IsMap()) return fail(Errc::invalid_argument, "configuration must be a mapping");
    if (auto r = only_keys(root, "", {"control_plane", "agent", "sandbox", "auth", "secrets", "connectors", "metrics", "log", "runbooks_dir"}); !r) return std::unexpected(r.error());
    for (const auto& kv : root) {
      const auto section = kv.first.as<std::string>();
      const YAML::Node& node = kv.second;
      if (section == "runbooks_dir") {
        auto v = get_string(node, section);
        if (!v) return std::unexpected(v.error());
        c.runbooks_dir = *v;
        continue;
      }
      if (!node.IsMap()) return fail(Errc::invalid_argument, section + ": must be a mapping");
      for (const auto& item : node) {
        const auto key = item.first.as<std::string>();
        const std::string where = section + "." + key;
        if (section == "agent" && key == "tags") {
          auto v = get_strings(item.second, where);
          if (!v) return std::unexpected(v.error());
          c.agent.tags = *v;
        } else if (section == "sandbox" && (key == "hide_paths" || key == "allow_sockets")) {
          auto v = get_strings(item.second, where);
          if (!v) return std::unexpected(v.error());
          (key == "hide_paths" ? c.sandbox.hide_paths : c.sandbox.allow_sockets).assign(v->begin(), v->end());
        } else if (section == "sandbox" && key == "egress_allow_cidrs") {
          auto v = get_strings(item.second, where);
          if (!v) return std::unexpected(v.error());
          c.sandbox.egress_allow_cidrs = *v;
        } else if (section == "control_plane" && key == "no_proxy") {
          // A list, or one comma-separated string as in the environment variable.
          Result<std::vector<std::string>> v = std::vector<std::string>{};
          if (item.second.IsSequence()) {
            v = get_strings(item.second, where);
          } else if (auto text = get_string(item.second, where)) {
            v = split_csv(*text);
          } else {
            v = std::unexpected(text.error());
          }
          if (!v) return std::unexpected(v.error());
          c.control_plane.no_proxy = *v;
        } else if (section == "connectors" && key == "ca_files") {
          auto v = get_strings(item.second, where);
          if (!v) return std::unexpected(v.error());
          c.connectors.ca_files.assign(v->begin(), v->end());
        } else if (section == "secrets" && key == "providers") {
          auto v = get_strings(item.second, where);
          if (!v) return std::unexpected(v.error());
          if (auto r = parse_providers(*v, where, c.secrets.providers); !r) return std::unexpected(r.error());
        } else if (section == "secrets" && key == "vault") {
          auto v = parse_vault_config(item.second, where);
          if (!v) return std::unexpected(v.error());
          c.secrets.vault = std::move(*v);
        } else if (section == "auth" && key == "oauth") {
          if (!item.second.IsSequence()) return fail(Errc::invalid_argument, where + ": must be a list");
          for (std::size_t i = 0; i < item.second.size(); ++i) {
            auto iss = parse_issuer(item.second[i], where + "[" + std::to_string(i) + "]");
            if (!iss) return std::unexpected(iss.error());
            c.auth.oauth.push_back(*iss);
          }
        } else {
          auto v = get_string(item.second, where);
          if (!v) return std::unexpected(v.error());
          if (auto r = apply(c, section, key, *v, where); !r) return std::unexpected(r.error());
        }
      }
    }
  } catch (const YAML::Exception& e) {
    return fail(Errc::parse, std::string("invalid configuration: ") + e.what());
  }

  // Environment overrides: DELEGATE_<SECTION>_<KEY>. Unknown names under a known section
  // are errors, like unknown keys in the file.
  for (const auto& [name, value] : env) {
    static const std::pair<const char*, const char*> kSections[] = {
        {"DELEGATE_CONTROL_PLANE_", "control_plane"}, {"DELEGATE_AGENT_", "agent"}, {"DELEGATE_SANDBOX_", "sandbox"},
        {"DELEGATE_AUTH_", "auth"}, {"DELEGATE_SECRETS_", "secrets"},
        {"DELEGATE_CONNECTORS_", "connectors"}, {"DELEGATE_METRICS_", "metrics"},
        {"DELEGATE_LOG_", "log"}};
    bool handled = false;
    for (const auto& [prefix, section] : kSections) {
      if (name.rfind(prefix, 0) != 0) continue;
      std::string key = name.substr(std::string_view(prefix).size());
      for (auto& ch : key) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      if (auto r = apply(c, section, key, value, "environment " + name); !r) return std::unexpected(r.error());
      handled = true;
    }
    if (!handled && name == "DELEGATE_RUNBOOKS_DIR") c.runbooks_dir = value;
  }
  if (auto r = validate(c); !r) return std::unexpected(r.error());
  auto proxy = resolve_proxy_settings(c.control_plane.proxy, c.control_plane.no_proxy, env);
  if (!proxy) return std::unexpected(proxy.error());
  c.control_plane.proxy_settings = std::move(*proxy);
  if (auto r = resolve_step_user(c.sandbox); !r) return std::unexpected(r.error());
  if (auto r = load_ca_files(c.connectors); !r) return std::unexpected(r.error());
  return c;
}

Result<Config> load_config(const std::filesystem::path& file, const Environment& env) {
  auto text = read_file(file, 1u << 20);
  if (!text) return std::unexpected(text.error());
  auto c = parse_config(*text, env);
  if (!c) return fail(c.error().code, file.string() + ": " + c.error().message);
  return c;
}

}  // namespace delegate::agent
