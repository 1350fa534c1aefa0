#include "table.hpp"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace delegate::bench {

double median(std::vector<double> v) { return percentile(std::move(v), 50); }

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const auto rank = static_cast<std::size_t>(std::ceil(p / 100.0 * static_cast<double>(v.size())));
  return v[std::clamp<std::size_t>(rank, 1, v.size()) - 1];
}

void Table::skipped(std::string what, std::string why) { skipped_.emplace_back(std::move(what), std::move(why)); }

namespace {

std::string fmt(double v) {
  char buf[64];
  if (v >= 100) {
    std::snprintf(buf, sizeof buf, "%.0f", v);
  } else if (v >= 10) {
    std::snprintf(buf, sizeof buf, "%.1f", v);
  } else {
    std::snprintf(buf, sizeof buf, "%.3g", v);
  }
  return buf;
}

}  // namespace

int Table::print() const {
  int missed = 0;
  std::printf("| path | figure | reference (same run) | ratio | target | met |\n");
  std::printf("| --- | ---: | --- | ---: | --- | --- |\n");
  for (const auto& r : rows_) {
    const bool has_ref = !r.ref_name.empty() && r.ref > 0;
    const double ratio = has_ref ? r.value / r.ref : 0;
    const std::string cmp = r.better == Better::lower ? "≤ " : "≥ ";
    std::string target = "-", met = "-";
    auto judge = [&](double x) {
      const bool ok = r.better == Better::lower ? x <= r.target : x >= r.target;
      if (!ok) ++missed;
      return std::string(ok ? "yes" : "**no**");
    };
    switch (r.target_on) {
      case TargetOn::none:
        break;
      case TargetOn::ratio:
        target = cmp + fmt(r.target) + "×";
        met = has_ref ? judge(ratio) : "n/a";
        break;
      case TargetOn::value:
        target = cmp + fmt(r.target) + " " + r.unit;
        met = judge(r.value);
        break;
    }
    std::printf("| %s | %s %s | %s | %s | %s | %s |\n", r.what.c_str(), fmt(r.value).c_str(), r.unit.c_str(),
                has_ref ? (r.ref_name + " " + fmt(r.ref) + " " + r.unit).c_str() : "-",
                has_ref ? (fmt(ratio) + "×").c_str() : "-", target.c_str(), met.c_str());
  }
  for (const auto& [what, why] : skipped_) std::printf("| %s | not measured: %s | | | | |\n", what.c_str(), why.c_str());
  std::printf("\n");
  for (const auto& r : rows_) {
    if (!r.note.empty()) std::printf("- %s: %s\n", r.what.c_str(), r.note.c_str());
  }
  return missed;
}

}  // namespace delegate::bench
