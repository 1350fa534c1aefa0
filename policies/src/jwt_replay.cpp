// Persistent jti replay cache. Entries are keyed by SHA-256(iss NUL jti) so the file
// holds fixed-size lines whatever the token says (no newlines, no unbounded strings).
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <optional>
#include <utility>
#include <delegate/common/crypto.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/policies/jwt.hpp>

namespace delegate::policies {
namespace {

constexpr const char* kFileName = "jti-replay";

std::int64_t seconds(TimePoint t) {
  return std::chrono::floor<std::chrono::seconds>(t.time_since_epoch()).count();
}

std::string entry_key(std::string_view iss, std::string_view jti) {
  std::string material;
  material.reserve(iss.size() + 1 + jti.size());
  material.append(iss);
  material.push_back('\0');
  material.append(jti);
  return sha256_hex(material);
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

bool is_key(std::string_view s) {
  return s.size() == 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

// Longer than any token we accept can stay valid (lifetime ≤ 1 day, skew ≤ 10 min,
// retention): the keep-until given to an entry whose own bound was damaged.
constexpr std::int64_t kSalvageKeepS = 2 * 86400;

// One line "<until> <key>". A line that starts with the remains of an earlier torn
// write still ends with a whole entry (the writer appends whole lines): keep that
// entry. Its digits may have the torn bytes' digits in front, which only makes the
// number larger, so the bound is capped rather than trusted.
std::optional<std::pair<std::string, std::int64_t>> parse_line(std::string_view line, std::int64_t now) {
  const auto sp = line.rfind(' ');
  if (sp == std::string_view::npos || !is_key(line.substr(sp + 1))) return std::nullopt;
  std::size_t start = sp;
  while (start > 0 && line[start - 1] >= '0' && line[start - 1] <= '9') --start;
  if (start == sp) return std::nullopt;
  std::int64_t until = 0;
  auto [ptr, err] = std::from_chars(line.data() + start, line.data() + sp, until);
  const bool clean = start == 0 && err == std::errc() && ptr == line.data() + sp;
  if (!clean) until = (err == std::errc()) ? std::min(until, now + kSalvageKeepS) : now + kSalvageKeepS;
  return std::pair{std::string(line.substr(sp + 1)), until};
}

}  // namespace

Result<std::unique_ptr<FileReplayCache>> FileReplayCache::open(const std::filesystem::path& dir,
                                                               const Clock& clock,
                                                               std::chrono::seconds retention,
                                                               std::size_t max_entries) {
  if (auto r = ensure_dir(dir); !r) return std::unexpected(r.error());
  const auto path = dir / kFileName;
  const std::int64_t now = seconds(clock.now());

  std::unordered_map<std::string, std::int64_t> entries;
  std::error_code ec;
  if (std::filesystem::exists(path, ec)) {
    auto text = read_file(path, 256u << 20);
    if (!text) return std::unexpected(text.error());
    std::string_view rest = *text;
    while (!rest.empty()) {
      auto nl = rest.find('\n');
      // A line without newline is a torn final write: the insert it belonged to never
      // returned "not seen", so dropping it reopens nothing.
      if (nl == std::string_view::npos) break;
      std::string_view line = rest.substr(0, nl);
      rest.remove_prefix(nl + 1);
      auto entry = parse_line(line, now);
      if (!entry || entry->second < now) continue;
      auto& slot = entries[entry->first];
      slot = std::max(slot, entry->second);
    }
  }
  // Compact: rewrite only live entries, atomically, before appending to it.
  std::string compacted;
  for (const auto& [key, until] : entries) compacted += std::to_string(until) + " " + key + "\n";
  if (auto r = write_file_atomic(path, compacted, 0600); !r) return std::unexpected(r.error());
  const int fd = ::open(path.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC);
  if (fd < 0) return fail(Errc::io, "cannot open " + path.string() + ": " + std::strerror(errno));
  auto cache = std::unique_ptr<FileReplayCache>(
      new FileReplayCache(fd, clock, retention, max_entries, std::move(entries)));
  cache->file_size_ = static_cast<off_t>(compacted.size());
  return cache;
}

FileReplayCache::FileReplayCache(int fd, const Clock& clock, std::chrono::seconds retention,
                                 std::size_t max_entries,
                                 std::unordered_map<std::string, std::int64_t> entries)
    : fd_(fd),
      clock_(clock),
      retention_(retention),
      max_entries_(max_entries),
      entries_(std::move(entries)) {}

FileReplayCache::~FileReplayCache() {
  if (fd_ >= 0) ::close(fd_);
}

void FileReplayCache::prune_locked(std::int64_t now_s) {
  std::erase_if(entries_, [now_s](const auto& kv) { return kv.second < now_s; });
  inserts_since_prune_ = 0;
}

bool FileReplayCache::seen_or_insert(std::string_view iss, std::string_view jti, TimePoint exp) {
  const std::string key = entry_key(iss, jti);
  const std::int64_t until = seconds(exp) + retention_.count();
  std::lock_guard lock(mu_);
  if (auto it = entries_.find(key); it != entries_.end()) {
    // Still a replay even if the entry has lapsed in memory: the token itself would be
    // expired by then, so answering "seen" costs nothing.
    return true;
  }
  if (++inserts_since_prune_ >= 1024 || entries_.size() >= max_entries_)
    prune_locked(seconds(clock_.now()));
  // Fail closed: a token we cannot remember must not be accepted, or a full disk or a
  // flood would reopen the replay window.
  if (entries_.size() >= max_entries_) return true;
  // A failed write may have left part of a line behind; the next line appended after
  // it would be unreadable after a restart (its jti forgotten). Cut the file back to
  // the last whole line first, and refuse every token while that is impossible.
  if (torn_) {
    if (::ftruncate(fd_, file_size_) != 0) return true;
    torn_ = false;
  }
  const std::string line = std::to_string(until) + " " + key + "\n";
  if (!write_all(fd_, line)) {
    torn_ = true;
    if (::ftruncate(fd_, file_size_) == 0) torn_ = false;
    return true;
  }
  file_size_ += static_cast<off_t>(line.size());
  if (::fsync(fd_) != 0) return true;
  entries_.emplace(key, until);
  return false;
}

std::size_t FileReplayCache::size() const {
  std::lock_guard lock(mu_);
  return entries_.size();
}

}  // namespace delegate::policies
