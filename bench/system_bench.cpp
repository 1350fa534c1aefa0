// The whole system as an operator runs it: the real control plane and a real agent, each
// its own process, over TLS 1.3 on loopback, jobs submitted through the admin API. The
// figures are read from what the control plane stored (its SQLite file, read-only), so
// they are the audited truth: a job counts when its signed records were committed.
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <delegate/agent/cp_client.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/time.hpp>

#include "benches.hpp"
#include "timing.hpp"

namespace delegate::bench {
namespace {
namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void spit(const fs::path& p, const std::string& text) { std::ofstream(p, std::ios::binary | std::ios::trunc) << text; }

// A child whose output goes to a log; SIGKILLed with the bench.
struct Child {
  pid_t pid = -1;
  Child(const std::vector<std::string>& argv, const fs::path& log) {
    const pid_t parent = ::getpid();
    pid = ::fork();
    if (pid == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);
      int out = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      ::dup2(out, 1);
      ::dup2(out, 2);
      // Steps run as an unprivileged user in the agent's working directory.
      if (::chdir("/") != 0) ::_exit(127);
      std::vector<char*> a;
      for (const auto& s : argv) a.push_back(const_cast<char*>(s.c_str()));
      a.push_back(nullptr);
      ::execv(a[0], a.data());
      ::_exit(127);
    }
  }
  void stop(int sig = SIGTERM) {
    if (pid <= 0) return;
    ::kill(pid, sig);
    ::waitpid(pid, nullptr, 0);
    pid = -1;
  }
  ~Child() { stop(SIGKILL); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
};

int run_wait(const std::vector<std::string>& argv, std::string* out) {
  const std::string cmd = [&] {
    std::string c;
    for (const auto& s : argv) c += "'" + s + "' ";
    return c;
  }();
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) return -1;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) {
    if (out) out->append(buf, n);
  }
  return ::pclose(p);
}

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

double rss_mib(pid_t pid) {
  std::istringstream in(slurp("/proc/" + std::to_string(pid) + "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024.0;
  }
  return 0;
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The control plane's database, read-only (WAL lets a reader in beside the writer).
class Db {
 public:
  explicit Db(const fs::path& file) { sqlite3_open_v2(file.c_str(), &db_, SQLITE_OPEN_READONLY, nullptr); }
  ~Db() { sqlite3_close(db_); }
  Db(const Db&) = delete;
  Db& operator=(const Db&) = delete;
  std::int64_t count(const std::string& sql) {
    sqlite3_stmt* s = nullptr;
    std::int64_t n = -1;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &s, nullptr) == SQLITE_OK && sqlite3_step(s) == SQLITE_ROW) {
      n = sqlite3_column_int64(s, 0);
    }
    sqlite3_finalize(s);
    return n;
  }
  // Milliseconds since the epoch of each record kind of each job ("kind" -> ts).
  std::map<std::string, std::map<std::string, std::int64_t>> record_times() {
    std::map<std::string, std::map<std::string, std::int64_t>> out;
    sqlite3_stmt* s = nullptr;
    sqlite3_prepare_v2(db_, "SELECT job_id, body FROM records WHERE job_id NOT LIKE '\\_agent:%' ESCAPE '\\'", -1, &s,
                       nullptr);
    while (s && sqlite3_step(s) == SQLITE_ROW) {
      const std::string job = reinterpret_cast<const char*>(sqlite3_column_text(s, 0));
      auto body = Json::parse(reinterpret_cast<const char*>(sqlite3_column_text(s, 1)), nullptr, false);
      if (body.is_discarded()) continue;
      auto tp = parse_rfc3339(body.value("ts", ""));
      if (!tp) continue;
      auto& slot = out[job][body.value("kind", "")];
      if (slot == 0) slot = std::chrono::duration_cast<std::chrono::milliseconds>(tp->time_since_epoch()).count();
    }
    sqlite3_finalize(s);
    return out;
  }

 private:
  sqlite3* db_ = nullptr;
};

template <class P>
bool wait_for(P pred, std::chrono::seconds limit) {
  const auto end = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < end) {
    if (pred()) return true;
    std::this_thread::sleep_for(5ms);
  }
  return pred();
}

std::string runbook(const std::string& name, const std::string& argv) {
  return "name: " + name + "\ndescription: bench\nauthorize:\n  scopes: [runbooks:execute]\nsteps:\n  - name: main\n"
         "    uses: command\n    with: {argv: " + argv + "}\n"
         "    sandbox: {profile: default, network: false, timeout_s: 30, memory_mb: 64}\n";
}

// Commits per second of one row each, WAL + synchronous=FULL, on the same disk as the
// control plane's database: the floor under anything that commits per request.
double raw_commits_per_s(const fs::path& dir) {
  sqlite3* db = nullptr;
  sqlite3_open((dir / "raw.db").c_str(), &db);
  sqlite3_exec(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; CREATE TABLE t(x TEXT);", nullptr, nullptr,
               nullptr);
  const int n = 300;
  const auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) sqlite3_exec(db, "INSERT INTO t VALUES ('row')", nullptr, nullptr, nullptr);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  sqlite3_close(db);
  return n / s;
}

}  // namespace

void system_rows(Table& t) {
  char tmpl[] = "/tmp/delegate-sysbench-XXXXXX";
  const fs::path dir = ::mkdtemp(tmpl);
  // The step user (nobody) must reach its working directory under the agent's state_dir.
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  const fs::path cpdir = dir / "cp";
  // Other builds' binaries may be measured with this bench (a before/after comparison).
  const char* cp_env = std::getenv("DELEGATE_BENCH_CP_BIN");
  const char* agent_env = std::getenv("DELEGATE_BENCH_AGENT_BIN");
  const std::string cp_bin = cp_env ? cp_env : DELEGATE_CP_BIN, agent_bin = agent_env ? agent_env : DELEGATE_AGENT_BIN;
  const auto port = free_port();
  if (run_wait({cp_bin, "init", "--dir", cpdir.string(), "--listen", "127.0.0.1:" + std::to_string(port)}, nullptr) !=
      0) {
    t.skipped("whole system", "control plane init failed");
    return;
  }
  spit(cpdir / "runbooks" / "trivial.yaml", runbook("trivial", "[/bin/true]"));
  spit(cpdir / "runbooks" / "nap.yaml", runbook("nap", "[/bin/sleep, '2']"));
  const fs::path cfg = cpdir / "agent.yaml";
  {
    std::string y = slurp(cfg);
    y.replace(y.find("concurrency: 4"), 14, "concurrency: 16");
    spit(cfg, y);
  }
  std::string key_out;
  run_wait({agent_bin, "api-key", "create", "--config", cfg.string(), "--id", "bench", "--scope", "runbooks:execute",
            "--role", "sre-oncall"},
           &key_out);
  const std::string key = key_out.substr(0, key_out.find('\n'));
  std::string admin_token = slurp(cpdir / "admin.token");
  while (!admin_token.empty() && (admin_token.back() == '\n' || admin_token.back() == ' ')) admin_token.pop_back();
  const std::string url = "https://127.0.0.1:" + std::to_string(port);

  Child cp({cp_bin, "serve", "--dir", cpdir.string()}, dir / "cp.log");
  agent::CpClient admin(agent::ClientOptions{url, cpdir / "ca.pem"});
  if (!wait_for([&] { auto r = admin.get("/healthz", "", 2s); return r && r->status == 200; }, 30s)) {
    t.skipped("whole system", "control plane did not come up");
    return;
  }
  Db db(cpdir / "controlplane.db");
  auto job = [&](const std::string& rb) {
    return Json{{"runbook", rb}, {"params", Json::object()}, {"authorization", {{"type", "api_key"}, {"key", key}}}};
  };
  auto submit = [&](const std::string& rb) {
    auto r = admin.post("/v1/jobs", job(rb), admin_token, 30s);
    return r && r->status == 201 ? Json::parse(r->body)["job_id"].get<std::string>() : std::string();
  };
  auto final_count = [&] { return db.count("SELECT count(*) FROM jobs WHERE status NOT IN ('queued','running')"); };

  auto agent = std::make_unique<Child>(std::vector<std::string>{agent_bin, "run", "--config", cfg.string()},
                                       dir / "agent.log");
  if (!wait_for([&] { return db.count("SELECT count(*) FROM agents") == 1; }, 30s)) {
    t.skipped("whole system", "agent did not register");
    return;
  }
  std::this_thread::sleep_for(1s);  // its first long poll parked, start-up allocations done
  const double idle_rss = rss_mib(agent->pid);

  // (a) dispatch: one job at a time to an idle agent whose long poll is parked.
  std::vector<double> to_received, to_start;
  std::int64_t done = 0;
  for (int i = 0; i < 100; ++i) {
    std::this_thread::sleep_for(30ms);  // the agent is back in its long poll
    const std::int64_t t0 = wall_ms();
    const auto id = submit("trivial");
    if (id.empty() || !wait_for([&] { return final_count() > done; }, 30s)) break;
    ++done;
    auto times = db.record_times()[id];
    to_received.push_back(static_cast<double>(times["job.received"] - t0));
    to_start.push_back(static_cast<double>(times["step.start"] - t0));
  }
  if (to_start.size() == 100) {
    t.add({.what = "admin POST /v1/jobs -> step.start, idle agent (p50)", .value = percentile(to_start, 50),
           .unit = "ms", .target_on = TargetOn::value, .target = 5,
           .note = "n=100, audit ts (ms resolution); p90 " + std::to_string(percentile(to_start, 90)).substr(0, 5) +
                   " ms, p99 " + std::to_string(percentile(to_start, 99)).substr(0, 5) + " ms; -> job.received p50 " +
                   std::to_string(percentile(to_received, 50)).substr(0, 5) + " ms, p99 " +
                   std::to_string(percentile(to_received, 99)).substr(0, 5) + " ms"});
    t.add({.what = "admin POST /v1/jobs -> step.start, idle agent (p99)", .value = percentile(to_start, 99),
           .unit = "ms", .target_on = TargetOn::value, .target = 20});
  } else {
    t.skipped("dispatch to a real agent", "jobs did not finish");
  }

  // (c) RSS with 16 running jobs.
  {
    for (int i = 0; i < 16; ++i) submit("nap");
    const bool all = wait_for([&] {
      return db.count("SELECT count(*) FROM jobs j WHERE runbook='nap' AND EXISTS (SELECT 1 FROM records r WHERE "
                      "r.job_id=j.id AND r.body LIKE '%\"kind\":\"step.start\"%')") == 16;
    }, 60s);
    const double busy_rss = rss_mib(agent->pid);
    t.add({.what = "agent RSS idle after registration", .value = idle_rss, .unit = "MiB",
           .target_on = TargetOn::value, .target = 10, .note = "VmRSS of the agent process, steps not included"});
    if (all) {
      t.add({.what = "agent RSS with 16 running jobs", .value = busy_rss, .unit = "MiB",
             .target_on = TargetOn::value, .target = 24});
    } else {
      t.skipped("agent RSS with 16 running jobs", "the 16 steps did not all start");
    }
    done += 16;
    wait_for([&] { return final_count() >= done; }, 60s);
  }

  // (b) throughput: 200 jobs queued while the agent is stopped, then released.
  agent->stop(SIGTERM);
  agent.reset();
  std::vector<std::string> ids;
  const auto s0 = std::chrono::steady_clock::now();
  for (int i = 0; i < 200; ++i) ids.push_back(submit("trivial"));
  const double submit_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - s0).count();
  const auto records_before = db.count("SELECT count(*) FROM records");
  agent = std::make_unique<Child>(std::vector<std::string>{agent_bin, "run", "--config", cfg.string()},
                                  dir / "agent.log");
  const bool finished = wait_for([&] { return final_count() >= done + 200; }, 120s);
  if (finished) {
    auto times = db.record_times();
    std::int64_t first = INT64_MAX, last = 0;
    for (const auto& id : ids) {
      first = std::min(first, times[id]["job.received"]);
      last = std::max(last, times[id]["job.end"]);
    }
    const double window_s = static_cast<double>(last - first) / 1000.0;
    const auto ingested = db.count("SELECT count(*) FROM records") - records_before;
    const auto ok = db.count("SELECT count(*) FROM jobs WHERE runbook='trivial' AND status='succeeded'");
    t.add({.what = "trivial jobs/s, 200 queued, concurrency 16", .value = 200.0 / window_s, .unit = "jobs/s",
           .better = Better::higher, .target_on = TargetOn::value, .target = 300,
           .note = "first job.received to last job.end: " + std::to_string(last - first) + " ms; " +
                   std::to_string(ok) + " trivial jobs succeeded in all"});
    t.add({.what = "control-plane ingest during the jobs/s run", .value = static_cast<double>(ingested) / window_s,
           .unit = "records/s", .ref_name = "raw SQLite commit/s (WAL, FULL)", .ref = raw_commits_per_s(dir),
           .better = Better::higher, .note = std::to_string(ingested) + " records verified and committed"});
  } else {
    t.skipped("trivial jobs/s", "the 200 jobs did not finish within 120 s");
  }
  const double rtt = time_us([&] { (void)admin.get("/healthz", "", 10s); }, 200);
  t.add({.what = "admin submissions/s, one client", .value = 200.0 / submit_s, .unit = "/s",
         .ref_name = "HTTPS round trips/s (healthz)", .ref = 1e6 / rtt, .better = Better::higher});
  agent->stop(SIGTERM);
  cp.stop(SIGTERM);
  std::error_code ec;
  if (!std::getenv("DELEGATE_BENCH_KEEP")) fs::remove_all(dir, ec);
}

}  // namespace delegate::bench
