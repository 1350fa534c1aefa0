// delegate-bench: hot paths against references measured in the same run.
//   record sealing (JCS + SHA-256 + Ed25519)  vs  raw OpenSSL Ed25519 sign of 32 bytes
//   job dispatch (enqueue -> waiting long poll) vs  one HTTPS round trip (GET /healthz)
//   sandboxed /bin/true                      vs  posix_spawn of /bin/true
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

using namespace delegate;
using Clock_ = std::chrono::steady_clock;
extern char** environ;

namespace {

double median_us(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

template <class F>
double time_us(F&& f, int n) {
  std::vector<double> samples;
  for (int i = 0; i < n; ++i) {
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
  agent::CpClient admin(opts), agentc(opts);
  auto ek = Ed25519PrivateKey::generate();
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

  // Sandboxed launch vs posix_spawn.
  auto filter = sandbox::SeccompProgram::compile("default", {});
  sandbox::Spec spec;
  spec.argv = {"/bin/true"};
  auto sink = [](sandbox::Stream, std::string_view) {};
  double sb = time_us([&] { (void)sandbox::run(spec, *filter, sink); }, 200);
  double ps = time_us(
      [&] {
        pid_t pid;
        char* argv[] = {const_cast<char*>("/bin/true"), nullptr};
        posix_spawn(&pid, "/bin/true", nullptr, nullptr, argv, environ);
        int st;
        waitpid(pid, &st, 0);
      },
      200);
  row("sandbox run /bin/true (seccomp)", sb, "posix_spawn /bin/true", ps);
  return 0;
}
