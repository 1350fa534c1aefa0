// The spool's master key: supplied by the operator (agent.spool_key_file), or generated
// on first start in state_dir/spool.key. Either way it must be private to the agent's
// user; a key that others can read protects nothing, so it is refused (fail closed).
#include <fcntl.h>
#include <openssl/crypto.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <delegate/agent/spool.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>

namespace delegate::agent {

SpoolKey::~SpoolKey() { OPENSSL_cleanse(bytes.data(), bytes.size()); }

namespace {

Result<SpoolKey> load_key_file(const std::filesystem::path& file, const std::string& what = "spool key") {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) {
    return fail(errno == ENOENT ? Errc::not_found : Errc::io,
                what + " " + file.string() + ": " + std::strerror(errno));
  }
  if (!S_ISREG(st.st_mode)) return fail(Errc::invalid_argument, what + " " + file.string() + " is not a regular file");
  if (st.st_mode & 077) {
    return fail(Errc::permission,
                what + " " + file.string() + " is accessible by group/others (mode must be 0600 or stricter)");
  }
  auto data = read_file(file, 64);
  if (!data) return fail(data.error().code, what + ": " + data.error().message);
  if (data->size() != 32) {
    OPENSSL_cleanse(data->data(), data->size());
    return fail(Errc::crypto, what + " " + file.string() + " must hold exactly 32 raw bytes");
  }
  SpoolKey k;
  std::memcpy(k.bytes.data(), data->data(), 32);
  OPENSSL_cleanse(data->data(), data->size());
  return k;
}

}  // namespace

Result<SpoolKey> load_spool_key(const std::filesystem::path& configured, const std::filesystem::path& default_file) {
  if (!configured.empty()) return load_key_file(configured);
  return load_or_create_key(default_file, "spool key");
}

Result<SpoolKey> load_or_create_key(const std::filesystem::path& default_file, const std::string& what) {
  std::error_code ec;
  if (std::filesystem::exists(default_file, ec)) return load_key_file(default_file, what);
  // Same race-free creation as the identity key: a private temporary file linked into
  // place; link() fails if another process won, and then we use the winner's key.
  SpoolKey k;
  auto fresh = random_bytes(32);
  std::memcpy(k.bytes.data(), fresh.data(), 32);
  OPENSSL_cleanse(fresh.data(), fresh.size());
  auto tmp = default_file;
  tmp += ".new." + hex_encode(random_bytes(6));
  if (auto r = write_file_atomic(tmp, std::string_view(reinterpret_cast<const char*>(k.bytes.data()), 32), 0600); !r) {
    return std::unexpected(r.error());
  }
  int rc = ::link(tmp.c_str(), default_file.c_str());
  int err = errno;
  std::filesystem::remove(tmp, ec);
  if (rc != 0) {
    if (err == EEXIST) return load_key_file(default_file, what);
    return fail(Errc::io, "cannot create " + what + " " + default_file.string() + ": " + std::strerror(err));
  }
  // The link must be durable before anything is encrypted under the key.
  int dfd = ::open(default_file.parent_path().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return k;
}

}  // namespace delegate::agent
