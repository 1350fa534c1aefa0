// libFuzzer target: the agent configuration parser (YAML, strict keys, env overrides).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <delegate/agent/config.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  // Half of the runs also carry an environment override, to reach that path.
  delegate::agent::Environment env;
  if (size > 0 && (data[0] & 1)) env["DELEGATE_AGENT_CONCURRENCY"] = std::string(text.substr(0, 8));
  (void)delegate::agent::parse_config(text, env);
  return 0;
}
