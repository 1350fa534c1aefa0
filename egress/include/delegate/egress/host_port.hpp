#pragma once
// A `host:port` an egress allowlist names and a CONNECT request asks for, in one
// canonical form so that the two compare exactly: a DNS name lower-cased (LDH labels,
// no trailing dot), an IPv4 literal in dotted-quad, an IPv6 literal in brackets as
// inet_ntop prints it, and a port 1..65535 in decimal without leading zeros.
#include <cstdint>
#include <string>
#include <string_view>

#include <delegate/common/error.hpp>

namespace delegate::egress {

struct HostPort {
  std::string host;  // canonical: "api.example.com", "10.0.0.5" or "[2001:db8::1]"
  std::uint16_t port = 0;
  bool operator==(const HostPort&) const = default;
};

// Strict: anything that is not exactly one of the forms above fails (Errc::parse) with
// a one-line reason that does not echo the input.
[[nodiscard]] Result<HostPort> parse_host_port(std::string_view text);

// "host:port" in canonical form.
[[nodiscard]] std::string to_string(const HostPort& hp);

// The host without brackets, as a resolver or inet_pton wants it.
[[nodiscard]] std::string bare_host(const HostPort& hp);

}  // namespace delegate::egress
