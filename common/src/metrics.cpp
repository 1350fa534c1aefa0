#include <delegate/common/metrics.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <stdexcept>

namespace delegate::metrics {
namespace {

bool valid_name(std::string_view s, bool colon) {
  if (s.empty()) return false;
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || (colon && c == ':');
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

void check(const std::string& name, const Labels& labels) {
  if (!valid_name(name, true)) throw std::logic_error("invalid metric name " + name);
  for (const auto& [k, _] : labels) {
    if (!valid_name(k, false) || k.rfind("__", 0) == 0 || k == "le") throw std::logic_error("invalid label name " + k);
  }
}

void append_labels(std::string& out, const Labels& labels, std::string_view le = {}) {
  if (labels.empty() && le.empty()) return;
  out += '{';
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out += ',';
    first = false;
    out += k + "=\"" + escape_label_value(v) + '"';
  }
  if (!le.empty()) {
    if (!first) out += ',';
    out += "le=\"";
    out += le;
    out += '"';
  }
  out += '}';
}

}  // namespace

std::string escape_help(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

std::string escape_label_value(std::string_view s) {
  std::string out;
  for (char c : s) {
    if (c == '\\') out += "\\\\";
    else if (c == '\n') out += "\\n";
    else if (c == '"') out += "\\\"";
    else out += c;
  }
  return out;
}

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  // Whole numbers (counts, bytes, Unix timestamps) print exactly, not as 1.7e+09.
  if (std::trunc(v) == v && std::fabs(v) < 9007199254740992.0) return std::to_string(static_cast<std::int64_t>(v));
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc() ? std::string(buf, end) : "NaN";
}

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), buckets_(bounds_.size() + 1) {
  if (!std::is_sorted(bounds_.begin(), bounds_.end()) ||
      std::adjacent_find(bounds_.begin(), bounds_.end()) != bounds_.end()) {
    throw std::logic_error("histogram bounds must be strictly ascending");
  }
}

void Histogram::observe(double v) noexcept {
  const auto i = static_cast<std::size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin());
  buckets_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
  count_.fetch_add(1, std::memory_order_relaxed);
}

std::vector<std::uint64_t> Histogram::cumulative() const {
  std::vector<std::uint64_t> out;
  std::uint64_t acc = 0;
  for (const auto& b : buckets_) out.push_back(acc += b.load(std::memory_order_relaxed));
  return out;
}

Registry::Family& Registry::family(const std::string& name, const std::string& help, Type type, const Labels& labels) {
  check(name, labels);
  for (auto& f : families_) {
    if (f.name != name) continue;
    if (f.type != type) throw std::logic_error("metric " + name + " registered with another type");
    for (const auto& s : f.series) {
      if (s.labels == labels) throw std::logic_error("metric " + name + " registered twice with the same labels");
    }
    return f;
  }
  return families_.emplace_back(Family{name, help, type, {}});
}

Counter& Registry::counter(const std::string& name, const std::string& help, Labels labels) {
  std::lock_guard lock(mu_);
  auto& f = family(name, help, Type::counter, labels);
  auto& c = counters_.emplace_back();
  f.series.push_back(Series{std::move(labels), &c, nullptr, nullptr});
  return c;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, Labels labels) {
  std::lock_guard lock(mu_);
  auto& f = family(name, help, Type::gauge, labels);
  auto& g = gauges_.emplace_back();
  f.series.push_back(Series{std::move(labels), nullptr, &g, nullptr});
  return g;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help, std::vector<double> bounds,
                               Labels labels) {
  std::lock_guard lock(mu_);
  auto& f = family(name, help, Type::histogram, labels);
  auto& h = histograms_.emplace_back(std::move(bounds));
  f.series.push_back(Series{std::move(labels), nullptr, nullptr, &h});
  return h;
}

void Registry::on_collect(std::function<void()> fn) {
  std::lock_guard lock(mu_);
  collectors_.push_back(std::move(fn));
}

std::string Registry::render() const {
  std::lock_guard lock(mu_);
  for (const auto& fn : collectors_) fn();
  std::string out;
  for (const auto& f : families_) {
    out += "# HELP " + f.name + ' ' + escape_help(f.help) + '\n';
    switch (f.type) {
      case Type::counter: out += "# TYPE " + f.name + " counter\n"; break;
      case Type::gauge: out += "# TYPE " + f.name + " gauge\n"; break;
      case Type::histogram: out += "# TYPE " + f.name + " histogram\n"; break;
    }
    for (const auto& s : f.series) {
      if (s.counter != nullptr) {
        out += f.name;
        append_labels(out, s.labels);
        out += ' ' + std::to_string(s.counter->value()) + '\n';
      } else if (s.gauge != nullptr) {
        out += f.name;
        append_labels(out, s.labels);
        out += ' ' + format_value(s.gauge->value()) + '\n';
      } else if (s.histogram != nullptr) {
        const auto& h = *s.histogram;
        // Read the buckets first: count then never trails the +Inf bucket by much, and
        // both are from the same walk.
        const auto cum = h.cumulative();
        for (std::size_t i = 0; i < cum.size(); ++i) {
          out += f.name + "_bucket";
          append_labels(out, s.labels, i < h.bounds().size() ? format_value(h.bounds()[i]) : "+Inf");
          out += ' ' + std::to_string(cum[i]) + '\n';
        }
        out += f.name + "_sum";
        append_labels(out, s.labels);
        out += ' ' + format_value(h.sum()) + '\n';
        out += f.name + "_count";
        append_labels(out, s.labels);
        out += ' ' + std::to_string(cum.back()) + '\n';
      }
    }
  }
  return out;
}

}  // namespace delegate::metrics
