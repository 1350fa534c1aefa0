#pragma once
// Test harness for integration tests: real binaries as child processes, a real
// control plane over TLS 1.3 on loopback, real SQLite files in a temp dir.
#include <sys/types.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include <delegate/agent/cp_client.hpp>
#include <delegate/common/json.hpp>

namespace delegate::testing {

namespace fs = std::filesystem;

struct TempDir {
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  fs::path path;
};

// A child process whose stdout+stderr go to `log`. Killed (SIGKILL) on destruction
// unless it already exited.
class Process {
 public:
  Process(std::vector<std::string> argv, fs::path log, std::map<std::string, std::string> extra_env = {});
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  [[nodiscard]] pid_t pid() const { return pid_; }
  [[nodiscard]] bool running();
  void signal(int sig);
  // Waits for exit; returns the raw wait status, or -1 on timeout.
  int wait(std::chrono::seconds timeout);
  [[nodiscard]] std::string log_text() const;

 private:
  pid_t pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  fs::path log_;
};

struct RunResult {
  int exit_code = -1;
  std::string out;  // stdout
  std::string err;  // stderr
};

// Runs a program to completion (with optional stdin) and captures its output.
RunResult run(const std::vector<std::string>& argv, const std::string& stdin_data = "");

// Polls `pred` until it is true or `timeout` passes. Waiting for an event is not a
// timing assertion: the timeout only bounds a hung test.
bool eventually(const std::function<bool()>& pred, std::chrono::seconds timeout = std::chrono::seconds(30));

// A loopback port held for the life of this object: bound with SO_REUSEADDR and never
// listened on, so no other process is handed it (ephemeral or explicit bind), while the
// control plane (which binds with SO_REUSEADDR too) can listen on it, again after a
// restart. Closing a probe socket and hoping nobody takes the port meanwhile is a race.
class PortReservation {
 public:
  PortReservation();
  ~PortReservation();
  PortReservation(const PortReservation&) = delete;
  PortReservation& operator=(const PortReservation&) = delete;
  [[nodiscard]] std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

std::string read_text(const fs::path& p);
void write_text(const fs::path& p, const std::string& text, unsigned mode = 0644);

// A control plane initialised in its own directory and served on a free port.
class ControlPlane {
 public:
  // lease_s > 0 overrides the lease written by `init` (crash tests use short leases).
  // serve_args: extra arguments of `serve` (e.g. --metrics-listen).
  explicit ControlPlane(const fs::path& dir, int lease_s = 0, std::vector<std::string> serve_args = {});
  // SIGKILL, no shutdown of any kind; start() serves the same directory and port again.
  void kill();
  void start();
  [[nodiscard]] const fs::path& dir() const { return dir_; }
  [[nodiscard]] std::string url() const { return "https://127.0.0.1:" + std::to_string(port_); }
  [[nodiscard]] std::uint16_t port() const { return port_; }
  [[nodiscard]] std::string admin_token() const;
  [[nodiscard]] agent::HttpResult admin_post(const std::string& path, const Json& body);
  [[nodiscard]] agent::HttpResult admin_get(const std::string& path);
  // Submits a job; returns its id.
  std::string submit(const Json& job);
  // Waits until the job reaches a final status; returns it (or "" on timeout).
  std::string wait_final(const std::string& job_id, std::chrono::seconds timeout = std::chrono::seconds(60));
  [[nodiscard]] std::vector<Json> records(const std::string& job_id);
  // The agent stream of the (first) registered agent; "" if none registered.
  [[nodiscard]] std::string first_agent_id();
  [[nodiscard]] std::vector<Json> agent_records(const std::string& agent_id);
  Process& process() { return *proc_; }

 private:
  fs::path dir_;
  PortReservation reservation_;
  std::uint16_t port_;
  std::unique_ptr<Process> proc_;
  std::vector<std::string> serve_args_;
};

// Binaries under test (absolute paths from CMake).
struct Bins {
  static std::string agent();
  static std::string controlplane();
  static std::string audit();
  static std::string prober();
};

}  // namespace delegate::testing
