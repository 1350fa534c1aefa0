#include <delegate/sandbox/launcher.hpp>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <optional>
#include <string>

#include <delegate/common/log.hpp>

#include "child.hpp"
#include "unique_fd.hpp"
#include "workdir.hpp"

namespace delegate::sandbox {

using detail::UniqueFd;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// The clean environment's PATH; argv[0] is resolved against it in the parent.
constexpr const char* kPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
constexpr std::size_t kChunk = 16 * 1024;  // DESIGN §6: output records carry ≤ 16 KiB
// How long pipes are still read after the main child exited and its group was killed.
// Only a process that left the group (setsid) can keep them open longer; it must not
// hang the agent.
constexpr milliseconds kDrainGrace{500};
// Poll interval when the kernel has no pidfd_open (before 5.3).
constexpr milliseconds kNoPidfdPoll{50};

std::string errno_message(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}

// --- preparation (parent, before fork) -------------------------------------------------

bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Returns the absolute path to exec, or nullopt when there is none.
std::optional<std::string> resolve_program(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string::npos) {
    std::error_code ec;
    // Relative paths mean "relative to where the agent/CLI runs", not to the workdir.
    const auto abs = std::filesystem::absolute(name, ec);
    if (ec || !is_executable_file(abs.string())) return std::nullopt;
    return abs.string();
  }
  std::string_view dirs(kPath);
  while (!dirs.empty()) {
    const auto colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    dirs = colon == std::string_view::npos ? std::string_view{} : dirs.substr(colon + 1);
    std::string candidate = std::string(dir) + "/" + name;
    if (is_executable_file(candidate)) return candidate;
  }
  return std::nullopt;
}

// Base environment plus spec.env; a spec entry replaces a base entry of the same name.
Result<std::vector<std::string>> build_env(const std::vector<std::string>& extra,
                                           const std::string& workdir) {
  std::vector<std::string> env = {std::string("PATH=") + kPath, "HOME=" + workdir,
                                  "TMPDIR=" + workdir, "LANG=C.UTF-8"};
  for (const std::string& entry : extra) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos || eq == 0 || has_nul(entry)) {
      return fail(Errc::invalid_argument, "invalid environment entry (want NAME=value)");
    }
    const std::string_view name(entry.data(), eq + 1);  // includes '='
    auto same = std::find_if(env.begin(), env.end(),
                             [&](const std::string& e) { return e.starts_with(name); });
    if (same != env.end()) {
      *same = entry;
    } else {
      env.push_back(entry);
    }
  }
  return env;
}

std::vector<char*> to_pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Never asks for more than the agent's own hard limit: an unprivileged agent cannot
// raise it, and a lower value is only stricter.
rlimit clamp(int resource, rlim_t soft, rlim_t hard) {
  rlimit cur{};
  if (::getrlimit(static_cast<__rlimit_resource_t>(resource), &cur) == 0 &&
      cur.rlim_max != RLIM_INFINITY) {
    hard = std::min(hard, cur.rlim_max);
    soft = std::min(soft, hard);
  }
  return {soft, hard};
}

rlim_t as_rlim(std::uint64_t v) { return static_cast<rlim_t>(v); }

std::array<detail::RlimitSetting, 6> build_rlimits(const Limits& l) {
  // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second later at the hard limit
  // (for programs that catch or ignore SIGXCPU).
  const rlim_t cpu_hard = l.cpu_seconds >= RLIM_INFINITY - 1 ? RLIM_INFINITY : as_rlim(l.cpu_seconds + 1);
  // RLIMIT_NPROC counts every process of the real uid, not just this step's, and is
  // not enforced at all for root (or CAP_SYS_RESOURCE/CAP_SYS_ADMIN): a real per-step
  // pids limit needs the pids cgroup controller (later issue).
  return {{
      {RLIMIT_CPU, clamp(RLIMIT_CPU, as_rlim(l.cpu_seconds), cpu_hard)},
      {RLIMIT_AS, clamp(RLIMIT_AS, as_rlim(l.memory_bytes), as_rlim(l.memory_bytes))},
      {RLIMIT_NOFILE, clamp(RLIMIT_NOFILE, as_rlim(l.open_files), as_rlim(l.open_files))},
      {RLIMIT_NPROC, clamp(RLIMIT_NPROC, as_rlim(l.processes), as_rlim(l.processes))},
      {RLIMIT_FSIZE, clamp(RLIMIT_FSIZE, as_rlim(l.file_size_bytes), as_rlim(l.file_size_bytes))},
      {RLIMIT_CORE, {0, 0}},
  }};
}

// Moves a fresh descriptor above 0..2: if the agent runs with a closed stdio slot,
// a pipe could land there and be clobbered by the child's dup2 onto stdio.
Result<UniqueFd> above_stdio(UniqueFd fd) {
  if (fd.get() > 2) return fd;
  UniqueFd moved(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
  if (!moved) return fail(Errc::io, errno_message("fcntl(F_DUPFD_CLOEXEC)", errno));
  return moved;
}

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};

Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fail(Errc::io, errno_message("pipe2", errno));
  Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
  auto r = above_stdio(std::move(p.read));
  if (!r) return std::unexpected(r.error());
  auto w = above_stdio(std::move(p.write));
  if (!w) return std::unexpected(w.error());
  return Pipe{std::move(*r), std::move(*w)};
}

// stdin as a sealed memfd rather than a pipe: no writer loop, no SIGPIPE in the agent
// when the step ignores its input, and the step cannot modify it.
Result<UniqueFd> make_stdin(const std::string& data) {
  if (data.empty()) {
    UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null) return fail(Errc::io, errno_message("/dev/null", errno));
    return above_stdio(std::move(null));
  }
  UniqueFd mem(::memfd_create("delegate-stdin", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!mem) return fail(Errc::io, errno_message("memfd_create", errno));
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(mem.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(Errc::io, errno_message("writing step stdin", errno));
    done += static_cast<std::size_t>(n);
  }
  if (::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0 ||
      ::lseek(mem.get(), 0, SEEK_SET) != 0) {
    return fail(Errc::io, errno_message("sealing step stdin", errno));
  }
  return above_stdio(std::move(mem));
}

int max_fd_bound() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return 65536;
  return static_cast<int>(std::clamp<rlim_t>(r.rlim_cur, 1024, 65536));
}

// --- the child while it runs ------------------------------------------------------------

// Kills and reaps the child on every path out of run(), including exceptions, so no
// step survives an agent error and no zombie is left behind.
class ChildGuard {
 public:
  explicit ChildGuard(pid_t pid) : pid_(pid) {}
  ~ChildGuard() {
    if (reaped_) return;
    kill_group();
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
  }
  ChildGuard(const ChildGuard&) = delete;
  ChildGuard& operator=(const ChildGuard&) = delete;

  // Until the child is reaped its pid, and therefore its process-group id, cannot be
  // reused, so signalling -pid can only hit the step's own group. The direct kill covers
  // the moment before the child's setsid().
  void kill_group() const noexcept {
    (void)::kill(-pid_, SIGKILL);
    (void)::kill(pid_, SIGKILL);
  }

  // Blocks until the (already exited or killed) child is reaped.
  Result<std::pair<int, rusage>> reap() {
    int status = 0;
    rusage ru{};
    while (::wait4(pid_, &status, 0, &ru) < 0) {
      if (errno != EINTR) return fail(Errc::io, errno_message("wait4", errno));
    }
    reaped_ = true;
    return std::pair{status, ru};
  }

  [[nodiscard]] pid_t pid() const noexcept { return pid_; }

 private:
  pid_t pid_;
  bool reaped_ = false;
};

bool child_has_exited(pid_t pid) {
  siginfo_t info{};
  // WNOWAIT: only peek, the zombie keeps the pgid reserved until reap().
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno == ECHILD;
  }
  return info.si_pid == pid;
}

struct OutputStream {
  UniqueFd fd;
  Stream kind;
};

struct LoopResult {
  bool timed_out = false;
  bool cancelled = false;
  std::optional<detail::ChildReport> report;
  std::uint64_t delivered = 0;
  std::uint64_t dropped = 0;
  std::string sink_error;
};

void deliver(LoopResult& st, const Limits& limits, const OutputSink& sink, Stream kind,
             const char* data, std::size_t n, const ChildGuard& child) {
  const std::uint64_t room = limits.output_bytes > st.delivered ? limits.output_bytes - st.delivered : 0;
  const std::size_t take = static_cast<std::size_t>(std::min<std::uint64_t>(room, n));
  st.dropped += n - take;
  if (take == 0 || !st.sink_error.empty() || !sink) return;
  st.delivered += take;
  try {
    sink(kind, std::string_view(data, take));
  } catch (const std::exception& e) {
    st.sink_error = e.what();
  } catch (...) {
    st.sink_error = "unknown exception";
  }
  // The step's output can no longer be recorded: it must not keep running unobserved.
  if (!st.sink_error.empty()) child.kill_group();
}

Result<LoopResult> supervise(const Spec& spec, const OutputSink& sink, const CancelToken* cancel,
                             ChildGuard& child, UniqueFd& error_read,
                             std::array<OutputStream, 2>& streams, Clock::time_point start) {
  LoopResult st;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child.pid(), 0)));
  if (!pidfd && errno != ENOSYS) return fail(Errc::io, errno_message("pidfd_open", errno));

  const Clock::time_point deadline = start + spec.limits.timeout;
  std::optional<Clock::time_point> drain_until;  // set once the main child has exited
  bool killed = false;
  bool watch_cancel = cancel != nullptr;
  std::array<char, kChunk> buf;

  for (;;) {
    const bool streams_open = streams[0].fd || streams[1].fd;
    const Clock::time_point now = Clock::now();
    if (drain_until && ((!streams_open && !error_read) || now >= *drain_until)) break;

    if (!drain_until && !killed && now >= deadline) {
      st.timed_out = true;
      child.kill_group();
      killed = true;
    }

    // Fixed slots so revents can be matched back; fd -1 is ignored by poll().
    enum Slot { kOut, kErr, kReport, kPid, kCancel, kSlots };
    std::array<pollfd, kSlots> pfd{};
    pfd[kOut] = {streams[0].fd.get(), POLLIN, 0};
    pfd[kErr] = {streams[1].fd.get(), POLLIN, 0};
    pfd[kReport] = {error_read.get(), POLLIN, 0};
    pfd[kPid] = {drain_until ? -1 : pidfd.get(), POLLIN, 0};
    pfd[kCancel] = {watch_cancel ? cancel->fd() : -1, POLLIN, 0};

    // nullopt = no deadline applies (killed, waiting for the pidfd).
    std::optional<milliseconds> wait;
    if (drain_until) {
      wait = std::chrono::ceil<milliseconds>(*drain_until - now);
    } else if (!killed) {
      wait = std::chrono::ceil<milliseconds>(deadline - now);
    }
    if (!pidfd && !drain_until) wait = wait ? std::min(*wait, kNoPidfdPoll) : kNoPidfdPoll;
    const int timeout_ms =
        wait ? static_cast<int>(std::clamp<long long>(wait->count(), 0, 1 << 30)) : -1;

    const int ready = ::poll(pfd.data(), pfd.size(), timeout_ms);
    if (ready < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::io, errno_message("poll", errno));
    }

    for (std::size_t i = 0; i < streams.size(); ++i) {
      if (!streams[i].fd || (pfd[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
      const ssize_t n = ::read(streams[i].fd.get(), buf.data(), buf.size());
      if (n > 0) {
        deliver(st, spec.limits, sink, streams[i].kind, buf.data(), static_cast<std::size_t>(n), child);
      } else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
        streams[i].fd.reset();
      }
    }

    if (error_read && (pfd[kReport].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      detail::ChildReport report{};
      const ssize_t n = ::read(error_read.get(), &report, sizeof report);
      if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
      if (n == static_cast<ssize_t>(sizeof report)) st.report = report;
      error_read.reset();  // EOF: execve succeeded (the pipe was close-on-exec)
    }

    if (watch_cancel && (pfd[kCancel].revents & POLLIN) != 0) {
      watch_cancel = false;
      if (!killed && !drain_until) {
        st.cancelled = true;
        child.kill_group();
        killed = true;
      }
    }

    const bool exited = pidfd ? (pfd[kPid].revents & POLLIN) != 0 : (!drain_until && child_has_exited(child.pid()));
    if (exited && !drain_until) {
      // Whatever the step left running in its group goes with it; the pipes then reach
      // EOF as soon as the kernel has torn those processes down.
      child.kill_group();
      drain_until = Clock::now() + kDrainGrace;
    }
  }

  for (OutputStream& s : streams) {
    if (s.fd) {
      log::warn("sandbox", "a process that left the step's process group still holds its output "
                           "pipe; closing it");
      s.fd.reset();
    }
  }
  return st;
}

Outcome early_outcome(Status status, std::string error) {
  Outcome o;
  o.status = status;
  o.error = std::move(error);
  return o;
}

Result<Outcome> run_impl(const Spec& spec, const SeccompProgram& filter, const OutputSink& sink,
                         const CancelToken* cancel) {
  const Clock::time_point start = Clock::now();
  if (cancel != nullptr && cancel->fd() < 0) {
    return fail(Errc::internal, "cancel token has no eventfd; refusing to run an uncancellable step");
  }
  if (spec.argv.empty()) return early_outcome(Status::setup_failed, "empty argv");
  if (std::any_of(spec.argv.begin(), spec.argv.end(), [](const std::string& a) { return has_nul(a); })) {
    return early_outcome(Status::setup_failed, "argv contains a NUL byte");
  }
  const auto program = resolve_program(spec.argv[0]);
  if (!program) return early_outcome(Status::not_found, spec.argv[0] + ": program not found");

  auto workdir = detail::make_workdir(spec.work_parent);
  if (!workdir) return std::unexpected(workdir.error());
  // Declared before every fd and the child guard, so it runs last: after the child and
  // its group are gone.
  struct WorkdirCleanup {
    std::filesystem::path dir;
    ~WorkdirCleanup() {
      if (auto r = detail::remove_tree(dir); !r) log::warn("sandbox", r.error().message);
    }
  } cleanup{*workdir};
  const std::string workdir_str = workdir->string();

  auto env = build_env(spec.env, workdir_str);
  if (!env) return early_outcome(Status::setup_failed, env.error().message);
  std::vector<std::string> argv_strings = spec.argv;
  std::vector<char*> argv = to_pointers(argv_strings);
  std::vector<char*> envp = to_pointers(*env);

  auto in = make_stdin(spec.stdin_data);
  if (!in) return std::unexpected(in.error());
  auto out = make_pipe();
  if (!out) return std::unexpected(out.error());
  auto err = make_pipe();
  if (!err) return std::unexpected(err.error());
  auto report = make_pipe();
  if (!report) return std::unexpected(report.error());
  for (const Pipe* p : {&*out, &*err}) {
    if (::fcntl(p->read.get(), F_SETFL, O_NONBLOCK) != 0) {
      return fail(Errc::io, errno_message("fcntl(O_NONBLOCK)", errno));
    }
  }

  detail::ChildPlan plan;
  plan.path = program->c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.workdir = workdir_str.c_str();
  plan.stdin_fd = in->get();
  plan.stdout_fd = out->write.get();
  plan.stderr_fd = err->write.get();
  plan.error_fd = report->write.get();
  plan.rlimits = build_rlimits(spec.limits);
  plan.parent_pid = ::getpid();
  plan.max_fd = max_fd_bound();
  plan.filter = &filter;
  sigemptyset(&plan.empty_mask);

  // Every signal stays blocked from fork until the child has reset all dispositions,
  // so none of the agent's handlers can ever run in the child.
  sigset_t all{};
  sigset_t old{};
  sigfillset(&all);
  if (const int rc = ::pthread_sigmask(SIG_SETMASK, &all, &old); rc != 0) {
    return fail(Errc::internal, errno_message("pthread_sigmask", rc));
  }
  const pid_t pid = ::fork();
  if (pid == 0) detail::child_main(plan);
  const int fork_errno = errno;
  (void)::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (pid < 0) return fail(Errc::io, errno_message("fork", fork_errno));
  ChildGuard child(pid);

  // Only the child may hold the write ends, or EOF would never come.
  out->write.reset();
  err->write.reset();
  report->write.reset();
  in->reset();

  std::array<OutputStream, 2> streams{OutputStream{std::move(out->read), Stream::stdout_stream},
                                      OutputStream{std::move(err->read), Stream::stderr_stream}};
  auto loop = supervise(spec, sink, cancel, child, report->read, streams, start);
  if (!loop) return std::unexpected(loop.error());
  auto reaped = child.reap();
  if (!reaped) return std::unexpected(reaped.error());
  if (!loop->sink_error.empty()) {
    return fail(Errc::internal, "output sink failed, step killed: " + loop->sink_error);
  }
  const auto [status, ru] = *reaped;

  Outcome o;
  o.duration = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  o.max_rss_kb = static_cast<std::uint64_t>(std::max<long>(ru.ru_maxrss, 0));
  o.cpu_ms = static_cast<std::uint64_t>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
             static_cast<std::uint64_t>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
  o.bytes_dropped = loop->dropped;
  if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);

  if (loop->report) {
    // The program never ran: the child failed before or at execve.
    const auto stage = static_cast<detail::ChildStage>(loop->report->stage);
    const int e = loop->report->error;
    const bool missing = stage == detail::ChildStage::exec &&
                         (e == ENOENT || e == EACCES || e == ENOTDIR);
    o.status = missing ? Status::not_found : Status::setup_failed;
    o.error = std::string(detail::stage_name(stage)) + " failed: " + std::strerror(e);
    o.signal = 0;
    return o;
  }

  if (loop->timed_out) {
    o.status = Status::timed_out;
    o.limits_hit.emplace_back("timeout");
  } else if (loop->cancelled) {
    o.status = Status::cancelled;
  } else if (WIFEXITED(status)) {
    o.status = Status::exited;
    o.exit_code = WEXITSTATUS(status);
  } else {
    o.status = Status::signaled;
    // SIGKILL after at least the soft CPU limit is the hard RLIMIT_CPU kill.
    if (o.signal == SIGXCPU ||
        (o.signal == SIGKILL && o.cpu_ms >= spec.limits.cpu_seconds * 1000)) {
      o.limits_hit.emplace_back("cpu");
    } else if (o.signal == SIGXFSZ) {
      o.limits_hit.emplace_back("file_size");
    }
  }
  if (o.bytes_dropped > 0) o.limits_hit.emplace_back("output");
  return o;
}

}  // namespace

CancelToken::CancelToken() : fd_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  // A failed eventfd leaves fd_ == -1; run() then refuses the token rather than run a
  // step that could not be cancelled.
  if (fd_ >= 0 && fd_ <= 2) {
    const int moved = ::fcntl(fd_, F_DUPFD_CLOEXEC, 3);
    ::close(fd_);
    fd_ = moved;
  }
}

CancelToken::~CancelToken() {
  if (fd_ >= 0) ::close(fd_);
}

void CancelToken::cancel() noexcept {
  if (fd_ < 0) return;
  // The counter is never read back, so the fd stays readable: "cancelled" is sticky.
  const std::uint64_t one = 1;
  while (::write(fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

bool CancelToken::cancelled() const noexcept {
  if (fd_ < 0) return false;
  pollfd p{fd_, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) != 0;
}

Result<Outcome> run(const Spec& spec, const SeccompProgram& filter, const OutputSink& sink,
                    const CancelToken* cancel) {
  try {
    return run_impl(spec, filter, sink, cancel);
  } catch (const std::exception& e) {
    return fail(Errc::internal, std::string("sandbox launch failed: ") + e.what());
  }
}

int exit_status(const Outcome& o) {
  switch (o.status) {
    case Status::exited: return o.exit_code;
    case Status::signaled: return 128 + o.signal;
    case Status::timed_out: return 124;
    // A cancelled step was killed with SIGKILL (or exited just before).
    case Status::cancelled: return 128 + (o.signal != 0 ? o.signal : SIGKILL);
    case Status::not_found: return 127;
    case Status::setup_failed: return 125;
  }
  return 125;
}

}  // namespace delegate::sandbox
