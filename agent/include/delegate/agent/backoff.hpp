#pragma once
// Exponential backoff with full jitter (each wait uniform in [0, min(max, base*2^n)]),
// so that a fleet of agents does not reconnect in lockstep after an outage.
#include <chrono>
#include <cstdint>
#include <random>

namespace delegate::agent {

class Backoff {
 public:
  Backoff(std::chrono::milliseconds base, std::chrono::milliseconds max, std::uint64_t seed);
  [[nodiscard]] std::chrono::milliseconds next();
  void reset() { attempt_ = 0; }
  [[nodiscard]] unsigned attempt() const { return attempt_; }

 private:
  std::chrono::milliseconds base_, max_;
  unsigned attempt_ = 0;
  std::mt19937_64 rng_;
};

}  // namespace delegate::agent
