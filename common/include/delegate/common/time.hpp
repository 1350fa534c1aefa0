#pragma once
// Time is passed in, never read ad hoc, so expiry and ordering are testable.
#include <chrono>
#include <string>
#include <string_view>

#include <delegate/common/error.hpp>

namespace delegate {

using TimePoint = std::chrono::system_clock::time_point;

class Clock {
 public:
  virtual ~Clock() = default;
  [[nodiscard]] virtual TimePoint now() const = 0;
};

class SystemClock final : public Clock {
 public:
  [[nodiscard]] TimePoint now() const override { return std::chrono::system_clock::now(); }
};

// A clock frozen at a given instant (check-job --now, tests).
class FixedClock final : public Clock {
 public:
  explicit FixedClock(TimePoint t) : t_(t) {}
  [[nodiscard]] TimePoint now() const override { return t_; }
  void set(TimePoint t) { t_ = t; }

 private:
  TimePoint t_;
};

// "2026-11-28T20:00:00.123Z": UTC, millisecond precision, always the same length,
// so lexical order equals time order.
[[nodiscard]] std::string format_rfc3339_ms(TimePoint t);

// Accepts RFC 3339 date-times with 'Z' or a numeric offset and up to 9 fraction digits.
[[nodiscard]] Result<TimePoint> parse_rfc3339(std::string_view text);

}  // namespace delegate
