#include <delegate/agent/backoff.hpp>

#include <algorithm>

namespace delegate::agent {

Backoff::Backoff(std::chrono::milliseconds base, std::chrono::milliseconds max, std::uint64_t seed)
    : base_(base), max_(max), rng_(seed) {}

std::chrono::milliseconds Backoff::next() {
  const unsigned shift = std::min(attempt_, 20u);
  ++attempt_;
  const auto cap = std::min<std::int64_t>(max_.count(), base_.count() << shift);
  std::uniform_int_distribution<std::int64_t> dist(0, std::max<std::int64_t>(cap, 1));
  return std::chrono::milliseconds(dist(rng_));
}

}  // namespace delegate::agent
