#include <delegate/egress/connect_request.hpp>

#include <algorithm>

namespace delegate::egress {
namespace {

// RFC 9110 tchar.
bool tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Visible ASCII, space and tab. Bytes >= 0x80 are refused too: nothing a proxy client
// legitimately sends needs them, and they are where parsers disagree.
bool field_char(char c) { return c == ' ' || c == '\t' || (c >= 0x21 && c <= 0x7e); }

Result<void> header_line(std::string_view line) {
  const auto colon = line.find(':');
  if (colon == std::string_view::npos || colon == 0) return fail(Errc::parse, "malformed header line");
  const auto name = line.substr(0, colon);
  if (!std::all_of(name.begin(), name.end(), tchar)) return fail(Errc::parse, "invalid header name");
  const auto value = line.substr(colon + 1);
  if (!std::all_of(value.begin(), value.end(), field_char)) return fail(Errc::parse, "invalid byte in a header value");
  return ok();
}

}  // namespace

std::optional<std::size_t> head_length(std::string_view buf) {
  const auto end = buf.find("\r\n\r\n");
  if (end == std::string_view::npos) return std::nullopt;
  return end + 4;
}

Result<HostPort> parse_connect(std::string_view head) {
  if (head.size() > kMaxConnectHead) return fail(Errc::too_large, "request head larger than 8 KiB");
  const auto len = head_length(head);
  if (!len) return fail(Errc::parse, "incomplete request head");
  if (*len != head.size()) return fail(Errc::parse, "bytes after the request head");
  const auto line_end = head.find("\r\n");
  const std::string_view request_line = head.substr(0, line_end);
  constexpr std::string_view kMethod = "CONNECT ";
  constexpr std::string_view kVersion = " HTTP/1.1";
  if (!request_line.starts_with(kMethod)) return fail(Errc::parse, "only CONNECT is supported");
  if (!request_line.ends_with(kVersion) || request_line.size() < kMethod.size() + kVersion.size() + 1) {
    return fail(Errc::parse, "request line must be CONNECT host:port HTTP/1.1");
  }
  const auto authority =
      request_line.substr(kMethod.size(), request_line.size() - kMethod.size() - kVersion.size());
  if (std::any_of(authority.begin(), authority.end(), [](char c) { return c <= 0x20 || c >= 0x7f; })) {
    return fail(Errc::parse, "request line must be CONNECT host:port HTTP/1.1");
  }
  auto target = parse_host_port(authority);
  if (!target) return fail(Errc::parse, "CONNECT target: " + target.error().message);

  // Header lines up to the empty line that ends the head. A bare CR or LF anywhere is
  // refused: each line must end in CRLF.
  std::size_t pos = line_end + 2;
  const std::size_t body_start = *len - 2;  // the final CRLF
  while (pos < body_start) {
    const auto eol = head.find("\r\n", pos);
    const auto line = head.substr(pos, eol - pos);
    if (line.front() == ' ' || line.front() == '\t') return fail(Errc::parse, "folded header lines are not allowed");
    if (line.find('\r') != std::string_view::npos || line.find('\n') != std::string_view::npos) {
      return fail(Errc::parse, "bare CR or LF in the request head");
    }
    if (auto r = header_line(line); !r) return std::unexpected(r.error());
    pos = eol + 2;
  }
  return target;
}

}  // namespace delegate::egress
