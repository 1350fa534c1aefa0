#include <delegate/common/crypto.hpp>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <cstdlib>
#include <cstdio>

#include <delegate/common/fs.hpp>

namespace delegate {

void PkeyDeleter::operator()(EVP_PKEY* p) const noexcept { EVP_PKEY_free(p); }

Sha256 sha256(std::span<const std::uint8_t> data) {
  Sha256 out{};
  unsigned int len = 0;
  if (EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) != 1) {
    std::fputs("fatal: EVP_Digest(SHA-256) failed\n", stderr);
    std::abort();
  }
  return out;
}

std::string sha256_hex(std::string_view s) { return hex_encode(sha256(s)); }

Sha256 hmac_sha256(std::span<const std::uint8_t> key, std::span<const std::uint8_t> data) {
  Sha256 out{};
  unsigned int len = 0;
  if (HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), data.data(), data.size(),
           out.data(), &len) == nullptr) {
    std::fputs("fatal: HMAC-SHA256 failed\n", stderr);
    std::abort();
  }
  return out;
}

Bytes random_bytes(std::size_t n) {
  Bytes out(n);
  if (n && RAND_bytes(out.data(), static_cast<int>(n)) != 1) {
    std::fputs("fatal: RAND_bytes failed; refusing to continue without a CSPRNG\n", stderr);
    std::abort();
  }
  return out;
}

bool constant_time_equal(std::span<const std::uint8_t> a, std::span<const std::uint8_t> b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::generate() {
  auto seed = random_bytes(32);
  auto key = from_seed(seed);
  OPENSSL_cleanse(seed.data(), seed.size());
  return key;
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::from_seed(std::span<const std::uint8_t> seed32) {
  if (seed32.size() != 32) return fail(Errc::crypto, "Ed25519 seed must be 32 bytes");
  EVP_PKEY* k = EVP_PKEY_new_raw_private_key(EVP_PKEY_ED25519, nullptr, seed32.data(), 32);
  if (!k) return fail(Errc::crypto, "cannot create Ed25519 key");
  return Ed25519PrivateKey(PkeyPtr(k));
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::load(const std::filesystem::path& file) {
  struct stat st {};
  if (::stat(file.c_str(), &st) != 0) return fail(Errc::not_found, "identity key " + file.string() + " not found");
  if (st.st_mode & 077) {
    return fail(Errc::permission, "identity key " + file.string() + " is accessible by group/others (mode must be 0600)");
  }
  auto data = read_file(file, 64);
  if (!data) return std::unexpected(data.error());
  if (data->size() != 32) return fail(Errc::crypto, "identity key " + file.string() + " is not a 32-byte Ed25519 seed");
  auto key = from_seed(as_bytes(*data));
  OPENSSL_cleanse(data->data(), data->size());
  return key;
}

Result<Ed25519PrivateKey> Ed25519PrivateKey::load_or_create(const std::filesystem::path& file) {
  std::error_code ec;
  if (std::filesystem::exists(file, ec)) return load(file);
  auto key = generate();
  if (!key) return key;
  // Two processes may race to create the identity (e.g. `identity` while the daemon
  // starts): write a private temporary file, then link() it into place, which fails if
  // the other won; the loser loads the winner's key so both agree.
  auto tmp = file;
  tmp += ".new." + hex_encode(random_bytes(6));
  if (auto r = key->save(tmp); !r) return std::unexpected(r.error());
  int rc = ::link(tmp.c_str(), file.c_str());
  int err = errno;
  std::filesystem::remove(tmp, ec);
  if (rc != 0) {
    if (err == EEXIST) return load(file);
    return fail(Errc::io, "cannot create identity key " + file.string() + ": " + std::strerror(err));
  }
  return key;
}

Result<void> Ed25519PrivateKey::save(const std::filesystem::path& file) const {
  std::uint8_t seed[32];
  std::size_t len = sizeof seed;
  if (EVP_PKEY_get_raw_private_key(key_.get(), seed, &len) != 1 || len != 32) {
    return fail(Errc::crypto, "cannot export Ed25519 key");
  }
  auto r = write_file_atomic(file, std::string_view(reinterpret_cast<char*>(seed), 32), 0600);
  OPENSSL_cleanse(seed, sizeof seed);
  return r;
}

Ed25519PublicKey Ed25519PrivateKey::public_key() const {
  Ed25519PublicKey pub{};
  std::size_t len = pub.size();
  EVP_PKEY_get_raw_public_key(key_.get(), pub.data(), &len);
  return pub;
}

Ed25519Signature Ed25519PrivateKey::sign(std::span<const std::uint8_t> message) const {
  Ed25519Signature sig{};
  std::size_t len = sig.size();
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool ok_sign = ctx && EVP_DigestSignInit(ctx, nullptr, nullptr, nullptr, key_.get()) == 1 &&
                 EVP_DigestSign(ctx, sig.data(), &len, message.data(), message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  if (!ok_sign) {
    // Signing a fixed-size message with a valid key cannot fail short of memory
    // exhaustion; an unsigned audit record must never be emitted.
    std::fputs("fatal: Ed25519 signing failed\n", stderr);
    std::abort();
  }
  return sig;
}

namespace {

// Little-endian compare of two 32-byte integers: a < b.
bool less_le32(const std::uint8_t* a, const std::array<std::uint8_t, 32>& b) {
  for (int i = 31; i >= 0; --i) {
    if (a[i] != b[static_cast<std::size_t>(i)]) return a[i] < b[static_cast<std::size_t>(i)];
  }
  return false;
}

// The group order L = 2^252 + 27742317777372353535851937790883648493, little-endian.
constexpr std::array<std::uint8_t, 32> kEd25519L = {
    0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7, 0xa2, 0xde, 0xf9, 0xde, 0x14,
    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10};
// The field prime p = 2^255 - 19, little-endian.
constexpr std::array<std::uint8_t, 32> kEd25519P = {
    0xed, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f};

// A point encoding is canonical when its y coordinate (the low 255 bits) is < p.
// OpenSSL reduces a non-canonical y silently, which would give one key or R two
// spellings; we want exactly one.
bool canonical_point(const std::uint8_t* enc) {
  std::array<std::uint8_t, 32> y{};
  std::copy(enc, enc + 32, y.begin());
  y[31] &= 0x7f;
  return less_le32(y.data(), kEd25519P);
}

// The y coordinates of the eight small-order points (0, 1, p-1 and the two of order 8),
// little-endian; the x sign bit does not matter. Under such a "public key" a
// signature with S = 0 verifies for every message, and OpenSSL does not refuse it.
constexpr std::array<std::array<std::uint8_t, 32>, 5> kSmallOrderY = {{
    {},
    {0x01},
    {0xec, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
     0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
    {0x26, 0xe8, 0x95, 0x8f, 0xc2, 0xb2, 0x27, 0xb0, 0x45, 0xc3, 0xf4, 0x89, 0xf2, 0xef, 0x98, 0xf0,
     0xd5, 0xdf, 0xac, 0x05, 0xd3, 0xc6, 0x33, 0x39, 0xb1, 0x38, 0x02, 0x88, 0x6d, 0x53, 0xfc, 0x05},
    {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b, 0x76, 0x0d, 0x10, 0x67, 0x0f,
     0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39, 0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a},
}};

bool small_order_point(const std::uint8_t* enc) {
  std::array<std::uint8_t, 32> y{};
  std::copy(enc, enc + 32, y.begin());
  y[31] &= 0x7f;
  return std::find(kSmallOrderY.begin(), kSmallOrderY.end(), y) != kSmallOrderY.end();
}

}  // namespace

bool ed25519_verify(const Ed25519PublicKey& key, std::span<const std::uint8_t> message,
                    std::span<const std::uint8_t> signature) {
  if (signature.size() != 64) return false;
  // Strictness is checked here rather than trusted to the OpenSSL build: S >= L would
  // let anyone derive a second valid signature (S + L) for a record, and non-canonical
  // encodings of A or R would give one signature several spellings.
  if (!less_le32(signature.data() + 32, kEd25519L)) return false;
  if (!canonical_point(signature.data()) || !canonical_point(key.data())) return false;
  if (small_order_point(key.data())) return false;
  PkeyPtr pk(EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, nullptr, key.data(), key.size()));
  if (!pk) return false;
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  bool good = ctx && EVP_DigestVerifyInit(ctx, nullptr, nullptr, nullptr, pk.get()) == 1 &&
              EVP_DigestVerify(ctx, signature.data(), signature.size(), message.data(),
                               message.size()) == 1;
  EVP_MD_CTX_free(ctx);
  return good;
}

Result<Ed25519PublicKey> parse_public_key(std::string_view text) {
  std::string owned;
  if (!text.empty() && text.front() == '@') {
    auto data = read_file(std::string(text.substr(1)), 4096);
    if (!data) return std::unexpected(data.error());
    owned = *data;
    while (!owned.empty() && (owned.back() == '\n' || owned.back() == '\r' || owned.back() == ' ')) owned.pop_back();
    text = owned;
  }
  auto raw = base64_decode(text);
  if (!raw) raw = base64url_decode(text);
  if (!raw) return fail(Errc::parse, "public key is not base64");
  if (raw->size() != 32) return fail(Errc::parse, "public key must be 32 raw Ed25519 bytes");
  Ed25519PublicKey pub{};
  std::copy(raw->begin(), raw->end(), pub.begin());
  return pub;
}

}  // namespace delegate
