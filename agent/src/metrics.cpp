#include <delegate/agent/metrics.hpp>

#include <chrono>

#include <delegate/agent/config.hpp>
#include <delegate/agent/spool.hpp>

namespace delegate::agent {
namespace {

// Final job statuses, in the order of AgentMetrics::jobs_.
constexpr std::array<std::string_view, 6> kStatuses = {"succeeded", "failed",    "denied",
                                                       "cancelled", "timed_out", "interrupted"};

constexpr std::array<policies::Reason, 20> kReasons = {
    policies::Reason::no_authorization, policies::Reason::token_malformed, policies::Reason::alg_not_allowed,
    policies::Reason::unknown_key,      policies::Reason::bad_signature,   policies::Reason::expired,
    policies::Reason::not_yet_valid,    policies::Reason::wrong_issuer,    policies::Reason::wrong_audience,
    policies::Reason::wrong_type,       policies::Reason::replayed,        policies::Reason::missing_scope,
    policies::Reason::role_not_allowed, policies::Reason::binding_mismatch, policies::Reason::api_key_unknown,
    policies::Reason::api_key_expired,  policies::Reason::api_key_revoked, policies::Reason::unknown_runbook,
    policies::Reason::invalid_params,   policies::Reason::inline_not_allowed};

std::size_t reason_index(policies::Reason r) {
  // Exhaustive: a new reason code fails the build here until it is added to kReasons.
  switch (r) {
    case policies::Reason::no_authorization: return 0;
    case policies::Reason::token_malformed: return 1;
    case policies::Reason::alg_not_allowed: return 2;
    case policies::Reason::unknown_key: return 3;
    case policies::Reason::bad_signature: return 4;
    case policies::Reason::expired: return 5;
    case policies::Reason::not_yet_valid: return 6;
    case policies::Reason::wrong_issuer: return 7;
    case policies::Reason::wrong_audience: return 8;
    case policies::Reason::wrong_type: return 9;
    case policies::Reason::replayed: return 10;
    case policies::Reason::missing_scope: return 11;
    case policies::Reason::role_not_allowed: return 12;
    case policies::Reason::binding_mismatch: return 13;
    case policies::Reason::api_key_unknown: return 14;
    case policies::Reason::api_key_expired: return 15;
    case policies::Reason::api_key_revoked: return 16;
    case policies::Reason::unknown_runbook: return 17;
    case policies::Reason::invalid_params: return 18;
    case policies::Reason::inline_not_allowed: return 19;
  }
  return 0;
}

std::string_view cause_text(LaunchFailure c) {
  switch (c) {
    case LaunchFailure::prepare: return "prepare";
    case LaunchFailure::launch: return "launch";
    case LaunchFailure::setup: return "setup";
    case LaunchFailure::not_found: return "not_found";
  }
  return "launch";
}

double seconds(std::chrono::nanoseconds d) { return std::chrono::duration<double>(d).count(); }

}  // namespace

AgentMetrics::AgentMetrics() {
  auto& r = registry_;
  r.gauge("delegate_agent_build_info", "Build of this agent (value 1)", {{"version", DELEGATE_VERSION}}).set(1);
  for (std::size_t i = 0; i < kStatuses.size(); ++i) {
    jobs_[i] = &r.counter("delegate_agent_jobs_total", "Jobs that ended, by final status",
                          {{"status", std::string(kStatuses[i])}});
  }
  for (std::size_t i = 0; i < kReasons.size(); ++i) {
    denials_[reason_index(kReasons[i])] =
        &r.counter("delegate_agent_authz_denials_total", "Jobs the agent's own authorisation denied, by reason code",
                   {{"reason", std::string(policies::to_string(kReasons[i]))}});
  }
  step_seconds_ = &r.histogram("delegate_agent_step_duration_seconds", "Wall time of steps that started",
                               {0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600});
  dispatch_seconds_ = &r.histogram("delegate_agent_dispatch_latency_seconds",
                                   "From a job's acquisition to the start of its first step",
                                   {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10});
  spooled_ = &r.counter("delegate_agent_audit_records_spooled_total", "Audit records written to the spool");
  sent_ = &r.counter("delegate_agent_audit_records_sent_total", "Audit records sent to the control plane (resends count again)");
  acked_ = &r.counter("delegate_agent_audit_records_acknowledged_total", "Audit records the control plane acknowledged");
  spool_bytes_ = &r.gauge("delegate_agent_spool_bytes", "Bytes of unacknowledged audit records in the spool");
  for (auto c : {LaunchFailure::prepare, LaunchFailure::launch, LaunchFailure::setup, LaunchFailure::not_found}) {
    launch_[static_cast<std::size_t>(c)] = &r.counter("delegate_agent_sandbox_launch_failures_total",
                                                      "Steps that could not start, by cause",
                                                      {{"cause", std::string(cause_text(c))}});
  }
  reachable_ = &r.gauge("delegate_agent_control_plane_reachable",
                        "1 when the last request reached the control plane, 0 when it failed in transport");
  last_contact_ = &r.gauge("delegate_agent_control_plane_last_success_timestamp_seconds",
                           "Unix time of the last successful (2xx) answer from the control plane; 0: none yet");
  ready_gauge_ = &r.gauge("delegate_agent_ready", "1 when registered with the control plane and polling for jobs");
  r.on_collect([this] { ready_gauge_->set(ready() ? 1 : 0); });
}

void AgentMetrics::job_finished(std::string_view status) {
  for (std::size_t i = 0; i < kStatuses.size(); ++i) {
    if (kStatuses[i] == status) {
      jobs_[i]->inc();
      return;
    }
  }
  jobs_[1]->inc();
}

void AgentMetrics::denied(policies::Reason reason) { denials_[reason_index(reason)]->inc(); }
void AgentMetrics::step_finished(std::chrono::nanoseconds d) { step_seconds_->observe(seconds(d)); }
void AgentMetrics::dispatched(std::chrono::nanoseconds d) { dispatch_seconds_->observe(seconds(d)); }
void AgentMetrics::launch_failed(LaunchFailure cause) { launch_[static_cast<std::size_t>(cause)]->inc(); }

void AgentMetrics::control_plane_answered(bool success) {
  reachable_flag_.store(true, std::memory_order_relaxed);
  reachable_->set(1);
  if (success) {
    last_contact_->set(static_cast<double>(
        std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()));
  }
}

void AgentMetrics::control_plane_unreachable() {
  reachable_flag_.store(false, std::memory_order_relaxed);
  reachable_->set(0);
}



AgentMetrics& agent_metrics() {
  static AgentMetrics m;
  return m;
}

Result<std::unique_ptr<metrics::HttpListener>> start_metrics_listener(const Config& config, const Spool& spool) {
  if (!config.metrics.address) return std::unique_ptr<metrics::HttpListener>();
  auto& m = agent_metrics();
  // Registered once per process; the listener (the only caller of render) stops before
  // the spool goes away.
  static const bool collectors = [&] {
    m.registry_.on_collect([&m, &spool] { m.spool_bytes_->set(static_cast<double>(spool.bytes_used())); });
    return true;
  }();
  (void)collectors;
  return metrics::HttpListener::start(*config.metrics.address,
                                      metrics::Endpoints{&m.registry_, [&m] { return m.ready(); }});
}

}  // namespace delegate::agent
