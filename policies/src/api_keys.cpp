#include <delegate/policies/api_keys.hpp>

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <set>

#include <delegate/common/fs.hpp>

#include "yaml_util.hpp"

namespace delegate::policies {
namespace {

using detail::yfail;
using detail::yindex;
using detail::ykey;

constexpr std::string_view kPrefix = "dlg.";
constexpr std::size_t kSecretBytes = 32;
constexpr std::size_t kSecretChars = 43;  // base64url, unpadded, of 32 bytes
constexpr std::size_t kSaltBytes = 16;
constexpr std::size_t kMaxKeys = 100000;
constexpr std::size_t kMaxItems = 256;

bool valid_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '-';
  });
}

// Scopes and roles end up in audit records and in comparisons; printable ASCII without
// spaces keeps them unambiguous.
bool valid_label(std::string_view s) {
  if (s.empty() || s.size() > 256) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c > 0x20 && c < 0x7f; });
}

// Splits "dlg.<id>.<secret>" and checks its shape; the returned id aliases `key`.
std::optional<std::string_view> parse_key_id(std::string_view key) {
  if (!key.starts_with(kPrefix)) return std::nullopt;
  std::string_view rest = key.substr(kPrefix.size());
  auto dot = rest.find('.');
  if (dot == std::string_view::npos) return std::nullopt;
  std::string_view id = rest.substr(0, dot);
  std::string_view secret = rest.substr(dot + 1);
  if (!valid_id(id) || secret.size() != kSecretChars) return std::nullopt;
  // The strict decoder also rejects non-zero trailing bits, so a key has one spelling.
  auto raw = base64url_decode(secret);
  if (!raw || raw->size() != kSecretBytes) return std::nullopt;
  return id;
}

Sha256 key_hash(const Bytes& salt, std::string_view key) { return hmac_sha256(salt, as_bytes(key)); }

ApiKeyEntry parse_entry(const YAML::Node& n, const std::string& path) {
  detail::ycheck_keys(n, path, {"id", "salt", "hash", "scopes", "roles", "expires", "created", "revoked"});
  ApiKeyEntry e;
  if (!n["id"]) yfail(ykey(path, "id"), "missing");
  e.id = detail::ystring(n["id"], ykey(path, "id"));
  if (!valid_id(e.id)) yfail(ykey(path, "id"), "must match [A-Za-z0-9_-]{1,64}");

  if (!n["salt"]) yfail(ykey(path, "salt"), "missing");
  auto salt = base64_decode(detail::ystring(n["salt"], ykey(path, "salt")));
  if (!salt || salt->size() != kSaltBytes) yfail(ykey(path, "salt"), "must be base64 of 16 bytes");
  e.salt = std::move(*salt);

  if (!n["hash"]) yfail(ykey(path, "hash"), "missing");
  auto hash = hex_decode(detail::ystring(n["hash"], ykey(path, "hash")));
  if (!hash || hash->size() != e.hash.size()) yfail(ykey(path, "hash"), "must be 64 lowercase hex digits");
  std::copy(hash->begin(), hash->end(), e.hash.begin());

  auto labels = [&](const char* key) {
    std::vector<std::string> out;
    if (!n[key] || n[key].IsNull()) return out;
    out = detail::ystring_list(n[key], ykey(path, key), kMaxItems);
    for (std::size_t i = 0; i < out.size(); ++i) {
      if (!valid_label(out[i])) yfail(yindex(ykey(path, key), i), "must be non-empty printable ASCII without spaces");
    }
    return out;
  };
  e.scopes = labels("scopes");
  e.roles = labels("roles");

  auto time_of = [&](const char* key) -> std::optional<TimePoint> {
    if (!n[key] || n[key].IsNull()) return std::nullopt;
    auto t = parse_rfc3339(detail::ystring(n[key], ykey(path, key)));
    if (!t) yfail(ykey(path, key), "must be an RFC 3339 date-time");
    return *t;
  };
  e.expires = time_of("expires");
  auto created = time_of("created");
  if (!created) yfail(ykey(path, "created"), "missing");
  e.created = *created;
  if (n["revoked"]) e.revoked = detail::ybool(n["revoked"], ykey(path, "revoked"));
  return e;
}

}  // namespace

Result<ApiKeyStore> ApiKeyStore::load(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    // No file yet simply means no keys have been created: the store is empty.
    if (errno == ENOENT) return ApiKeyStore{};
    return fail(Errc::io, "cannot stat " + file.string() + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_argument, file.string() + " is not a regular file");
  // The file holds only salted hashes, but it also decides who may run what: anyone
  // able to read it can brute-force offline and anyone able to write it can grant.
  if (st.st_mode & 077) {
    return fail(Errc::permission, "API key file " + file.string() +
                                      " is accessible by group/others (mode must be 0600 or stricter)");
  }
  auto text = read_file(file, 16u << 20);
  if (!text) return std::unexpected(text.error());

  ApiKeyStore store;
  try {
    auto parsed = parse_yaml_strict(*text, YamlLimits{.max_bytes = 16u << 20, .max_depth = 8});
    if (!parsed) return fail(parsed.error().code, file.string() + ": " + parsed.error().message);
    const YAML::Node& root = *parsed;
    if (root.IsNull()) return store;  // an empty file is an empty store
    detail::ycheck_keys(root, "", {"keys"});
    YAML::Node keys = root["keys"];
    if (!keys || keys.IsNull()) return store;
    if (!keys.IsSequence()) yfail("keys", "must be a list");
    if (keys.size() > kMaxKeys) yfail("keys", "too many entries");
    std::set<std::string> ids;
    for (std::size_t i = 0; i < keys.size(); ++i) {
      auto e = parse_entry(keys[i], yindex("keys", i));
      if (!ids.insert(e.id).second) yfail(yindex("keys", i), "duplicate id " + e.id);
      store.entries_.push_back(std::move(e));
    }
  } catch (const detail::YamlError& e) {
    return fail(Errc::parse, file.string() + ": " + e.message);
  } catch (const std::exception& e) {
    return fail(Errc::parse, file.string() + ": invalid YAML: " + e.what());
  }
  return store;
}

Result<void> ApiKeyStore::save(const std::filesystem::path& file) const {
  std::string text;
  try {
    YAML::Emitter out;
    out << YAML::BeginMap << YAML::Key << "keys" << YAML::Value << YAML::BeginSeq;
    for (const auto& e : entries_) {
      out << YAML::BeginMap;
      out << YAML::Key << "id" << YAML::Value << YAML::DoubleQuoted << e.id;
      out << YAML::Key << "salt" << YAML::Value << YAML::DoubleQuoted << base64_encode(e.salt);
      out << YAML::Key << "hash" << YAML::Value << YAML::DoubleQuoted << hex_encode(e.hash);
      out << YAML::Key << "scopes" << YAML::Value << YAML::Flow << YAML::BeginSeq;
      for (const auto& s : e.scopes) out << YAML::DoubleQuoted << s;
      out << YAML::EndSeq;
      out << YAML::Key << "roles" << YAML::Value << YAML::Flow << YAML::BeginSeq;
      for (const auto& r : e.roles) out << YAML::DoubleQuoted << r;
      out << YAML::EndSeq;
      if (e.expires) out << YAML::Key << "expires" << YAML::Value << format_rfc3339_ms(*e.expires);
      out << YAML::Key << "created" << YAML::Value << format_rfc3339_ms(e.created);
      out << YAML::Key << "revoked" << YAML::Value << (e.revoked ? "true" : "false");
      out << YAML::EndMap;
    }
    out << YAML::EndSeq << YAML::EndMap;
    if (!out.good()) return fail(Errc::internal, "cannot serialise API keys: " + out.GetLastError());
    text = std::string(out.c_str()) + "\n";
  } catch (const std::exception& e) {
    return fail(Errc::internal, std::string("cannot serialise API keys: ") + e.what());
  }
  return write_file_atomic(file, text, 0600);
}

Result<std::string> ApiKeyStore::create(const std::string& id, std::vector<std::string> scopes,
                                        std::vector<std::string> roles,
                                        std::optional<TimePoint> expires, TimePoint now) {
  if (!valid_id(id)) return fail(Errc::invalid_argument, "API key id must match [A-Za-z0-9_-]{1,64}");
  for (const auto& e : entries_) {
    if (e.id == id) return fail(Errc::conflict, "an API key with id " + id + " already exists");
  }
  for (const auto& s : scopes) {
    if (!valid_label(s)) return fail(Errc::invalid_argument, "invalid scope \"" + s + "\"");
  }
  for (const auto& r : roles) {
    if (!valid_label(r)) return fail(Errc::invalid_argument, "invalid role \"" + r + "\"");
  }
  if (scopes.size() > kMaxItems || roles.size() > kMaxItems) {
    return fail(Errc::invalid_argument, "too many scopes or roles");
  }
  std::string key = std::string(kPrefix) + id + "." + base64url_encode(random_bytes(kSecretBytes));
  ApiKeyEntry e;
  e.id = id;
  e.salt = random_bytes(kSaltBytes);
  e.hash = key_hash(e.salt, key);
  e.scopes = std::move(scopes);
  e.roles = std::move(roles);
  e.expires = expires;
  e.created = now;
  entries_.push_back(std::move(e));
  return key;
}

Result<void> ApiKeyStore::revoke(const std::string& id) {
  for (auto& e : entries_) {
    if (e.id == id) {
      e.revoked = true;
      return ok();
    }
  }
  return fail(Errc::not_found, "no API key with id " + id);
}

ApiKeyCheck ApiKeyStore::check(std::string_view presented, TimePoint now) const {
  auto id = parse_key_id(presented);
  if (!id) return {Reason::token_malformed, nullptr};
  const ApiKeyEntry* entry = nullptr;
  for (const auto& e : entries_) {
    if (e.id == *id) entry = &e;
  }
  if (entry == nullptr) {
    // Spend the same HMAC as a real lookup so response time does not reveal which ids
    // exist.
    static const Bytes kDummySalt(kSaltBytes, 0);
    Sha256 dummy = key_hash(kDummySalt, presented);
    (void)constant_time_equal(dummy, dummy);
    return {Reason::api_key_unknown, nullptr};
  }
  Sha256 h = key_hash(entry->salt, presented);
  if (!constant_time_equal(h, entry->hash)) return {Reason::api_key_unknown, nullptr};
  // Status is reported only to holders of the secret: revoked/expired would otherwise
  // tell an attacker which ids are worth attacking.
  if (entry->revoked) return {Reason::api_key_revoked, entry};
  if (entry->expires && now >= *entry->expires) return {Reason::api_key_expired, entry};
  return {std::nullopt, entry};
}

}  // namespace delegate::policies
