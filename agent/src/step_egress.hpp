#pragma once
// Egress for one step (sandbox.egress): a network namespace the agent prepares, the
// allowlisting proxy listening on that namespace's loopback, and the step launched in
// the same namespace with the proxy in its environment. Lives exactly as long as the
// step: destroying it ends every tunnel and closes the listener and the namespace.
#include <functional>
#include <memory>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>
#include <delegate/connectors/masker.hpp>
#include <delegate/egress/proxy.hpp>
#include <delegate/policies/runbook.hpp>
#include <delegate/sandbox/launcher.hpp>
#include <delegate/sandbox/step_netns.hpp>

namespace delegate::agent {

// Connection attempts one step may make (each one a net.connect record); beyond it
// every attempt is refused (docs/egress.md).
inline constexpr std::size_t kMaxNetConnectRecords = 256;

// Records one net.connect; false when it could not be recorded (the attempt is refused).
using NetConnectRecorder = std::function<bool(Json)>;

class StepEgress {
 public:
  // Null for a step without egress. Otherwise sets spec.netns_fd and the proxy variables
  // in spec.env, and serves the proxy until destroyed. Fails (the step must not run) on
  // an unprivileged agent or when the namespace or listener cannot be made.
  [[nodiscard]] static Result<std::unique_ptr<StepEgress>> start(const policies::Step& step, sandbox::Spec& spec,
                                                                 const std::vector<egress::Cidr>& allow_cidrs,
                                                                 const connectors::Masker& masker,
                                                                 NetConnectRecorder record);
  ~StepEgress();
  StepEgress(const StepEgress&) = delete;
  StepEgress& operator=(const StepEgress&) = delete;

 private:
  StepEgress(sandbox::StepNetns netns, std::unique_ptr<egress::Proxy> proxy);
  sandbox::StepNetns netns_;
  std::unique_ptr<egress::Proxy> proxy_;  // reset before netns_ closes
};

// The data of a net.connect record (masked: a refused host name is whatever the step
// sent and may carry a secret).
[[nodiscard]] Json net_connect_data(const std::string& step, const egress::ConnectEvent& ev,
                                    const connectors::Masker& masker);

}  // namespace delegate::agent
