#pragma once
// Streams audit records from the on-disk spool to the control plane: per stream in seq
// order, in batches, retrying with jittered exponential backoff until acknowledged.
// Ingest is idempotent by seq, so a re-send after a lost answer (or after a restart) is
// harmless and the store still holds each record exactly once.
//
// Answers: 200 {acked_seq} and 409 {expected_seq} move the acknowledgement forward;
// 401 re-registers; 400/403/404/413/422 are permanent refusals: the stream's records are
// moved to spool/dead/ (kept encrypted for the operator, logged) so that one refused job
// never blocks the others or the spool quota. Anything else is transient.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <limits>
#include <stop_token>
#include <string>

#include <delegate/agent/cp_client.hpp>
#include <delegate/agent/session.hpp>
#include <delegate/agent/spool.hpp>
#include <delegate/audit/record.hpp>

namespace delegate::agent {

// Where a job's records go. append() returns once the record is durable (or failed);
// it must not lose a record it accepted.
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  [[nodiscard]] virtual Result<void> append(const audit::Record& record) = 0;

  // Waits until a record accepted by append_queued() is durable (or failed).
  using Durable = std::function<Result<void>()>;
  // append() that may return before the record is durable, so that one producer's
  // records can share a group commit; the returned function waits for it. Records are
  // still durable in order, and none is sent before it is. The default is append().
  [[nodiscard]] virtual Result<Durable> append_queued(const audit::Record& record) {
    if (auto r = append(record); !r) return std::unexpected(r.error());
    return Durable([] { return Result<void>{}; });
  }
};

class Uploader final : public RecordSink {
 public:
  Uploader(Session& session, ClientOptions options, Spool& spool);

  // Spools the record (durable, may block on the quota).
  [[nodiscard]] Result<void> append(const audit::Record& record) override;
  [[nodiscard]] Result<Durable> append_queued(const audit::Record& record) override;

  // Blocks until every record of the stream up to `last_seq` is acknowledged. False on
  // deadline, or when the control plane refused the stream's records for good.
  [[nodiscard]] bool wait_acked(const StreamKey& stream, std::uint64_t last_seq,
                                std::chrono::steady_clock::time_point deadline);
  // Unacknowledged records in the spool.
  [[nodiscard]] std::size_t pending() const;

  // Thread body; returns when stop is requested and nothing is pending, or when stop is
  // requested and the drain deadline (set_drain_deadline) passed. Unsent records stay
  // in the spool for the next start.
  void run(std::stop_token stop);
  void set_drain_deadline(std::chrono::steady_clock::time_point deadline);

 private:
  enum class Outcome { progress, transient, refused };
  // Concurrent upload connections (run()'s thread and kLanes - 1 more).
  static constexpr std::size_t kLanes = 4;
  static std::size_t lane_of(const StreamKey& key);
  void lane(std::stop_token stop, std::size_t index);
  Outcome send_batch(CpClient& client, const StreamInfo& stream);

  Session& session_;
  ClientOptions options_;
  Spool& spool_;
  std::atomic<bool> abort_{false};
  std::atomic<std::int64_t> drain_deadline_ns_{std::numeric_limits<std::int64_t>::max()};
};

}  // namespace delegate::agent
