#pragma once
// Step outputs (docs/runbooks.md, "Step outputs"): the typed values a step declares in
// with.outputs, taken from what it printed on stdout after it exited 0. The step's
// stdout is untrusted text (it may echo a remote service): extraction is bounded, and a
// value that is missing, ambiguous, too long, not valid UTF-8 or not what the runbook
// declared fails the step rather than reaching a later one.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>
#include <delegate/policies/runbook.hpp>

namespace delegate::connectors {

// The JSON document of the json form (the last non-empty stdout line) is at most this
// long; a longer last line fails every json output of the step.
inline constexpr std::size_t kMaxOutputJsonLine = 64 * 1024;

// Fed the step's kept stdout chunk by chunk, as the sandbox delivers it; keeps only what
// the declared outputs can use (per line output: the value after its prefix, up to the
// value cap; the last non-empty line up to kMaxOutputJsonLine), so memory is bounded
// whatever the step prints.
class OutputCapture {
 public:
  explicit OutputCapture(const policies::Step& step);

  void feed(std::string_view stdout_chunk);

  // After the step exited 0: {NAME: value} for every declared output, each checked
  // against its declaration, or the first problem (one line, naming the output).
  // stdout_truncated: the sandbox dropped output, so "the last line" or "the one line"
  // may not be what the step printed: fail closed.
  [[nodiscard]] Result<Json> finish(bool stdout_truncated);

 private:
  struct LineSlot {
    std::string name;
    const policies::OutputSpec* spec;
    std::string value;
    std::size_t matches = 0;
    bool overlong = false;
  };
  void end_line();

  const policies::Step& step_;
  std::vector<LineSlot> lines_;
  bool wants_json_ = false;
  std::string cur_;  // the current line, up to kMaxOutputJsonLine (+1 to see that it is longer)
  bool cur_overlong_ = false;
  std::string last_;  // the last non-empty line so far
  bool last_overlong_ = false;
};

}  // namespace delegate::connectors
