#include <delegate/agent/agent_stream.hpp>

#include <algorithm>

#include <delegate/common/encoding.hpp>
#include <delegate/common/log.hpp>

namespace delegate::agent {

std::string new_boot_id() { return hex_encode(random_bytes(16)); }

Json agent_start_data(const std::string& boot_id, const Ed25519PublicKey& key, const std::string& version,
                      const std::string& hostname) {
  return Json{{"boot_id", boot_id}, {"public_key", base64_encode(key)}, {"version", version}, {"hostname", hostname}};
}

Json agent_stop_data(const std::string& boot_id, const std::string& reason) {
  return Json{{"boot_id", boot_id}, {"reason", reason}};
}

Json checkpoint_data(const std::string& boot_id, const std::vector<FinishedJob>& jobs) {
  Json list = Json::array();
  for (const auto& j : jobs) {
    list.push_back(Json{{"job", j.job}, {"records", j.records}, {"last_hash", j.last_hash}, {"status", j.status}});
  }
  return Json{{"boot_id", boot_id}, {"jobs", list}};
}

AgentStream::AgentStream(const Ed25519PrivateKey& key, const Clock& clock, Spool& spool, std::string version)
    : key_(key), clock_(clock), spool_(spool), version_(std::move(version)), boot_id_(new_boot_id()) {}

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
  return append_locked(audit::Kind::agent_start, agent_start_data(boot_id_, key_.public_key(), version_, hostname));
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
  if (auto r = append_locked(audit::Kind::checkpoint, checkpoint_data(boot_id_, jobs)); !r) return r;
  spool_.mark_checkpointed(keys);
  return ok();
}

Result<void> AgentStream::checkpoint() {
  std::lock_guard lock(mu_);
  return checkpoint_locked();
}

Result<void> AgentStream::stop(const std::string& reason) {
  std::lock_guard lock(mu_);
  if (!writer_) return ok();
  if (auto r = checkpoint_locked(); !r) return r;
  return append_locked(audit::Kind::agent_stop, agent_stop_data(boot_id_, reason));
}

}  // namespace delegate::agent
