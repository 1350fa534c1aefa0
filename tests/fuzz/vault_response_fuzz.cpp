// libFuzzer target: Vault's answers (AppRole login and KV v2 read), which come from the
// network. The parsers must never crash, never accept a body over the cap, and never
// quote the body in an error (it may carry a token or a secret value). The first byte
// picks the parser; the rest is the body.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <delegate/agent/secret_vault.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 1) return 0;
  const std::string_view body(reinterpret_cast<const char*>(data) + 1, size - 1);
  // A marker that an error message must never contain, even when the body does.
  auto clean = [&](const std::string& message) {
    if (message.find("hvs.") != std::string::npos || message.find('\n') != std::string::npos) std::abort();
  };
  if (data[0] & 1) {
    auto r = delegate::agent::parse_vault_login(body);
    if (r) {
      if (r->token.empty() || r->token.size() > 1024 || body.size() > delegate::agent::kMaxVaultAnswer) std::abort();
      for (char c : r->token) {
        if (c < 0x21 || c > 0x7e) std::abort();  // it becomes a header value
      }
    } else {
      clean(r.error().message);
    }
  } else {
    auto r = delegate::agent::parse_vault_kv(body, "routing_key");
    if (r) {
      if (body.size() > delegate::agent::kMaxVaultAnswer) std::abort();
    } else {
      clean(r.error().message);
    }
  }
  return 0;
}
