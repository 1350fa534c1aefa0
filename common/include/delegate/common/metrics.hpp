#pragma once
// A small Prometheus registry (text exposition format 0.0.4, docs/operations.md).
// Series are created up front with label values from closed sets, so the hot path is
// one relaxed atomic operation and cardinality is fixed; rendering walks them under a
// mutex that only registration and scrapes take.
#include <atomic>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace delegate::metrics {

using Labels = std::vector<std::pair<std::string, std::string>>;

class Counter {
 public:
  void inc(std::uint64_t n = 1) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

class Gauge {
 public:
  void set(double v) noexcept { v_.store(v, std::memory_order_relaxed); }
  void add(double d) noexcept { v_.fetch_add(d, std::memory_order_relaxed); }
  [[nodiscard]] double value() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> v_{0};
};

// Fixed upper bounds (ascending, +Inf implied). Buckets are counted individually and
// made cumulative when rendered.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double v) noexcept;
  [[nodiscard]] const std::vector<double>& bounds() const noexcept { return bounds_; }
  // Cumulative counts, one per bound plus +Inf (the last equals count()).
  [[nodiscard]] std::vector<std::uint64_t> cumulative() const;
  [[nodiscard]] double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }
  [[nodiscard]] std::uint64_t count() const noexcept { return count_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::deque<std::atomic<std::uint64_t>> buckets_;  // bounds_.size() + 1
  std::atomic<double> sum_{0};
  std::atomic<std::uint64_t> count_{0};
};

class Registry {
 public:
  // The same name with other labels adds a series to that family; names and label names
  // must be valid Prometheus identifiers and the type must match (else std::logic_error:
  // a programming error, found by the unit tests).
  Counter& counter(const std::string& name, const std::string& help, Labels labels = {});
  Gauge& gauge(const std::string& name, const std::string& help, Labels labels = {});
  Histogram& histogram(const std::string& name, const std::string& help, std::vector<double> bounds, Labels labels = {});
  // Runs before each render (values read at scrape time, e.g. a spool's size).
  void on_collect(std::function<void()> fn);
  [[nodiscard]] std::string render() const;

 private:
  enum class Type { counter, gauge, histogram };
  struct Series {
    Labels labels;
    Counter* counter = nullptr;
    Gauge* gauge = nullptr;
    Histogram* histogram = nullptr;
  };
  struct Family {
    std::string name, help;
    Type type;
    std::vector<Series> series;
  };
  Family& family(const std::string& name, const std::string& help, Type type, const Labels& labels);

  mutable std::mutex mu_;
  std::deque<Family> families_;
  std::deque<Counter> counters_;
  std::deque<Gauge> gauges_;
  std::deque<Histogram> histograms_;
  std::vector<std::function<void()>> collectors_;
};

// Text-format escaping: HELP escapes \ and newline; label values also escape ".
[[nodiscard]] std::string escape_help(std::string_view s);
[[nodiscard]] std::string escape_label_value(std::string_view s);
// A sample value: integers exactly, +Inf, -Inf, NaN, otherwise shortest round-trip.
[[nodiscard]] std::string format_value(double v);

}  // namespace delegate::metrics
