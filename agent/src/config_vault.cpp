// secrets.vault in agent.yaml. Strict like the rest of the file: every key known, every
// value checked here, so that a typo fails at start rather than at the first step.
#include <delegate/agent/config.hpp>

#include <yaml-cpp/yaml.h>

#include <delegate/common/strict.hpp>
#include <delegate/policies/runbook.hpp>

namespace delegate::agent {
namespace {

Result<std::string> scalar(const YAML::Node& n, const std::string& where) {
  if (!n.IsScalar()) return fail(Errc::invalid_argument, where + ": must be a string");
  return n.as<std::string>();
}

Result<void> keys(const YAML::Node& n, const std::string& where, std::initializer_list<std::string_view> allowed) {
  if (!n.IsMap()) return fail(Errc::invalid_argument, where + ": must be a mapping");
  if (auto r = yaml_only_keys(n, where, allowed); !r) return fail(Errc::invalid_argument, r.error().message);
  return ok();
}

// Mounts, KV paths and namespaces: segments of [A-Za-z0-9._-] joined by '/', no empty,
// "." or ".." segment. They are spliced into request paths, so nothing may need escaping.
bool valid_vault_path(std::string_view p, std::size_t max) {
  if (p.empty() || p.size() > max) return false;
  std::size_t start = 0;
  while (start <= p.size()) {
    auto end = p.find('/', start);
    if (end == std::string_view::npos) end = p.size();
    const auto seg = p.substr(start, end - start);
    if (seg.empty() || seg == "." || seg == "..") return false;
    for (char c : seg) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-')) return false;
    }
    start = end + 1;
  }
  return true;
}

bool printable_ascii(std::string_view s, std::size_t max) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

// https://host[:port] and nothing else: no user info, path, query or fragment.
bool valid_address(std::string_view a) {
  if (!a.starts_with("https://")) return false;
  auto rest = a.substr(8);
  if (rest.ends_with('/')) rest.remove_suffix(1);
  if (rest.empty() || rest.size() > 255) return false;
  for (char c : rest) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == ':' || c == '[' || c == ']')) {
      return false;
    }
  }
  return true;
}

Result<std::filesystem::path> absolute_file(const YAML::Node& n, const std::string& where) {
  auto v = scalar(n, where);
  if (!v) return std::unexpected(v.error());
  std::filesystem::path p(*v);
  if (!p.is_absolute()) return fail(Errc::invalid_argument, where + ": must be an absolute path");
  return p;
}

Result<void> parse_auth(const YAML::Node& n, const std::string& where, VaultConfig& c) {
  if (!n.IsMap()) return fail(Errc::invalid_argument, where + ": must be a mapping");
  if (!n["method"]) return fail(Errc::invalid_argument, where + ".method: required (token or approle)");
  auto method = scalar(n["method"], where + ".method");
  if (!method) return std::unexpected(method.error());
  if (*method == "token") {
    if (auto r = keys(n, where, {"method", "token_file"}); !r) return r;
    if (!n["token_file"]) return fail(Errc::invalid_argument, where + ".token_file: required for method token");
    auto f = absolute_file(n["token_file"], where + ".token_file");
    if (!f) return std::unexpected(f.error());
    c.auth = VaultConfig::Auth::token;
    c.token_file = *f;
    return ok();
  }
  if (*method == "approle") {
    if (auto r = keys(n, where, {"method", "role_id", "secret_id_file", "mount"}); !r) return r;
    if (!n["role_id"]) return fail(Errc::invalid_argument, where + ".role_id: required for method approle");
    if (!n["secret_id_file"]) return fail(Errc::invalid_argument, where + ".secret_id_file: required for method approle");
    auto role = scalar(n["role_id"], where + ".role_id");
    if (!role) return std::unexpected(role.error());
    if (!printable_ascii(*role, 256)) {
      return fail(Errc::invalid_argument, where + ".role_id: must be 1..256 printable ASCII characters");
    }
    auto f = absolute_file(n["secret_id_file"], where + ".secret_id_file");
    if (!f) return std::unexpected(f.error());
    if (n["mount"]) {
      auto m = scalar(n["mount"], where + ".mount");
      if (!m) return std::unexpected(m.error());
      if (!valid_vault_path(*m, 128)) return fail(Errc::invalid_argument, where + ".mount: invalid mount path");
      c.auth_mount = *m;
    }
    c.auth = VaultConfig::Auth::approle;
    c.role_id = *role;
    c.secret_id_file = *f;
    return ok();
  }
  return fail(Errc::invalid_argument, where + ".method: must be token or approle");
}

Result<void> parse_entries(const YAML::Node& n, const std::string& where, VaultConfig& c) {
  if (!n.IsMap() || n.size() == 0) return fail(Errc::invalid_argument, where + ": must map at least one secret name");
  for (const auto& kv : n) {
    const auto name = kv.first.as<std::string>();
    const std::string w = where + "." + name;
    if (!policies::valid_secret_name(name)) {
      return fail(Errc::invalid_argument, w + ": invalid secret name (must match [A-Za-z_][A-Za-z0-9_]{0,63})");
    }
    if (auto r = keys(kv.second, w, {"path", "field"}); !r) return r;
    if (!kv.second["path"] || !kv.second["field"]) return fail(Errc::invalid_argument, w + ": path and field are required");
    auto path = scalar(kv.second["path"], w + ".path");
    if (!path) return std::unexpected(path.error());
    if (!valid_vault_path(*path, 512)) {
      return fail(Errc::invalid_argument, w + ".path: must be segments of [A-Za-z0-9._-] joined by '/'");
    }
    auto field = scalar(kv.second["field"], w + ".field");
    if (!field) return std::unexpected(field.error());
    if (!printable_ascii(*field, 256)) return fail(Errc::invalid_argument, w + ".field: must be 1..256 printable ASCII characters");
    c.secrets[name] = VaultConfig::Entry{*path, *field};
  }
  return ok();
}

}  // namespace

Result<VaultConfig> parse_vault_config(const YAML::Node& n, const std::string& where) {
  if (auto r = keys(n, where, {"address", "ca_file", "namespace", "mount", "auth", "secrets", "cache_s"}); !r) {
    return std::unexpected(r.error());
  }
  VaultConfig c;
  for (const char* required : {"address", "auth", "secrets"}) {
    if (!n[required]) return fail(Errc::invalid_argument, where + "." + required + ": required");
  }
  auto address = scalar(n["address"], where + ".address");
  if (!address) return std::unexpected(address.error());
  if (!valid_address(*address)) {
    return fail(Errc::invalid_argument, where + ".address: must be https://host[:port] (TLS is not optional; no path)");
  }
  c.address = address->ends_with('/') ? address->substr(0, address->size() - 1) : *address;
  if (n["ca_file"]) {
    auto f = absolute_file(n["ca_file"], where + ".ca_file");
    if (!f) return std::unexpected(f.error());
    std::error_code ec;
    if (!std::filesystem::is_regular_file(*f, ec)) {
      return fail(Errc::invalid_argument, where + ".ca_file: " + f->string() + " is not a readable file");
    }
    c.ca_file = *f;
  }
  if (n["namespace"]) {
    auto ns = scalar(n["namespace"], where + ".namespace");
    if (!ns) return std::unexpected(ns.error());
    if (!valid_vault_path(*ns, 256)) return fail(Errc::invalid_argument, where + ".namespace: invalid namespace path");
    c.vault_namespace = *ns;
  }
  if (n["mount"]) {
    auto m = scalar(n["mount"], where + ".mount");
    if (!m) return std::unexpected(m.error());
    if (!valid_vault_path(*m, 128)) return fail(Errc::invalid_argument, where + ".mount: invalid mount path");
    c.mount = *m;
  }
  if (n["cache_s"]) {
    auto v = scalar(n["cache_s"], where + ".cache_s");
    if (!v) return std::unexpected(v.error());
    if (v->empty() || v->size() > 5 || v->find_first_not_of("0123456789") != std::string::npos || std::stoul(*v) > 86400) {
      return fail(Errc::invalid_argument, where + ".cache_s: must be an integer in 0..86400");
    }
    c.cache_s = static_cast<std::uint32_t>(std::stoul(*v));
  }
  if (auto r = parse_auth(n["auth"], where + ".auth", c); !r) return std::unexpected(r.error());
  if (auto r = parse_entries(n["secrets"], where + ".secrets", c); !r) return std::unexpected(r.error());
  return c;
}

}  // namespace delegate::agent
