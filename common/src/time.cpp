#include <delegate/common/time.hpp>

#include <cstdio>
#include <ctime>

namespace delegate {

std::string format_rfc3339_ms(TimePoint t) {
  using namespace std::chrono;
  auto ms = duration_cast<milliseconds>(t.time_since_epoch()).count();
  std::time_t secs = static_cast<std::time_t>(ms / 1000);
  int frac = static_cast<int>(ms % 1000);
  if (frac < 0) {
    frac += 1000;
    --secs;
  }
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, frac);
  return buf;
}

Result<TimePoint> parse_rfc3339(std::string_view s) {
  auto bad = [&] { return fail(Errc::parse, "not an RFC 3339 date-time: \"" + std::string(s.substr(0, 40)) + "\""); };
  auto digits = [&](std::size_t pos, std::size_t n, int& out) {
    if (pos + n > s.size()) return false;
    out = 0;
    for (std::size_t i = pos; i < pos + n; ++i) {
      if (s[i] < '0' || s[i] > '9') return false;
      out = out * 10 + (s[i] - '0');
    }
    return true;
  };
  int Y, M, D, h, m, sec;
  if (!digits(0, 4, Y) || s.size() < 20 || s[4] != '-' || !digits(5, 2, M) || s[7] != '-' ||
      !digits(8, 2, D) || (s[10] != 'T' && s[10] != 't') || !digits(11, 2, h) || s[13] != ':' ||
      !digits(14, 2, m) || s[16] != ':' || !digits(17, 2, sec)) {
    return bad();
  }
  if (M < 1 || M > 12 || D < 1 || D > 31 || h > 23 || m > 59 || sec > 60) return bad();
  // system_clock counts nanoseconds in 64 bits: only 1678..2261 is representable.
  if (Y < 1678 || Y > 2261) return fail(Errc::parse, "date-time out of the supported range (years 1678-2261)");
  std::size_t pos = 19;
  long long nanos = 0;
  if (pos < s.size() && s[pos] == '.') {
    ++pos;
    std::size_t start = pos;
    while (pos < s.size() && s[pos] >= '0' && s[pos] <= '9') {
      if (pos - start < 9) nanos = nanos * 10 + (s[pos] - '0');
      ++pos;
    }
    std::size_t n = pos - start;
    if (n == 0 || n > 9) return bad();
    for (std::size_t i = n; i < 9; ++i) nanos *= 10;
  }
  long offset = 0;
  if (pos < s.size() && (s[pos] == 'Z' || s[pos] == 'z')) {
    ++pos;
  } else if (pos < s.size() && (s[pos] == '+' || s[pos] == '-')) {
    int oh, om;
    if (!digits(pos + 1, 2, oh) || pos + 3 >= s.size() || s[pos + 3] != ':' || !digits(pos + 4, 2, om) || oh > 23 || om > 59) return bad();
    offset = (oh * 3600L + om * 60L) * (s[pos] == '+' ? 1 : -1);
    pos += 6;
  } else {
    return bad();
  }
  if (pos != s.size()) return bad();
  using namespace std::chrono;
  auto ymd = year{Y} / month{static_cast<unsigned>(M)} / day{static_cast<unsigned>(D)};
  if (!ymd.ok()) return bad();
  auto tp = sys_days{ymd} + hours{h} + minutes{m} + seconds{sec > 59 ? 59 : sec} - seconds{offset};
  return time_point_cast<system_clock::duration>(tp + nanoseconds{nanos});
}

}  // namespace delegate
