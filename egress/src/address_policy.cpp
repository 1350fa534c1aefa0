#include <delegate/egress/address_policy.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace delegate::egress {
namespace {

struct Forbidden {
  const char* cidr;
  std::string_view why;
};

// Everything that is not public unicast. IPv6 forms that embed an IPv4 address
// (IPv4-mapped, IPv4-compatible, NAT64) are judged by that IPv4 address as well.
constexpr Forbidden kForbidden[] = {
    {"0.0.0.0/8", "unspecified"},        {"127.0.0.0/8", "loopback"},
    {"10.0.0.0/8", "private"},           {"172.16.0.0/12", "private"},
    {"192.168.0.0/16", "private"},       {"169.254.0.0/16", "link-local"},
    {"100.64.0.0/10", "shared (CGNAT)"}, {"192.0.0.0/24", "IETF protocol assignments"},
    {"198.18.0.0/15", "benchmarking"},   {"224.0.0.0/4", "multicast"},
    {"240.0.0.0/4", "reserved"},         {"::/128", "unspecified"},
    {"::1/128", "loopback"},             {"fe80::/10", "link-local"},
    {"fec0::/10", "site-local"},         {"fc00::/7", "unique local"},
    {"ff00::/8", "multicast"},
};

const std::vector<std::pair<Cidr, std::string_view>>& forbidden() {
  static const auto table = [] {
    std::vector<std::pair<Cidr, std::string_view>> t;
    for (const auto& f : kForbidden) t.emplace_back(*parse_cidr(f.cidr), f.why);
    return t;
  }();
  return table;
}

// The IPv4 address an IPv6 address stands for, if any: ::ffff:a.b.c.d, ::a.b.c.d and
// 64:ff9b::a.b.c.d.
std::optional<IpAddress> embedded_v4(const IpAddress& a) {
  if (a.family != AF_INET6) return std::nullopt;
  static constexpr std::uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  static constexpr std::uint8_t kCompat[12] = {};
  static constexpr std::uint8_t kNat64[12] = {0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  const bool compat = std::memcmp(a.bytes.data(), kCompat, 12) == 0;
  // :: and ::1 are themselves, not IPv4-compatible forms of 0.0.0.0 and 0.0.0.1.
  const bool tiny = compat && a.bytes[12] == 0 && a.bytes[13] == 0 && a.bytes[14] == 0 && a.bytes[15] <= 1;
  if (std::memcmp(a.bytes.data(), kMapped, 12) != 0 && !(compat && !tiny) &&
      std::memcmp(a.bytes.data(), kNat64, 12) != 0) {
    return std::nullopt;
  }
  IpAddress v4;
  v4.family = AF_INET;
  std::memcpy(v4.bytes.data(), a.bytes.data() + 12, 4);
  return v4;
}

}  // namespace

std::optional<IpAddress> parse_ip(std::string_view text) {
  const std::string s(text);
  IpAddress a;
  if (s.size() <= 15 && ::inet_pton(AF_INET, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET;
    return a;
  }
  if (s.size() <= 45 && ::inet_pton(AF_INET6, s.c_str(), a.bytes.data()) == 1) {
    a.family = AF_INET6;
    return a;
  }
  return std::nullopt;
}

std::optional<IpAddress> from_sockaddr(const sockaddr* sa) {
  IpAddress a;
  if (sa->sa_family == AF_INET) {
    a.family = AF_INET;
    std::memcpy(a.bytes.data(), &reinterpret_cast<const sockaddr_in*>(sa)->sin_addr, 4);
    return a;
  }
  if (sa->sa_family == AF_INET6) {
    a.family = AF_INET6;
    std::memcpy(a.bytes.data(), &reinterpret_cast<const sockaddr_in6*>(sa)->sin6_addr, 16);
    return a;
  }
  return std::nullopt;
}

std::string to_string(const IpAddress& a) {
  char buf[INET6_ADDRSTRLEN] = {};
  ::inet_ntop(a.family, a.bytes.data(), buf, sizeof buf);
  return buf;
}

bool Cidr::contains(const IpAddress& a) const {
  if (a.family != base.family) return false;
  const unsigned full = prefix / 8;
  if (std::memcmp(a.bytes.data(), base.bytes.data(), full) != 0) return false;
  const unsigned rest = prefix % 8;
  if (rest == 0) return true;
  const auto mask = static_cast<std::uint8_t>(0xff << (8 - rest));
  return (a.bytes[full] & mask) == (base.bytes[full] & mask);
}

Result<Cidr> parse_cidr(std::string_view text) {
  const auto slash = text.find('/');
  auto ip = parse_ip(text.substr(0, slash));
  if (!ip) return fail(Errc::parse, "not an IP address or CIDR range");
  const unsigned max = ip->family == AF_INET ? 32 : 128;
  Cidr c{*ip, max};
  if (slash != std::string_view::npos) {
    const auto p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 || (p.size() > 1 && p.front() == '0')) return fail(Errc::parse, "invalid prefix length");
    unsigned v = 0;
    for (char ch : p) {
      if (ch < '0' || ch > '9') return fail(Errc::parse, "invalid prefix length");
      v = v * 10 + static_cast<unsigned>(ch - '0');
    }
    if (v > max) return fail(Errc::parse, "prefix length out of range");
    c.prefix = v;
  }
  // 10.1.2.3/8 is most likely a typo for something narrower: refuse it.
  Cidr zeroed = c;
  for (unsigned bit = c.prefix; bit < max; ++bit) {
    zeroed.base.bytes[bit / 8] = static_cast<std::uint8_t>(zeroed.base.bytes[bit / 8] & ~(0x80u >> (bit % 8)));
  }
  if (zeroed.base != c.base) return fail(Errc::parse, "host bits set after the prefix");
  return c;
}

std::optional<std::string_view> AddressPolicy::refusal(const IpAddress& a) const {
  const auto v4 = embedded_v4(a);
  for (const auto& allowed : allow_) {
    if (allowed.contains(a) || (v4 && allowed.contains(*v4))) return std::nullopt;
  }
  for (const auto& [range, why] : forbidden()) {
    if (range.contains(a) || (v4 && range.contains(*v4))) return why;
  }
  // An IPv4-compatible or NAT64 form of a public address is still an unusual thing for a
  // name to resolve to, but it is public: allowed like the IPv4 address itself.
  return std::nullopt;
}

}  // namespace delegate::egress
