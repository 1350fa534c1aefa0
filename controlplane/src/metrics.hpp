#pragma once
// The control plane's Prometheus metrics (delegate_cp_*, docs/operations.md). Internal.
// Label values come from closed sets: job statuses, agent states, route names of the
// API (never a raw path, which carries job and agent ids) and status classes.
#include <array>
#include <string_view>

#include <delegate/common/metrics.hpp>

namespace delegate::controlplane {

class Store;

class CpMetrics {
 public:
  CpMetrics();
  [[nodiscard]] metrics::Registry& registry() { return registry_; }

  // A finished request: its route (from the target and method) and status code.
  void request(std::string_view target, int status);
  void parked(int delta) { parked_->add(delta); }
  void ingested(std::uint64_t records) { ingested_->inc(records); }
  // Jobs by status and agents by state from the store; on the I/O thread (the store is
  // not shared with the listener's thread). `online_ms`: seen within this long.
  void refresh(Store& store, std::int64_t now_ms, std::int64_t online_ms);

 private:
  metrics::Registry registry_;
  std::array<metrics::Gauge*, 8> jobs_{};
  std::array<metrics::Gauge*, 3> agents_{};
  std::array<std::array<metrics::Counter*, 5>, 10> requests_{};
  metrics::Gauge* parked_ = nullptr;
  metrics::Counter* ingested_ = nullptr;
};

[[nodiscard]] CpMetrics& cp_metrics();

// The route name of a request target (exposed for tests): one of a fixed set.
[[nodiscard]] std::string_view route_of(std::string_view target);

}  // namespace delegate::controlplane
