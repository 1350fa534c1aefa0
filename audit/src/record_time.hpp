#pragma once
// Record timestamps, parsed for ordering checks. Internal to the audit library.
#include <optional>
#include <string_view>

#include <delegate/common/time.hpp>

namespace delegate::audit::detail {

// parse_rfc3339 converts to system_clock's nanosecond ticks, which overflow outside
// roughly 1677..2262; a hostile record must not reach that arithmetic. Audit records
// cannot legitimately predate 1970 or lie two centuries ahead.
[[nodiscard]] inline std::optional<TimePoint> parse_record_ts(std::string_view ts) {
  if (ts.size() < 4) return std::nullopt;
  int year = 0;
  for (char c : ts.substr(0, 4)) {
    if (c < '0' || c > '9') return std::nullopt;
    year = year * 10 + (c - '0');
  }
  if (year < 1970 || year > 2200) return std::nullopt;
  auto t = parse_rfc3339(ts);
  if (!t) return std::nullopt;
  return *t;
}

}  // namespace delegate::audit::detail
