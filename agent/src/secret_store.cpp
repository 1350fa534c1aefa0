// The local secret store and the resolver over the configured providers.
//
// secrets.enc = "DLGSECR1" | nonce[12] | tag[16] | AES-256-GCM(JSON {name: base64(value)})
// with the magic as associated data; a fresh random nonce for every rewrite.
#include <delegate/agent/secrets.hpp>

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/strict.hpp>
#include <delegate/connectors/masker.hpp>
#include <delegate/policies/runbook.hpp>

namespace delegate::agent {
namespace {

constexpr std::string_view kMagic = "DLGSECR1";
constexpr std::size_t kNonce = 12, kTag = 16;
constexpr std::size_t kMaxStoreBytes = 16u << 20;

struct CtxFree {
  void operator()(EVP_CIPHER_CTX* c) const { EVP_CIPHER_CTX_free(c); }
};
using Ctx = std::unique_ptr<EVP_CIPHER_CTX, CtxFree>;

// Plaintext that is wiped when it goes out of scope.
struct Plain {
  std::string text;
  ~Plain() { OPENSSL_cleanse(text.data(), text.size()); }
};

std::string seal(const SpoolKey& key, std::string_view plain) {
  const Bytes nonce = random_bytes(kNonce);
  std::string ct(plain.size(), '\0');
  unsigned char tag[kTag];
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  const bool good =
      ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes.data(), nonce.data()) == 1 &&
      EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(kMagic.data()),
                        static_cast<int>(kMagic.size())) == 1 &&
      EVP_EncryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(ct.data()), &len,
                        reinterpret_cast<const unsigned char*>(plain.data()), static_cast<int>(plain.size())) == 1 &&
      EVP_EncryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(ct.data()) + len, &fin) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTag, tag) == 1;
  if (!good) {
    // Writing the secrets unencrypted is not an option.
    std::fputs("fatal: AES-256-GCM encryption failed\n", stderr);
    std::abort();
  }
  std::string out(kMagic);
  out.append(reinterpret_cast<const char*>(nonce.data()), kNonce);
  out.append(reinterpret_cast<const char*>(tag), kTag);
  out += ct;
  return out;
}

Result<Plain> unseal(const SpoolKey& key, std::string_view file, const std::string& where) {
  if (file.size() < kMagic.size() + kNonce + kTag || !file.starts_with(kMagic)) {
    return fail(Errc::crypto, where + " is not a secret store file");
  }
  const auto* nonce = reinterpret_cast<const unsigned char*>(file.data() + kMagic.size());
  std::string tag(file.substr(kMagic.size() + kNonce, kTag));
  const std::string_view ct = file.substr(kMagic.size() + kNonce + kTag);
  Plain out{std::string(ct.size(), '\0')};
  Ctx ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  const bool setup =
      ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, key.bytes.data(), nonce) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(kMagic.data()),
                        static_cast<int>(kMagic.size())) == 1 &&
      EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(out.text.data()), &len,
                        reinterpret_cast<const unsigned char*>(ct.data()), static_cast<int>(ct.size())) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTag, tag.data()) == 1;
  if (!setup || EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(out.text.data()) + len, &fin) != 1) {
    return fail(Errc::crypto, where + " fails authentication (tampered with, or encrypted under another key)");
  }
  return out;
}

// The decrypted map; absent file = empty store.
Result<Json> load_map(const std::filesystem::path& file, const SpoolKey& key) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    if (errno == ENOENT) return Json::object();
    return fail(Errc::io, "secret store " + file.string() + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_argument, "secret store " + file.string() + " is not a regular file");
  if (st.st_mode & 077) {
    return fail(Errc::permission, "secret store " + file.string() +
                                      " is accessible by group/others (mode must be 0600 or stricter)");
  }
  auto data = read_file(file, kMaxStoreBytes);
  if (!data) return fail(data.error().code, "secret store: " + data.error().message);
  auto plain = unseal(key, *data, "secret store " + file.string());
  if (!plain) return std::unexpected(plain.error());
  auto map = parse_json_strict(plain->text);
  if (!map || !map->is_object()) return fail(Errc::parse, "secret store " + file.string() + " holds no valid map");
  return std::move(*map);
}

// An exclusive lock on the key file for a read-modify-write of the store.
class Lock {
 public:
  explicit Lock(const std::filesystem::path& f) : fd_(::open(f.c_str(), O_RDONLY | O_CLOEXEC)) {
    if (fd_ >= 0) ::flock(fd_, LOCK_EX);
  }
  ~Lock() {
    if (fd_ >= 0) ::close(fd_);
  }
  Lock(const Lock&) = delete;
  Lock& operator=(const Lock&) = delete;
  [[nodiscard]] bool held() const { return fd_ >= 0; }

 private:
  int fd_;
};

Result<void> check_name(const std::string& name) {
  if (!policies::valid_secret_name(name)) {
    return fail(Errc::invalid_argument, "invalid secret name \"" + printable(name) + "\" (must match [A-Za-z_][A-Za-z0-9_]{0,63})");
  }
  return ok();
}

}  // namespace

SecretStore::SecretStore(std::filesystem::path file, std::filesystem::path key_file, SpoolKey key)
    : file_(std::move(file)), key_file_(std::move(key_file)), key_(std::move(key)) {
  static constexpr std::string_view kLabel = "delegate secret fingerprint v1";
  const auto fp = hmac_sha256(key_.bytes, as_bytes(kLabel));
  std::memcpy(fp_key_.bytes.data(), fp.data(), fp.size());
}

std::filesystem::path SecretStore::file_in(const std::filesystem::path& state_dir) { return state_dir / "secrets.enc"; }
std::filesystem::path SecretStore::key_file_in(const std::filesystem::path& state_dir) { return state_dir / "secrets.key"; }

Result<SecretStore> SecretStore::open(const std::filesystem::path& state_dir) {
  if (auto r = ensure_dir(state_dir, 0700); !r) return std::unexpected(r.error());
  auto key = load_or_create_key(key_file_in(state_dir), "secret store key");
  if (!key) return std::unexpected(key.error());
  return SecretStore(file_in(state_dir), key_file_in(state_dir), std::move(*key));
}

Result<std::optional<std::string>> SecretStore::get(const std::string& name) const {
  if (auto r = check_name(name); !r) return std::unexpected(r.error());
  auto map = load_map(file_, key_);
  if (!map) return std::unexpected(map.error());
  auto it = map->find(name);
  if (it == map->end()) return std::optional<std::string>();
  if (!it->is_string()) return fail(Errc::parse, "secret store entry " + name + " is malformed");
  auto value = base64_decode(it->get<std::string>());
  if (!value) return fail(Errc::parse, "secret store entry " + name + " is malformed");
  std::string out(value->begin(), value->end());
  OPENSSL_cleanse(value->data(), value->size());
  return std::optional<std::string>(std::move(out));
}

Result<std::vector<std::string>> SecretStore::names() const {
  auto map = load_map(file_, key_);
  if (!map) return std::unexpected(map.error());
  std::vector<std::string> out;
  for (auto it = map->begin(); it != map->end(); ++it) out.push_back(it.key());
  return out;
}

Result<void> SecretStore::set(const std::string& name, std::string_view value) {
  if (auto r = check_name(name); !r) return std::unexpected(r.error());
  if (value.size() < connectors::kMinSecretLength || value.size() > connectors::kMaxSecretLength) {
    return fail(Errc::invalid_argument, "secret " + name + " must be 8 bytes to 64 KiB long (short values cannot be masked)");
  }
  if (value.find('\0') != std::string_view::npos) {
    return fail(Errc::invalid_argument, "secret " + name + " contains a NUL byte (it is passed as an environment value)");
  }
  Lock lock(key_file_);
  if (!lock.held()) return fail(Errc::io, "cannot lock " + key_file_.string());
  auto map = load_map(file_, key_);
  if (!map) return std::unexpected(map.error());
  (*map)[name] = base64_encode(as_bytes(value));
  Plain plain{map->dump()};
  return write_file_atomic(file_, seal(key_, plain.text), 0600);
}

Result<bool> SecretStore::remove(const std::string& name) {
  if (auto r = check_name(name); !r) return std::unexpected(r.error());
  Lock lock(key_file_);
  if (!lock.held()) return fail(Errc::io, "cannot lock " + key_file_.string());
  auto map = load_map(file_, key_);
  if (!map) return std::unexpected(map.error());
  if (map->erase(name) == 0) return false;
  Plain plain{map->dump()};
  if (auto r = write_file_atomic(file_, seal(key_, plain.text), 0600); !r) return std::unexpected(r.error());
  return true;
}

const Clock& SecretResolver::default_clock() {
  static const SystemClock clock;
  return clock;
}

Result<SecretResolver> SecretResolver::create(const Config& config, const std::string& credentials_dir,
                                              const Clock& clock) {
  const auto& providers = config.secrets.providers;
  const bool systemd = std::find(providers.begin(), providers.end(), SecretProvider::systemd) != providers.end();
  if (systemd && credentials_dir.empty()) {
    return fail(Errc::invalid_argument,
                "secrets.providers lists systemd, but $CREDENTIALS_DIRECTORY is not set (run the agent as a systemd "
                "service with LoadCredential= or SetCredentialEncrypted=)");
  }
  if (systemd && std::filesystem::path(credentials_dir).is_relative()) {
    return fail(Errc::invalid_argument, "$CREDENTIALS_DIRECTORY must be an absolute path");
  }
  // The store's key also keys the fingerprints, so it exists even without the local provider.
  auto store = SecretStore::open(config.agent.state_dir);
  if (!store) return std::unexpected(store.error());
  std::shared_ptr<VaultProvider> vault;
  if (std::find(providers.begin(), providers.end(), SecretProvider::vault) != providers.end()) {
    if (!config.secrets.vault) return fail(Errc::invalid_argument, "secrets.providers lists vault, but secrets.vault is missing");
    auto v = VaultProvider::create(*config.secrets.vault, clock);
    if (!v) return std::unexpected(v.error());
    vault = std::move(*v);
  }
  return SecretResolver(providers, std::move(*store), systemd ? credentials_dir : std::string(), std::move(vault));
}

Result<std::string> SecretResolver::resolve(const std::string& name) const {
  if (!policies::valid_secret_name(name)) return fail(Errc::invalid_argument, "invalid secret name");
  for (const auto provider : providers_) {
    switch (provider) {
      case SecretProvider::local: {
        auto v = store_.get(name);
        if (!v) return fail(v.error().code, "secret " + name + ": " + v.error().message);
        if (*v) return std::move(**v);
        break;
      }
      case SecretProvider::systemd: {
        // The name is [A-Za-z_][A-Za-z0-9_]*: it cannot leave the directory.
        const auto file = credentials_dir_ / name;
        const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0) {
          if (errno == ENOENT) break;
          return fail(Errc::io, "secret " + name + ": systemd credential unreadable: " + std::strerror(errno));
        }
        std::string v;
        char buf[4096];
        for (;;) {
          const ssize_t n = ::read(fd, buf, sizeof buf);
          if (n < 0 && errno == EINTR) continue;
          if (n <= 0 || v.size() + static_cast<std::size_t>(n) > connectors::kMaxSecretLength + 1) {
            const int err = n < 0 ? errno : 0;
            ::close(fd);
            OPENSSL_cleanse(buf, sizeof buf);
            if (n == 0) break;
            OPENSSL_cleanse(v.data(), v.size());
            return fail(n < 0 ? Errc::io : Errc::too_large,
                        "secret " + name + ": systemd credential " +
                            (n < 0 ? std::string("unreadable: ") + std::strerror(err) : std::string("is larger than 64 KiB")));
          }
          v.append(buf, static_cast<std::size_t>(n));
        }
        // A credential file written with `echo` ends in a newline that is not part of it.
        if (v.ends_with('\n')) v.pop_back();
        return v;
      }
      case SecretProvider::vault: {
        // A mapped name that Vault cannot deliver fails closed; it never falls through
        // to a later provider.
        auto v = vault_->read(name);
        if (!v) return fail(v.error().code, "secret " + name + ": " + v.error().message);
        if (*v) return std::move(**v);
        break;
      }
    }
  }
  return fail(Errc::not_found, "secret " + name + " is not in any configured provider");
}

std::string SecretResolver::fingerprint(std::string_view value) const {
  const auto mac = hmac_sha256(store_.fingerprint_key().bytes, as_bytes(value));
  return hex_encode(std::span(mac).first(16));
}

}  // namespace delegate::agent
