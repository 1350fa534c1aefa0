#include <delegate/agent/uploader.hpp>

#include <delegate/agent/backoff.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/log.hpp>

namespace delegate::agent {
namespace {
constexpr std::size_t kMaxBatchRecords = 256;
constexpr std::size_t kMaxBatchBytes = 2u << 20;

std::uint64_t seed() {
  auto b = random_bytes(8);
  std::uint64_t s = 0;
  for (auto x : b) s = (s << 8) | x;
  return s;
}
}  // namespace

Uploader::Uploader(Session& session, ClientOptions options) : session_(session), options_(std::move(options)) {}

void Uploader::append(const audit::Record& record) {
  {
    std::lock_guard lock(mu_);
    jobs_[record.job].pending.emplace_back(record.seq, audit::to_json(record));
  }
  cv_.notify_all();
}

bool Uploader::wait_acked(const std::string& job, std::uint64_t last_seq, std::chrono::steady_clock::time_point deadline) {
  std::unique_lock lock(mu_);
  return cv_.wait_until(lock, deadline, [&] {
    auto it = jobs_.find(job);
    if (it == jobs_.end()) return false;
    return it->second.refused || it->second.acked >= static_cast<std::int64_t>(last_seq);
  }) && !jobs_[job].refused;
}

void Uploader::forget(const std::string& job) {
  std::lock_guard lock(mu_);
  auto it = jobs_.find(job);
  if (it != jobs_.end() && it->second.pending.empty()) jobs_.erase(it);
}

std::size_t Uploader::pending() const {
  std::lock_guard lock(mu_);
  std::size_t n = 0;
  for (const auto& [_, q] : jobs_) n += q.pending.size();
  return n;
}

void Uploader::set_drain_deadline(std::chrono::steady_clock::time_point deadline) {
  {
    std::lock_guard lock(mu_);
    drain_deadline_ = deadline;
  }
  cv_.notify_all();
}

bool Uploader::send_batch(CpClient& client, const std::string& job) {
  Json batch = Json::array();
  std::uint64_t first = 0;
  {
    std::lock_guard lock(mu_);
    auto& q = jobs_[job];
    std::size_t bytes = 0;
    for (const auto& [seq, rec] : q.pending) {
      if (batch.empty()) first = seq;
      bytes += 512 + (rec.contains("data") ? rec["data"].dump().size() : 0);
      batch.push_back(rec);
      if (batch.size() >= kMaxBatchRecords || bytes >= kMaxBatchBytes) break;
    }
  }
  if (batch.empty()) return true;
  auto creds = session_.credentials(client);
  if (!creds) {
    log::warn("agent", "cannot upload records: " + creds.error().message);
    return false;
  }
  auto res = client.post("/v1/jobs/" + job + "/records", Json{{"records", batch}}, creds->token, std::chrono::seconds(30));
  if (!res) {
    log::warn("agent", "record upload for job " + job + " failed: " + res.error().message);
    return false;
  }
  std::int64_t acked = -1;
  bool refused = false;
  auto body = parse_json_strict(res->body);
  switch (res->status) {
    case 200:
      if (body && body->is_object() && (*body)["acked_seq"].is_number_integer()) acked = (*body)["acked_seq"].get<std::int64_t>();
      break;
    case 409:
      // The store already holds everything below expected_seq.
      if (body && body->is_object() && (*body)["expected_seq"].is_number_integer()) {
        acked = (*body)["expected_seq"].get<std::int64_t>() - 1;
        if (acked < static_cast<std::int64_t>(first) - 1) {
          log::error("agent", "control plane lost records of job " + job + " before seq " + std::to_string(first) +
                                  "; they can no longer be re-sent");
          refused = true;
        }
      }
      break;
    case 401:
      session_.invalidate(*creds);
      return false;
    case 404:
    case 422:
    case 400:
    case 413:
      log::error("agent", "control plane refused records of job " + job + " (HTTP " + std::to_string(res->status) +
                              "): " + res->body.substr(0, 200));
      refused = true;
      break;
    default:
      log::warn("agent", "record upload for job " + job + ": HTTP " + std::to_string(res->status));
      return false;
  }
  {
    std::lock_guard lock(mu_);
    auto& q = jobs_[job];
    if (refused) {
      q.refused = true;
    } else if (acked >= 0) {
      while (!q.pending.empty() && static_cast<std::int64_t>(q.pending.front().first) <= acked) q.pending.pop_front();
      q.acked = std::max(q.acked, acked);
    }
    if (refused) q.pending.clear();
  }
  cv_.notify_all();
  return true;
}

void Uploader::run(std::stop_token stop) {
  CpClient client(options_, &abort_);
  Backoff backoff(std::chrono::milliseconds(200), std::chrono::seconds(30), seed());
  // Taking the lock before notifying closes the window between the waiter's predicate
  // check and its wait; without it a stop could be missed and shutdown would hang.
  std::stop_callback on_stop(stop, [this] {
    { std::lock_guard lock(mu_); }
    cv_.notify_all();
  });
  for (;;) {
    std::vector<std::string> ready;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] {
        if (stop.stop_requested()) return true;
        for (const auto& [_, q] : jobs_) {
          if (!q.pending.empty()) return true;
        }
        return false;
      });
      for (const auto& [job, q] : jobs_) {
        if (!q.pending.empty()) ready.push_back(job);
      }
      if (stop.stop_requested() && (ready.empty() || std::chrono::steady_clock::now() >= drain_deadline_)) {
        if (!ready.empty()) {
          log::error("agent", "shutting down with unacknowledged audit records for " + std::to_string(ready.size()) + " job(s)");
        }
        return;
      }
    }
    bool all_ok = true;
    for (const auto& job : ready) all_ok = send_batch(client, job) && all_ok;
    if (all_ok) {
      backoff.reset();
      continue;
    }
    auto wait = backoff.next();
    std::unique_lock lock(mu_);
    auto until = std::min(std::chrono::steady_clock::now() + wait, drain_deadline_);
    cv_.wait_until(lock, until, [&] { return stop.stop_requested() && std::chrono::steady_clock::now() >= drain_deadline_; });
  }
}

}  // namespace delegate::agent
