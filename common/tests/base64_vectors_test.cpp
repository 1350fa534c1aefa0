// base64 encoders (output records are 16 KiB of base64) against the RFC 4648 §10 test
// vectors and a byte-at-a-time reference over every length and byte value.
#include <delegate/common/encoding.hpp>

#include <string>

#include <gtest/gtest.h>

namespace {

std::string reference(const std::string& in, const char* alphabet, bool pad) {
  std::string out;
  std::size_t bits = 0, acc = 0;
  for (unsigned char c : in) {
    acc = (acc << 8) | c;
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(alphabet[(acc >> bits) & 63]);
    }
  }
  if (bits > 0) out.push_back(alphabet[(acc << (6 - bits)) & 63]);
  while (pad && out.size() % 4 != 0) out.push_back('=');
  return out;
}

}  // namespace

TEST(Base64Vectors, Rfc4648AndEveryLengthAgainstAReference) {
  using delegate::as_bytes;
  const std::pair<const char*, const char*> vectors[] = {{"", ""},         {"f", "Zg=="},         {"fo", "Zm8="},
                                                         {"foo", "Zm9v"},  {"foob", "Zm9vYg=="},  {"fooba", "Zm9vYmE="},
                                                         {"foobar", "Zm9vYmFy"}};
  for (const auto& [in, want] : vectors) EXPECT_EQ(delegate::base64_encode(as_bytes(std::string_view(in))), want);
  std::string data;
  for (int i = 0; i < 700; ++i) {
    data.push_back(static_cast<char>((i * 131 + 7) & 0xff));
    ASSERT_EQ(delegate::base64_encode(as_bytes(std::string_view(data))),
              reference(data, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/", true));
    ASSERT_EQ(delegate::base64url_encode(as_bytes(std::string_view(data))),
              reference(data, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", false));
  }
}
