#pragma once
// Turns a runbook step plus validated parameters into a sandbox launch. Parameters
// only ever become whole argv elements or environment values: nothing is spliced into
// a shell string.
#include <chrono>
#include <filesystem>
#include <map>
#include <string>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>
#include <delegate/policies/runbook.hpp>
#include <delegate/sandbox/launcher.hpp>

namespace delegate::connectors {

struct StepContext {
  std::filesystem::path work_parent;
  // Upper bound from the job's own deadline; the step's timeout_s is capped by it.
  std::chrono::milliseconds remaining{std::chrono::hours(24)};
  // The agent's local policy: who steps run as, what every step has hidden, and
  // whether a runbook may ask for root.
  sandbox::StepUser step_user;
  std::vector<std::filesystem::path> hidden;
  bool allow_root = false;
  // Host Unix sockets a step may be granted (sandbox.allow_sockets): a step gets a
  // socket only when it asks for it and it is listed here.
  std::vector<std::filesystem::path> allowed_sockets;
  // Whether a step may share the host's network namespace (`network: true`,
  // sandbox.allow_host_network). Off: such a step fails before it runs.
  bool allow_host_network = false;
  // The program an http step runs in its sandbox as `PROGRAM http-request` (the agent's
  // own binary: the daemon sets /proc/self/exe). Empty: http steps fail to start.
  std::filesystem::path http_program;
  // Extra trust anchors for http steps (connectors.ca_files, read at config load), PEM.
  std::string http_ca_pem;
};

struct PreparedStep {
  sandbox::Spec spec;
  Json audit;  // the "step.start" record data
};

// Fails (and the step must not run) when the runbook asks for something the local
// policy or the host cannot give: root without allow_root, the host's network without
// allow_host_network, a host socket that is not in allowed_sockets, or isolation the host lacks when the step does not allow
// degraded isolation.
// `outputs` holds the recorded outputs of the steps before this one, {STEP: {NAME: value}}
// (substituted like parameters; a script step also gets each as STEP_<STEP>_<NAME>).
// `secrets`: the values of the secrets the step references (step.secrets), already
// resolved; they become env values only, and a reference without a value is an error.
[[nodiscard]] Result<PreparedStep> prepare_step(const policies::Step& step, std::size_t index,
                                                const Json& params, const StepContext& ctx,
                                                const Json& outputs = Json::object(),
                                                const std::map<std::string, std::string>& secrets = {});

// The canonical text of a step kind, for records.
[[nodiscard]] std::string_view to_string(policies::StepKind kind);

}  // namespace delegate::connectors
