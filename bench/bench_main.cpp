// delegate-bench: hot paths against references measured in the same run.
//   record sealing (JCS + SHA-256 + Ed25519)  vs  raw OpenSSL Ed25519 sign of 32 bytes
//   job dispatch (enqueue -> waiting long poll) vs  one HTTPS round trip (GET /healthz)
//   sandboxed /bin/true                      vs  posix_spawn of /bin/true
//   output masking (MB/s)                    vs  memcpy of the same chunks
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <future>
#include <thread>
#include <vector>

#include <delegate/agent/cp_client.hpp>
#include <delegate/audit/chain.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/controlplane/server.hpp>
#include <delegate/sandbox/launcher.hpp>

#include "mask_bench.hpp"

using namespace delegate;
using Clock_ = std::chrono::steady_clock;
extern char** environ;

namespace {

double median_us(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

// `pause` between (untimed) iterations: launches are measured as a job sees them on an
// agent that is not saturated, after the previous step's teardown finished in the
// background; every launcher in a comparison gets the same pause.
template <class F>
double time_us(F&& f, int n, std::chrono::milliseconds pause = std::chrono::milliseconds(0)) {
  std::vector<double> samples;
  for (int i = 0; i < n; ++i) {
    if (pause.count() > 0) std::this_thread::sleep_for(pause);
    auto t0 = Clock_::now();
    f();
    samples.push_back(std::chrono::duration<double, std::micro>(Clock_::now() - t0).count());
  }
  return median_us(samples);
}

void row(const char* what, double ours, const char* ref_name, double ref) {
  std::printf("| %-34s | %10.1f us | %-30s | %10.1f us | %6.2fx |\n", what, ours, ref_name, ref, ours / ref);
}

}  // namespace

int main() {
  agent::global_http_init();
  std::printf("| operation                          |     median    | reference                      |    median     |  ratio  |\n");
  std::printf("|------------------------------------|---------------|--------------------------------|---------------|---------|\n");

  // Record sealing.
  auto key = Ed25519PrivateKey::generate();
  SystemClock clock;
  audit::ChainWriter w(*key, clock, "agt_bench", "job_bench");
  Json data{{"step", "s"}, {"stream", "stdout"}, {"b64", std::string(1024, 'A')}};
  double seal = time_us([&] { (void)w.append(audit::Kind::output, data); }, 2000);
  Sha256 h = sha256("x");
  double raw_sign = time_us([&] { (void)key->sign(h); }, 2000);
  row("seal output record (1 KiB)", seal, "OpenSSL Ed25519 sign 32 B", raw_sign);
  bench::masking_throughput();

  // Dispatch latency through the real control plane over TLS 1.3 on loopback.
  char tmpl[] = "/tmp/delegate-bench-XXXXXX";
  std::filesystem::path dir = ::mkdtemp(tmpl);
  controlplane::InitOptions io{dir, "127.0.0.1:0", {}, false};
  if (auto r = controlplane::init_dir(io); !r) {
    std::fprintf(stderr, "init: %s\n", r.error().message.c_str());
    return 1;
  }
  auto cfg = controlplane::load_dir_config(dir);
  auto server = controlplane::Server::create(*cfg);
  if (!server) {
    std::fprintf(stderr, "server: %s\n", server.error().message.c_str());
    return 1;
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
      return Clock_::now();
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));  // let the poll park
    auto t0 = Clock_::now();
    (void)admin.post("/v1/jobs", Json{{"runbook", "x"}}, cfg->admin_token, std::chrono::seconds(10));
    auto t1 = fut.get();
    dispatch.push_back(std::chrono::duration<double, std::micro>(t1 - t0).count());
  }
  double rtt = time_us([&] { (void)admin.get("/healthz", "", std::chrono::seconds(10)); }, 200);
  row("enqueue -> job at waiting agent", median_us(dispatch), "HTTPS round trip (healthz)", rtt);
  (*server)->stop();
  srv.join();
  std::filesystem::remove_all(dir);

  // Sandboxed launch vs posix_spawn and bubblewrap with the same isolation.
  auto spawn_wait = [](std::vector<const char*> argv) {
    argv.push_back(nullptr);
    pid_t pid;
    if (posix_spawn(&pid, argv[0], nullptr, nullptr, const_cast<char* const*>(argv.data()), environ) != 0) return false;
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
  };
  constexpr int kLaunches = 200;
  const auto pause = std::chrono::milliseconds(20);
  const double ps = time_us([&] { spawn_wait({"/bin/true"}); }, kLaunches, pause);
  const std::vector<const char*> bwrap = {"/usr/bin/bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev",
                                          "--proc", "/proc", "/bin/true"};
  const bool have_bwrap = std::filesystem::exists("/usr/bin/bwrap") && spawn_wait(bwrap);
  const double bw = have_bwrap ? time_us([&] { spawn_wait(bwrap); }, kLaunches, pause) : 0;

  const auto& host = sandbox::host_support();
  std::printf("\nsandbox host: user_ns=%d cgroups memory/pids/cpu=%d/%d/%d (0 none, 1 v1, 2 v2)\n", host.user_ns,
              static_cast<int>(host.memory), static_cast<int>(host.pids), static_cast<int>(host.cpu));
  auto sink = [](sandbox::Stream, std::string_view) {};
  auto launch = [&](bool network, std::chrono::milliseconds gap) {
    auto filter = sandbox::SeccompProgram::compile(network ? "network" : "default", {.network = network});
    sandbox::Spec spec;
    spec.argv = {"/bin/true"};
    spec.network = network;
    return time_us(
        [&] {
          auto o = sandbox::run(spec, *filter, sink);
          if (!o || o->status != sandbox::Status::exited) std::fprintf(stderr, "sandbox launch failed\n");
        },
        kLaunches, gap);
  };
  const double full = launch(false, pause);
  const double shared_net = launch(true, pause);
  const double saturated = launch(false, std::chrono::milliseconds(0));
  std::printf("\n%d launches each, %lld ms pause between launches\n", kLaunches, static_cast<long long>(pause.count()));
  std::printf("\n| launch of /bin/true                              |     median    | vs posix_spawn | vs bwrap |\n");
  std::printf("|--------------------------------------------------|---------------|----------------|----------|\n");
  auto launch_row = [&](const char* what, double us) {
    std::printf("| %-48s | %10.1f us | %13.2fx | %s |\n", what, us, us / ps,
                have_bwrap ? (std::to_string(us / bw).substr(0, 4) + "x").c_str() : "n/a");
  };
  launch_row("posix_spawn (no isolation)", ps);
  if (have_bwrap) launch_row("bwrap --unshare-all --ro-bind / / --dev --proc", bw);
  launch_row("delegate sandbox, full isolation (all ns, cgroup)", full);
  launch_row("delegate sandbox, host network (no net ns)", shared_net);
  launch_row("delegate sandbox, full, back to back (no pause)", saturated);
  return 0;
}
