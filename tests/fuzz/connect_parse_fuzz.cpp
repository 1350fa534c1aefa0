// libFuzzer target: the egress proxy's CONNECT request parser. The request head comes
// from a sandboxed step. Whatever it is, parsing must not crash, must refuse anything
// beyond the 8 KiB bound, and an accepted target must be canonical (parsing its printed
// form gives it back), since the allowlist comparison relies on exactly that.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <delegate/egress/address_policy.hpp>
#include <delegate/egress/connect_request.hpp>
#include <delegate/egress/host_port.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace delegate::egress;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto target = parse_connect(in);
  if (!target) return 0;
  if (in.size() > kMaxConnectHead || head_length(in) != in.size()) std::abort();
  auto again = parse_host_port(to_string(*target));
  if (!again || *again != *target) std::abort();
  // An IP literal target goes through the address policy as the proxy would use it.
  if (auto ip = parse_ip(bare_host(*target))) (void)AddressPolicy().refusal(*ip);
  return 0;
}
