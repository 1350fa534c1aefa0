#pragma once
// Replaces every secret value a job touches by "***" in what the job records: step
// output (streamed, across chunk boundaries) and error details. Each secret is matched
// in the forms a program commonly prints it in: raw, base64 and base64url at each of
// the three byte alignments, hex (lower and upper case), percent-encoding and JSON
// string escaping. Secrets shorter than kMinSecretLength are refused rather than masked:
// masking a short value would blank unrelated output and still leak it by elimination.
#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>

namespace delegate::connectors {

inline constexpr std::size_t kMinSecretLength = 8;
inline constexpr std::size_t kMaxSecretLength = 64 * 1024;
inline constexpr std::string_view kMask = "***";

// The set of byte patterns to mask, derived from the secret values added so far.
class Masker {
 public:
  // Fails (and adds nothing) for a value shorter than kMinSecretLength or longer than
  // kMaxSecretLength. The error never contains the value.
  [[nodiscard]] Result<void> add(std::string_view secret);
  [[nodiscard]] bool empty() const { return patterns_.empty(); }
  [[nodiscard]] const std::vector<std::string>& patterns() const { return patterns_; }
  [[nodiscard]] std::size_t longest() const { return longest_; }
  // Masks a complete text (an error message, a record field).
  [[nodiscard]] std::string mask(std::string_view text) const;
  // Calls found(begin, end) for every occurrence of every pattern in text, overlapping
  // ones included, in one pass over the text (in no particular order).
  template <class Found>
  void find_all(std::string_view text, Found&& found) const;
  // True if `tail` (not empty) is a proper prefix of some pattern: more output may
  // complete it.
  [[nodiscard]] bool could_continue(std::string_view tail) const;

 private:
  // One pass over the text for all patterns: a bit per possible first two bytes says
  // whether any pattern starts with them, and only there are the candidates (patterns
  // sorted by those two bytes) compared. Every pattern is at least 2 bytes long.
  std::vector<std::string> patterns_;
  std::size_t longest_ = 0;
  std::array<std::uint64_t, 1024> first_pairs_{};
  std::array<std::uint64_t, 4> first_bytes_{};
  std::vector<std::pair<std::uint16_t, std::uint32_t>> by_pair_;  // (first two bytes, pattern index), sorted
};

template <class Found>
void Masker::find_all(std::string_view text, Found&& found) const {
  const auto* b = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t n = text.size();
  for (std::size_t at = 0; at + 1 < n; ++at) {
    const auto pair = static_cast<std::uint16_t>((b[at] << 8) | b[at + 1]);
    if ((first_pairs_[pair >> 6] >> (pair & 63) & 1) == 0) continue;
    auto it = std::lower_bound(by_pair_.begin(), by_pair_.end(), std::pair<std::uint16_t, std::uint32_t>{pair, 0});
    for (; it != by_pair_.end() && it->first == pair; ++it) {
      const std::string& p = patterns_[it->second];
      if (p.size() <= n - at && text.compare(at, p.size(), p) == 0) found(at, at + p.size());
    }
  }
}

// Masks one output stream written in arbitrary chunks. It holds back the longest tail
// that could still become a secret when the next chunk arrives, and emits it (masked)
// at finish(). The Masker must outlive the stream and not change while it is in use.
class MaskingStream {
 public:
  explicit MaskingStream(const Masker& masker) : masker_(masker) {}
  // Returns the bytes that are now safe to record (possibly empty).
  [[nodiscard]] std::string write(std::string_view chunk);
  // Returns everything still held back, masked. The stream can be reused afterwards.
  [[nodiscard]] std::string finish();

 private:
  std::string process(bool final);
  const Masker& masker_;
  std::string held_;
  std::size_t carry_ = 0;      // bytes at the start of held_ that belong to a secret already masked
  bool ended_masked_ = false;  // the last emitted bytes were a mask
};

}  // namespace delegate::connectors
