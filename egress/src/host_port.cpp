#include <delegate/egress/host_port.hpp>

#include <arpa/inet.h>

#include <algorithm>

namespace delegate::egress {
namespace {

constexpr std::size_t kMaxName = 253;
constexpr std::size_t kMaxLabel = 63;

bool ldh(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-'; }

Result<std::string> dns_name(std::string_view in) {
  if (in.empty()) return fail(Errc::parse, "empty host");
  if (in.size() > kMaxName) return fail(Errc::parse, "host name longer than 253 characters");
  std::string name(in);
  std::transform(name.begin(), name.end(), name.begin(),
                 [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; });
  std::size_t start = 0;
  std::string_view last;
  while (true) {
    const auto dot = name.find('.', start);
    const std::string_view label = std::string_view(name).substr(start, dot == std::string::npos ? dot : dot - start);
    if (label.empty()) return fail(Errc::parse, "host name has an empty label");
    if (label.size() > kMaxLabel) return fail(Errc::parse, "host name label longer than 63 characters");
    if (!std::all_of(label.begin(), label.end(), ldh)) {
      return fail(Errc::parse, "host name may contain only letters, digits, '-' and '.'");
    }
    if (label.front() == '-' || label.back() == '-') return fail(Errc::parse, "host name label starts or ends with '-'");
    last = label;
    if (dot == std::string::npos) break;
    start = dot + 1;
  }
  // "1.2.3.256" or "0x7f.1" look numeric to some resolvers (inet_aton's forms): a name
  // whose last label is all digits is refused rather than guessed at.
  if (std::all_of(last.begin(), last.end(), [](char c) { return c >= '0' && c <= '9'; })) {
    return fail(Errc::parse, "host is neither a DNS name nor a dotted-quad IPv4 address");
  }
  return name;
}

Result<std::uint16_t> port_number(std::string_view p) {
  if (p.empty()) return fail(Errc::parse, "missing port");
  if (p.size() > 5 || p.front() == '0') return fail(Errc::parse, "port must be 1..65535 without leading zeros");
  unsigned v = 0;
  for (char c : p) {
    if (c < '0' || c > '9') return fail(Errc::parse, "port must be decimal digits");
    v = v * 10 + static_cast<unsigned>(c - '0');
  }
  if (v < 1 || v > 65535) return fail(Errc::parse, "port must be 1..65535");
  return static_cast<std::uint16_t>(v);
}

}  // namespace

Result<HostPort> parse_host_port(std::string_view text) {
  HostPort out;
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos) return fail(Errc::parse, "IPv6 literal without ']'");
    if (close + 1 >= text.size() || text[close + 1] != ':') return fail(Errc::parse, "missing ':port' after the IPv6 literal");
    const std::string literal(text.substr(1, close - 1));
    in6_addr a6{};
    // inet_pton refuses zone ids ("%eth0") and anything else that is not an address.
    if (literal.empty() || literal.size() > 45 || ::inet_pton(AF_INET6, literal.c_str(), &a6) != 1) {
      return fail(Errc::parse, "invalid IPv6 literal");
    }
    char buf[INET6_ADDRSTRLEN] = {};
    ::inet_ntop(AF_INET6, &a6, buf, sizeof buf);
    out.host = std::string("[") + buf + "]";
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return fail(Errc::parse, "missing ':port'");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return fail(Errc::parse, "an IPv6 literal must be in brackets");
    const std::string h(host);
    in_addr a4{};
    if (!h.empty() && h.size() <= 15 && ::inet_pton(AF_INET, h.c_str(), &a4) == 1) {
      char buf[INET_ADDRSTRLEN] = {};
      ::inet_ntop(AF_INET, &a4, buf, sizeof buf);
      out.host = buf;
    } else {
      auto name = dns_name(host);
      if (!name) return std::unexpected(name.error());
      out.host = std::move(*name);
    }
  }
  auto p = port_number(port);
  if (!p) return std::unexpected(p.error());
  out.port = *p;
  return out;
}

std::string to_string(const HostPort& hp) { return hp.host + ":" + std::to_string(hp.port); }

std::string bare_host(const HostPort& hp) {
  if (!hp.host.empty() && hp.host.front() == '[') return hp.host.substr(1, hp.host.size() - 2);
  return hp.host;
}

}  // namespace delegate::egress
