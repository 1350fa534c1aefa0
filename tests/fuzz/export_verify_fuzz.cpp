// libFuzzer target for the export verifier: `delegate-audit verify` reads exports that
// may come from anywhere. Any input must end in verdicts, never a crash; with a key that
// signed nothing in the input, no stream may verify.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>

#include <delegate/audit/checkpoint.hpp>
#include <delegate/audit/export_verifier.hpp>
#include <delegate/common/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  // A fixed public key whose private key nobody holds: whatever the input, no stream
  // with records can carry valid signatures under it.
  delegate::Ed25519PublicKey key{};
  key.fill(0x11);
  for (const bool incomplete : {false, true}) {
    std::istringstream in(text);
    const auto verdicts = delegate::audit::verify_export(in, key, {.allow_incomplete = incomplete});
    for (const auto& v : verdicts) {
      if (!v.fault && v.records > 0) std::abort();
    }
  }
  // The agent-stream data parsers see the "data" member of signed records.
  if (auto j = delegate::parse_json_strict(text)) {
    (void)delegate::audit::parse_checkpoint_data(*j);
    (void)delegate::audit::parse_agent_start_data(*j);
    (void)delegate::audit::parse_agent_stop_data(*j);
  }
  return 0;
}
