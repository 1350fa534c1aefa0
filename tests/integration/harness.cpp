#include "harness.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

extern char** environ;

namespace delegate::testing {

std::string Bins::agent() { return DELEGATE_AGENT_BIN; }
std::string Bins::controlplane() { return DELEGATE_CP_BIN; }
std::string Bins::audit() { return DELEGATE_AUDIT_BIN; }
std::string Bins::prober() { return DELEGATE_PROBER_BIN; }

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "delegate-it-XXXXXX").string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::remove_all(path, ec);
}

namespace {

std::vector<char*> cstrings(std::vector<std::string>& v) {
  std::vector<char*> out;
  for (auto& s : v) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

Process::Process(std::vector<std::string> argv, fs::path log, std::map<std::string, std::string> extra_env)
    : log_(std::move(log)) {
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    std::string kv = *e;
    if (kv.rfind("DELEGATE_", 0) == 0) continue;  // tests control the agent's environment
    env.push_back(kv);
  }
  for (const auto& [k, v] : extra_env) env.push_back(k + "=" + v);
  auto args = cstrings(argv);
  auto envp = cstrings(env);
  // fork+exec rather than posix_spawn so the child can ask to die with the test
  // process: a crashed or killed test run leaves no daemons behind.
  const pid_t parent = ::getpid();
  pid_ = ::fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(127);
    int in = ::open("/dev/null", O_RDONLY);
    int out = ::open(log_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (in < 0 || out < 0) ::_exit(127);
    ::dup2(in, 0);
    ::dup2(out, 1);
    ::dup2(out, 2);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::signal(SIGPIPE, SIG_DFL);
    ::execve(args[0], args.data(), envp.data());
    ::_exit(127);
  }
}

Process::~Process() {
  if (!reaped_ && pid_ > 0) {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, &status_, 0);
  }
}

bool Process::running() {
  if (reaped_) return false;
  int st = 0;
  pid_t r = ::waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    reaped_ = true;
    status_ = st;
    return false;
  }
  return true;
}

void Process::signal(int sig) {
  if (!reaped_) ::kill(pid_, sig);
}

int Process::wait(std::chrono::seconds timeout) {
  if (eventually([&] { return !running(); }, timeout)) return status_;
  return -1;
}

std::string Process::log_text() const { return read_text(log_); }

RunResult run(const std::vector<std::string>& argv_in, const std::string& stdin_data) {
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) || ::pipe2(out, O_CLOEXEC) || ::pipe2(err, O_CLOEXEC)) throw std::runtime_error("pipe");
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_adddup2(&fa, in[0], 0);
  posix_spawn_file_actions_adddup2(&fa, out[1], 1);
  posix_spawn_file_actions_adddup2(&fa, err[1], 2);
  std::vector<std::string> argv = argv_in;
  auto args = cstrings(argv);
  std::vector<std::string> env;
  for (char** e = environ; *e; ++e) {
    if (std::string(*e).rfind("DELEGATE_", 0) != 0) env.emplace_back(*e);
  }
  auto envp = cstrings(env);
  pid_t pid = -1;
  int rc = posix_spawn(&pid, args[0], &fa, nullptr, args.data(), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  if (rc != 0) throw std::runtime_error("posix_spawn " + argv[0] + ": " + std::strerror(rc));
  std::thread writer([&] {
    std::size_t off = 0;
    while (off < stdin_data.size()) {
      ssize_t n = ::write(in[1], stdin_data.data() + off, stdin_data.size() - off);
      if (n <= 0) break;
      off += static_cast<std::size_t>(n);
    }
    ::close(in[1]);
  });
  RunResult r;
  pollfd fds[2] = {{out[0], POLLIN, 0}, {err[0], POLLIN, 0}};
  int open_fds = 2;
  char buf[65536];
  while (open_fds > 0) {
    if (::poll(fds, 2, -1) < 0) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || !(fds[i].revents & (POLLIN | POLLHUP))) continue;
      ssize_t n = ::read(fds[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(fds[i].fd);
        fds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? r.out : r.err).append(buf, static_cast<std::size_t>(n));
      }
    }
  }
  writer.join();
  int st = 0;
  ::waitpid(pid, &st, 0);
  r.exit_code = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}

bool eventually(const std::function<bool()>& pred, std::chrono::seconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (pred()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return pred();
}

PortReservation::PortReservation() {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (fd_ < 0 || ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
      ::bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error("cannot reserve a loopback port");
  }
  port_ = ntohs(a.sin_port);
}

PortReservation::~PortReservation() {
  if (fd_ >= 0) ::close(fd_);
}

std::string read_text(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

void write_text(const fs::path& p, const std::string& text, unsigned mode) {
  {
    std::ofstream f(p, std::ios::binary | std::ios::trunc);
    f << text;
  }
  fs::permissions(p, static_cast<fs::perms>(mode));
}

ControlPlane::ControlPlane(const fs::path& dir, int lease_s, std::vector<std::string> serve_args)
    : dir_(dir), port_(reservation_.port()), serve_args_(std::move(serve_args)) {
  auto init = run({Bins::controlplane(), "init", "--dir", dir_.string(), "--listen", "127.0.0.1:" + std::to_string(port_)});
  if (init.exit_code != 0) throw std::runtime_error("controlplane init failed: " + init.err);
  if (lease_s > 0) {
    auto cfg = Json::parse(read_text(dir_ / "controlplane.json"));
    cfg["lease_s"] = lease_s;
    write_text(dir_ / "controlplane.json", cfg.dump(2), 0600);
  }
  start();
}

void ControlPlane::start() {
  proc_.reset();
  std::vector<std::string> argv{Bins::controlplane(), "serve", "--dir", dir_.string()};
  argv.insert(argv.end(), serve_args_.begin(), serve_args_.end());
  proc_ = std::make_unique<Process>(std::move(argv), dir_ / "controlplane.log");
  if (!eventually([&] {
        agent::CpClient c(agent::ClientOptions{url(), dir_ / "ca.pem"});
        auto r = c.get("/healthz", "", std::chrono::seconds(2));
        return r && r->status == 200;
      })) {
    throw std::runtime_error("control plane did not come up: " + proc_->log_text());
  }
}

void ControlPlane::kill() {
  proc_->signal(SIGKILL);
  proc_->wait(std::chrono::seconds(30));
}

std::string ControlPlane::first_agent_id() {
  auto r = admin_get("/v1/agents");
  if (r.status != 200) return "";
  auto agents = Json::parse(r.body)["agents"];
  return agents.empty() ? "" : agents[0]["id"].get<std::string>();
}

std::vector<Json> ControlPlane::agent_records(const std::string& agent_id) {
  auto r = admin_get("/v1/agents/" + agent_id + "/records");
  std::vector<Json> out;
  std::istringstream in(r.body);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(Json::parse(line));
  }
  return out;
}

std::string ControlPlane::admin_token() const {
  auto t = read_text(dir_ / "admin.token");
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

agent::HttpResult ControlPlane::admin_post(const std::string& path, const Json& body) {
  agent::CpClient c(agent::ClientOptions{url(), dir_ / "ca.pem"});
  auto r = c.post(path, body, admin_token(), std::chrono::seconds(30));
  if (!r) throw std::runtime_error("admin POST " + path + ": " + r.error().message);
  return *r;
}

agent::HttpResult ControlPlane::admin_get(const std::string& path) {
  agent::CpClient c(agent::ClientOptions{url(), dir_ / "ca.pem"});
  auto r = c.get(path, admin_token(), std::chrono::seconds(30));
  if (!r) throw std::runtime_error("admin GET " + path + ": " + r.error().message);
  return *r;
}

std::string ControlPlane::submit(const Json& job) {
  auto r = admin_post("/v1/jobs", job);
  if (r.status != 201) throw std::runtime_error("submit failed: HTTP " + std::to_string(r.status) + " " + r.body);
  return Json::parse(r.body)["job_id"].get<std::string>();
}

std::string ControlPlane::wait_final(const std::string& job_id, std::chrono::seconds timeout) {
  std::string status;
  eventually(
      [&] {
        auto r = admin_get("/v1/jobs/" + job_id);
        if (r.status != 200) return false;
        status = Json::parse(r.body)["status"].get<std::string>();
        return status != "queued" && status != "running";
      },
      timeout);
  return (status == "queued" || status == "running") ? "" : status;
}

std::vector<Json> ControlPlane::records(const std::string& job_id) {
  auto r = admin_get("/v1/jobs/" + job_id + "/records");
  std::vector<Json> out;
  std::istringstream in(r.body);
  std::string line;
  while (std::getline(in, line)) {
    if (!line.empty()) out.push_back(Json::parse(line));
  }
  return out;
}

}  // namespace delegate::testing
