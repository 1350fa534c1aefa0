#include "metrics.hpp"

#include <delegate/common/log.hpp>
#include <delegate/controlplane/store.hpp>

namespace delegate::controlplane {
namespace {

constexpr std::array<std::string_view, 8> kStatuses = {"queued",    "running",   "succeeded", "failed",
                                                       "denied",    "cancelled", "timed_out", "interrupted"};
constexpr std::array<std::string_view, 3> kAgentStates = {"online", "offline", "revoked"};
constexpr std::array<std::string_view, 10> kRoutes = {"healthz",       "register", "heartbeat", "acquire", "job_records",
                                                      "agent_records", "complete", "admin",     "oauth",   "other"};
constexpr std::array<std::string_view, 5> kClasses = {"1xx", "2xx", "3xx", "4xx", "5xx"};

std::vector<std::string_view> segments(std::string_view target) {
  target = target.substr(0, target.find('?'));
  std::vector<std::string_view> out;
  while (!target.empty()) {
    if (target.front() == '/') {
      target.remove_prefix(1);
      continue;
    }
    const auto slash = target.find('/');
    out.push_back(target.substr(0, slash));
    if (slash == std::string_view::npos) break;
    target.remove_prefix(slash);
  }
  return out;
}

std::size_t index_of(std::string_view route) {
  for (std::size_t i = 0; i < kRoutes.size(); ++i) {
    if (kRoutes[i] == route) return i;
  }
  return kRoutes.size() - 1;
}

}  // namespace

std::string_view route_of(std::string_view target) {
  const auto p = segments(target);
  const auto n = p.size();
  if (n == 1 && p[0] == "healthz") return "healthz";
  if (n == 2 && ((p[0] == ".well-known" && p[1] == "jwks.json") || (p[0] == "oauth" && p[1] == "token"))) return "oauth";
  if (n < 2 || p[0] != "v1") return "other";
  if (n == 3 && p[1] == "agents" && p[2] == "register") return "register";
  if (n == 4 && p[1] == "agents" && p[3] == "heartbeat") return "heartbeat";
  if (n == 5 && p[1] == "agents" && p[3] == "jobs" && p[4] == "acquire") return "acquire";
  if (n == 4 && p[1] == "jobs" && p[3] == "complete") return "complete";
  // POST records is the agent's upload; GET records is an admin export.
  if (n == 4 && p[1] == "jobs" && p[3] == "records") return "job_records";
  if (n == 4 && p[1] == "agents" && p[3] == "records") return "agent_records";
  if (p[1] == "jobs" || p[1] == "agents" || p[1] == "enrollment-tokens") return "admin";
  return "other";
}

CpMetrics::CpMetrics() {
  auto& r = registry_;
  r.gauge("delegate_cp_build_info", "Build of this control plane (value 1)", {{"version", DELEGATE_VERSION}}).set(1);
  for (std::size_t i = 0; i < kStatuses.size(); ++i) {
    jobs_[i] = &r.gauge("delegate_cp_jobs", "Jobs in the store, by status", {{"status", std::string(kStatuses[i])}});
  }
  for (std::size_t i = 0; i < kAgentStates.size(); ++i) {
    agents_[i] = &r.gauge("delegate_cp_agents", "Registered agents, by state (online: seen within one lease)",
                          {{"state", std::string(kAgentStates[i])}});
  }
  parked_ = &r.gauge("delegate_cp_parked_long_polls", "Acquire requests waiting for a job");
  ingested_ = &r.counter("delegate_cp_records_ingested_total", "Audit records stored (use rate() for the ingest rate)");
  for (std::size_t i = 0; i < kRoutes.size(); ++i) {
    for (std::size_t j = 0; j < kClasses.size(); ++j) {
      requests_[i][j] = &r.counter("delegate_cp_http_requests_total", "API requests answered, by route and status class",
                                   {{"route", std::string(kRoutes[i])}, {"code", std::string(kClasses[j])}});
    }
  }
}

void CpMetrics::request(std::string_view target, int status) {
  const int cls = status / 100;
  if (cls < 1 || cls > 5) return;
  requests_[index_of(route_of(target))][static_cast<std::size_t>(cls - 1)]->inc();
}

void CpMetrics::refresh(Store& store, std::int64_t now_ms, std::int64_t online_ms) {
  auto counts = store.counts(now_ms - online_ms);
  if (!counts) {
    log::warn("controlplane", "metrics: " + counts.error().message);
    return;
  }
  for (std::size_t i = 0; i < kStatuses.size(); ++i) {
    auto it = counts->jobs.find(std::string(kStatuses[i]));
    jobs_[i]->set(it == counts->jobs.end() ? 0 : static_cast<double>(it->second));
  }
  agents_[0]->set(static_cast<double>(counts->agents_online));
  agents_[1]->set(static_cast<double>(counts->agents_offline));
  agents_[2]->set(static_cast<double>(counts->agents_revoked));
}

CpMetrics& cp_metrics() {
  static CpMetrics m;
  return m;
}

}  // namespace delegate::controlplane
