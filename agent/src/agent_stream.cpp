#include <delegate/agent/agent_stream.hpp>

#include <algorithm>

#include <delegate/common/encoding.hpp>
#include <delegate/common/log.hpp>

namespace delegate::agent {

AgentStream::AgentStream(const Ed25519PrivateKey& key, const Clock& clock, Spool& spool, std::string version)
    : key_(key), clock_(clock), spool_(spool), version_(std::move(version)), boot_id_(audit::new_boot_id()) {}

bool AgentStream::started() const {
  std::lock_guard lock(mu_);
  return writer_ != nullptr;
}

Result<void> AgentStream::append_locked(audit::Kind kind, Json data) {
  auto rec = writer_->append(kind, std::move(data));
  if (!rec) return std::unexpected(rec.error());
  return spool_.append(*rec);
}

Result<void> AgentStream::start(const std::string& agent_id, const std::string& hostname) {
  std::lock_guard lock(mu_);
  if (writer_ && agent_id_ == agent_id) return ok();
  const StreamKey key{agent_id, std::string(audit::kAgentStreamJob)};
  // One chain for the identity's lifetime: continue where the previous run stopped.
  if (auto tail = spool_.stream(key)) {
    writer_ = std::make_unique<audit::ChainWriter>(key_, clock_, agent_id, key.job, tail->next_seq, tail->last_hash,
                                                   tail->last_ts);
  } else {
    writer_ = std::make_unique<audit::ChainWriter>(key_, clock_, agent_id, key.job);
  }
  agent_id_ = agent_id;
  return append_locked(audit::Kind::agent_start, audit::make_agent_start_data(boot_id_, base64_encode(key_.public_key()), version_, hostname));
}

Result<void> AgentStream::checkpoint_locked() {
  if (!writer_) return ok();
  std::vector<StreamInfo> done;
  for (auto& s : spool_.streams()) {
    if (s.key.agent == agent_id_ && s.key.job != audit::kAgentStreamJob && s.ended && !s.checkpointed) {
      done.push_back(std::move(s));
    }
  }
  if (done.empty()) return ok();
  std::sort(done.begin(), done.end(), [](const StreamInfo& a, const StreamInfo& b) { return a.end_order < b.end_order; });
  std::vector<FinishedJob> jobs;
  std::vector<StreamKey> keys;
  for (const auto& s : done) {
    jobs.push_back(FinishedJob{s.key.job, s.next_seq, s.last_hash, s.status});
    keys.push_back(s.key);
  }
  if (auto r = append_locked(audit::Kind::checkpoint, audit::make_checkpoint_data(boot_id_, jobs)); !r) return r;
  spool_.mark_checkpointed(keys);
  return ok();
}

Result<void> AgentStream::checkpoint() {
  std::lock_guard lock(mu_);
  return checkpoint_locked();
}

Result<void> AgentStream::stop() {
  std::lock_guard lock(mu_);
  if (!writer_) return ok();
  if (auto r = checkpoint_locked(); !r) return r;
  return append_locked(audit::Kind::agent_stop, audit::make_agent_stop_data(boot_id_));
}

}  // namespace delegate::agent
