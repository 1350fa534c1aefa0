#pragma once
// The agent's Prometheus metrics (delegate_agent_*, docs/operations.md). One process-wide
// set: events are counted where they happen (job runner, spool, uploader, control-plane
// client) with one atomic operation each; every label value comes from a closed set
// (job status, reason code, launch-failure cause), never from a job's input.
#include <array>
#include <atomic>
#include <chrono>
#include <memory>
#include <string_view>

#include <delegate/common/error.hpp>
#include <delegate/common/metrics.hpp>
#include <delegate/common/metrics_http.hpp>
#include <delegate/policies/reason.hpp>

namespace delegate::agent {

class Spool;
struct Config;

// Why a step did not start: its preparation (secrets, seccomp filter, egress proxy)
// failed, the sandbox could not be created, the child failed its setup, or the program
// is not there.
enum class LaunchFailure { prepare, launch, setup, not_found };

class AgentMetrics {
 public:
  AgentMetrics();
  [[nodiscard]] const metrics::Registry& registry() const { return registry_; }

  // A final job status (docs/authorization.md); an unknown text counts as "failed".
  void job_finished(std::string_view status);
  void denied(policies::Reason reason);
  void step_finished(std::chrono::nanoseconds duration);
  void dispatched(std::chrono::nanoseconds since_acquired);
  void launch_failed(LaunchFailure cause);
  void records_spooled(std::uint64_t n) { spooled_->inc(n); }
  void records_sent(std::uint64_t n) { sent_->inc(n); }
  void records_acked(std::uint64_t n) { acked_->inc(n); }
  // Any HTTP answer from the control plane shows it reachable; a transport failure
  // (refused, TLS, timeout) shows it unreachable. `success`: a 2xx answer.
  void control_plane_answered(bool success);
  void control_plane_unreachable();
  // The acquire loop holds credentials and polls (false when it has none, while it
  // backs off after a failed poll, and once it drains).
  void set_polling(bool polling) { polling_.store(polling, std::memory_order_relaxed); }
  // /readyz: polling, and the last request to the control plane got an HTTP answer (so
  // an agent whose control plane went away, or whose parked poll is stuck on a dead
  // connection, is not ready once any other request, e.g. a heartbeat, fails).
  [[nodiscard]] bool ready() const {
    return polling_.load(std::memory_order_relaxed) && reachable_flag_.load(std::memory_order_relaxed);
  }

 private:
  metrics::Registry registry_;
  std::array<metrics::Counter*, 6> jobs_{};
  std::array<metrics::Counter*, 20> denials_{};
  std::array<metrics::Counter*, 4> launch_{};
  metrics::Histogram* step_seconds_ = nullptr;
  metrics::Histogram* dispatch_seconds_ = nullptr;
  metrics::Counter* spooled_ = nullptr;
  metrics::Counter* sent_ = nullptr;
  metrics::Counter* acked_ = nullptr;
  metrics::Gauge* reachable_ = nullptr;
  metrics::Gauge* last_contact_ = nullptr;
  std::atomic<bool> polling_{false};
  std::atomic<bool> reachable_flag_{false};
  friend Result<std::unique_ptr<metrics::HttpListener>> start_metrics_listener(const Config&, const Spool&);
  metrics::Gauge* spool_bytes_ = nullptr;
  metrics::Gauge* ready_gauge_ = nullptr;
};

[[nodiscard]] AgentMetrics& agent_metrics();

// The listener of agent.yaml `metrics.listen`; null when it is not configured. The spool
// must outlive the listener (its size is read at each scrape).
[[nodiscard]] Result<std::unique_ptr<metrics::HttpListener>> start_metrics_listener(const Config& config,
                                                                                    const Spool& spool);

}  // namespace delegate::agent
