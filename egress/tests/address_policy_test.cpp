// The address policy: which resolved addresses the proxy may connect to.
#include <gtest/gtest.h>

#include <delegate/egress/address_policy.hpp>

namespace delegate::egress {
namespace {

std::optional<std::string_view> judge(const AddressPolicy& p, const char* ip) {
  auto a = parse_ip(ip);
  EXPECT_TRUE(a) << ip;
  return p.refusal(*a);
}

TEST(AddressPolicy, Table) {
  const AddressPolicy p;
  struct Row {
    const char* ip;
    const char* refused;  // nullptr: allowed
  };
  for (const Row& r : std::initializer_list<Row>{
           {"93.184.216.34", nullptr},        {"8.8.8.8", nullptr},
           {"2606:4700::1111", nullptr},      {"::ffff:8.8.8.8", nullptr},
           {"127.0.0.1", "loopback"},         {"127.255.255.254", "loopback"},
           {"10.1.2.3", "private"},           {"172.16.0.1", "private"},
           {"172.31.255.255", "private"},     {"172.32.0.1", nullptr},
           {"192.168.1.1", "private"},        {"169.254.169.254", "link-local"},
           {"100.64.0.1", "shared (CGNAT)"},  {"100.127.255.255", "shared (CGNAT)"},
           {"100.128.0.1", nullptr},          {"0.0.0.0", "unspecified"},
           {"224.0.0.1", "multicast"},        {"255.255.255.255", "reserved"},
           {"::", "unspecified"},             {"::1", "loopback"},
           {"fe80::1", "link-local"},         {"fd00::1", "unique local"},
           {"fc00::1", "unique local"},       {"ff02::1", "multicast"},
           {"::ffff:127.0.0.1", "loopback"},  {"::ffff:169.254.169.254", "link-local"},
           {"::ffff:10.0.0.1", "private"},    {"::127.0.0.1", "loopback"},
           {"64:ff9b::a9fe:a9fe", "link-local"}, {"::ffff:0.0.0.0", "unspecified"},
       }) {
    auto got = judge(p, r.ip);
    if (r.refused == nullptr) {
      EXPECT_FALSE(got) << r.ip << " refused as " << *got;
    } else {
      ASSERT_TRUE(got) << r.ip << " allowed";
      EXPECT_EQ(*got, r.refused) << r.ip;
    }
  }
}

TEST(AddressPolicy, AllowCidrsOpenExactlyTheirRange) {
  const AddressPolicy p({*parse_cidr("127.0.0.0/8"), *parse_cidr("::1")});
  EXPECT_FALSE(judge(p, "127.0.0.1"));
  EXPECT_FALSE(judge(p, "::ffff:127.0.0.1"));
  EXPECT_FALSE(judge(p, "::1"));
  EXPECT_TRUE(judge(p, "10.0.0.1"));
  EXPECT_TRUE(judge(p, "169.254.169.254"));
  const AddressPolicy narrow({*parse_cidr("10.0.0.5/32")});
  EXPECT_FALSE(judge(narrow, "10.0.0.5"));
  EXPECT_TRUE(judge(narrow, "10.0.0.6"));
}

TEST(Cidr, ParsesStrictly) {
  EXPECT_TRUE(parse_cidr("10.0.0.0/8"));
  EXPECT_TRUE(parse_cidr("fd00::/8"));
  EXPECT_TRUE(parse_cidr("0.0.0.0/0"));
  for (const char* bad : {"10.0.0.1/8", "10.0.0.0/33", "10.0.0.0/", "10.0.0.0/08", "fd00::/129", "host/8", "10.0.0.0/8x", ""}) {
    EXPECT_FALSE(parse_cidr(bad)) << bad;
  }
  auto c = parse_cidr("172.16.0.0/12");
  EXPECT_TRUE(c->contains(*parse_ip("172.20.1.1")));
  EXPECT_FALSE(c->contains(*parse_ip("172.32.0.0")));
  EXPECT_FALSE(c->contains(*parse_ip("::ffff:172.20.1.1")));  // family-exact; the policy unwraps
}

}  // namespace
}  // namespace delegate::egress
