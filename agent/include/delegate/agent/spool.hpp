#pragma once
// The agent's encrypted, durable on-disk spool of audit records (docs/spool.md).
//
// Every record is written here, encrypted with AES-256-GCM and fdatasync'd, before it
// is sent; append() returns only once the record is durable. Appends from all threads
// are group-committed: one writer thread writes whatever accumulated and syncs once per
// batch. Records leave the spool only after the control plane acknowledged them. When
// the spool reaches its byte quota, append() blocks until acknowledgements free space
// (back-pressure: a step's output then waits on its pipe); nothing is dropped.
//
// Streams are keyed by (agent, job); the agent stream uses job audit::kAgentStreamJob.
// Per stream the spool tracks the chain tail (next seq, last hash, last ts), the
// acknowledged seq and the job's lifecycle flags, persisted in an authenticated
// metadata file so that they survive compaction and restarts.
#include <array>
#include <chrono>
#include <compare>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <delegate/audit/record.hpp>
#include <delegate/common/error.hpp>

namespace delegate::agent {

namespace spool_detail {
struct Pending;
}

// 32 raw bytes; wiped on destruction. Never logged.
struct SpoolKey {
  std::array<std::uint8_t, 32> bytes{};
  SpoolKey() = default;
  SpoolKey(const SpoolKey&) = default;
  SpoolKey& operator=(const SpoolKey&) = default;
  ~SpoolKey();
};

// `configured` (agent.spool_key_file) must exist, be a regular file not accessible by
// group/others, and hold exactly 32 bytes. When empty, `default_file` is loaded, or
// created race-free (mode 0600) on first start.
[[nodiscard]] Result<SpoolKey> load_spool_key(const std::filesystem::path& configured,
                                              const std::filesystem::path& default_file);
// The same for any 32-byte private key of the agent's (`what` names it in errors):
// loaded from `file`, or created race-free (0600) when absent.
[[nodiscard]] Result<SpoolKey> load_or_create_key(const std::filesystem::path& file, const std::string& what);

struct StreamKey {
  std::string agent;
  std::string job;
  auto operator<=>(const StreamKey&) const = default;
};

struct StreamInfo {
  StreamKey key;
  std::uint64_t next_seq = 0;  // one past the last spooled record
  std::string last_hash;       // of that record
  std::string last_ts;
  std::int64_t acked = -1;     // highest seq the control plane acknowledged
  bool ended = false;          // job.end spooled
  std::string status;          // job.end status
  std::uint64_t end_order = 0; // order in which jobs ended (checkpoint order)
  bool completed = false;      // completion reported (or permanently refused)
  bool checkpointed = false;   // listed in an agent-stream checkpoint
  bool dead = false;           // records permanently refused, moved to spool/dead/
};

struct SpoolOptions {
  std::filesystem::path dir;                     // state_dir/spool
  SpoolKey key;
  std::uint64_t max_bytes = 256ull << 20;        // quota over all live segments
  std::uint64_t segment_bytes = 0;               // roll size; 0 = derived from max_bytes
  // How long a batch may wait for company. 0 by default: the appends that arrive while a
  // batch is being written form the next batch anyway (the fdatasync is the wait), and a
  // lone appender (a job being dispatched to an idle agent) should not pay for company
  // that is not coming.
  std::chrono::milliseconds commit_window{0};
  std::size_t commit_max_records = 512;
};

struct SpoolStats {
  std::uint64_t commits = 0;            // fdatasync'd batches
  std::uint64_t records = 0;            // records committed
  std::size_t waiting_for_space = 0;    // appenders blocked on the quota right now
  std::size_t segments = 0;
};

class Spool {
 public:
  // Recovers existing segments: a torn tail (partial block) is truncated; a complete
  // block that fails authentication is an error (fail closed, see docs/spool.md).
  [[nodiscard]] static Result<std::unique_ptr<Spool>> open(SpoolOptions options);
  ~Spool();
  Spool(const Spool&) = delete;
  Spool& operator=(const Spool&) = delete;

  // Durable when it returns. Blocks while the quota is exhausted. The record must be the
  // next in its stream (seq == next_seq).
  [[nodiscard]] Result<void> append(const audit::Record& record);

  // A record handed to the writer by enqueue(), not yet known to be durable.
  class Queued {
   public:
    // Returns once the record is durable, or failed (what append() would have returned).
    [[nodiscard]] Result<void> wait();

   private:
    friend class Spool;
    Queued(Spool& spool, std::shared_ptr<spool_detail::Pending> p) : spool_(&spool), p_(std::move(p)) {}
    Spool* spool_;
    std::shared_ptr<spool_detail::Pending> p_;
  };
  // append() without waiting for the commit: blocks only while the quota is exhausted.
  // The writer commits a stream's records in the order they were queued, and nothing
  // (read(), stream tails, acks) sees a record before its batch is fdatasync'd; so a
  // producer may have several records of one stream in the same group commit.
  [[nodiscard]] Result<Queued> enqueue(const audit::Record& record);

  // Serialized records of a stream from `from_seq` on, in order, bounded by count and bytes.
  [[nodiscard]] Result<std::vector<std::string>> read(const StreamKey& stream, std::uint64_t from_seq,
                                                      std::size_t max_records, std::size_t max_bytes) const;
  // The control plane holds everything up to `seq`; fully acknowledged segments are deleted.
  void ack(const StreamKey& stream, std::int64_t seq);
  // Moves the stream's unacknowledged records into an encrypted file under spool/dead/
  // (kept for the operator, outside the quota) and stops sending them.
  [[nodiscard]] Result<void> dead_letter(const StreamKey& stream);

  // True once `seq` is acknowledged; false on deadline or when the stream is dead.
  [[nodiscard]] bool wait_acked(const StreamKey& stream, std::uint64_t seq,
                                std::chrono::steady_clock::time_point deadline) const;
  [[nodiscard]] std::vector<StreamInfo> streams() const;
  [[nodiscard]] std::optional<StreamInfo> stream(const StreamKey& key) const;
  // Streams with spooled, unacknowledged records that are not dead.
  [[nodiscard]] std::vector<StreamInfo> pending() const;
  // Waits until something changed (append, ack) after generation `seen`, or timeout.
  [[nodiscard]] std::uint64_t wait_change(std::uint64_t seen, std::chrono::milliseconds timeout) const;
  void wake();

  void mark_completed(const StreamKey& stream);
  void mark_checkpointed(const std::vector<StreamKey>& streams);
  // Persists ack progress and flags (fsync). Cheap when nothing changed.
  [[nodiscard]] Result<void> flush_meta();

  // Lets blocked and future appends exceed the quota. Used when shutdown interrupts jobs:
  // their remaining records (job.end included) must be written, and no acknowledgement
  // may be coming to free space.
  void lift_quota();
  [[nodiscard]] std::uint64_t bytes_used() const;
  [[nodiscard]] SpoolStats stats() const;
  // Stops the writer; pending appends fail. Idempotent.
  void close();

  class Impl;

 private:
  explicit Spool(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace delegate::agent
