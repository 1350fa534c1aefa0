#include <delegate/connectors/masker.hpp>

#include <algorithm>
#include <cctype>
#include <utility>

#include <delegate/common/encoding.hpp>

namespace delegate::connectors {
namespace {

constexpr char kHexUpper[] = "0123456789ABCDEF";
constexpr char kHexLower[] = "0123456789abcdef";

// The base64 characters that depend only on the secret's bytes when it starts `align`
// bytes into the encoded data: the characters straddling the data before or after it
// differ with that data, so they are left out (at most 4 bits of the secret each side).
std::string base64_core(std::string_view s, std::size_t align, bool url) {
  std::string data(align, '\0');
  data.append(s);
  auto enc = url ? base64url_encode(as_bytes(data)) : base64_encode(as_bytes(data));
  while (!enc.empty() && enc.back() == '=') enc.pop_back();
  const std::size_t first = (8 * align + 5) / 6;
  const std::size_t last = (8 * (align + s.size())) / 6;  // exclusive
  return last > first && last <= enc.size() ? enc.substr(first, last - first) : std::string();
}

std::string hex(std::string_view s, const char* digits) {
  std::string out;
  out.reserve(s.size() * 2);
  for (unsigned char c : s) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

bool unreserved(unsigned char c) { return std::isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~'; }

std::string percent(std::string_view s, const char* digits, bool plus_for_space) {
  std::string out;
  for (unsigned char c : s) {
    if (unreserved(c)) {
      out += static_cast<char>(c);
    } else if (c == ' ' && plus_for_space) {
      out += '+';
    } else {
      out += '%';
      out += digits[c >> 4];
      out += digits[c & 15];
    }
  }
  return out;
}

void u_escape(std::string& out, unsigned v) {
  out += "\\u";
  for (int shift = 12; shift >= 0; shift -= 4) out += kHexLower[(v >> shift) & 15];
}

// Decodes one UTF-8 sequence at s[i]; returns the code point and advances i, or
// returns -1 for invalid UTF-8 (then only the byte-wise escapings apply).
long next_code_point(std::string_view s, std::size_t& i) {
  const auto c = static_cast<unsigned char>(s[i]);
  const int n = c < 0x80 ? 0 : (c >> 5) == 6 ? 1 : (c >> 4) == 14 ? 2 : (c >> 3) == 30 ? 3 : -1;
  if (n < 0) return -1;
  long cp = n == 0 ? c : n == 1 ? (c & 0x1f) : n == 2 ? (c & 0x0f) : (c & 0x07);
  for (int k = 1; k <= n; ++k) {
    if (i + k >= s.size()) return -1;
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc >> 6) != 2) return -1;
    cp = (cp << 6) | (cc & 0x3f);
  }
  i += static_cast<std::size_t>(n) + 1;
  return cp;
}

// JSON string escaping as serialisers print it: short escapes for the usual
// characters, \u00XX for other control characters; optionally "\/" for '/' and
// \uXXXX for every non-ASCII character (Python's ensure_ascii).
std::string json_escape(std::string_view s, bool escape_slash, bool ascii_only) {
  std::string out;
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (ascii_only && c >= 0x80) {
      long cp = next_code_point(s, i);
      if (cp < 0) return {};
      if (cp >= 0x10000) {
        cp -= 0x10000;
        u_escape(out, 0xd800 + static_cast<unsigned>(cp >> 10));
        u_escape(out, 0xdc00 + static_cast<unsigned>(cp & 0x3ff));
      } else {
        u_escape(out, static_cast<unsigned>(cp));
      }
      continue;
    }
    switch (c) {
      case '"': out += "\\\""; break;
      case '\\': out += "\\\\"; break;
      case '\n': out += "\\n"; break;
      case '\r': out += "\\r"; break;
      case '\t': out += "\\t"; break;
      case '\b': out += "\\b"; break;
      case '\f': out += "\\f"; break;
      case '/':
        out += escape_slash ? "\\/" : "/";
        break;
      default:
        if (c < 0x20) u_escape(out, c);
        else out += static_cast<char>(c);
    }
    ++i;
  }
  return out;
}

struct Span {
  std::size_t begin, end;
};

}  // namespace

Result<void> Masker::add(std::string_view secret) {
  if (secret.size() < kMinSecretLength) {
    return fail(Errc::invalid_argument, "is shorter than " + std::to_string(kMinSecretLength) +
                                            " bytes (too short to mask without hiding unrelated output)");
  }
  if (secret.size() > kMaxSecretLength) return fail(Errc::too_large, "is longer than 64 KiB");
  std::vector<std::string> forms{std::string(secret),   hex(secret, kHexLower),
                                 hex(secret, kHexUpper), percent(secret, kHexUpper, false),
                                 percent(secret, kHexLower, false), percent(secret, kHexUpper, true),
                                 json_escape(secret, false, false), json_escape(secret, true, false),
                                 json_escape(secret, false, true), json_escape(secret, true, true)};
  for (std::size_t align = 0; align < 3; ++align) {
    forms.push_back(base64_core(secret, align, false));
    forms.push_back(base64_core(secret, align, true));
  }
  for (auto& f : forms) {
    if (f.empty() || std::find(patterns_.begin(), patterns_.end(), f) != patterns_.end()) continue;
    // Cannot happen (every form of an 8-byte secret is longer), but find_all relies on it.
    if (f.size() < 2) return fail(Errc::internal, "yields a form shorter than 2 bytes");
  }
  for (auto& f : forms) {
    if (f.empty() || std::find(patterns_.begin(), patterns_.end(), f) != patterns_.end()) continue;
    longest_ = std::max(longest_, f.size());
    const auto pair = static_cast<std::uint16_t>((static_cast<unsigned char>(f[0]) << 8) | static_cast<unsigned char>(f[1]));
    first_pairs_[pair >> 6] |= std::uint64_t{1} << (pair & 63);
    first_bytes_[pair >> 14] |= std::uint64_t{1} << ((pair >> 8) & 63);
    by_pair_.emplace_back(pair, static_cast<std::uint32_t>(patterns_.size()));
    patterns_.push_back(std::move(f));
  }
  std::sort(by_pair_.begin(), by_pair_.end());
  return ok();
}

bool Masker::could_continue(std::string_view tail) const {
  const auto b0 = static_cast<unsigned char>(tail[0]);
  const bool starts = (first_bytes_[b0 >> 6] >> (b0 & 63) & 1) != 0;
  // Every pattern is at least 2 bytes long: one that starts with this byte is longer.
  if (!starts || tail.size() == 1) return starts;
  const auto pair = static_cast<std::uint16_t>((b0 << 8) | static_cast<unsigned char>(tail[1]));
  auto it = std::lower_bound(by_pair_.begin(), by_pair_.end(), std::pair<std::uint16_t, std::uint32_t>{pair, 0});
  for (; it != by_pair_.end() && it->first == pair; ++it) {
    const std::string& p = patterns_[it->second];
    if (p.size() > tail.size() && std::string_view(p).starts_with(tail)) return true;
  }
  return false;
}

std::string Masker::mask(std::string_view text) const {
  MaskingStream s(*this);
  std::string out = s.write(text);
  out += s.finish();
  return out;
}

std::string MaskingStream::write(std::string_view chunk) {
  held_.append(chunk);
  return process(false);
}

std::string MaskingStream::finish() {
  std::string out = process(true);
  held_.clear();
  carry_ = 0;
  ended_masked_ = false;
  return out;
}

std::string MaskingStream::process(bool final) {
  const std::string& buf = held_;
  const std::size_t size = buf.size();
  const auto& patterns = masker_.patterns();
  if (patterns.empty()) {
    std::string out = std::move(held_);
    held_.clear();
    return out;
  }
  // Every occurrence of every form (overlaps included), plus the tail of a secret whose
  // start was already masked in the previous write.
  std::vector<Span> spans;
  if (carry_ > 0) spans.push_back({0, carry_});
  masker_.find_all(buf, [&](std::size_t begin, std::size_t end) { spans.push_back({begin, end}); });
  std::sort(spans.begin(), spans.end(), [](const Span& a, const Span& b) { return a.begin < b.begin; });
  std::vector<Span> merged;
  for (const auto& s : spans) {
    if (!merged.empty() && s.begin <= merged.back().end) {
      merged.back().end = std::max(merged.back().end, s.end);
    } else {
      merged.push_back(s);
    }
  }
  // Hold back the longest tail that is a proper prefix of some form: the next write
  // may complete it. Every occurrence starting before that point lies wholly in buf.
  std::size_t hold = size;
  if (!final) {
    const std::size_t longest = masker_.longest();
    for (std::size_t i = size > longest - 1 ? size - (longest - 1) : 0; i < size; ++i) {
      if (masker_.could_continue(std::string_view(buf.data() + i, size - i))) {
        hold = i;
        break;
      }
    }
  }
  std::string out;
  std::size_t pos = 0;
  // What is held back of a secret already masked stays masked: it cannot be found again.
  std::size_t carry = carry_ > hold ? carry_ - hold : 0;
  bool last_masked = ended_masked_;
  for (const auto& m : merged) {
    if (m.begin >= hold) break;
    if (m.begin > pos) {
      out.append(buf, pos, m.begin - pos);
      last_masked = false;
    }
    // A secret right after one masked in the previous write stays one mask.
    if (!last_masked) out += kMask;
    last_masked = true;
    pos = std::min(m.end, hold);
    if (m.end > hold) carry = std::max(carry, m.end - hold);
  }
  if (hold > pos) {
    out.append(buf, pos, hold - pos);
    last_masked = false;
  }
  ended_masked_ = last_masked;
  held_.erase(0, hold);
  carry_ = carry;
  return out;
}

}  // namespace delegate::connectors
