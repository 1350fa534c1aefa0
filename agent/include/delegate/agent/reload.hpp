#pragma once
// The part of the agent that SIGHUP replaces (docs/operations.md, "Reload"): everything
// agent.yaml points to that decides what a job may do. It is built whole, off to the side,
// validated, and swapped in as one immutable snapshot; each job keeps the snapshot it
// started with for its whole run.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <delegate/agent/config.hpp>
#include <delegate/agent/job_runner.hpp>
#include <delegate/agent/key_cache.hpp>
#include <delegate/agent/oauth_setup.hpp>
#include <delegate/agent/secrets.hpp>
#include <delegate/common/time.hpp>
#include <delegate/connectors/step.hpp>
#include <delegate/egress/address_policy.hpp>
#include <delegate/policies/runbook.hpp>

namespace delegate::agent {

struct AgentState {
  Config config;
  policies::Catalog catalog;
  std::unique_ptr<OAuthSetup> oauth;
  // Still re-read when the file changes between reloads (`api-key revoke` needs none).
  std::unique_ptr<ApiKeyCache> api_keys;
  // Seccomp programs of this state's profiles (a profile file may have changed).
  std::unique_ptr<FilterCache> filters;
  SecretResolver secrets;
  connectors::StepContext step_base;
  std::vector<egress::Cidr> egress_cidrs;
  std::size_t api_key_count = 0;
  // SHA-256 (first 16 hex digits) over agent.yaml and every file the state was built from.
  std::string fingerprint;
};

struct StateInputs {
  const Clock& clock;
  std::string credentials_dir;  // $CREDENTIALS_DIRECTORY of the process, "" if unset
  std::string config_text;      // agent.yaml as read (for the fingerprint)
  // The running agent's jti replay cache, if it has one: a reload keeps it.
  std::shared_ptr<policies::ReplayCache> replay;
};

// Loads and validates everything `config` points to: runbooks (every file), the API key
// file, each issuer's JWKS file or CA, connectors' CAs, every seccomp profile a runbook
// names (compiled). Any failure fails the whole state, with a message naming the part.
[[nodiscard]] Result<std::shared_ptr<const AgentState>> build_state(Config config, const StateInputs& in);

// The keys a running agent cannot change (identity, control-plane link, spool, state,
// the acquire loop's settings): the first that differs, as an error saying a restart is
// needed; ok when none does.
[[nodiscard]] Result<void> check_restart_keys(const Config& running, const Config& next);

// SIGHUP: reads `file` again (with the process's DELEGATE_* environment), refuses a
// change to a restart-only key, and builds the new state keeping `current`'s jti cache.
// An error names the problem; the caller then keeps `current`.
[[nodiscard]] Result<std::shared_ptr<const AgentState>> reload_state(const std::filesystem::path& file,
                                                                     const Config& running, const AgentState& current,
                                                                     const Clock& clock,
                                                                     const std::string& credentials_dir);

// "12 runbooks, 3 API keys, 1 issuer, config 0123abcd..."
[[nodiscard]] std::string summary(const AgentState& state);

}  // namespace delegate::agent
