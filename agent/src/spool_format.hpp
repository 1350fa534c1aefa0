#pragma once
// On-disk format of the encrypted spool (internal to the agent; see docs/spool.md).
//
// Segment file  = header | block*
// header (44 B) = "DLGSPOOL" | u32 version | uuid[16] | HMAC(master, label|first 28 B)[0..16]
// block         = u32 len | u32 index | u8 type | u16 alen | agent | u16 jlen | job | u64 seq | tag[16] | ciphertext
//                 (len counts everything after itself; integers big-endian)
//
// Each segment has its own AES-256-GCM key, HMAC-derived from the master key and the
// segment's random uuid; the nonce is the block's index in its segment. A segment is
// only ever appended to by the process that created it, so (key, nonce) pairs never
// repeat, across restarts included; a block copied into another segment, or moved within
// one, is decrypted under the wrong key or nonce and fails authentication. The
// associated data binds uuid, index, type, agent, job and seq.
#include <unistd.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include <delegate/common/error.hpp>

namespace delegate::agent::spoolfmt {

using Key = std::array<std::uint8_t, 32>;
using Uuid = std::array<std::uint8_t, 16>;

inline constexpr std::size_t kHeaderBytes = 44;
inline constexpr std::uint8_t kRecordBlock = 1;
inline constexpr std::size_t kTagBytes = 16;
// A record is at most 64 KiB (audit::kMaxRecordBytes); anything much larger is corruption.
inline constexpr std::uint32_t kMaxBlockBytes = 256 * 1024;

// Wipes key material on destruction.
struct SecretKey {
  Key bytes{};
  SecretKey() = default;
  SecretKey(const SecretKey&) = default;
  SecretKey& operator=(const SecretKey&) = default;
  ~SecretKey();
};

class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(Fd&& o) noexcept : fd_(o.fd_) { o.fd_ = -1; }
  Fd& operator=(Fd&& o) noexcept {
    if (this != &o) {
      if (fd_ >= 0) ::close(fd_);
      fd_ = o.fd_;
      o.fd_ = -1;
    }
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const { return fd_; }
  [[nodiscard]] bool valid() const { return fd_ >= 0; }

 private:
  int fd_;
};

[[nodiscard]] SecretKey segment_key(const Key& master, const Uuid& uuid);
[[nodiscard]] std::string make_header(const Key& master, const Uuid& uuid);
// Checks magic, version and MAC; returns the uuid.
[[nodiscard]] Result<Uuid> parse_header(const Key& master, std::string_view header);

// HMAC over metadata files, under a key separate from the segment keys.
[[nodiscard]] std::string meta_mac_hex(const Key& master, std::string_view content);

struct BlockHead {
  std::uint32_t index = 0;
  std::uint8_t type = kRecordBlock;
  std::string agent;
  std::string job;
  std::uint64_t seq = 0;
};

// Appends one encoded block (with its length prefix) to `out`.
void encode_block(const Key& seg_key, const Uuid& uuid, const BlockHead& head, std::string_view plaintext,
                  std::string& out);

// Parses the plaintext head of a block body (the bytes after the length prefix).
[[nodiscard]] Result<BlockHead> parse_head(std::string_view body);
// Authenticates and decrypts a block body; Errc::crypto when authentication fails.
[[nodiscard]] Result<std::string> decode_block(const Key& seg_key, const Uuid& uuid, std::string_view body,
                                               BlockHead& head);

// Writes all of `data` at the current offset (retrying short writes and EINTR).
[[nodiscard]] Result<void> write_all(int fd, std::string_view data);
// Reads exactly n bytes at `offset`.
[[nodiscard]] Result<std::string> pread_exact(int fd, std::uint64_t offset, std::size_t n);

}  // namespace delegate::agent::spoolfmt
