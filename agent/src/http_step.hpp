#pragma once
// One http step of a job (docs/connectors.md): the agent builds the request (URL,
// headers, body, credentials), the sandboxed child `delegate-agent http-request`
// performs it and parses the response, and the agent records step.start and step.end.
#include <functional>
#include <map>
#include <string>

#include <delegate/agent/job_runner.hpp>
#include <delegate/audit/record.hpp>
#include <delegate/connectors/masker.hpp>

namespace delegate::agent {

struct HttpStepResult {
  // A job status word: "succeeded", "failed", "timed_out", "cancelled".
  std::string status;
  Json outputs;  // {NAME: value} when the step succeeded and declares outputs
};

// Appends one record; false once the job's log can no longer be trusted.
using RecordFn = std::function<bool(audit::Kind, Json)>;

struct HttpStepInput {
  const policies::Step& step;
  std::size_t index;
  const Json& params;
  const Json& outputs;  // of earlier steps
  const std::map<std::string, std::string>& secrets;  // resolved, already in the masker
  Json received;  // step.start "secrets": names and fingerprints
  const connectors::StepContext& ctx;
};

[[nodiscard]] HttpStepResult run_http_step(const HttpStepInput& in, const RunnerDeps& deps, connectors::Masker& masker,
                                           const RecordFn& record, const sandbox::CancelToken& cancel);

}  // namespace delegate::agent
