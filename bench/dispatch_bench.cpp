// Dispatch latency through the real control plane over TLS 1.3 on loopback: an admin
// POST /v1/jobs answered to a long poll already parked, against a bare round trip.
#include <stdlib.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <future>
#include <thread>
#include <vector>

#include <delegate/agent/cp_client.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/controlplane/server.hpp>

#include "benches.hpp"
#include "timing.hpp"

namespace delegate::bench {

void dispatch_rows(Table& t) {
  // Dispatch latency through the real control plane over TLS 1.3 on loopback.
  char tmpl[] = "/tmp/delegate-bench-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(tmpl);
  controlplane::InitOptions io{dir, "127.0.0.1:0", {}, false};
  if (auto r = controlplane::init_dir(io); !r) {
    std::fprintf(stderr, "init: %s\n", r.error().message.c_str());
    t.skipped("dispatch", "control plane did not start"); return;
  }
  auto cfg = controlplane::load_dir_config(dir);
  auto server = controlplane::Server::create(*cfg);
  if (!server) {
    std::fprintf(stderr, "server: %s\n", server.error().message.c_str());
    t.skipped("dispatch", "control plane did not start"); return;
  }
  std::thread srv([&] { (*server)->run(); });
  const std::string url = "https://127.0.0.1:" + std::to_string((*server)->port());
  agent::ClientOptions opts{url, dir / "ca.pem"};
  auto ek = Ed25519PrivateKey::generate();
  // The agent's calls are authenticated by its identity key (TLS client certificate).
  agent::ClientOptions agent_opts{.base_url = url, .ca_file = dir / "ca.pem", .identity = &*ek};
  agent::CpClient admin(opts), agentc(agent_opts);
  auto reg = agentc.post("/v1/agents/register",
                         Json{{"name", "bench"}, {"hostname", "h"}, {"tags", Json::array()}, {"version", "b"},
                              {"public_key", base64_encode(ek->public_key())}},
                         cfg->enrollment_token, std::chrono::seconds(10));
  auto regj = Json::parse(reg->body);
  const std::string agent_id = regj["agent_id"], token = regj["agent_token"];
  std::vector<double> dispatch;
  for (int i = 0; i < 50; ++i) {
    auto fut = std::async(std::launch::async, [&] {
      auto r = agentc.post("/v1/agents/" + agent_id + "/jobs/acquire", Json{{"capacity", 1}, {"wait_s", 10}}, token,
                           std::chrono::seconds(20));
      return std::chrono::steady_clock::now();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the poll park
    auto t0 = std::chrono::steady_clock::now();
    (void)admin.post("/v1/jobs", Json{{"runbook", "x"}}, cfg->admin_token, std::chrono::seconds(10));
    auto t1 = fut.get();
    dispatch.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  double rtt = time_us([&] { (void)admin.get("/healthz", "", std::chrono::seconds(10)); }, 200);
  t.add({.what = "admin POST /v1/jobs -> job at a parked long poll", .value = median(dispatch) / 1000, .unit = "ms",
         .ref_name = "HTTPS round trip (healthz)", .ref = rtt / 1000, .note = "medians of 50 dispatches, 200 round trips"});
  (*server)->stop();
  srv.join();
  std::filesystem::remove_all(dir);

}

}  // namespace delegate::bench
