#pragma once
// Internals of the spool, shared by spool.cpp and spool_recover.cpp.
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <optional>
#include <thread>

#include <delegate/agent/spool.hpp>
#include <delegate/common/json.hpp>

#include "spool_format.hpp"

namespace delegate::agent {
namespace spool_detail {
namespace fmt = spoolfmt;
namespace fs = std::filesystem;

inline constexpr const char* kMetaFile = "meta.json";
inline constexpr std::size_t kBlockOverhead = 4 + 4 + 1 + 2 + 2 + 8 + fmt::kTagBytes;

struct Run {
  std::uint64_t first_seq = 0;
  std::vector<std::uint32_t> offsets;  // 4 bytes per record: the spool's only per-record memory
  [[nodiscard]] std::uint64_t last_seq() const { return first_seq + offsets.size() - 1; }
};

struct Segment {
  fs::path path;
  fmt::Uuid uuid{};
  fmt::SecretKey key;
  std::uint64_t size = 0;
  std::uint32_t blocks = 0;
  std::map<StreamKey, Run> runs;
};

struct Pending {
  StreamKey key;
  std::uint64_t seq = 0;
  std::string plaintext;
  std::string hash, ts, status;
  bool job_end = false;
  std::uint64_t estimate = 0;
  bool done = false;
  Result<void> result;
};

std::string seg_name(std::uint64_t ordinal);
std::optional<std::uint64_t> seg_ordinal(const fs::path& p);
void fsync_dir(const fs::path& dir);
Json info_json(const StreamInfo& s);
Result<StreamInfo> info_from(const Json& j);

}  // namespace spool_detail

class Spool::Impl {
 public:
  using Segment = spool_detail::Segment;
  using Pending = spool_detail::Pending;
  explicit Impl(SpoolOptions o) : opt(std::move(o)) {
    if (opt.segment_bytes == 0) opt.segment_bytes = std::clamp<std::uint64_t>(opt.max_bytes / 8, 16 * 1024, 8u << 20);
  }

  Result<void> recover();
  void writer_loop();
  Result<std::vector<std::uint32_t>> write_batch(const std::vector<std::shared_ptr<Pending>>& batch);
  void commit_locked(const std::vector<std::shared_ptr<Pending>>& batch, const std::vector<std::uint32_t>& offsets);
  void compact_locked();
  Result<void> save_meta_locked();
  void close_active_locked();
  [[nodiscard]] bool fully_acked(const Segment& s) const;

  SpoolOptions opt;
  mutable std::mutex mu;
  // One condition for every wait (append done, space, work, acks): notify_all keeps the
  // rules simple and the waiter counts here are tiny.
  mutable std::condition_variable cv;
  std::map<std::uint64_t, Segment> segs;
  std::map<StreamKey, StreamInfo> streams;
  std::map<StreamKey, std::uint64_t> queued_next;
  std::deque<std::shared_ptr<Pending>> queue;
  std::uint64_t commits = 0, committed_records = 0;
  std::size_t waiting_for_space = 0;
  std::uint64_t used = 0, queued_bytes = 0, gen = 0, end_counter = 0, next_ordinal = 1;
  bool closed = false, quota_lifted = false, writing = false, meta_dirty = false, full_logged = false;
  std::chrono::steady_clock::time_point last_meta_save{};
  std::thread writer;

  // The active segment. The writer thread uses these without the lock while `writing`;
  // other threads touch them only under the lock while !writing (compaction).
  std::optional<std::uint64_t> active;
  spoolfmt::Fd active_fd;
  spoolfmt::Uuid active_uuid{};
  spoolfmt::SecretKey active_key;
  std::uint64_t active_size = 0;
  std::uint32_t active_blocks = 0;
};

}  // namespace delegate::agent
