// The http step's child: where a redirect would lead (judged by the same URL parser that
// then follows it), and a request spec it cannot use answered with an error line.
#include <gtest/gtest.h>

#include <delegate/connectors/http_request.hpp>

namespace delegate::connectors {
namespace {

TEST(HttpsAuthority, NamesTheHostAndPortARedirectWouldReach) {
  EXPECT_EQ(https_authority("https://API.Example.com/v2?x=1"), "api.example.com:443");
  EXPECT_EQ(https_authority("https://api.example.com:8443/"), "api.example.com:8443");
  EXPECT_EQ(https_authority("https://user:pw@evil.example.net:444/x"), "evil.example.net:444");
  EXPECT_EQ(https_authority("https://[::1]:8443/"), "[::1]:8443");
  EXPECT_EQ(https_authority("https://127.0.0.1/"), "127.0.0.1:443");
  // Not https, or not a whole URL: never a match for an allowlist entry.
  EXPECT_EQ(https_authority("http://api.example.com/"), "");
  EXPECT_EQ(https_authority("file:///etc/passwd"), "");
  EXPECT_EQ(https_authority("/relative/path"), "");
  EXPECT_EQ(https_authority(""), "");
}

TEST(HttpRequestChild, AnUnusableSpecIsAnErrorLineNotACrash) {
  for (const Json& spec : {Json::object(), Json{{"method", "GET"}}, Json{{"method", 1}, {"url", "x"}},
                           Json{{"method", "GET"}, {"url", "https://127.0.0.1:1/"}, {"headers", "nope"}, {"timeout_ms", 100}}}) {
    const Json r = perform_http_request(spec);
    ASSERT_TRUE(r.contains("error")) << spec.dump() << " -> " << r.dump();
    EXPECT_FALSE(r.contains("status")) << r.dump();
  }
  // Nothing listens on port 1: a connection error, reported as such.
  const Json r = perform_http_request(
      Json{{"method", "GET"}, {"url", "https://127.0.0.1:1/"}, {"headers", Json::array()}, {"timeout_ms", 2000}});
  ASSERT_TRUE(r.contains("error")) << r.dump();
  EXPECT_NE(r["error"].get<std::string>().find("request failed"), std::string::npos) << r.dump();
  // A plain-http URL is never fetched (https only), even when handed to the child.
  const Json plain = perform_http_request(
      Json{{"method", "GET"}, {"url", "http://127.0.0.1:1/"}, {"headers", Json::array()}, {"timeout_ms", 2000}});
  ASSERT_TRUE(plain.contains("error")) << plain.dump();
}

}  // namespace
}  // namespace delegate::connectors
