#include <delegate/common/encoding.hpp>

#include <array>

namespace delegate {
namespace {

constexpr char kHex[] = "0123456789abcdef";
constexpr char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string encode(std::span<const std::uint8_t> in, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  // Whole groups written into a sized buffer: output records are 16 KiB of this.
  const std::size_t groups = in.size() / 3;
  out.resize(groups * 4);
  char* o = out.data();
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3, o += 4) {
    std::uint32_t v = (in[i] << 16) | (in[i + 1] << 8) | in[i + 2];
    o[0] = alphabet[(v >> 18) & 63];
    o[1] = alphabet[(v >> 12) & 63];
    o[2] = alphabet[(v >> 6) & 63];
    o[3] = alphabet[v & 63];
  }
  const std::size_t rest = in.size() - i;
  if (rest == 1) {
    std::uint32_t v = in[i] << 16;
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (pad) out += "==";
  } else if (rest == 2) {
    std::uint32_t v = (in[i] << 16) | (in[i + 1] << 8);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    out += alphabet[(v >> 6) & 63];
    if (pad) out += '=';
  }
  return out;
}

std::array<int, 256> make_table(const char* alphabet) {
  std::array<int, 256> t{};
  t.fill(-1);
  for (int i = 0; i < 64; ++i) t[static_cast<unsigned char>(alphabet[i])] = i;
  return t;
}

// Decodes unpadded base64 text (len % 4 != 1) and requires zero trailing bits so that
// each byte string has exactly one accepted encoding.
Result<Bytes> decode(std::string_view in, const std::array<int, 256>& table) {
  if (in.size() % 4 == 1) return fail(Errc::parse, "invalid base64 length");
  Bytes out;
  out.reserve(in.size() * 3 / 4);
  std::uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int v = table[static_cast<unsigned char>(c)];
    if (v < 0) return fail(Errc::parse, "invalid base64 character");
    acc = (acc << 6) | static_cast<std::uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<std::uint8_t>((acc >> bits) & 0xff));
    }
  }
  if (bits > 0 && (acc & ((1u << bits) - 1)) != 0) return fail(Errc::parse, "non-canonical base64 (trailing bits)");
  return out;
}

}  // namespace

std::string hex_encode(std::span<const std::uint8_t> data) {
  std::string out;
  out.reserve(data.size() * 2);
  for (auto b : data) {
    out += kHex[b >> 4];
    out += kHex[b & 15];
  }
  return out;
}

Result<Bytes> hex_decode(std::string_view text) {
  if (text.size() % 2) return fail(Errc::parse, "odd-length hex");
  auto nib = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  Bytes out(text.size() / 2);
  for (std::size_t i = 0; i < out.size(); ++i) {
    int hi = nib(text[2 * i]), lo = nib(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return fail(Errc::parse, "invalid hex character (lowercase only)");
    out[i] = static_cast<std::uint8_t>(hi << 4 | lo);
  }
  return out;
}

std::string base64_encode(std::span<const std::uint8_t> data) { return encode(data, kStd, true); }

Result<Bytes> base64_decode(std::string_view text) {
  static const auto table = make_table(kStd);
  if (text.size() % 4 != 0) return fail(Errc::parse, "invalid base64 length");
  std::size_t pad = 0;
  while (pad < 2 && !text.empty() && text[text.size() - 1 - pad] == '=') ++pad;
  return decode(text.substr(0, text.size() - pad), table);
}

std::string base64url_encode(std::span<const std::uint8_t> data) { return encode(data, kUrl, false); }

Result<Bytes> base64url_decode(std::string_view text) {
  static const auto table = make_table(kUrl);
  return decode(text, table);
}

}  // namespace delegate
