// Strict decoders, strict JSON, time and key handling shared by every component.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/time.hpp>

namespace delegate {
namespace {

TEST(Encoding, RoundTripsAndRejectsNonCanonicalBase64url) {
  for (std::size_t n = 0; n < 40; ++n) {
    Bytes b(n);
    for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<std::uint8_t>(i * 37 + 11);
    auto e = base64url_encode(b);
    EXPECT_EQ(e.find('='), std::string::npos);
    auto d = base64url_decode(e);
    ASSERT_TRUE(d);
    EXPECT_EQ(*d, b);
    auto s = base64_encode(b);
    EXPECT_EQ(*base64_decode(s), b);
  }
  EXPECT_FALSE(base64url_decode("QQ=="));   // padding
  EXPECT_FALSE(base64url_decode("a+b/"));   // standard alphabet
  EXPECT_FALSE(base64url_decode("QR"));     // non-zero trailing bits
  EXPECT_FALSE(base64url_decode("Q"));      // impossible length
  EXPECT_FALSE(base64url_decode("QQ QQ"));  // whitespace
  EXPECT_FALSE(base64_decode("QQ="));       // wrong padded length
  EXPECT_FALSE(hex_decode("AB"));           // uppercase
  EXPECT_FALSE(hex_decode("abc"));
  EXPECT_EQ(hex_encode(*hex_decode("00ff10")), "00ff10");
}

TEST(StrictJson, RejectsDuplicatesDepthSizeAndBadUtf8) {
  EXPECT_TRUE(parse_json_strict(R"({"a":{"b":[1,2,{"c":null}]}})"));
  auto dup = parse_json_strict(R"({"a":1,"b":{"x":1,"x":2}})");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("duplicate member"), std::string::npos);
  EXPECT_FALSE(parse_json_strict(std::string(100, '[') + std::string(100, ']')));
  EXPECT_TRUE(parse_json_strict(std::string(10, '[') + std::string(10, ']')));
  auto big = parse_json_strict(std::string(2000, ' '), JsonLimits{.max_bytes = 1000, .max_depth = 8});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
  EXPECT_FALSE(parse_json_strict("{\"a\":\"\xc3\x28\"}"));
  EXPECT_FALSE(parse_json_strict("{\"a\":1} trailing"));
  EXPECT_FALSE(parse_json_strict(""));
  Json o = *parse_json_strict(R"({"n":5,"big":18446744073709551615,"s":"x","f":1.5})");
  EXPECT_EQ(*json_int(o, "n"), 5);
  EXPECT_FALSE(json_int(o, "big"));
  EXPECT_FALSE(json_int(o, "f"));
  EXPECT_FALSE(json_string(o, "n"));
  EXPECT_FALSE(json_string(o, "missing"));
}

TEST(Time, FormatsFixedWidthAndParsesStrictly) {
  auto t = parse_rfc3339("2026-11-28T20:00:00.123Z");
  ASSERT_TRUE(t);
  EXPECT_EQ(format_rfc3339_ms(*t), "2026-11-28T20:00:00.123Z");
  EXPECT_EQ(*parse_rfc3339("2026-11-28T21:00:00+01:00"), *parse_rfc3339("2026-11-28T20:00:00Z"));
  EXPECT_EQ(format_rfc3339_ms(*parse_rfc3339("1970-01-01T00:00:00Z")), "1970-01-01T00:00:00.000Z");
  for (const char* bad : {"2026-11-28", "2026-13-01T00:00:00Z", "2026-02-30T00:00:00Z", "2026-11-28T20:00:00",
                          "2026-11-28T20:00:00.Z", "2026-11-28T20:00:00Zjunk", "9999-01-01T00:00:00Z",
                          "0001-01-01T00:00:00Z", "2026-11-28 20:00:00Z"}) {
    EXPECT_FALSE(parse_rfc3339(bad)) << bad;
  }
}

TEST(Crypto, Ed25519SignsVerifiesAndRejectsFlippedBits) {
  auto key = Ed25519PrivateKey::generate();
  ASSERT_TRUE(key);
  auto msg = sha256("record");
  auto sig = key->sign(msg);
  EXPECT_TRUE(ed25519_verify(key->public_key(), msg, sig));
  for (std::size_t bit = 0; bit < sig.size() * 8; ++bit) {
    auto bad = sig;
    bad[bit / 8] ^= static_cast<std::uint8_t>(1u << (bit % 8));
    EXPECT_FALSE(ed25519_verify(key->public_key(), msg, bad)) << bit;
  }
  EXPECT_FALSE(ed25519_verify(key->public_key(), msg, std::span(sig).first(63)));
  auto other = Ed25519PrivateKey::generate();
  EXPECT_FALSE(ed25519_verify(other->public_key(), msg, sig));
  auto parsed = parse_public_key(base64_encode(key->public_key()));
  ASSERT_TRUE(parsed);
  EXPECT_EQ(*parsed, key->public_key());
  EXPECT_FALSE(parse_public_key("AAAA"));
  EXPECT_TRUE(constant_time_equal(msg, msg));
  EXPECT_FALSE(constant_time_equal(msg, sha256("other")));
}

TEST(Crypto, IdentityKeyIsCreatedPrivateReloadedAndRefusedWhenExposed) {
  char tmpl[] = "/tmp/delegate-common-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::filesystem::path dir = tmpl;
  auto file = dir / "identity.key";
  auto a = Ed25519PrivateKey::load_or_create(file);
  ASSERT_TRUE(a) << a.error().message;
  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto b = Ed25519PrivateKey::load_or_create(file);
  ASSERT_TRUE(b);
  EXPECT_EQ(a->public_key(), b->public_key());
  ::chmod(file.c_str(), 0644);
  auto exposed = Ed25519PrivateKey::load(file);
  ASSERT_FALSE(exposed);
  EXPECT_EQ(exposed.error().code, Errc::permission);
  ASSERT_TRUE(write_file_atomic(dir / "token", "secret\n", 0640));
  EXPECT_FALSE(read_secret_file(dir / "token"));
  ASSERT_TRUE(write_file_atomic(dir / "token", "secret\n", 0600));
  EXPECT_EQ(*read_secret_file(dir / "token"), "secret");
  ASSERT_TRUE(write_file_atomic(dir / "big", std::string(100, 'x')));
  EXPECT_EQ(read_file(dir / "big", 10).error().code, Errc::too_large);
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace delegate
