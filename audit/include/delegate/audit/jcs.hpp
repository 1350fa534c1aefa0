#pragma once
// RFC 8785 JSON Canonicalization Scheme: the byte string that record hashes cover.
#include <string>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>

namespace delegate::audit {

// Members sorted by UTF-16 code units, no insignificant whitespace, strings escaped
// minimally (\" \\ \b \f \n \r \t, other controls as \u00xx), numbers in ECMAScript
// shortest round-trip form. Fails on NaN/Infinity and on integers beyond 2^53, which
// JCS cannot represent exactly.
[[nodiscard]] Result<std::string> canonicalize(const Json& value);

}  // namespace delegate::audit
