#pragma once
// The one request the egress proxy understands: `CONNECT host:port HTTP/1.1`, its
// header lines, and the empty line that ends them. It comes from a sandboxed step, so it
// is untrusted: bounded (kMaxConnectHead), parsed strictly, and refused with a one-line
// reason on anything else (other methods, absolute-form proxying, HTTP/1.0, obs-fold,
// control bytes, bytes after the head).
#include <cstddef>
#include <optional>
#include <string_view>

#include <delegate/common/error.hpp>
#include <delegate/egress/host_port.hpp>

namespace delegate::egress {

inline constexpr std::size_t kMaxConnectHead = 8192;

// The length of the head (through the first CRLF CRLF) if `buf` holds a complete one.
[[nodiscard]] std::optional<std::size_t> head_length(std::string_view buf);

// `head` is exactly the request head, CRLF CRLF included. Errc::too_large beyond
// kMaxConnectHead, Errc::parse for everything else that is not a strict CONNECT.
[[nodiscard]] Result<HostPort> parse_connect(std::string_view head);

}  // namespace delegate::egress
