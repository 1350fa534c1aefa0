// libFuzzer target: the agent's parser of a proxy's answer to CONNECT. The answer comes
// from a proxy the agent does not control. Whatever it is, parsing must not crash, must
// refuse anything beyond the 8 KiB bound or that is not exactly one complete head, and
// an accepted status is three digits.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <delegate/agent/proxy.hpp>
#include <delegate/egress/connect_request.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace delegate;
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  auto status = agent::parse_connect_reply(in);
  if (!status) return 0;
  if (in.size() > agent::kMaxConnectReply || egress::head_length(in) != in.size()) std::abort();
  if (*status < 100 || *status > 999) std::abort();
  return 0;
}
