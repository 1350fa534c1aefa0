// canonicalize() copies runs of printable ASCII in bulk and writes objects whose member
// names are all ASCII in stored order. Both are shortcuts of the generic RFC 8785 rules;
// this test holds them to a straightforward reference (code point by code point, every
// object sorted by UTF-16 code units) over a corpus of adversarial and random values.
#include <delegate/audit/jcs.hpp>

#include <algorithm>
#include <cstdint>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include <gtest/gtest.h>

using delegate::Json;
using delegate::audit::canonicalize;

namespace {

// UTF-8 → code points; false on anything RFC 3629 forbids.
bool decode(const std::string& s, std::vector<char32_t>& out) {
  for (std::size_t i = 0; i < s.size();) {
    const auto b0 = static_cast<unsigned char>(s[i]);
    int len = b0 < 0x80 ? 1 : (b0 & 0xE0) == 0xC0 ? 2 : (b0 & 0xF0) == 0xE0 ? 3 : (b0 & 0xF8) == 0xF0 ? 4 : 0;
    if (len == 0 || i + static_cast<std::size_t>(len) > s.size()) return false;
    char32_t cp = len == 1 ? b0 : len == 2 ? (b0 & 0x1F) : len == 3 ? (b0 & 0x0F) : (b0 & 0x07);
    for (int k = 1; k < len; ++k) {
      const auto b = static_cast<unsigned char>(s[i + static_cast<std::size_t>(k)]);
      if ((b & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (b & 0x3F);
    }
    const char32_t min[] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    out.push_back(cp);
    i += static_cast<std::size_t>(len);
  }
  return true;
}

std::u16string utf16(const std::vector<char32_t>& cps) {
  std::u16string out;
  for (char32_t cp : cps) {
    if (cp >= 0x10000) {
      out.push_back(static_cast<char16_t>(0xD800 + ((cp - 0x10000) >> 10)));
      out.push_back(static_cast<char16_t>(0xDC00 + ((cp - 0x10000) & 0x3FF)));
    } else {
      out.push_back(static_cast<char16_t>(cp));
    }
  }
  return out;
}

bool ref_string(std::string& out, const std::string& s) {
  std::vector<char32_t> cps;
  if (!decode(s, cps)) return false;
  out.push_back('"');
  std::size_t byte = 0;
  for (char32_t cp : cps) {
    const std::size_t len = cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
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
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out.push_back(kHex[cp >> 4]);
          out.push_back(kHex[cp & 0xF]);
        } else {
          out.append(s, byte, len);
        }
    }
    byte += len;
  }
  out.push_back('"');
  return true;
}

// Numbers are formatted by canonicalize itself (that code has its own RFC tables in
// jcs_test); everything structural is done here the slow way.
bool ref_value(std::string& out, const Json& v) {
  switch (v.type()) {
    case Json::value_t::string:
      return ref_string(out, v.get_ref<const std::string&>());
    case Json::value_t::array: {
      out.push_back('[');
      for (std::size_t i = 0; i < v.size(); ++i) {
        if (i > 0) out.push_back(',');
        if (!ref_value(out, v[i])) return false;
      }
      out.push_back(']');
      return true;
    }
    case Json::value_t::object: {
      std::vector<std::pair<std::u16string, std::string>> keys;
      for (auto it = v.cbegin(); it != v.cend(); ++it) {
        std::vector<char32_t> cps;
        if (!decode(it.key(), cps)) return false;
        keys.emplace_back(utf16(cps), it.key());
      }
      std::sort(keys.begin(), keys.end());
      out.push_back('{');
      for (std::size_t i = 0; i < keys.size(); ++i) {
        if (i > 0) out.push_back(',');
        if (!ref_string(out, keys[i].second)) return false;
        out.push_back(':');
        if (!ref_value(out, v.at(keys[i].second))) return false;
      }
      out.push_back('}');
      return true;
    }
    default: {
      auto r = canonicalize(v);
      if (!r) return false;
      out += *r;
      return true;
    }
  }
}

void expect_same(const Json& v) {
  std::string want;
  const bool ok = ref_value(want, v);
  auto got = canonicalize(v);
  ASSERT_EQ(ok, got.has_value()) << (got ? *got : got.error().message);
  if (ok) {
    EXPECT_EQ(*got, want);
  }
}

const std::vector<std::string>& tricky_strings() {
  static const std::vector<std::string> s = {
      "", "a", "\"", "\\", "\"\\\"", "\x7f", "\x1f", std::string("\0", 1), "\b\f\n\r\t", "abc\"def\\ghi",
      "\xc3\xa9t\xc3\xa9", "\xe2\x80\xa8\xe2\x80\xa9", "\xee\x80\x80", "\xef\xbf\xbf", "\xf0\x9f\x98\x80",
      "\\u0041", "\\ud83d\\ude00", "x\xf4\x8f\xbf\xbfy", "A+/=_-", std::string(70000, 'Q') + "\"" + std::string(3, '\\'),
      // Invalid UTF-8: both must refuse, wherever it sits in a run of ASCII.
      "abc\xff", "\xc0\xaf", "ok\xed\xa0\x80", "\xf4\x90\x80\x80", "tail\xe2\x82",
  };
  return s;
}

}  // namespace

TEST(JcsFastPath, AdversarialStringsAsValuesAndNames) {
  for (const auto& a : tricky_strings()) {
    expect_same(Json(a));
    for (const auto& b : tricky_strings()) {
      Json o = Json::object();
      o[a] = 1;
      o[b] = Json::array({a, b});
      o["plain"] = b;
      expect_same(o);
    }
  }
}

TEST(JcsFastPath, NameOrderAcrossUtf16Boundaries) {
  // U+E000..U+FFFF sort after surrogate pairs in UTF-16 but before them in UTF-8.
  Json o = Json::object();
  for (const char* k : {"\xee\x80\x80", "\xf0\x9f\x98\x80", "\xef\xbf\xbf", "z", "Z", "a\x7f", "a", "\xc3\xa9", "10", "1"}) {
    o[k] = k;
  }
  expect_same(o);
  expect_same(Json{{"nested", o}, {"b64", std::string(16384, 'A')}});
}

TEST(JcsFastPath, NumbersAndDeepNesting) {
  expect_same(Json{{"big", 9007199254740992ull}, {"bigger", 1000000000000000000ull}, {"neg", -9007199254740992ll},
                   {"f", 1e21}, {"g", 5e-324}, {"z", -0.0}, {"h", 0.1}, {"t", true}, {"n", nullptr}});
  expect_same(Json{{"unsafe", 9007199254740993ull}});  // both refuse
  Json deep = "leaf";
  for (int i = 0; i < 200; ++i) deep = Json{{i % 2 == 0 ? "k" : "\xc3\xa9", deep}, {"a", Json::array({deep.is_string() ? deep : Json(i)})}};
  expect_same(deep);
}

TEST(JcsFastPath, RandomValues) {
  std::mt19937 rng(12345);
  const auto& pool = tricky_strings();
  auto pick = [&](std::size_t n) { return static_cast<std::size_t>(rng() % n); };
  auto random_string = [&] {
    std::string s;
    const std::size_t parts = pick(6);
    for (std::size_t i = 0; i < parts; ++i) {
      if (pick(3) == 0) s += pool[pick(pool.size())];
      else s.append(pick(40), static_cast<char>(0x20 + pick(0x60)));
    }
    return s;
  };
  std::function<Json(int)> random_value = [&](int depth) -> Json {
    switch (depth > 4 ? pick(4) : pick(7)) {
      case 0: return random_string();
      case 1: return static_cast<std::int64_t>(rng()) - (1ll << 31);
      case 2: return static_cast<double>(rng()) / 7.0;
      case 3: return pick(2) == 0;
      case 4: {
        Json a = Json::array();
        for (std::size_t i = pick(5); i > 0; --i) a.push_back(random_value(depth + 1));
        return a;
      }
      default: {
        Json o = Json::object();
        for (std::size_t i = pick(6); i > 0; --i) o[random_string()] = random_value(depth + 1);
        return o;
      }
    }
  };
  for (int i = 0; i < 3000; ++i) expect_same(random_value(0));
}
