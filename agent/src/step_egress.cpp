#include "step_egress.hpp"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <memory>

namespace delegate::agent {

Json net_connect_data(const std::string& step, const egress::ConnectEvent& ev, const connectors::Masker& masker) {
  Json d{{"step", step},
         {"host", ev.target ? Json(masker.mask(ev.target->host)) : Json(nullptr)},
         {"port", ev.target ? Json(ev.target->port) : Json(nullptr)},
         {"allowed", ev.verdict == egress::Verdict::allowed},
         {"reason", std::string(egress::to_string(ev.verdict))}};
  if (ev.address) d["address"] = *ev.address;
  if (!ev.detail.empty()) d["detail"] = masker.mask(ev.detail);
  return d;
}

StepEgress::StepEgress(sandbox::StepNetns netns, std::unique_ptr<egress::Proxy> proxy)
    : netns_(std::move(netns)), proxy_(std::move(proxy)) {}

StepEgress::~StepEgress() { proxy_.reset(); }

Result<std::unique_ptr<StepEgress>> StepEgress::start(const policies::Step& step, sandbox::Spec& spec,
                                                      const std::vector<egress::Cidr>& allow_cidrs,
                                                      const connectors::Masker& masker, NetConnectRecorder record) {
  if (step.sandbox.egress.empty()) return std::unique_ptr<StepEgress>();
  if (spec.network) return fail(Errc::internal, "step " + step.name + ": egress together with the host's network");
  egress::ProxyConfig config;
  for (const auto& entry : step.sandbox.egress) {
    auto hp = egress::parse_host_port(entry);
    if (!hp) return fail(Errc::invalid_argument, "step " + step.name + ": egress entry: " + hp.error().message);
    config.allow.push_back(std::move(*hp));
  }
  config.policy = egress::AddressPolicy(allow_cidrs);
  const std::string name = step.name;
  // A step that opens connections in a loop must not flood the job's log: every record
  // is signed and spooled, and a full spool stalls every job. After the budget, one more
  // record says so, and every later attempt is refused without one.
  auto attempts = std::make_shared<std::atomic<std::size_t>>(0);
  config.record = [name, &masker, record = std::move(record), attempts](const egress::ConnectEvent& ev) {
    const std::size_t n = ++*attempts;
    if (n > kMaxNetConnectRecords + 1) return false;
    Json d = net_connect_data(name, ev, masker);
    if (n == kMaxNetConnectRecords + 1) {
      d["allowed"] = false;
      d["reason"] = "budget_exhausted";
      d["detail"] = "more than " + std::to_string(kMaxNetConnectRecords) +
                    " connection attempts: this one and every later one refused";
      (void)record(std::move(d));
      return false;
    }
    return record(std::move(d));
  };
  auto netns = sandbox::StepNetns::create();
  if (!netns) return fail(netns.error().code, "step " + step.name + ": " + netns.error().message);
  std::uint16_t port = 0;
  auto listener = netns->listen_loopback(&port);
  if (!listener) return fail(listener.error().code, "step " + step.name + ": " + listener.error().message);
  auto proxy = egress::Proxy::start(*listener, std::move(config));
  if (!proxy) {
    ::close(*listener);
    return fail(proxy.error().code, "step " + step.name + ": egress proxy: " + proxy.error().message);
  }
  // The proxy is the only way out, and everything goes to it: the runbook's own values
  // for these variables are replaced.
  const std::string url = "http://127.0.0.1:" + std::to_string(port);
  const std::vector<std::string> names = {"HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "NO_PROXY", "no_proxy"};
  std::erase_if(spec.env, [&](const std::string& kv) {
    return std::any_of(names.begin(), names.end(), [&](const std::string& n) { return kv.starts_with(n + "="); });
  });
  for (std::size_t i = 0; i < 4; ++i) spec.env.push_back(names[i] + "=" + url);
  spec.env.push_back("NO_PROXY=");
  spec.env.push_back("no_proxy=");
  spec.netns_fd = netns->fd();
  return std::unique_ptr<StepEgress>(new StepEgress(std::move(*netns), std::move(*proxy)));
}

}  // namespace delegate::agent
