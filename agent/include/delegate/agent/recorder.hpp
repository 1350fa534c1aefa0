#pragma once
// The records of one job: appends to its chain and hands each record to the sink. The
// job may only go on while its log is faithful: a record whose data cannot be
// canonicalised (e.g. an integer beyond 2^53 in hostile params) is replaced by one that
// says so, so the event and the chain stay intact, but the recorder is then failed and
// the job stops before anything else runs. A record that cannot be spooled fails it too
// (and later records are not even attempted: the chain would have a hole).
//
// Output records do not wait for their own fdatasync: up to kQueuedOutput of them are
// in flight, so that a step's output shares group commits instead of paying one per
// 16 KiB record. Every other record first waits for all of them, so a failure to spool
// output is known before anything else is recorded, and a step whose output cannot be
// spooled is stopped at most kQueuedOutput records later. Nothing is sent before it is
// durable (the spool shows a record to the uploader only once its batch is synced).
//
// Thread-safe: the egress proxy records net.connect from its own threads while the
// step's output is recorded on the launching thread.
#include <cstdint>
#include <deque>
#include <mutex>
#include <string>

#include <delegate/agent/uploader.hpp>
#include <delegate/audit/chain.hpp>

namespace delegate::agent {

class JobRecorder {
 public:
  static constexpr std::size_t kQueuedOutput = 32;

  // key, clock and sink must outlive the recorder.
  JobRecorder(const Ed25519PrivateKey& key, const Clock& clock, const std::string& agent_id, const std::string& job,
              RecordSink& sink);
  // Waits for the output records still in flight.
  ~JobRecorder();
  JobRecorder(const JobRecorder&) = delete;
  JobRecorder& operator=(const JobRecorder&) = delete;

  // False once any record could not be created faithfully or spooled.
  bool add(audit::Kind kind, Json data);
  [[nodiscard]] bool ok() const;
  // The rest is read on the job's thread once no step (and so no proxy) runs.
  [[nodiscard]] const std::string& failure() const { return failure_; }
  [[nodiscard]] std::uint64_t count() const { return writer_.next_seq(); }
  [[nodiscard]] const std::string& last_hash() const { return writer_.last_hash(); }

 private:
  void fail(std::string why);
  void spool_failed(const std::string& job, const Error& e);
  // Waits for the `n` oldest queued output records, in order.
  void drain_locked(std::size_t n);

  audit::ChainWriter writer_;
  RecordSink& sink_;
  std::deque<RecordSink::Durable> inflight_;
  std::string failure_;
  bool spool_broken_ = false;
  mutable std::mutex mu_;
};

}  // namespace delegate::agent
