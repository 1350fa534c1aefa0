// libFuzzer target: the output masker. Step output is whatever a (possibly hostile)
// program prints; the masker must never crash on it, and must never let a secret
// through, wherever the chunk boundaries fall. The input is: a secret (first line,
// at least 8 bytes), a split point byte, then the output.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <delegate/connectors/masker.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  const auto nl = in.find('\n');
  if (nl == std::string_view::npos || nl + 1 >= in.size()) return 0;
  const std::string_view secret = in.substr(0, nl);
  const auto split = static_cast<unsigned char>(in[nl + 1]);
  // The secret is embedded once more in the output so that every run has a match.
  std::string output(in.substr(nl + 2));
  output.insert(output.size() / 2, secret);

  delegate::connectors::Masker masker;
  if (!masker.add(secret)) return 0;
  const std::string whole = masker.mask(output);
  delegate::connectors::MaskingStream stream(masker);
  std::string pieces;
  const std::size_t step = split == 0 ? 1 : split;
  for (std::size_t off = 0; off < output.size(); off += step) {
    pieces += stream.write(std::string_view(output).substr(off, step));
  }
  pieces += stream.finish();
  // Streaming in any chunks gives exactly the one-shot result, and neither holds the secret.
  if (pieces != whole) std::abort();
  // (A secret containing the mask itself could be re-formed around a mask: not a leak.)
  if (secret.find('*') == std::string_view::npos && whole.find(secret) != std::string::npos) std::abort();
  return 0;
}
