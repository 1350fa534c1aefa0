#include <delegate/audit/jcs.hpp>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <string_view>
#include <utility>
#include <vector>

namespace delegate::audit {
namespace {

// Integers beyond 2^53 may silently lose precision in every ECMAScript-based verifier,
// so two implementations could disagree on the hashed bytes (see append_integer).
constexpr std::uint64_t kMaxSafeMagnitude = std::uint64_t{1} << 53;
// Values built in code are not depth-capped by the strict parser; bound the recursion.
constexpr int kMaxDepth = 256;

// Decodes one UTF-8 scalar value at s[i], advancing i. Rejects overlong forms,
// surrogates and values above U+10FFFF: JCS is defined over Unicode text only.
bool next_code_point(std::string_view s, std::size_t& i, char32_t& cp) {
  const auto b0 = static_cast<unsigned char>(s[i]);
  std::size_t len;
  char32_t min;
  if (b0 < 0x80) {
    cp = b0;
    ++i;
    return true;
  } else if ((b0 & 0xE0) == 0xC0) {
    len = 2, cp = b0 & 0x1F, min = 0x80;
  } else if ((b0 & 0xF0) == 0xE0) {
    len = 3, cp = b0 & 0x0F, min = 0x800;
  } else if ((b0 & 0xF8) == 0xF0) {
    len = 4, cp = b0 & 0x07, min = 0x10000;
  } else {
    return false;
  }
  if (i + len > s.size()) return false;
  for (std::size_t k = 1; k < len; ++k) {
    const auto b = static_cast<unsigned char>(s[i + k]);
    if ((b & 0xC0) != 0x80) return false;
    cp = (cp << 6) | (b & 0x3F);
  }
  if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
  i += len;
  return true;
}

Result<std::u16string> to_utf16(std::string_view s) {
  std::u16string out;
  out.reserve(s.size());
  std::size_t i = 0;
  while (i < s.size()) {
    char32_t cp;
    if (!next_code_point(s, i, cp)) return fail(Errc::invalid_argument, "string is not valid UTF-8");
    if (cp >= 0x10000) {
      cp -= 0x10000;
      out.push_back(static_cast<char16_t>(0xD800 + (cp >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + (cp & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
  }
  return out;
}

constexpr std::array<bool, 256> kVerbatimAscii = [] {
  std::array<bool, 256> t{};
  for (int b = 0x20; b <= 0x7f; ++b) t[static_cast<std::size_t>(b)] = b != '"' && b != '\\';
  return t;
}();
constexpr bool is_verbatim_ascii(unsigned char b) { return kVerbatimAscii[b]; }

Result<void> append_string(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.reserve(out.size() + s.size() + 2);
  out.push_back('"');
  std::size_t i = 0;
  while (i < s.size()) {
    // Printable ASCII other than '"' and '\\' is its own canonical form: copied as one
    // run (a base64 output record is nothing else), byte for byte what the per-code-point
    // path below would append.
    std::size_t run = i;
    while (run < s.size() && is_verbatim_ascii(static_cast<unsigned char>(s[run]))) ++run;
    if (run > i) {
      out.append(s.substr(i, run - i));
      i = run;
      if (i == s.size()) break;
    }
    const std::size_t start = i;
    char32_t cp;
    if (!next_code_point(s, i, cp)) return fail(Errc::invalid_argument, "string is not valid UTF-8");
    switch (cp) {
      case U'"': out += "\\\""; break;
      case U'\\': out += "\\\\"; break;
      case U'\b': out += "\\b"; break;
      case U'\f': out += "\\f"; break;
      case U'\n': out += "\\n"; break;
      case U'\r': out += "\\r"; break;
      case U'\t': out += "\\t"; break;
      default:
        if (cp < 0x20) {
          out += "\\u00";
          out.push_back(kHex[cp >> 4]);
          out.push_back(kHex[cp & 0xF]);
        } else {
          // Everything else, including U+007F and U+2028, goes out verbatim as UTF-8.
          out.append(s.substr(start, i - start));
        }
    }
  }
  out.push_back('"');
  return ok();
}

// ECMAScript Number::toString (ECMA-262 §6.1.6.1.20). std::to_chars in scientific form
// yields the shortest round-trip digits; only the placement of the point and exponent
// differs from what ECMAScript prints.
Result<void> append_double(std::string& out, double d) {
  if (!std::isfinite(d)) return fail(Errc::invalid_argument, "NaN and Infinity have no JSON form");
  if (d == 0) {  // also -0, which ECMAScript prints as "0"
    out.push_back('0');
    return ok();
  }
  char buf[64];
  const auto res = std::to_chars(buf, buf + sizeof buf, d, std::chars_format::scientific);
  if (res.ec != std::errc{}) return fail(Errc::internal, "number formatting failed");
  std::string_view sv(buf, static_cast<std::size_t>(res.ptr - buf));
  if (sv.front() == '-') {
    out.push_back('-');
    sv.remove_prefix(1);
  }
  const auto epos = sv.find('e');
  if (epos == std::string_view::npos || epos + 2 > sv.size()) return fail(Errc::internal, "unexpected number format");
  std::string digits;
  for (char c : sv.substr(0, epos)) {
    if (c != '.') digits.push_back(c);
  }
  std::string_view exp_text = sv.substr(epos + 1);
  bool exp_negative = false;
  if (exp_text.front() == '+' || exp_text.front() == '-') {
    exp_negative = exp_text.front() == '-';
    exp_text.remove_prefix(1);
  }
  int exp10 = 0;
  if (std::from_chars(exp_text.data(), exp_text.data() + exp_text.size(), exp10).ec != std::errc{}) {
    return fail(Errc::internal, "unexpected number format");
  }
  if (exp_negative) exp10 = -exp10;

  // ECMAScript's k (digit count) and n (value = 0.digits × 10^n).
  const int k = static_cast<int>(digits.size());
  const int n = exp10 + 1;
  if (k <= n && n <= 21) {
    out += digits;
    out.append(static_cast<std::size_t>(n - k), '0');
  } else if (0 < n && n <= 21) {
    out.append(digits, 0, static_cast<std::size_t>(n));
    out.push_back('.');
    out.append(digits, static_cast<std::size_t>(n));
  } else if (-6 < n && n <= 0) {
    out += "0.";
    out.append(static_cast<std::size_t>(-n), '0');
    out += digits;
  } else {
    out.push_back(digits[0]);
    if (k > 1) {
      out.push_back('.');
      out.append(digits, 1);
    }
    const int e = n - 1;
    out.push_back('e');
    out.push_back(e < 0 ? '-' : '+');
    out += std::to_string(std::abs(e));
  }
  return ok();
}

// Beyond 2^53 an integer is accepted only if its decimal text is exactly what
// ECMAScript prints for it as a double (1000000000000000000, but not 9007199254740993,
// which every double-based verifier would read as ...992). Without this, a large
// integral double in a record (say 1e18) canonicalizes to digits that re-parse as an
// integer, and the record could be sealed but never verified from its export.
Result<void> append_integer(std::string& out, const std::string& text, double as_double,
                            std::uint64_t magnitude) {
  if (magnitude > kMaxSafeMagnitude) {
    std::string es;
    if (auto r = append_double(es, as_double); !r || es != text) {
      return fail(Errc::invalid_argument, "integer " + text + " beyond 2^53 has no exact JCS form");
    }
  }
  out += text;
  return ok();
}

Result<void> append_value(std::string& out, const Json& v, int depth) {
  if (depth > kMaxDepth) return fail(Errc::invalid_argument, "JSON value nested too deeply");
  switch (v.type()) {
    case Json::value_t::null:
      out += "null";
      return ok();
    case Json::value_t::boolean:
      out += v.get<bool>() ? "true" : "false";
      return ok();
    case Json::value_t::number_integer: {
      const auto i = v.get<std::int64_t>();
      const std::uint64_t mag = i < 0 ? std::uint64_t(0) - static_cast<std::uint64_t>(i) : static_cast<std::uint64_t>(i);
      return append_integer(out, std::to_string(i), static_cast<double>(i), mag);
    }
    case Json::value_t::number_unsigned: {
      const auto u = v.get<std::uint64_t>();
      return append_integer(out, std::to_string(u), static_cast<double>(u), u);
    }
    case Json::value_t::number_float:
      return append_double(out, v.get<double>());
    case Json::value_t::string:
      return append_string(out, v.get_ref<const std::string&>());
    case Json::value_t::array: {
      out.push_back('[');
      bool first = true;
      for (const auto& e : v) {
        if (!first) out.push_back(',');
        first = false;
        if (auto r = append_value(out, e, depth + 1); !r) return r;
      }
      out.push_back(']');
      return ok();
    }
    case Json::value_t::object: {
      // nlohmann keeps members in UTF-8 byte order, which equals code point order but
      // not UTF-16 order (U+E000..U+FFFF sort after surrogate pairs in UTF-16). With
      // ASCII names only (every record and most data) the three orders agree, and the
      // members are written as they are stored.
      bool ascii_names = true;
      for (auto it = v.cbegin(); it != v.cend() && ascii_names; ++it) {
        for (char c : it.key()) ascii_names = ascii_names && static_cast<unsigned char>(c) < 0x80;
      }
      if (ascii_names) {
        out.push_back('{');
        bool first = true;
        for (auto it = v.cbegin(); it != v.cend(); ++it) {
          if (!first) out.push_back(',');
          first = false;
          if (auto r = append_string(out, it.key()); !r) return r;
          out.push_back(':');
          if (auto r = append_value(out, it.value(), depth + 1); !r) return r;
        }
        out.push_back('}');
        return ok();
      }
      std::vector<std::pair<std::u16string, Json::const_iterator>> members;
      members.reserve(v.size());
      for (auto it = v.cbegin(); it != v.cend(); ++it) {
        auto key16 = to_utf16(it.key());
        if (!key16) return std::unexpected(key16.error());
        members.emplace_back(std::move(*key16), it);
      }
      std::sort(members.begin(), members.end(),
                [](const auto& a, const auto& b) { return a.first < b.first; });
      out.push_back('{');
      bool first = true;
      for (const auto& [key16, it] : members) {
        if (!first) out.push_back(',');
        first = false;
        if (auto r = append_string(out, it.key()); !r) return r;
        out.push_back(':');
        if (auto r = append_value(out, it.value(), depth + 1); !r) return r;
      }
      out.push_back('}');
      return ok();
    }
    case Json::value_t::binary:
    case Json::value_t::discarded:
      return fail(Errc::invalid_argument, "value has no JSON representation");
  }
  return fail(Errc::internal, "unknown JSON value type");
}

}  // namespace

Result<std::string> canonicalize(const Json& value) {
  try {
    std::string out;
    if (auto r = append_value(out, value, 0); !r) return std::unexpected(r.error());
    return out;
  } catch (const std::exception& e) {
    // Only allocation failure can get here; keep the no-throw contract regardless.
    return fail(Errc::internal, std::string("canonicalization failed: ") + e.what());
  }
}

}  // namespace delegate::audit
