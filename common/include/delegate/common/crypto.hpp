#pragma once
// Thin RAII wrappers over OpenSSL 3 EVP for the primitives the agent needs:
// SHA-256, Ed25519 identity keys, CSPRNG, constant-time comparison.
#include <array>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>

#include <delegate/common/encoding.hpp>
#include <delegate/common/error.hpp>

typedef struct evp_pkey_st EVP_PKEY;

namespace delegate {

using Sha256 = std::array<std::uint8_t, 32>;
using Ed25519PublicKey = std::array<std::uint8_t, 32>;
using Ed25519Signature = std::array<std::uint8_t, 64>;

[[nodiscard]] Sha256 sha256(std::span<const std::uint8_t> data);
[[nodiscard]] inline Sha256 sha256(std::string_view s) { return sha256(as_bytes(s)); }
[[nodiscard]] std::string sha256_hex(std::string_view s);

// HMAC-SHA256(key, data).
[[nodiscard]] Sha256 hmac_sha256(std::span<const std::uint8_t> key,
                                 std::span<const std::uint8_t> data);

// Fills from the OpenSSL DRBG; aborts the process if the DRBG cannot be seeded
// (there is no safe fallback for a security agent).
[[nodiscard]] Bytes random_bytes(std::size_t n);

[[nodiscard]] bool constant_time_equal(std::span<const std::uint8_t> a,
                                       std::span<const std::uint8_t> b);

struct PkeyDeleter {
  void operator()(EVP_PKEY* p) const noexcept;
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyDeleter>;

// An Ed25519 private key. The agent's identity: it signs every audit record.
class Ed25519PrivateKey {
 public:
  [[nodiscard]] static Result<Ed25519PrivateKey> generate();
  [[nodiscard]] static Result<Ed25519PrivateKey> from_seed(std::span<const std::uint8_t> seed32);
  // Loads a 32-byte raw seed file; refuses files readable by group or others.
  [[nodiscard]] static Result<Ed25519PrivateKey> load(const std::filesystem::path& file);
  // Loads the key at `file`, or creates it (mode 0600, atomically) when absent.
  [[nodiscard]] static Result<Ed25519PrivateKey> load_or_create(const std::filesystem::path& file);

  [[nodiscard]] Result<void> save(const std::filesystem::path& file) const;
  [[nodiscard]] Ed25519PublicKey public_key() const;
  [[nodiscard]] Ed25519Signature sign(std::span<const std::uint8_t> message) const;
  // For OpenSSL APIs that take the key itself (the agent's TLS client certificate); the
  // key stays owned by this object.
  [[nodiscard]] EVP_PKEY* native_handle() const { return key_.get(); }

 private:
  explicit Ed25519PrivateKey(PkeyPtr key) : key_(std::move(key)) {}
  PkeyPtr key_;
};

// Strict verification: rejects S >= L (malleated signatures), non-canonical encodings
// of R and of the public key (y >= p), and small-order public keys (under which a
// signature verifies for any message), on top of OpenSSL's own checks.
[[nodiscard]] bool ed25519_verify(const Ed25519PublicKey& key, std::span<const std::uint8_t> message,
                                  std::span<const std::uint8_t> signature);

// Parses "base64 of the 32 raw bytes" (standard or url alphabet), or "@file" holding it.
[[nodiscard]] Result<Ed25519PublicKey> parse_public_key(std::string_view text);

}  // namespace delegate
