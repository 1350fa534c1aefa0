#include <gtest/gtest.h>

#include <random>
#include <string>

#include <delegate/common/encoding.hpp>
#include <delegate/connectors/masker.hpp>

namespace delegate::connectors {
namespace {

constexpr std::string_view kSecret = "s3cr3t/Pa ss\"w0rd\xc3\xa9!";

std::string json_u_escaped() {
  // Python json.dumps(ensure_ascii=True) of kSecret, without the quotes.
  return "s3cr3t\\/Pa ss\\\"w0rd\\u00e9!";
}

// Every form a step could print the secret in, at each of the three base64 alignments.
std::vector<std::string> encodings(std::string_view s) {
  std::vector<std::string> out{std::string(s), hex_encode(as_bytes(s))};
  std::string upper = hex_encode(as_bytes(s));
  for (auto& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  out.push_back(upper);
  for (std::string prefix : {"", "x", "xy"}) {
    out.push_back(base64_encode(as_bytes(prefix + std::string(s))));
    out.push_back(base64url_encode(as_bytes(prefix + std::string(s))));
    out.push_back(base64_encode(as_bytes(prefix + std::string(s) + "tail")));
  }
  return out;
}

Masker masker_for(std::string_view s) {
  Masker m;
  EXPECT_TRUE(m.add(s).has_value());
  return m;
}

TEST(Masker, RawAndEveryEncodingAreMasked) {
  auto m = masker_for(kSecret);
  for (const auto& form : encodings(kSecret)) {
    const std::string text = "before " + form + " after";
    const std::string masked = m.mask(text);
    EXPECT_EQ(masked.find(std::string(kSecret)), std::string::npos) << form;
    EXPECT_TRUE(masked.starts_with("before ")) << masked;
    EXPECT_TRUE(masked.ends_with(" after")) << masked;
    EXPECT_NE(masked.find("***"), std::string::npos) << form;
    // Left of an encoded form: the prefix's and the tail's characters and at most the
    // straddling character each side (base64 of "xy" and "tail" is at most 3 + 6 more).
    EXPECT_LE(masked.size(), std::string("before ").size() + 3 + 3 + 3 + 6 + std::string(" after").size()) << masked;
  }
}

TEST(Masker, PercentAndJsonEscapedFormsAreMasked) {
  auto m = masker_for(kSecret);
  for (std::string form : {std::string("s3cr3t%2FPa%20ss%22w0rd%C3%A9%21"), std::string("s3cr3t%2fPa%20ss%22w0rd%c3%a9%21"),
                           std::string("s3cr3t%2FPa+ss%22w0rd%C3%A9%21"), std::string("s3cr3t/Pa ss\\\"w0rd\xc3\xa9!"),
                           std::string("s3cr3t\\/Pa ss\\\"w0rd\xc3\xa9!"), json_u_escaped()}) {
    EXPECT_EQ(m.mask("<" + form + ">"), "<***>") << form;
  }
}

TEST(Masker, JsonControlCharactersEscaped) {
  auto m = masker_for("line1\nline2\ttab\x01");
  EXPECT_EQ(m.mask("{\"v\":\"line1\\nline2\\ttab\\u0001\"}"), "{\"v\":\"***\"}");
}

TEST(Masker, ShortAndHugeSecretsAreRefusedWithoutEchoingThem) {
  Masker m;
  auto r = m.add("short7!");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message.find("short7!"), std::string::npos);
  EXPECT_TRUE(m.empty());
  EXPECT_FALSE(m.add(std::string(kMaxSecretLength + 1, 'a')).has_value());
  EXPECT_TRUE(m.add("exactly8").has_value());
}

TEST(Masker, UnrelatedTextIsUntouched) {
  auto m = masker_for("hunter2hunter2");
  const std::string text = "hunter2 hunter hunter2hunter hunt3r2hunter2 68756e74 aHVudGVy\nno secrets here %41";
  EXPECT_EQ(m.mask(text), text);
  Masker none;
  EXPECT_EQ(none.mask(text), text);
}

TEST(Masker, OverlappingSecretsAreMaskedAsOneSpan) {
  Masker m;
  ASSERT_TRUE(m.add("abcdefghij").has_value());
  ASSERT_TRUE(m.add("ghijklmnop").has_value());
  EXPECT_EQ(m.mask("[abcdefghijklmnop]"), "[***]");
  EXPECT_EQ(m.mask("[ghijklmnopabcdefghij]"), "[***]");
  EXPECT_EQ(m.mask("x abcdefghij y ghijklmnop z"), "x *** y *** z");
}

// The secret in every form, written in two pieces split at every offset: the stream
// must never emit any piece of it, and what it emits in total equals the one-shot mask.
TEST(MaskingStream, SplitAtEveryOffsetNeverLeaks) {
  auto m = masker_for(kSecret);
  for (const auto& form : encodings(kSecret)) {
    const std::string text = "pre " + form + " post\n";
    const std::string expected = m.mask(text);
    for (std::size_t cut = 0; cut <= text.size(); ++cut) {
      MaskingStream s(m);
      std::string first = s.write(std::string_view(text).substr(0, cut));
      std::string out = first + s.write(std::string_view(text).substr(cut));
      out += s.finish();
      EXPECT_EQ(out, expected) << "form " << form << " cut at " << cut;
      // The first write's output is a prefix of the masked whole: nothing of the
      // secret went out early, and nothing was emitted twice.
      EXPECT_TRUE(expected.starts_with(first)) << "form " << form << " cut at " << cut;
    }
  }
}

TEST(MaskingStream, ByteAtATimeAndThreeWayOverlap) {
  Masker m;
  ASSERT_TRUE(m.add("abcdefghij").has_value());
  ASSERT_TRUE(m.add("ghijklmnop").has_value());
  const std::string text = "-- abcdefghijklmnop -- ghijklmnop abcdefghij --";
  MaskingStream s(m);
  std::string out;
  for (char c : text) {
    auto piece = s.write(std::string_view(&c, 1));
    // A byte of a secret is never emitted in the clear.
    EXPECT_EQ(piece.find_first_of("bcdefhiklmno"), std::string::npos) << piece;
    out += piece;
  }
  out += s.finish();
  EXPECT_EQ(out, "-- *** -- *** *** --");
}

TEST(MaskingStream, HoldsOnlyWhatCouldStillBecomeASecret) {
  auto m = masker_for("topsecretvalue");
  MaskingStream s(m);
  EXPECT_EQ(s.write("line one\nand tops"), "line one\nand ");
  EXPECT_EQ(s.write("ecretvalue!\n"), "***!\n");
  EXPECT_EQ(s.write("plain"), "plain");
  EXPECT_EQ(s.write(" top"), " ");
  EXPECT_EQ(s.finish(), "top");
}

// Found by the fuzz target: the secret's last byte also starts the secret, so it is held
// back after the mask was emitted; it must stay masked, not go out on the next write.
TEST(MaskingStream, HeldTailOfAMaskedSecretStaysMasked) {
  auto m = masker_for("\"=ab%+/+B\"");
  const std::string text = " b\"=ab%+/+B\"=1a";
  MaskingStream s(m);
  std::string out;
  for (char c : text) out += s.write(std::string_view(&c, 1));
  out += s.finish();
  EXPECT_EQ(out, " b***=1a");
  EXPECT_EQ(m.mask(text), out);
}

// Streaming in chunks of any size equals masking the whole, on random text dense in
// the secret's own bytes and encodings' alphabet (a deterministic seed).
TEST(MaskingStream, AnyChunkingEqualsTheOneShotMask) {
  std::mt19937 rng(7);
  const std::string alpha = "ab*/ \"=+%\\\nAB01";
  for (int it = 0; it < 20000; ++it) {
    std::string secret;
    for (std::size_t i = 0, n = 8 + rng() % 6; i < n; ++i) secret += alpha[rng() % alpha.size()];
    std::string text;
    for (int i = 0, n = static_cast<int>(rng() % 60); i < n; ++i) {
      text += rng() % 3 == 0 ? secret[rng() % secret.size()] : alpha[rng() % alpha.size()];
    }
    text.insert(text.size() / 2, secret);
    Masker m;
    ASSERT_TRUE(m.add(secret));
    const std::string whole = m.mask(text);
    // (A secret containing the mask itself can be re-formed around one: not a leak.)
    if (secret.find('*') == std::string::npos) {
      ASSERT_EQ(whole.find(secret), std::string::npos) << secret;
    }
    const std::size_t step = 1 + rng() % 8;
    MaskingStream s(m);
    std::string pieces;
    for (std::size_t off = 0; off < text.size(); off += step) pieces += s.write(std::string_view(text).substr(off, step));
    pieces += s.finish();
    ASSERT_EQ(pieces, whole) << "secret [" << secret << "] text [" << text << "] step " << step;
  }
}

}  // namespace
}  // namespace delegate::connectors
