#include <delegate/agent/recorder.hpp>

#include <delegate/common/log.hpp>

namespace delegate::agent {

JobRecorder::JobRecorder(const Ed25519PrivateKey& key, const Clock& clock, const std::string& agent_id,
                         const std::string& job, RecordSink& sink)
    : writer_(key, clock, agent_id, job), sink_(sink) {}

JobRecorder::~JobRecorder() {
  std::lock_guard lock(mu_);
  drain_locked(inflight_.size());
}

bool JobRecorder::add(audit::Kind kind, Json data) {
  std::lock_guard lock(mu_);
  if (kind != audit::Kind::output) {
    drain_locked(inflight_.size());
  } else if (inflight_.size() >= kQueuedOutput) {
    drain_locked(inflight_.size() - kQueuedOutput + 1);
  }
  if (spool_broken_) return false;
  auto rec = writer_.append(kind, std::move(data));
  if (!rec) {
    fail("audit record " + std::string(audit::to_string(kind)) + " is unrepresentable: " + rec.error().message);
    rec = writer_.append(kind, Json{{"unrepresentable", true}, {"error", rec.error().message}});
  }
  if (!rec) {
    // Only reachable if signing itself is broken, which aborts inside sign().
    log::error("agent", "cannot create audit record: " + rec.error().message);
    spool_broken_ = true;
    fail("cannot create audit record");
    return false;
  }
  if (kind == audit::Kind::output) {
    if (auto q = sink_.append_queued(*rec); !q) {
      spool_failed(rec->job, q.error());
    } else {
      inflight_.push_back(std::move(*q));
    }
  } else if (auto r = sink_.append(*rec); !r) {
    spool_failed(rec->job, r.error());
  }
  return failure_.empty();
}

bool JobRecorder::ok() const {
  std::lock_guard lock(mu_);
  return failure_.empty();
}

void JobRecorder::fail(std::string why) {
  if (failure_.empty()) failure_ = std::move(why);
}

void JobRecorder::spool_failed(const std::string& job, const Error& e) {
  // The spool is closing or broken: the job's log is incomplete from here on, and replay
  // at the next start closes it.
  if (!spool_broken_) log::error("agent", "cannot spool audit record of job " + job + ": " + e.message);
  spool_broken_ = true;
  fail("cannot spool audit record: " + e.message);
}

void JobRecorder::drain_locked(std::size_t n) {
  for (; n > 0 && !inflight_.empty(); --n) {
    auto wait = std::move(inflight_.front());
    inflight_.pop_front();
    if (auto r = wait(); !r) spool_failed(writer_.job(), r.error());
  }
}

}  // namespace delegate::agent
