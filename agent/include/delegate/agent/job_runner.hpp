#pragma once
// Runs one job end to end on this host: job.received → the agent's own authorisation
// decision → each step in the sandbox → job.end, every event a signed, chained record.
#include <atomic>
#include <filesystem>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <tuple>

#include <delegate/agent/secrets.hpp>
#include <delegate/agent/token_cache.hpp>
#include <delegate/agent/uploader.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/connectors/step.hpp>
#include <delegate/egress/address_policy.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/time.hpp>
#include <delegate/policies/authorizer.hpp>
#include <delegate/sandbox/launcher.hpp>
#include <delegate/sandbox/seccomp.hpp>

namespace delegate::agent {

// Cross-thread control of a running job.
struct JobControl {
  sandbox::CancelToken cancel;
  // Set before `cancel` fires when the agent itself is shutting down: the job then
  // ends "interrupted" rather than "cancelled".
  std::atomic<bool> interrupted{false};
  // When the control plane handed the job over (dispatch latency, docs/operations.md).
  const std::chrono::steady_clock::time_point acquired = std::chrono::steady_clock::now();
};

struct JobResult {
  std::string job_id;
  std::string status;  // a final status (docs/authorization.md)
  std::uint64_t last_seq = 0;
  std::string last_hash;
};

// Seccomp programs compiled once per (profile, network) and shared by every step:
// compiling is libseccomp work that has no business on the launch path of each step.
class FilterCache {
 public:
  // unix_sockets: the step was granted host sockets (SeccompOptions::unix_sockets).
  [[nodiscard]] Result<std::shared_ptr<const sandbox::SeccompProgram>> get(const std::string& profile, bool network,
                                                                          bool unix_sockets);

 private:
  std::mutex mu_;
  std::map<std::tuple<std::string, bool, bool>, std::shared_ptr<const sandbox::SeccompProgram>> programs_;
};

struct RunnerDeps {
  const Ed25519PrivateKey& key;
  const Clock& clock;
  std::string agent_id;
  const policies::Catalog& catalog;
  std::shared_ptr<const policies::ApiKeyStore> api_keys;
  policies::AuthorizerOptions authz;
  RecordSink& sink;
  // Working-directory parent and the local sandbox policy (step user, hidden paths, root).
  connectors::StepContext step_base;
  FilterCache& filters;
  // Where `${secrets.NAME}` values come from; null: a step that references one fails.
  const SecretResolver* secrets = nullptr;
  // sandbox.egress_allow_cidrs: internal ranges the egress proxy may still connect to.
  std::vector<egress::Cidr> egress_allow_cidrs = {};
  // OAuth2 access tokens of http steps, kept as long as the agent runs; null: a step
  // with oauth2_client_credentials auth fails.
  TokenCache* tokens = nullptr;
};

// The job's id must already be known valid (parse_job succeeded).
[[nodiscard]] JobResult run_job(const Json& raw_job, const policies::Job& job, const RunnerDeps& deps,
                                JobControl& control);

}  // namespace delegate::agent
