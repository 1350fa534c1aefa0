#include "spool_format.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <cerrno>
#include <cstring>
#include <memory>

#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>

namespace delegate::agent::spoolfmt {
namespace {

constexpr std::string_view kMagic = "DLGSPOOL";
constexpr std::uint32_t kVersion = 1;
constexpr std::string_view kSegmentLabel = "delegate/spool/v1/segment-key";
constexpr std::string_view kHeaderLabel = "delegate/spool/v1/header";
constexpr std::string_view kMetaLabel = "delegate/spool/v1/meta-key";
constexpr std::string_view kAadLabel = "delegate/spool/v1/block";

void put_u16(std::string& out, std::uint16_t v) {
  out.push_back(static_cast<char>(v >> 8));
  out.push_back(static_cast<char>(v));
}
void put_u32(std::string& out, std::uint32_t v) {
  for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<char>(v >> s));
}
void put_u64(std::string& out, std::uint64_t v) {
  for (int s = 56; s >= 0; s -= 8) out.push_back(static_cast<char>(v >> s));
}
std::uint64_t get_be(std::string_view s, std::size_t off, int n) {
  std::uint64_t v = 0;
  for (int i = 0; i < n; ++i) v = (v << 8) | static_cast<std::uint8_t>(s[off + static_cast<std::size_t>(i)]);
  return v;
}

Sha256 labelled_mac(const Key& key, std::string_view label, std::string_view data) {
  std::string msg(label);
  msg.push_back('\0');
  msg.append(data);
  return hmac_sha256(key, as_bytes(msg));
}

std::array<std::uint8_t, 12> nonce_for(std::uint32_t index) {
  std::array<std::uint8_t, 12> iv{};
  for (int i = 0; i < 4; ++i) iv[static_cast<std::size_t>(8 + i)] = static_cast<std::uint8_t>(index >> (24 - 8 * i));
  return iv;
}

struct CtxDeleter {
  void operator()(EVP_CIPHER_CTX* c) const noexcept { EVP_CIPHER_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<EVP_CIPHER_CTX, CtxDeleter>;

// The head bytes (index .. seq) double as associated data, prefixed by label and uuid.
std::string aad_for(const Uuid& uuid, std::string_view head_bytes) {
  std::string aad(kAadLabel);
  aad.append(reinterpret_cast<const char*>(uuid.data()), uuid.size());
  aad.append(head_bytes);
  return aad;
}

}  // namespace

SecretKey::~SecretKey() { OPENSSL_cleanse(bytes.data(), bytes.size()); }

SecretKey segment_key(const Key& master, const Uuid& uuid) {
  SecretKey k;
  auto mac = labelled_mac(master, kSegmentLabel, std::string_view(reinterpret_cast<const char*>(uuid.data()), uuid.size()));
  std::copy(mac.begin(), mac.end(), k.bytes.begin());
  OPENSSL_cleanse(mac.data(), mac.size());
  return k;
}

std::string make_header(const Key& master, const Uuid& uuid) {
  std::string h(kMagic);
  put_u32(h, kVersion);
  h.append(reinterpret_cast<const char*>(uuid.data()), uuid.size());
  auto mac = labelled_mac(master, kHeaderLabel, h);
  h.append(reinterpret_cast<const char*>(mac.data()), 16);
  return h;
}

Result<Uuid> parse_header(const Key& master, std::string_view header) {
  if (header.size() != kHeaderBytes || header.substr(0, kMagic.size()) != kMagic) {
    return fail(Errc::parse, "not a spool segment (bad magic)");
  }
  if (get_be(header, 8, 4) != kVersion) return fail(Errc::parse, "unsupported spool segment version");
  auto mac = labelled_mac(master, kHeaderLabel, header.substr(0, 28));
  if (!constant_time_equal(std::span(mac.data(), 16), as_bytes(header.substr(28, 16)))) {
    return fail(Errc::crypto, "segment header fails authentication (wrong spool key, or tampered)");
  }
  Uuid u{};
  std::memcpy(u.data(), header.data() + 12, u.size());
  return u;
}

std::string meta_mac_hex(const Key& master, std::string_view content) {
  auto k = labelled_mac(master, kMetaLabel, "");
  auto mac = hmac_sha256(k, as_bytes(content));
  OPENSSL_cleanse(k.data(), k.size());
  return hex_encode(mac);
}

void encode_block(const Key& seg_key, const Uuid& uuid, const BlockHead& head, std::string_view plaintext,
                  std::string& out) {
  std::string hb;
  put_u32(hb, head.index);
  hb.push_back(static_cast<char>(head.type));
  put_u16(hb, static_cast<std::uint16_t>(head.agent.size()));
  hb += head.agent;
  put_u16(hb, static_cast<std::uint16_t>(head.job.size()));
  hb += head.job;
  put_u64(hb, head.seq);
  const std::string aad = aad_for(uuid, hb);
  const auto iv = nonce_for(head.index);

  std::string ct(plaintext.size(), '\0');
  unsigned char tag[kTagBytes];
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  bool good = ctx && EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()), nullptr) == 1 &&
              EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, seg_key.data(), iv.data()) == 1 &&
              EVP_EncryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                                static_cast<int>(aad.size())) == 1 &&
              EVP_EncryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(ct.data()), &len,
                                reinterpret_cast<const unsigned char*>(plaintext.data()),
                                static_cast<int>(plaintext.size())) == 1 &&
              EVP_EncryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(ct.data()) + len, &fin) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
  if (!good) {
    // AES-GCM with a valid key cannot fail short of memory exhaustion; writing the record
    // unencrypted is not an option.
    std::fputs("fatal: AES-256-GCM encryption failed\n", stderr);
    std::abort();
  }
  put_u32(out, static_cast<std::uint32_t>(hb.size() + kTagBytes + ct.size()));
  out += hb;
  out.append(reinterpret_cast<const char*>(tag), kTagBytes);
  out += ct;
}

Result<BlockHead> parse_head(std::string_view body) {
  BlockHead h;
  std::size_t off = 0;
  auto need = [&](std::size_t n) { return off + n <= body.size(); };
  if (!need(7)) return fail(Errc::parse, "spool block too short");
  h.index = static_cast<std::uint32_t>(get_be(body, 0, 4));
  h.type = static_cast<std::uint8_t>(body[4]);
  off = 5;
  auto alen = get_be(body, off, 2);
  off += 2;
  if (!need(alen + 2)) return fail(Errc::parse, "spool block head truncated");
  h.agent.assign(body.substr(off, alen));
  off += alen;
  auto jlen = get_be(body, off, 2);
  off += 2;
  if (!need(jlen + 8 + kTagBytes)) return fail(Errc::parse, "spool block head truncated");
  h.job.assign(body.substr(off, jlen));
  off += jlen;
  h.seq = get_be(body, off, 8);
  if (h.type != kRecordBlock) return fail(Errc::parse, "unknown spool block type");
  return h;
}

Result<std::string> decode_block(const Key& seg_key, const Uuid& uuid, std::string_view body, BlockHead& head) {
  auto h = parse_head(body);
  if (!h) return std::unexpected(h.error());
  head = *h;
  const std::size_t head_len = 4 + 1 + 2 + head.agent.size() + 2 + head.job.size() + 8;
  const std::string aad = aad_for(uuid, body.substr(0, head_len));
  std::string tag(body.substr(head_len, kTagBytes));
  std::string_view ct = body.substr(head_len + kTagBytes);
  const auto iv = nonce_for(head.index);
  std::string pt(ct.size(), '\0');
  CtxPtr ctx(EVP_CIPHER_CTX_new());
  int len = 0, fin = 0;
  bool setup = ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
               EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, static_cast<int>(iv.size()), nullptr) == 1 &&
               EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, seg_key.data(), iv.data()) == 1 &&
               EVP_DecryptUpdate(ctx.get(), nullptr, &len, reinterpret_cast<const unsigned char*>(aad.data()),
                                 static_cast<int>(aad.size())) == 1 &&
               EVP_DecryptUpdate(ctx.get(), reinterpret_cast<unsigned char*>(pt.data()), &len,
                                 reinterpret_cast<const unsigned char*>(ct.data()), static_cast<int>(ct.size())) == 1 &&
               EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag.data()) == 1;
  if (!setup) return fail(Errc::crypto, "AES-256-GCM setup failed");
  if (EVP_DecryptFinal_ex(ctx.get(), reinterpret_cast<unsigned char*>(pt.data()) + len, &fin) != 1) {
    // Never hand out the unauthenticated plaintext.
    OPENSSL_cleanse(pt.data(), pt.size());
    return fail(Errc::crypto, "spool block fails authentication");
  }
  return pt;
}

Result<void> write_all(int fd, std::string_view data) {
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd, data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::io, std::string("spool write failed: ") + std::strerror(errno));
    }
    off += static_cast<std::size_t>(n);
  }
  return ok();
}

Result<std::string> pread_exact(int fd, std::uint64_t offset, std::size_t n) {
  std::string out(n, '\0');
  std::size_t got = 0;
  while (got < n) {
    ssize_t r = ::pread(fd, out.data() + got, n - got, static_cast<off_t>(offset + got));
    if (r < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::io, std::string("spool read failed: ") + std::strerror(errno));
    }
    if (r == 0) return fail(Errc::io, "spool segment shorter than its index");
    got += static_cast<std::size_t>(r);
  }
  return out;
}

}  // namespace delegate::agent::spoolfmt
