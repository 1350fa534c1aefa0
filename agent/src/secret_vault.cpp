// The Vault KV v2 provider: AppRole or token login, KV reads, lease-aware caching.
//
// Vault's HTTP API as documented: POST /v1/auth/<mount>/login {role_id, secret_id} ->
// auth.client_token / auth.lease_duration; GET /v1/<mount>/data/<path> with X-Vault-Token
// (and X-Vault-Namespace) -> data.data. Error text is built only from our own words,
// the HTTP status and libcurl's code: nothing Vault sends back is ever quoted.
#include <delegate/agent/secret_vault.hpp>

#include <curl/curl.h>
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <delegate/common/json.hpp>
#include <delegate/connectors/masker.hpp>

namespace delegate::agent {
namespace {

constexpr std::size_t kMaxToken = 1024;
constexpr std::uint64_t kMaxLeaseS = 10ull * 365 * 86400;

// A string wiped when it goes out of scope (request bodies with a secret_id, answers
// with a token or a value).
struct Wiped {
  std::string text;
  ~Wiped() { OPENSSL_cleanse(text.data(), text.size()); }
};

bool header_safe(std::string_view s) {
  for (char c : s) {
    if (c < 0x21 || c > 0x7e) return false;
  }
  return true;
}

Result<std::uint64_t> lease_of(const Json& obj, const char* what) {
  auto it = obj.find("lease_duration");
  if (it == obj.end() || it->is_null()) return std::uint64_t{0};
  if (!it->is_number_unsigned() || it->get<std::uint64_t>() > kMaxLeaseS) {
    return fail(Errc::parse, std::string("vault ") + what + " answer has an invalid lease_duration");
  }
  return it->get<std::uint64_t>();
}

Result<Json> parse_answer(std::string_view body, const char* what) {
  if (body.size() > kMaxVaultAnswer) return fail(Errc::too_large, std::string("vault ") + what + " answer exceeds 64 KiB");
  // The parser's own message could quote the body: it is not passed on.
  auto j = parse_json_strict(body, JsonLimits{.max_bytes = kMaxVaultAnswer, .max_depth = 16});
  if (!j || !j->is_object()) return fail(Errc::parse, std::string("vault ") + what + " answer is not a JSON object");
  return j;
}

struct CurlFree {
  void operator()(CURL* c) const { curl_easy_cleanup(c); }
};
struct SlistFree {
  void operator()(curl_slist* l) const { curl_slist_free_all(l); }
};

struct Sink {
  Wiped* out;
  bool overflow = false;
};

size_t on_write(char* data, size_t size, size_t nmemb, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t n = size * nmemb;
  if (sink->out->text.size() + n > kMaxVaultAnswer) {
    sink->overflow = true;
    return 0;  // refused, not truncated
  }
  sink->out->text.append(data, n);
  return n;
}

struct Answer {
  long status = 0;
  Wiped body;
};

// One HTTPS exchange. `token` (may be empty) goes in X-Vault-Token.
Result<void> exchange(const VaultConfig& c, const char* method, const std::string& path, const std::string& token,
                      const std::string* body, Answer& out) {
  std::unique_ptr<CURL, CurlFree> curl(curl_easy_init());
  if (!curl) return fail(Errc::internal, "vault: cannot initialise libcurl");
  const std::string url = c.address + path;
  Wiped token_header{token.empty() ? std::string() : "X-Vault-Token: " + token};
  curl_slist* raw = nullptr;
  auto add = [&raw](const std::string& h) {
    if (auto* next = curl_slist_append(raw, h.c_str())) raw = next;
  };
  add("Accept: application/json");
  if (!token_header.text.empty()) add(token_header.text);
  if (!c.vault_namespace.empty()) add("X-Vault-Namespace: " + c.vault_namespace);
  if (body) add("Content-Type: application/json");
  std::unique_ptr<curl_slist, SlistFree> headers(raw);
  Sink sink{&out.body};
  CURL* h = curl.get();
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https");
  curl_easy_setopt(h, CURLOPT_SSLVERSION, static_cast<long>(CURL_SSLVERSION_TLSv1_3));
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
  curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
  if (!c.ca_file.empty()) curl_easy_setopt(h, CURLOPT_CAINFO, c.ca_file.c_str());
  curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(h, CURLOPT_TIMEOUT, 30L);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, method);
  if (body) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE, static_cast<long>(body->size()));
  }
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  const CURLcode rc = curl_easy_perform(h);
  if (sink.overflow) return fail(Errc::too_large, "vault answer exceeds 64 KiB");
  if (rc != CURLE_OK) {
    return fail(Errc::unavailable, std::string("vault at ") + c.address + " unreachable: " + curl_easy_strerror(rc));
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out.status);
  return ok();
}

}  // namespace

Result<VaultLogin> parse_vault_login(std::string_view body) {
  auto j = parse_answer(body, "login");
  if (!j) return std::unexpected(j.error());
  auto auth = j->find("auth");
  if (auth == j->end() || !auth->is_object()) return fail(Errc::parse, "vault login answer carries no auth object");
  auto tok = auth->find("client_token");
  if (tok == auth->end() || !tok->is_string()) return fail(Errc::parse, "vault login answer carries no client_token");
  const auto& s = tok->get_ref<const std::string&>();
  if (s.empty() || s.size() > kMaxToken || !header_safe(s)) {
    return fail(Errc::parse, "vault login answer carries a malformed client_token");
  }
  auto lease = lease_of(*auth, "login");
  if (!lease) return std::unexpected(lease.error());
  return VaultLogin{s, *lease};
}

Result<VaultValue> parse_vault_kv(std::string_view body, std::string_view field) {
  auto j = parse_answer(body, "KV");
  if (!j) return std::unexpected(j.error());
  auto lease = lease_of(*j, "KV");
  if (!lease) return std::unexpected(lease.error());
  auto data = j->find("data");
  if (data == j->end() || !data->is_object()) return fail(Errc::parse, "vault KV answer carries no data object");
  auto inner = data->find("data");
  if (inner == data->end() || !inner->is_object()) {
    // null: the current version is deleted or destroyed.
    return fail(Errc::not_found, "vault KV answer carries no data (deleted or destroyed version?)");
  }
  auto v = inner->find(std::string(field));
  if (v == inner->end()) return fail(Errc::not_found, "vault secret has no field \"" + std::string(field) + "\"");
  if (!v->is_string()) return fail(Errc::parse, "vault field \"" + std::string(field) + "\" is not a string");
  const auto& s = v->get_ref<const std::string&>();
  if (s.size() > connectors::kMaxSecretLength) {
    return fail(Errc::too_large, "vault field \"" + std::string(field) + "\" is larger than 64 KiB");
  }
  return VaultValue{s, *lease};
}

Result<std::string> read_vault_credential(const std::filesystem::path& file, std::string_view what) {
  const std::string where = std::string(what) + " " + file.string();
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0) return fail(Errc::io, where + ": " + std::strerror(errno));
  struct Close {
    int fd;
    ~Close() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) return fail(Errc::io, where + ": " + std::strerror(errno));
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_argument, where + " is not a regular file");
  if (st.st_mode & 077) {
    return fail(Errc::permission, where + " is accessible by group/others (mode must be 0600 or stricter)");
  }
  Wiped text;
  char buf[1024];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(Errc::io, where + ": " + std::strerror(errno));
    if (n == 0) break;
    text.text.append(buf, static_cast<std::size_t>(n));
    if (text.text.size() > 4096) {
      OPENSSL_cleanse(buf, sizeof buf);
      return fail(Errc::too_large, where + " is larger than 4 KiB");
    }
  }
  OPENSSL_cleanse(buf, sizeof buf);
  if (text.text.ends_with('\n')) text.text.pop_back();
  if (text.text.ends_with('\r')) text.text.pop_back();
  if (text.text.empty() || !header_safe(text.text)) {
    return fail(Errc::invalid_argument, where + " must hold one line of printable ASCII");
  }
  return std::string(text.text);
}

Result<std::unique_ptr<VaultProvider>> VaultProvider::create(VaultConfig config, const Clock& clock) {
  const bool approle = config.auth == VaultConfig::Auth::approle;
  auto cred = read_vault_credential(approle ? config.secret_id_file : config.token_file,
                                    approle ? "secrets.vault.auth.secret_id_file" : "secrets.vault.auth.token_file");
  if (!cred) return std::unexpected(cred.error());
  OPENSSL_cleanse(cred->data(), cred->size());
  return std::unique_ptr<VaultProvider>(new VaultProvider(std::move(config), clock));
}

VaultProvider::~VaultProvider() {
  forget_token();
  for (auto& [name, c] : cache_) OPENSSL_cleanse(c.value.data(), c.value.size());
}

void VaultProvider::forget_token() {
  OPENSSL_cleanse(token_.data(), token_.size());
  token_.clear();
  token_until_.reset();
}

Result<void> VaultProvider::login() {
  forget_token();
  switch (config_.auth) {
    case VaultConfig::Auth::token: {
      // Re-read on every (re)login: a token rotated on disk is picked up after a 403.
      auto t = read_vault_credential(config_.token_file, "secrets.vault.auth.token_file");
      if (!t) return std::unexpected(t.error());
      token_ = std::move(*t);
      return ok();
    }
    case VaultConfig::Auth::approle: {
      auto secret_id = read_vault_credential(config_.secret_id_file, "secrets.vault.auth.secret_id_file");
      if (!secret_id) return std::unexpected(secret_id.error());
      Wiped body{Json{{"role_id", config_.role_id}, {"secret_id", *secret_id}}.dump()};
      OPENSSL_cleanse(secret_id->data(), secret_id->size());
      const auto started = clock_.now();
      Answer a;
      if (auto r = exchange(config_, "POST", "/v1/auth/" + config_.auth_mount + "/login", "", &body.text, a); !r) {
        return fail(r.error().code, "vault AppRole login: " + r.error().message);
      }
      if (a.status != 200) {
        return fail(a.status == 400 || a.status == 403 ? Errc::permission : Errc::unavailable,
                    "vault AppRole login refused: HTTP " + std::to_string(a.status));
      }
      auto got = parse_vault_login(a.body.text);
      if (!got) return std::unexpected(got.error());
      token_ = std::move(got->token);
      if (got->lease_s > 0) {
        // Log in again shortly before the lease ends, not at its last second.
        const auto lease = std::chrono::seconds(got->lease_s);
        const auto margin = std::min<std::chrono::seconds>(std::chrono::seconds(60), lease / 5);
        token_until_ = started + lease - margin;
      }
      return ok();
    }
  }
  return fail(Errc::internal, "vault: unknown auth method");
}

Result<void> VaultProvider::ensure_token() {
  if (!token_.empty() && (!token_until_ || clock_.now() < *token_until_)) return ok();
  return login();
}

Result<std::optional<std::string>> VaultProvider::read(const std::string& name) {
  auto entry = config_.secrets.find(name);
  if (entry == config_.secrets.end()) return std::optional<std::string>();
  std::lock_guard lock(mu_);
  const auto now = clock_.now();
  if (auto c = cache_.find(name); c != cache_.end()) {
    if (now < c->second.until) return std::optional<std::string>(c->second.value);
    OPENSSL_cleanse(c->second.value.data(), c->second.value.size());
    cache_.erase(c);
  }
  const std::string path = "/v1/" + config_.mount + "/data/" + entry->second.path;
  const std::string where = "vault " + config_.mount + "/" + entry->second.path;
  Answer a;
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (auto r = ensure_token(); !r) return std::unexpected(r.error());
    a = Answer{};
    if (auto r = exchange(config_, "GET", path, token_, nullptr, a); !r) return std::unexpected(r.error());
    if (a.status != 403) break;
    // Expired or revoked: one fresh login, one retry.
    forget_token();
  }
  switch (a.status) {
    case 200: break;
    case 403: return fail(Errc::permission, where + ": permission denied (HTTP 403) after a fresh login");
    case 404: return fail(Errc::not_found, where + ": no such secret (HTTP 404)");
    default: return fail(Errc::unavailable, where + ": HTTP " + std::to_string(a.status));
  }
  auto got = parse_vault_kv(a.body.text, entry->second.field);
  if (!got) return fail(got.error().code, where + ": " + got.error().message);
  std::uint64_t ttl = config_.cache_s;
  if (got->lease_s > 0) ttl = std::min(ttl, got->lease_s);
  if (ttl > 0) cache_[name] = Cached{got->value, now + std::chrono::seconds(ttl)};
  return std::optional<std::string>(std::move(got->value));
}

}  // namespace delegate::agent
