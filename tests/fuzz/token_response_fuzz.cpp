// libFuzzer target: the OAuth2 token endpoint's answer, parsed in the agent itself (the
// one response of an http step that is not parsed only in the sandboxed child). It must
// never crash, and whatever it accepts must be a token that can only ever be a header
// value (token characters only) with a lifetime in range.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include <delegate/agent/token_cache.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto t = delegate::agent::parse_token_response(in);
  if (!t) return 0;
  if (t->access_token.empty() || t->access_token.size() > delegate::agent::kMaxAccessToken) std::abort();
  if (t->access_token.find_first_of(" \t\r\n\"\\,;:") != std::string::npos) std::abort();
  if (t->expires_in < 1 || t->expires_in > delegate::agent::kMaxTokenLifetime) std::abort();
  return 0;
}
