// Strict decoders, strict JSON, time and key handling shared by every component.
#include <gtest/gtest.h>
#include <algorithm>
#include <sys/stat.h>
#include <unistd.h>

#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/strict.hpp>
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
  EXPECT_NE(dup.error().message.find("duplicate key b.x"), std::string::npos) << dup.error().message;
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

// Every duplicate is refused with its key path, at the top level, nested in objects
// and inside arrays; equal names in different objects are fine.
TEST(StrictJson, DuplicateKeysNameTheirPath) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"a":1,"a":2})", "duplicate key a"},
      {R"({"sandbox":{"allow_root_steps":false,"allow_root_steps":true}})", "duplicate key sandbox.allow_root_steps"},
      {R"({"steps":[{"n":1},{"n":1,"n":2}]})", "duplicate key steps[1].n"},
      {R"([[{"k":{"z":1,"z":1}}]])", "duplicate key [0][0].k.z"},
      {"{\"a\\u000ab\":1,\"a\\nb\":2}", "duplicate key a?b"},
  };
  for (const auto& [text, want] : cases) {
    auto r = parse_json_strict(text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code, Errc::parse);
    EXPECT_NE(r.error().message.find(want), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(parse_json_strict(R"({"a":{"x":1},"b":{"x":1},"c":[{"x":1},{"x":2}]})"));
  // The error quotes no raw bytes of the input: it is always printable ASCII.
  auto bad = parse_json_strict("{\"\xff\xfe\":1}");
  ASSERT_FALSE(bad);
  for (char c : bad.error().message) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << bad.error().message;
}

TEST(StrictYaml, DuplicateKeysNameTheirPath) {
  const std::pair<const char*, const char*> cases[] = {
      {"agent:\n  name: a\nagent:\n  name: b\n", "duplicate key agent"},
      {"sandbox:\n  allow_root_steps: false\n  allow_root_steps: true\n", "duplicate key sandbox.allow_root_steps"},
      {"steps:\n  - {name: a, name: b}\n", "duplicate key steps[0].name"},
      {"a: {b: {c: 1, c: 2}}\n", "duplicate key a.b.c"},
      // One key, two spellings: a quoted and a plain scalar are the same string.
      {"x: 1\n\"x\": 2\n", "duplicate key x"},
  };
  for (const auto& [text, want] : cases) {
    auto r = parse_yaml_strict(text);
    ASSERT_FALSE(r) << text;
    EXPECT_EQ(r.error().code, Errc::parse);
    EXPECT_NE(r.error().message.find(want), std::string::npos) << r.error().message;
  }
  EXPECT_TRUE(parse_yaml_strict("a: {x: 1}\nb: {x: 1}\nc: [{x: 1}, {x: 2}]\n"));
  auto complex = parse_yaml_strict("? [a, b]\n: 1\n");
  ASSERT_FALSE(complex);
  EXPECT_NE(complex.error().message.find("mapping keys must be plain strings"), std::string::npos);
  EXPECT_FALSE(parse_yaml_strict("a: [\n"));
  std::string deep;
  for (int i = 0; i < 40; ++i) deep += "[";
  for (int i = 0; i < 40; ++i) deep += "]";
  EXPECT_FALSE(parse_yaml_strict(deep));
  // Anchors used as a "billion laughs" expansion are bounded by the node budget.
  std::string bomb = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (int i = 1; i < 8; ++i) {
    bomb += "a" + std::to_string(i) + ": &a" + std::to_string(i) + " [";
    for (int j = 0; j < 10; ++j) bomb += std::string(j ? ", " : "") + "*a" + std::to_string(i - 1);
    bomb += "]\n";
  }
  auto b = parse_yaml_strict(bomb);
  ASSERT_FALSE(b);
  EXPECT_NE(b.error().message.find("nodes"), std::string::npos) << b.error().message;
  auto big = parse_yaml_strict(std::string(2000, ' '), YamlLimits{.max_bytes = 1000});
  ASSERT_FALSE(big);
  EXPECT_EQ(big.error().code, Errc::too_large);
}

TEST(Strict, UnknownMembersAndPrintable) {
  Json o = *parse_json_strict(R"({"a":1,"b\u0007":2})");
  auto r = json_only_members(o, "doc", {"a"});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "doc.b?: unknown key");
  EXPECT_TRUE(json_only_members(o, "", {"a", "b\a"}));
  auto y = parse_yaml_strict("a: 1\nz: 2\n");
  ASSERT_TRUE(y);
  auto yr = yaml_only_keys(*y, "", {"a"});
  ASSERT_FALSE(yr);
  EXPECT_EQ(yr.error().message, "z: unknown key");
  EXPECT_EQ(printable("ab\n\xc3\xa9", 64), "ab???");
  EXPECT_EQ(printable(std::string(70, 'x'), 64), std::string(64, 'x') + "...");
  // dump_safe never throws on bytes that are not UTF-8.
  Json j = {{"detail", std::string("\xc3")}};
  EXPECT_THROW((void)j.dump(), nlohmann::json::type_error);
  EXPECT_NO_THROW((void)dump_safe(j));
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

namespace {

// Adds the Ed25519 group order L to the little-endian scalar S in sig[32..64).
Ed25519Signature add_group_order(Ed25519Signature sig) {
  constexpr std::uint8_t kL[32] = {0xed, 0xd3, 0xf5, 0x5c, 0x1a, 0x63, 0x12, 0x58, 0xd6, 0x9c, 0xf7,
                                   0xa2, 0xde, 0xf9, 0xde, 0x14, 0,    0,    0,    0,    0,    0,
                                   0,    0,    0,    0,    0,    0,    0,    0,    0,    0x10};
  unsigned carry = 0;
  for (std::size_t i = 0; i < 32; ++i) {
    const unsigned sum = sig[32 + i] + kL[i] + carry;
    sig[32 + i] = static_cast<std::uint8_t>(sum & 0xff);
    carry = sum >> 8;
  }
  return sig;
}

}  // namespace

TEST(Crypto, Ed25519RejectsMalleatedScalar) {
  auto key = Ed25519PrivateKey::generate();
  ASSERT_TRUE(key);
  auto msg = sha256("record");
  auto sig = key->sign(msg);
  ASSERT_TRUE(ed25519_verify(key->public_key(), msg, sig));
  // S + L is the same scalar mod L: a lax verifier accepts it as a second signature.
  EXPECT_FALSE(ed25519_verify(key->public_key(), msg, add_group_order(sig)));
  // S = L exactly (R kept) and S with the top bits set are out of range as well.
  auto s_is_l = sig;
  std::fill(s_is_l.begin() + 32, s_is_l.end(), 0);
  s_is_l = add_group_order(s_is_l);
  EXPECT_FALSE(ed25519_verify(key->public_key(), msg, s_is_l));
  auto high = sig;
  high[63] |= 0xe0;
  EXPECT_FALSE(ed25519_verify(key->public_key(), msg, high));
}

TEST(Crypto, Ed25519RejectsNonCanonicalEncodings) {
  // The identity point: y = 1, canonically 01 00..00; non-canonically y = p + 1.
  Ed25519PublicKey identity{};
  identity[0] = 0x01;
  Ed25519PublicKey identity_noncanonical{};
  std::fill(identity_noncanonical.begin(), identity_noncanonical.end(), 0xff);
  identity_noncanonical[0] = 0xee;
  identity_noncanonical[31] = 0x7f;
  auto msg = sha256("record");
  // Under the identity key, R = identity with S = 0 satisfies the verification
  // equation for every message; a strict verifier must still refuse the odd spellings.
  Ed25519Signature sig{};
  std::copy(identity.begin(), identity.end(), sig.begin());
  EXPECT_FALSE(ed25519_verify(identity_noncanonical, msg, sig));
  Ed25519Signature sig_noncanonical_r{};
  std::copy(identity_noncanonical.begin(), identity_noncanonical.end(), sig_noncanonical_r.begin());
  EXPECT_FALSE(ed25519_verify(identity, msg, sig_noncanonical_r));
  EXPECT_FALSE(ed25519_verify(identity_noncanonical, msg, sig_noncanonical_r));
}

TEST(Crypto, Ed25519RejectsSmallOrderKeys) {
  // Under a small-order key, R = identity and S = 0 verify for any message (OpenSSL
  // 3.0 accepts it); such a key must never be usable as a pinned identity.
  auto msg = sha256("anything at all");
  Ed25519Signature sig{};
  sig[0] = 0x01;  // R = identity
  Ed25519PublicKey identity{};
  identity[0] = 0x01;
  EXPECT_FALSE(ed25519_verify(identity, msg, sig));
  Ed25519PublicKey order8{};
  const std::uint8_t y8[32] = {0xc7, 0x17, 0x6a, 0x70, 0x3d, 0x4d, 0xd8, 0x4f, 0xba, 0x3c, 0x0b,
                               0x76, 0x0d, 0x10, 0x67, 0x0f, 0x2a, 0x20, 0x53, 0xfa, 0x2c, 0x39,
                               0xcc, 0xc6, 0x4e, 0xc7, 0xfd, 0x77, 0x92, 0xac, 0x03, 0x7a};
  std::copy(std::begin(y8), std::end(y8), order8.begin());
  EXPECT_FALSE(ed25519_verify(order8, msg, sig));
  order8[31] |= 0x80;
  EXPECT_FALSE(ed25519_verify(order8, msg, sig));
  // Real keys are unaffected.
  auto key = Ed25519PrivateKey::generate();
  ASSERT_TRUE(key);
  EXPECT_TRUE(ed25519_verify(key->public_key(), msg, key->sign(msg)));
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
