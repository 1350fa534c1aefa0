#pragma once
// Pieces of URIs (RFC 3986) built from values the agent does not control.
#include <string>
#include <string_view>

namespace delegate {

// Every byte but the unreserved set (A-Z a-z 0-9 - . _ ~) as %XX (upper-case hex), so the
// value stays one path segment, query value or form field (RFC 6749 appendix B uses the
// same encoding for client credentials).
[[nodiscard]] std::string percent_encode(std::string_view value);

}  // namespace delegate
