// The OAuth2 token response parser (untrusted input parsed in the agent) and the cache.
#include <gtest/gtest.h>

#include <delegate/agent/token_cache.hpp>

namespace delegate::agent {
namespace {

const std::string kGood = R"({"access_token":"eyJhbGciOi.J9-_~+/abc==","token_type":"bearer","expires_in":3600,"scope":"a b"})";

TEST(TokenResponse, AWellFormedAnswerParses) {
  auto t = parse_token_response(kGood);
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->access_token, "eyJhbGciOi.J9-_~+/abc==");
  EXPECT_EQ(t->expires_in, 3600);
  EXPECT_TRUE(parse_token_response(R"({"access_token":"abc12345","token_type":"Bearer","expires_in":1})"));
}

TEST(TokenResponse, HostileOrMalformedAnswersAreRefusedWithoutQuotingTheToken) {
  const std::vector<std::string> bad = {
      "",
      "[]",
      R"({"access_token":"abc12345","token_type":"bearer"})",                          // no expires_in
      R"({"access_token":"abc12345","token_type":"mac","expires_in":60})",             // not bearer
      R"({"access_token":"abc12345","expires_in":60})",                                // no type
      R"({"access_token":"abc12345","token_type":"bearer","expires_in":0})",           // too short
      R"({"access_token":"abc12345","token_type":"bearer","expires_in":86401})",       // too long
      R"({"access_token":"abc12345","token_type":"bearer","expires_in":-5})",
      R"({"access_token":"abc12345","token_type":"bearer","expires_in":18446744073709551615})",
      R"({"access_token":"abc12345","token_type":"bearer","expires_in":"60"})",
      R"({"access_token":"abc12345","token_type":"bearer","expires_in":60.5})",
      R"({"access_token":"","token_type":"bearer","expires_in":60})",
      R"({"access_token":"abc\r\nX-Injected: 1","token_type":"bearer","expires_in":60})",  // header injection
      R"({"access_token":"abc 12345","token_type":"bearer","expires_in":60})",
      R"({"access_token":"a=bc12345","token_type":"bearer","expires_in":60})",
      R"({"access_token":12345678,"token_type":"bearer","expires_in":60})",
      R"({"access_token":"abc12345","access_token":"zzz12345","token_type":"bearer","expires_in":60})",  // duplicate
      R"({"access_token":"abc12345","token_type":"bearer","expires_in":60,"x":[[[[[[[[1]]]]]]]]})",      // deep
  };
  for (const auto& b : bad) {
    auto t = parse_token_response(b);
    EXPECT_FALSE(t) << b;
    if (!t) {
      EXPECT_EQ(t.error().message.find("abc"), std::string::npos) << t.error().message;
      EXPECT_EQ(t.error().message.find('\n'), std::string::npos) << t.error().message;
    }
  }
  EXPECT_FALSE(parse_token_response(std::string(R"({"access_token":")") + std::string(9000, 'a') +
                                    R"(","token_type":"bearer","expires_in":60})"));
  EXPECT_FALSE(parse_token_response(std::string(kMaxTokenResponse + 1, ' ')));
}

TEST(TokenResponse, BitFlipsAndTruncationsNeverYieldADifferentToken) {
  for (std::size_t len = 0; len < kGood.size(); ++len) EXPECT_FALSE(parse_token_response(kGood.substr(0, len))) << len;
  for (std::size_t i = 0; i < kGood.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string m = kGood;
      m[i] = static_cast<char>(m[i] ^ (1 << bit));
      auto t = parse_token_response(m);
      if (!t) continue;
      // What still parses is a well-formed answer: a token of token characters, a lifetime in range.
      EXPECT_GE(t->expires_in, 1);
      EXPECT_LE(t->expires_in, kMaxTokenLifetime);
      EXPECT_EQ(t->access_token.find_first_of(" \r\n\"\\"), std::string::npos);
    }
  }
}

TEST(TokenCacheTest, ReusedUntilThirtySecondsBeforeExpiryAndInvalidatedOnlyForTheSameToken) {
  FixedClock clock{std::chrono::system_clock::now()};
  TokenCache cache(clock);
  const TokenKey key{"https://idp/token", "c1", "a b", "fp1"};
  const TokenKey other{"https://idp/token", "c1", "a b", "fp2"};  // another client secret
  EXPECT_FALSE(cache.get(key));
  cache.put(key, "tok-1", 100);
  EXPECT_EQ(cache.get(key), "tok-1");
  EXPECT_FALSE(cache.get(other));
  clock.set(clock.now() + std::chrono::seconds(69));
  EXPECT_EQ(cache.get(key), "tok-1");
  clock.set(clock.now() + std::chrono::seconds(1));
  EXPECT_FALSE(cache.get(key));
  cache.put(key, "tok-2", 3600);
  cache.invalidate(key, "tok-1");  // a stale 401: the newer token stays
  EXPECT_EQ(cache.get(key), "tok-2");
  cache.invalidate(key, "tok-2");
  EXPECT_FALSE(cache.get(key));
  cache.put(key, "tok-3", 10);  // shorter than the margin: never served from the cache
  EXPECT_FALSE(cache.get(key));
}

}  // namespace
}  // namespace delegate::agent
