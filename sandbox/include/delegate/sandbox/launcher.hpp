#pragma once
// Runs one program as a sandboxed step. The parent plans the isolation, creates the
// step's cgroups, and clones a child into fresh user, pid, mount, network, ipc, uts and
// cgroup namespaces. That child becomes the namespace's init: it builds the step's file
// system view, then forks the step, which drops to the step user and capabilities,
// applies rlimits, no_new_privs and seccomp, and execs. Everything between clone and
// exec is allocation-free (the agent is multi-threaded). The parent captures output,
// enforces the wall-clock timeout and cancellation by killing the init (and with it
// the whole pid namespace), and reports how the step ended.
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/sandbox/isolation.hpp>
#include <delegate/sandbox/seccomp.hpp>

namespace delegate::sandbox {

struct Limits {
  std::chrono::milliseconds timeout{std::chrono::seconds(300)};  // wall clock
  std::uint64_t cpu_seconds = 300;                // RLIMIT_CPU
  // The memory cgroup limit (no swap); RLIMIT_AS instead when no memory cgroup exists.
  std::uint64_t memory_bytes = 512ull << 20;
  std::uint64_t open_files = 256;                 // RLIMIT_NOFILE
  std::uint64_t processes = 256;                  // pids cgroup, and RLIMIT_NPROC
  std::uint32_t cpu_percent = 100;                // CPU bandwidth: 100 = one full CPU
  std::uint64_t file_size_bytes = 64ull << 20;    // RLIMIT_FSIZE
  std::uint64_t output_bytes = 1ull << 20;        // per step, stdout+stderr; the rest is dropped and counted
};

// A secret handed to the step as a file: name (validated by the runbook parser:
// [A-Za-z0-9._-]{1,64}, no leading dot) and content. The launcher writes it into a
// fresh tmpfs at kSecretsDir inside the step's mount namespace (0400, owned by the step
// user; the directory 0500, then read-only), never onto a host disk, never into argv
// or the environment; the step's env gets DELEGATE_SECRETS_DIR=kSecretsDir.
struct SecretFile {
  std::string name;
  std::string content;
};
inline constexpr const char* kSecretsDir = "/run/secrets";

struct Spec {
  // argv[0] is resolved against PATH of the clean environment in the parent; a missing
  // program yields Status::not_found without forking.
  std::vector<std::string> argv;
  // Extra environment (NAME=value); the base is PATH, HOME (= workdir), LANG, TMPDIR.
  std::vector<std::string> env;
  std::string profile = "default";
  bool network = false;
  // A network namespace the caller prepared (sandbox::StepNetns), joined instead of a
  // fresh one, so the caller can have its own sockets in it (the egress proxy's
  // listener). Not owned; root agents only, and never with `network`.
  int netns_fd = -1;
  Limits limits;
  // A fresh private working directory is created below this and removed afterwards.
  std::filesystem::path work_parent = "/tmp";
  // Optional stdin content (written then closed); empty = /dev/null.
  std::string stdin_data;
  IsolationOptions isolation;
  // Needs a mount namespace: without one the step fails with setup_failed.
  std::vector<SecretFile> secret_files;
};

enum class Stream { stdout_stream, stderr_stream };

enum class Status {
  exited,        // normal exit; exit_code set
  signaled,      // killed by a signal (including RLIMIT_CPU's SIGXCPU/SIGKILL)
  timed_out,     // wall-clock timeout; the process group was killed
  cancelled,     // CancelToken fired; the process group was killed
  not_found,     // argv[0] not found / not executable
  setup_failed,  // the sandbox could not be established (the program never ran)
};

struct Outcome {
  Status status = Status::setup_failed;
  int exit_code = -1;   // for exited
  int signal = 0;       // for signaled / timed_out / cancelled (the signal that ended it)
  std::chrono::milliseconds duration{0};
  std::vector<std::string> limits_hit;  // "timeout", "cpu", "memory", "output", "file_size"
  std::uint64_t bytes_dropped = 0;
  std::uint64_t max_rss_kb = 0;
  std::uint64_t cpu_ms = 0;
  std::string error;  // for not_found / setup_failed: one line
  IsolationPlan isolation;  // what was applied
};

// Called on the launching thread for each chunk read (at most 16 KiB each).
using OutputSink = std::function<void(Stream, std::string_view)>;

// Wakes a running launch from another thread (e.g. a cancel from the control plane).
class CancelToken {
 public:
  CancelToken();
  ~CancelToken();
  CancelToken(const CancelToken&) = delete;
  CancelToken& operator=(const CancelToken&) = delete;
  void cancel() noexcept;
  [[nodiscard]] bool cancelled() const noexcept;
  [[nodiscard]] int fd() const noexcept { return fd_; }  // eventfd, readable once cancelled

 private:
  int fd_;
};

// Runs the step to completion. Result errors are reserved for failures of the agent
// itself (e.g. cannot create pipes); everything about the step is in Outcome.
[[nodiscard]] Result<Outcome> run(const Spec& spec, const SeccompProgram& filter,
                                  const OutputSink& sink, const CancelToken* cancel = nullptr);

// The exit status contract of `delegate-agent sandbox-run` (docs/sandbox.md, "sandbox-run"): the child's
// status; 128+N if killed by signal N; 124 on timeout; 125 setup failed; 127 not found.
[[nodiscard]] int exit_status(const Outcome& o);

}  // namespace delegate::sandbox
