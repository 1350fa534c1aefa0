#pragma once
// Binary-to-text encodings. Decoders are strict: they reject anything that a
// canonical encoder would not have produced, so one value has one spelling.
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>

namespace delegate {

using Bytes = std::vector<std::uint8_t>;

[[nodiscard]] std::string hex_encode(std::span<const std::uint8_t> data);
[[nodiscard]] Result<Bytes> hex_decode(std::string_view text);  // lowercase only

// RFC 4648 §4 with padding.
[[nodiscard]] std::string base64_encode(std::span<const std::uint8_t> data);
[[nodiscard]] Result<Bytes> base64_decode(std::string_view text);

// RFC 4648 §5 without padding (JOSE style). '=' '+' '/' and whitespace are rejected,
// as are non-zero trailing bits.
[[nodiscard]] std::string base64url_encode(std::span<const std::uint8_t> data);
[[nodiscard]] Result<Bytes> base64url_decode(std::string_view text);

[[nodiscard]] inline std::span<const std::uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

}  // namespace delegate
