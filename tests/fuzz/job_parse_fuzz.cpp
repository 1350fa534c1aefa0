// libFuzzer target: the job object the (untrusted) control plane hands the agent.
// Invariants: no crash, no exception, parse_job never both fails and succeeds for the
// same input, digests are always 64 hex characters.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include <delegate/common/json.hpp>
#include <delegate/policies/job.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto json = delegate::parse_json_strict(text);
  if (!json) return 0;
  auto job = delegate::policies::parse_job(*json);
  std::string digest = delegate::policies::job_digest(*json);
  if (digest.size() != 64) std::abort();
  if (job && job->id.empty()) std::abort();
  if (job && job->malformed_authorization && job->malformed.empty()) std::abort();
  return 0;
}
