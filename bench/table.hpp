#pragma once
// One table for every row delegate-bench prints: a figure, the reference it is compared
// with (measured in the same run, so that the ratio means something on a noisy machine),
// and the target the figure is held to. Each bench file adds its rows; main prints them.
#include <string>
#include <vector>

namespace delegate::bench {

enum class Better {
  lower,   // times, memory
  higher,  // throughputs
};

enum class TargetOn {
  none,   // reported only
  ratio,  // value / reference, e.g. "<= 0.5x bubblewrap"
  value,  // the figure itself, e.g. "<= 10 MiB"
};

struct Row {
  std::string what;
  double value = 0;
  std::string unit;          // "ms", "MiB", "jobs/s", "MB/s", "/s"
  std::string ref_name;      // empty: no reference
  double ref = 0;
  Better better = Better::lower;
  TargetOn target_on = TargetOn::none;
  double target = 0;
  std::string note;          // one short remark printed under the table ("n=200, medians")
};

class Table {
 public:
  void add(Row r) { rows_.push_back(std::move(r)); }
  // A row that could not be measured here (no bwrap, no root): printed as such, never
  // silently dropped.
  void skipped(std::string what, std::string why);
  // Markdown table; then one line per note. Returns the number of missed targets.
  int print() const;

 private:
  std::vector<Row> rows_;
  std::vector<std::pair<std::string, std::string>> skipped_;
};

// Median of samples (sorted copy).
double median(std::vector<double> v);
// p-th percentile (0..100), nearest rank.
double percentile(std::vector<double> v, double p);

}  // namespace delegate::bench
