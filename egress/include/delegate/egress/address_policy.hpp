#pragma once
// Which resolved addresses the egress proxy may connect to. An allowlisted name that
// resolves (or is re-pointed) to the host itself, the local network, a cloud metadata
// service or anything else that is not a public unicast address is refused, unless the
// agent's configuration lists that range in sandbox.egress_allow_cidrs.
#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>

namespace delegate::egress {

struct IpAddress {
  int family = AF_INET;                // AF_INET or AF_INET6
  std::array<std::uint8_t, 16> bytes{};  // network order; IPv4 uses the first 4
  bool operator==(const IpAddress&) const = default;
};

[[nodiscard]] std::optional<IpAddress> parse_ip(std::string_view text);
[[nodiscard]] std::optional<IpAddress> from_sockaddr(const sockaddr* sa);
[[nodiscard]] std::string to_string(const IpAddress& a);

struct Cidr {
  IpAddress base;
  unsigned prefix = 0;
  [[nodiscard]] bool contains(const IpAddress& a) const;
};

// "10.0.0.0/8", "fd00::/8"; a bare address means a single host. Host bits must be zero.
[[nodiscard]] Result<Cidr> parse_cidr(std::string_view text);

class AddressPolicy {
 public:
  AddressPolicy() = default;
  explicit AddressPolicy(std::vector<Cidr> allow) : allow_(std::move(allow)) {}
  // nullopt when the proxy may connect; otherwise the class of address that is refused
  // ("loopback", "private", "link-local", ...).
  [[nodiscard]] std::optional<std::string_view> refusal(const IpAddress& a) const;

 private:
  std::vector<Cidr> allow_;
};

}  // namespace delegate::egress
