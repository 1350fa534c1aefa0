#pragma once
// Timing helpers shared by the bench files.
#include <chrono>
#include <thread>
#include <vector>

#include "table.hpp"

namespace delegate::bench {

// Median microseconds of n calls. `pause` between (untimed) iterations: launches are
// measured as a job sees them on an agent that is not saturated, after the previous
// step's teardown finished in the background; every launcher in a comparison gets the
// same pause.
template <class F>
double time_us(F&& f, int n, std::chrono::milliseconds pause = std::chrono::milliseconds(0)) {
  std::vector<double> samples;
  for (int i = 0; i < n; ++i) {
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
    const auto t0 = std::chrono::steady_clock::now();
    f();
    samples.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count());
  }
  return median(samples);
}

}  // namespace delegate::bench
