#include <delegate/agent/uploader.hpp>

#include <functional>
#include <limits>
#include <thread>
#include <vector>

#include <delegate/agent/backoff.hpp>
#include <delegate/agent/metrics.hpp>
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

std::int64_t to_ns(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
}
}  // namespace

Uploader::Uploader(Session& session, ClientOptions options, Spool& spool)
    : session_(session), options_(std::move(options)), spool_(spool) {}

Result<void> Uploader::append(const audit::Record& record) { return spool_.append(record); }

Result<RecordSink::Durable> Uploader::append_queued(const audit::Record& record) {
  auto q = spool_.enqueue(record);
  if (!q) return std::unexpected(q.error());
  return Durable([q = std::move(*q)]() mutable { return q.wait(); });
}

bool Uploader::wait_acked(const StreamKey& stream, std::uint64_t last_seq, std::chrono::steady_clock::time_point deadline) {
  return spool_.wait_acked(stream, last_seq, deadline);
}

std::size_t Uploader::pending() const {
  std::size_t n = 0;
  for (const auto& s : spool_.pending()) n += s.next_seq - static_cast<std::uint64_t>(s.acked + 1);
  return n;
}

void Uploader::set_drain_deadline(std::chrono::steady_clock::time_point deadline) {
  drain_deadline_ns_ = to_ns(deadline);
  spool_.wake();
}

Uploader::Outcome Uploader::send_batch(CpClient& client, const StreamInfo& stream) {
  const std::string& job = stream.key.job;
  if (stream.dead) {
    // A refused stream that kept growing (its job was still running): set the new
    // records aside too.
    if (auto r = spool_.dead_letter(stream.key); !r) log::error("agent", "spool: " + r.error().message);
    return Outcome::refused;
  }
  const std::uint64_t first = static_cast<std::uint64_t>(stream.acked + 1);
  auto texts = spool_.read(stream.key, first, kMaxBatchRecords, kMaxBatchBytes);
  if (!texts) {
    log::error("agent", "cannot read spooled records of job " + job + ": " + texts.error().message);
    return Outcome::transient;
  }
  if (texts->empty()) return Outcome::progress;
  // The control plane can only hold what it was sent: an acknowledgement past this
  // batch is a lie (or a bug) and must not make the agent drop records it never sent.
  const auto last_sent = static_cast<std::int64_t>(first + texts->size()) - 1;
  auto acknowledge = [&](std::int64_t acked) {
    if (acked > last_sent) {
      log::error("agent", "control plane acknowledged records of job " + job + " up to seq " + std::to_string(acked) +
                              " but was sent only up to seq " + std::to_string(last_sent) +
                              "; ignoring the acknowledgement");
      return Outcome::transient;
    }
    if (acked > stream.acked) agent_metrics().records_acked(static_cast<std::uint64_t>(acked - stream.acked));
    spool_.ack(stream.key, acked);
    return Outcome::progress;
  };
  Json batch = Json::array();
  for (const auto& t : *texts) {
    auto j = Json::parse(t, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) {
      log::error("agent", "spooled record of job " + job + " is not JSON");
      return Outcome::transient;
    }
    batch.push_back(std::move(j));
  }
  auto creds = session_.credentials(client);
  if (!creds) {
    log::warn("agent", "cannot upload records: " + creds.error().message);
    return Outcome::transient;
  }
  // The agent stream is keyed by agent at the control plane: "_agent" is not unique.
  const std::string path = job == audit::kAgentStreamJob ? "/v1/agents/" + stream.key.agent + "/records"
                                                         : "/v1/jobs/" + job + "/records";
  auto res = client.post(path, Json{{"records", batch}}, creds->token, std::chrono::seconds(30));
  if (!res) {
    log::warn("agent", "record upload for job " + job + " failed: " + res.error().message);
    return Outcome::transient;
  }
  agent_metrics().records_sent(batch.size());
  auto body = parse_json_strict(res->body);
  switch (res->status) {
    case 200:
      if (body && body->is_object() && (*body)["acked_seq"].is_number_integer()) {
        const Json& a = (*body)["acked_seq"];
        // Past int64 is past anything sent; below -1 is meaningless.
        if (a.is_number_unsigned() && a.get<std::uint64_t>() > static_cast<std::uint64_t>(last_sent)) {
          return acknowledge(last_sent + 1);
        }
        if (a.get<std::int64_t>() >= -1) return acknowledge(a.get<std::int64_t>());
      }
      log::warn("agent", "record upload for job " + job + ": malformed answer");
      return Outcome::transient;
    case 409:
      // The store already holds everything below expected_seq.
      if (body && body->is_object() && (*body)["expected_seq"].is_number_unsigned()) {
        const auto expected = (*body)["expected_seq"].get<std::uint64_t>();
        if (expected > static_cast<std::uint64_t>(last_sent) + 1) return acknowledge(last_sent + 1);
        const auto acked = static_cast<std::int64_t>(expected) - 1;
        if (acked < static_cast<std::int64_t>(first) - 1) {
          log::error("agent", "control plane lost records of job " + job + " before seq " + std::to_string(first) +
                                  "; they were acknowledged and can no longer be re-sent");
          break;
        }
        return acknowledge(acked);
      }
      log::warn("agent", "record upload for job " + job + ": 409 without expected_seq");
      return Outcome::transient;
    case 401:
      session_.invalidate(*creds);
      return Outcome::transient;
    case 400:
    case 403:
    case 404:
    case 413:
    case 422:
      log::error("agent", "control plane refused records of job " + job + " (HTTP " + std::to_string(res->status) +
                              "): " + res->body.substr(0, 200));
      break;
    default:
      log::warn("agent", "record upload for job " + job + ": HTTP " + std::to_string(res->status));
      return Outcome::transient;
  }
  // Permanent refusal: keep the records (encrypted, outside the quota) and move on.
  if (auto r = spool_.dead_letter(stream.key); !r) {
    log::error("agent", "spool: " + r.error().message);
    return Outcome::transient;
  }
  return Outcome::refused;
}

void Uploader::run(std::stop_token stop) {
  // Streams are spread over a few lanes, each with its own connection: the control plane
  // commits the batches that arrive together in one transaction (one fsync), so uploads
  // of different jobs in flight at once share it instead of queueing one behind the
  // other. A stream always belongs to the same lane, so its records still go in order.
  std::vector<std::jthread> lanes;
  for (std::size_t i = 1; i < kLanes; ++i) lanes.emplace_back([this, stop, i] { lane(stop, i); });
  lane(stop, 0);
}

std::size_t Uploader::lane_of(const StreamKey& key) { return std::hash<std::string>{}(key.job) % kLanes; }

void Uploader::lane(std::stop_token stop, std::size_t index) {
  CpClient client(options_, &abort_);
  Backoff backoff(std::chrono::milliseconds(200), std::chrono::seconds(30), seed());
  std::stop_callback on_stop(stop, [this] { spool_.wake(); });
  std::uint64_t seen = 0;
  auto drain_over = [&] {
    return std::chrono::steady_clock::now().time_since_epoch() >= std::chrono::nanoseconds(drain_deadline_ns_.load());
  };
  for (;;) {
    auto ready = spool_.pending();
    std::erase_if(ready, [&](const StreamInfo& s) { return lane_of(s.key) != index; });
    if (ready.empty()) {
      if (auto r = spool_.flush_meta(); !r) log::warn("agent", "spool metadata: " + r.error().message);
      if (stop.stop_requested()) return;
      seen = spool_.wait_change(seen, std::chrono::milliseconds(500));
      continue;
    }
    if (stop.stop_requested() && drain_over()) {
      log::warn("agent", "stopping with unacknowledged audit records of " + std::to_string(ready.size()) +
                             " stream(s); they stay in the spool and are sent at the next start");
      return;
    }
    bool all_ok = true;
    for (const auto& s : ready) all_ok = send_batch(client, s) != Outcome::transient && all_ok;
    if (auto r = spool_.flush_meta(); !r) log::warn("agent", "spool metadata: " + r.error().message);
    if (all_ok) {
      backoff.reset();
      continue;
    }
    // Jittered backoff; a stop with a passed drain deadline ends the wait early.
    const auto until = std::chrono::steady_clock::now() + backoff.next();
    while (std::chrono::steady_clock::now() < until && !(stop.stop_requested() && drain_over())) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(until - std::chrono::steady_clock::now());
      seen = spool_.wait_change(seen, std::min(left, std::chrono::milliseconds(200)));
    }
  }
}

}  // namespace delegate::agent
