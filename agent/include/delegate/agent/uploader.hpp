#pragma once
// Streams audit records to the control plane in batches, in seq order per job,
// retrying with backoff until acknowledged. Idempotent by seq on the server side,
// so a re-send after a lost answer is harmless.
//
// This version buffers unacknowledged records in memory only; the encrypted on-disk
// spool (crash replay, disk quota back-pressure) plugs in behind RecordSink.
#include <atomic>
#include <condition_variable>
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <stop_token>
#include <string>

#include <delegate/agent/cp_client.hpp>
#include <delegate/agent/session.hpp>
#include <delegate/audit/record.hpp>

namespace delegate::agent {

// Where a job's records go. append() must not lose a record it accepted.
class RecordSink {
 public:
  virtual ~RecordSink() = default;
  virtual void append(const audit::Record& record) = 0;
};

class Uploader final : public RecordSink {
 public:
  Uploader(Session& session, ClientOptions options);

  void append(const audit::Record& record) override;

  // Blocks until every record of `job` up to `last_seq` is acknowledged. False on
  // deadline, or when the control plane refused the job's records for good.
  [[nodiscard]] bool wait_acked(const std::string& job, std::uint64_t last_seq,
                                std::chrono::steady_clock::time_point deadline);
  void forget(const std::string& job);
  [[nodiscard]] std::size_t pending() const;

  // Thread body; returns when stop is requested and nothing is pending, or when stop is
  // requested and `drain_deadline` (set by request_drain) passed.
  void run(std::stop_token stop);
  void set_drain_deadline(std::chrono::steady_clock::time_point deadline);

 private:
  struct JobQueue {
    std::deque<std::pair<std::uint64_t, Json>> pending;
    std::int64_t acked = -1;
    bool refused = false;
  };
  // One POST for one job's head of queue; returns false on a transient failure.
  bool send_batch(CpClient& client, const std::string& job);

  Session& session_;
  ClientOptions options_;
  std::atomic<bool> abort_{false};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, JobQueue> jobs_;
  std::chrono::steady_clock::time_point drain_deadline_ = std::chrono::steady_clock::time_point::max();
};

}  // namespace delegate::agent
