// libFuzzer target for the audit record parser, the canonicalizer and the hash: all
// three see bytes from exported logs and from agents at ingest.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <delegate/audit/jcs.hpp>
#include <delegate/audit/record.hpp>
#include <delegate/common/json.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);

  if (auto r = delegate::audit::parse_record(text)) {
    (void)delegate::audit::compute_hash(*r);
    // A parsed record re-serializes and parses back to the same bytes (canonical numbers
    // can be longer than their input spelling, so only within the size cap).
    const std::string line = delegate::audit::serialize(*r);
    if (line.size() <= delegate::audit::kMaxRecordBytes) {
      auto again = delegate::audit::parse_record(line);
      if (!again || delegate::audit::serialize(*again) != line) std::abort();
    }
  }

  if (auto j = delegate::parse_json_strict(text)) {
    // Canonical form is a fixed point: canonicalizing its parse yields it again.
    if (auto c = delegate::audit::canonicalize(*j)) {
      auto reparsed = delegate::parse_json_strict(*c, {.max_bytes = 8u << 20, .max_depth = 64});
      if (!reparsed) std::abort();
      auto c2 = delegate::audit::canonicalize(*reparsed);
      if (!c2 || *c2 != *c) std::abort();
    }
  }
  return 0;
}
