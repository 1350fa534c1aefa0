#include <delegate/audit/jcs.hpp>

#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>

#include <gtest/gtest.h>

using delegate::Json;
using delegate::audit::canonicalize;

namespace {

std::string canon(const Json& j) {
  auto r = canonicalize(j);
  EXPECT_TRUE(r.has_value()) << (r ? "" : r.error().message);
  return r ? *r : std::string();
}

std::string canon_text(std::string_view text) {
  auto j = delegate::parse_json_strict(text);
  EXPECT_TRUE(j.has_value()) << (j ? "" : j.error().message);
  return j ? canon(*j) : std::string();
}

std::string number(std::uint64_t bits) { return canon(Json(std::bit_cast<double>(bits))); }

}  // namespace

// RFC 8785 Appendix B: IEEE 754 bit patterns and their ECMAScript serialization.
TEST(Jcs, RfcNumberTable) {
  struct Row {
    std::uint64_t bits;
    const char* expected;
  };
  const Row rows[] = {
      {0x0000000000000000, "0"},
      {0x8000000000000000, "0"},
      {0x0000000000000001, "5e-324"},
      {0x8000000000000001, "-5e-324"},
      {0x7fefffffffffffff, "1.7976931348623157e+308"},
      {0xffefffffffffffff, "-1.7976931348623157e+308"},
      {0x4340000000000000, "9007199254740992"},
      {0xc340000000000000, "-9007199254740992"},
      {0x4430000000000000, "295147905179352830000"},
      {0x44b52d02c7e14af5, "9.999999999999997e+22"},
      {0x44b52d02c7e14af6, "1e+23"},
      {0x44b52d02c7e14af7, "1.0000000000000001e+23"},
      {0x444b1ae4d6e2ef4e, "999999999999999700000"},
      {0x444b1ae4d6e2ef4f, "999999999999999900000"},
      {0x444b1ae4d6e2ef50, "1e+21"},
      {0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"},
      {0x3eb0c6f7a0b5ed8d, "0.000001"},
      {0x41b3de4355555553, "333333333.3333332"},
      {0x41b3de4355555554, "333333333.33333325"},
      {0x41b3de4355555555, "333333333.3333333"},
      {0x41b3de4355555556, "333333333.3333334"},
      {0x41b3de4355555557, "333333333.33333343"},
      {0xbecbf647612f3696, "-0.0000033333333333333333"},
      {0x43143ff3c1cb0959, "1424953923781206.2"},
  };
  for (const auto& row : rows) {
    EXPECT_EQ(number(row.bits), row.expected) << std::hex << row.bits;
  }
}

TEST(Jcs, NumberFormsAroundExponentThresholds) {
  EXPECT_EQ(canon(Json(1e21)), "1e+21");
  EXPECT_EQ(canon(Json(1e20)), "100000000000000000000");
  EXPECT_EQ(canon(Json(1e-7)), "1e-7");
  EXPECT_EQ(canon(Json(1.5e-7)), "1.5e-7");
  EXPECT_EQ(canon(Json(0.000001)), "0.000001");
  EXPECT_EQ(canon(Json(-0.0)), "0");
  EXPECT_EQ(canon(Json(1.0)), "1");
  EXPECT_EQ(canon(Json(4.5)), "4.5");
  EXPECT_EQ(canon(Json(0.1)), "0.1");
  EXPECT_EQ(canon(Json(123.456)), "123.456");
  EXPECT_EQ(canon(Json(-1e-300)), "-1e-300");
}

TEST(Jcs, RejectsNanAndInfinity) {
  EXPECT_FALSE(canonicalize(Json(std::numeric_limits<double>::quiet_NaN())));
  EXPECT_FALSE(canonicalize(Json(std::numeric_limits<double>::infinity())));
  EXPECT_FALSE(canonicalize(Json(-std::numeric_limits<double>::infinity())));
  EXPECT_FALSE(canonicalize(Json{{"a", Json::array({1, std::nan("")})}}));
  EXPECT_FALSE(canonicalize(Json(std::bit_cast<double>(std::uint64_t{0x7fffffffffffffff}))));
}

TEST(Jcs, IntegersWithinTwoToThe53) {
  constexpr std::int64_t kMax = std::int64_t{1} << 53;
  EXPECT_EQ(canon(Json(0)), "0");
  EXPECT_EQ(canon(Json(-42)), "-42");
  EXPECT_EQ(canon(Json(kMax)), "9007199254740992");
  EXPECT_EQ(canon(Json(-kMax)), "-9007199254740992");
  EXPECT_EQ(canon(Json(static_cast<std::uint64_t>(kMax))), "9007199254740992");
  EXPECT_FALSE(canonicalize(Json(kMax + 1)));
  EXPECT_FALSE(canonicalize(Json(-kMax - 1)));
  EXPECT_FALSE(canonicalize(Json(std::numeric_limits<std::int64_t>::min())));
  EXPECT_FALSE(canonicalize(Json(std::numeric_limits<std::uint64_t>::max())));
  EXPECT_FALSE(canonicalize(Json::parse("9007199254740993")));
  EXPECT_FALSE(canonicalize(Json(std::uint64_t{1} << 60)));  // ES prints 1152921504606847000
}

// Integers past 2^53 whose digits are already their ECMAScript form are exact, and must
// be accepted: they are what a large integral double canonicalizes to.
TEST(Jcs, LargeIntegersThatAreTheirOwnCanonicalForm) {
  EXPECT_EQ(canon(Json(std::uint64_t{1000000000000000000})), "1000000000000000000");
  EXPECT_EQ(canon(Json(std::int64_t{-9007199254740994})), "-9007199254740994");
  EXPECT_EQ(canon(Json::parse("1152921504606847000")), "1152921504606847000");
  // The round trip a record takes: sealed from a double, verified from its export.
  const std::string once = canon(Json{{"n", 1e18}, {"m", std::bit_cast<double>(std::uint64_t{0x43b0000000000000})}});
  EXPECT_EQ(once, R"({"m":1152921504606847000,"n":1000000000000000000})");
  EXPECT_EQ(canon_text(once), once);
}

// RFC 8785 §3.2.3: sorting by UTF-16 code units, where U+1F600 (a surrogate pair
// starting 0xD83D) sorts before U+FB33 although its code point is larger.
TEST(Jcs, RfcSortingExample) {
  const char* input = R"({
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\ud83d\ude00": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis"
  })";
  const std::string expected =
      "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\","
      "\"\xc3\xb6\":\"Latin Small Letter O With Diaeresis\",\"\xe2\x82\xac\":\"Euro Sign\","
      "\"\xf0\x9f\x98\x80\":\"Emoji: Grinning Face\",\"\xef\xac\xb3\":\"Hebrew Letter Dalet With Dagesh\"}";
  EXPECT_EQ(canon_text(input), expected);
}

// RFC 8785 §3.2.2 (the example in the main text).
TEST(Jcs, RfcMainExample) {
  const char* input = R"({
    "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
    "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
    "literals": [null, true, false]
  })";
  const std::string expected =
      "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],"
      "\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}";
  EXPECT_EQ(canon_text(input), expected);
}

TEST(Jcs, StringEscapes) {
  EXPECT_EQ(canon(Json("\b\f\n\r\t\"\\")), R"("\b\f\n\r\t\"\\")");
  EXPECT_EQ(canon(Json(std::string("\x00\x01\x1f", 3))), R"("\u0000\u0001\u001f")");
  // DEL, U+2028 and '/' are not escaped.
  EXPECT_EQ(canon(Json("\x7f/\xe2\x80\xa8")), "\"\x7f/\xe2\x80\xa8\"");
}

TEST(Jcs, RejectsInvalidUtf8) {
  EXPECT_FALSE(canonicalize(Json("\xff")));
  EXPECT_FALSE(canonicalize(Json("\xc0\xaf")));          // overlong '/'
  EXPECT_FALSE(canonicalize(Json("\xed\xa0\x80")));      // encoded surrogate
  EXPECT_FALSE(canonicalize(Json("\xf4\x90\x80\x80")));  // above U+10FFFF
  EXPECT_FALSE(canonicalize(Json("\xe2\x82")));          // cut short
  EXPECT_FALSE(canonicalize(Json{{"\xff", 1}}));         // in a key
}

TEST(Jcs, NestedStructuresAndEmpties) {
  EXPECT_EQ(canon(Json::object()), "{}");
  EXPECT_EQ(canon(Json::array()), "[]");
  EXPECT_EQ(canon_text(R"({ "b" : [ 1 , { "d":true, "c":null } ], "a" : "" })"),
            R"({"a":"","b":[1,{"c":null,"d":true}]})");
}

TEST(Jcs, IsIdempotent) {
  const std::string once = canon_text(R"({"z":[1.0,2.50,-0.0,1e2],"y":{"\u00e9":"x","e":1}})");
  EXPECT_EQ(canon_text(once), once);
}

TEST(Jcs, RejectsBinaryAndExcessiveDepth) {
  EXPECT_FALSE(canonicalize(Json::binary({1, 2, 3})));
  Json deep = Json::array();
  for (int i = 0; i < 1000; ++i) deep = Json::array({deep});
  EXPECT_FALSE(canonicalize(deep));
}
