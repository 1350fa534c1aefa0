#pragma once
// Strict JSON for untrusted input: nlohmann's default parser silently keeps the last
// of duplicate members and has no depth limit; both are attack surface (parser
// differentials, stack exhaustion). parse_json_strict rejects duplicates, caps depth and
// size, and requires valid UTF-8. A duplicate is reported as "duplicate key a.b[2].c".
#include <cstddef>
#include <string_view>

#include <nlohmann/json.hpp>

#include <delegate/common/error.hpp>

namespace delegate {

using Json = nlohmann::json;

struct JsonLimits {
  std::size_t max_bytes = 1u << 20;
  std::size_t max_depth = 32;
};

[[nodiscard]] Result<Json> parse_json_strict(std::string_view text, JsonLimits limits = {});

// Typed member access for validating untrusted objects; the error names the member.
[[nodiscard]] Result<std::string> json_string(const Json& obj, const char* key);
[[nodiscard]] Result<std::int64_t> json_int(const Json& obj, const char* key);

}  // namespace delegate
