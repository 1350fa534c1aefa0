// The CONNECT request head and host:port parsing: the proxy's untrusted input.
#include <gtest/gtest.h>

#include <delegate/egress/connect_request.hpp>
#include <delegate/egress/host_port.hpp>

namespace delegate::egress {
namespace {

const std::string kGood = "CONNECT api.example.com:443 HTTP/1.1\r\nHost: api.example.com:443\r\nUser-Agent: curl/7.88.1\r\n"
                          "Proxy-Connection: Keep-Alive\r\n\r\n";

TEST(HostPort, CanonicalForms) {
  EXPECT_EQ(to_string(*parse_host_port("API.Example.COM:443")), "api.example.com:443");
  EXPECT_EQ(to_string(*parse_host_port("10.0.0.5:8443")), "10.0.0.5:8443");
  EXPECT_EQ(to_string(*parse_host_port("[2001:DB8:0::1]:443")), "[2001:db8::1]:443");
  EXPECT_EQ(to_string(*parse_host_port("[::ffff:127.0.0.1]:1")), "[::ffff:127.0.0.1]:1");
  EXPECT_EQ(to_string(*parse_host_port("a-b.c9:65535")), "a-b.c9:65535");
  EXPECT_EQ(bare_host(*parse_host_port("[::1]:80")), "::1");
}

TEST(HostPort, RefusesEverythingElse) {
  for (const char* bad :
       {"", ":443", "host", "host:", "host:0", "host:65536", "host:0443", "host:+443", "host:44a", "host:443 ",
        " host:443", "-host.com:443", "host-.com:443", "ho_st.com:443", "host..com:443", ".host.com:443",
        "host.com.:443", "ho st:443", "2001:db8::1:443", "[2001:db8::1]", "[2001:db8::1]443", "[fe80::1%eth0]:443",
        "[1.2.3.4]:443", "[]:443", "1.2.3:443", "1.2.3.256:443", "127.1:80", "0x7f.0.0.1:80", "01.2.3.4:80",
        "host\x00.com:443", "h\xc3\xa9.com:443", "user@host:443", "host:443/path"}) {
    EXPECT_FALSE(parse_host_port(bad)) << bad;
  }
  EXPECT_FALSE(parse_host_port(std::string(64, 'a') + ".com:443"));  // label > 63
  EXPECT_TRUE(parse_host_port(std::string(63, 'a') + ".com:443"));
  std::string long_name;
  for (int i = 0; i < 64; ++i) long_name += "abc.";
  EXPECT_FALSE(parse_host_port(long_name + "com:443"));  // > 253
}

TEST(Connect, ParsesAStrictRequest) {
  auto t = parse_connect(kGood);
  ASSERT_TRUE(t) << t.error().message;
  EXPECT_EQ(t->host, "api.example.com");
  EXPECT_EQ(t->port, 443);
  EXPECT_TRUE(parse_connect("CONNECT [::1]:8443 HTTP/1.1\r\n\r\n"));
  EXPECT_EQ(head_length(kGood + "tail"), kGood.size());
  EXPECT_FALSE(head_length("CONNECT a:1 HTTP/1.1\r\n\r"));
}

TEST(Connect, RefusesOtherRequestsWithOneLineErrors) {
  for (const std::string& bad : {
           std::string("GET http://api.example.com/ HTTP/1.1\r\nHost: api.example.com\r\n\r\n"),
           std::string("connect api.example.com:443 HTTP/1.1\r\n\r\n"),
           std::string("CONNECT api.example.com:443 HTTP/1.0\r\n\r\n"),
           std::string("CONNECT api.example.com:443  HTTP/1.1\r\n\r\n"),
           std::string("CONNECT  api.example.com:443 HTTP/1.1\r\n\r\n"),
           std::string("CONNECT http://api.example.com:443 HTTP/1.1\r\n\r\n"),
           std::string("CONNECT api.example.com HTTP/1.1\r\n\r\n"),
           std::string("CONNECT api.example.com:443 HTTP/1.1\n\r\n\r\n"),
           std::string("CONNECT api.example.com:443 HTTP/1.1\r\nHost: a\nX: b\r\n\r\n"),
           std::string("CONNECT api.example.com:443 HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n"),
           std::string("CONNECT api.example.com:443 HTTP/1.1\r\nNo colon\r\n\r\n"),
           std::string("CONNECT api.example.com:443 HTTP/1.1\r\n: empty\r\n\r\n"),
           std::string("CONNECT api.example.com:443 HTTP/1.1\r\nX: \x01\r\n\r\n"),
           std::string("CONNECT api.example.com:443 HTTP/1.1\r\nX: \xff\r\n\r\n"),
           std::string("CONNECT api.example.com:443 HTTP/1.1\r\n\r\nextra"),
           std::string("CONNECT api.example.com:443 HTTP/1.1\r\n"),
           std::string("CONNECT api.example.com:443\tHTTP/1.1\r\n\r\n"),
       }) {
    auto r = parse_connect(bad);
    ASSERT_FALSE(r) << bad;
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos);
  }
}

TEST(Connect, OversizeHeadIsRefused) {
  std::string big = "CONNECT a.com:443 HTTP/1.1\r\nX: " + std::string(kMaxConnectHead, 'a') + "\r\n\r\n";
  auto r = parse_connect(big);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::too_large);
}

// Every truncation of a good head fails; every single-bit flip either fails or still
// yields a valid canonical target (never a crash, never a target outside the grammar).
TEST(Connect, TruncationsAndBitFlips) {
  for (std::size_t n = 0; n < kGood.size(); ++n) EXPECT_FALSE(parse_connect(kGood.substr(0, n))) << n;
  std::size_t accepted = 0;
  for (std::size_t i = 0; i < kGood.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string m = kGood;
      m[i] = static_cast<char>(m[i] ^ (1 << bit));
      auto r = parse_connect(m);
      if (!r) continue;
      ++accepted;
      auto again = parse_host_port(to_string(*r));
      ASSERT_TRUE(again);
      EXPECT_EQ(*again, *r);
    }
  }
  EXPECT_LT(accepted, kGood.size() * 8);
}

}  // namespace
}  // namespace delegate::egress
