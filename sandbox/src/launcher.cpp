#include <delegate/sandbox/launcher.hpp>

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>
#include <exception>
#include <memory>
#include <optional>
#include <string>

#include <delegate/common/log.hpp>

#include "cgroup.hpp"
#include "child.hpp"
#include "mounts.hpp"
#include "namespaces.hpp"
#include "netns_pool.hpp"
#include "prepare.hpp"
#include "supervise.hpp"
#include "unique_fd.hpp"
#include "workdir.hpp"

namespace delegate::sandbox {

using namespace detail;  // NOLINT(google-build-using-namespace): this file drives the detail parts
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

Outcome early_outcome(Status status, std::string error, const IsolationPlan& iso = {}) {
  Outcome o;
  o.status = status;
  o.error = std::move(error);
  o.isolation = iso;
  return o;
}

// The step's outcome from the wait status of whatever ran it: the init reports the
// step's own status through a pipe; without a pid namespace the child is the step.
int step_status(int child_status, UniqueFd& status_read, bool has_init, bool* known) {
  *known = true;
  if (!has_init) return child_status;
  int status = 0;
  const ssize_t n = ::read(status_read.get(), &status, sizeof status);
  if (n == static_cast<ssize_t>(sizeof status)) return status;
  // The init died without reporting: killed (timeout, cancel, OOM) or crashed.
  *known = false;
  return child_status;
}

// Pipes are made non-blocking on the parent side only.
Result<void> nonblocking(int fd) {
  if (::fcntl(fd, F_SETFL, O_NONBLOCK) != 0) return fail(Errc::io, errno_message("fcntl(O_NONBLOCK)", errno));
  return ok();
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
  const HostSupport& host = host_support();
  auto iso = plan_isolation(spec, host);
  if (!iso) return early_outcome(Status::setup_failed, iso.error().message);
  // The filter decides whether the step may make Unix sockets at all; the view decides
  // which host sockets it could reach with them. They must describe the same grant:
  // AF_UNIX without a grant would reach every host socket the view shows.
  if (filter.options().unix_sockets != !iso->sockets.empty()) {
    return early_outcome(Status::setup_failed,
                         filter.options().unix_sockets
                             ? "the seccomp filter allows Unix sockets but the step was granted no host socket"
                             : "the step was granted host sockets but its seccomp filter refuses Unix sockets",
                         *iso);
  }
  const auto program = resolve_program(spec.argv[0]);
  if (!program) return early_outcome(Status::not_found, spec.argv[0] + ": program not found", *iso);

  auto workdir = make_workdir(spec.work_parent);
  if (!workdir) return std::unexpected(workdir.error());
  // Declared before every fd, the cgroup and the child guard, so it runs last: after
  // the child and everything it started are gone.
  struct WorkdirCleanup {
    std::filesystem::path dir;
    ~WorkdirCleanup() {
      if (auto r = remove_tree(dir); !r) log::warn("sandbox", r.error().message);
    }
  } cleanup{*workdir};
  const std::string workdir_str = workdir->string();
  if (host.is_root && ::chown(workdir_str.c_str(), iso->uid, iso->gid) != 0) {
    return fail(Errc::io, errno_message("chown " + workdir_str, errno));
  }

  const bool memory_cgroup = iso->memory != CgroupVersion::none;
  StepCgroup cgroup;
  if (iso->memory != CgroupVersion::none || iso->pids != CgroupVersion::none || iso->cpu != CgroupVersion::none) {
    auto cg = StepCgroup::create(*iso, host,
                                 CgroupLimits{spec.limits.memory_bytes, spec.limits.processes, spec.limits.cpu_percent});
    if (!cg) return early_outcome(Status::setup_failed, cg.error().message, *iso);
    cgroup = std::move(*cg);
  }

  std::optional<MountPlan> mounts;
  if (iso->mount_ns) {
    auto m = build_mount_plan(MountRequest{.workdir = workdir_str,
                                           .binds = spec.isolation.mounts,
                                           .tmp_bytes = spec.limits.memory_bytes,
                                           .private_network = iso->net_ns,
                                           .host_network = spec.network,
                                           .sockets = iso->sockets,
                                           .secret_files = &spec.secret_files,
                                           .secret_uid = iso->uid,
                                           .secret_gid = iso->gid});
    if (!m) return early_outcome(Status::setup_failed, m.error().message, *iso);
    mounts = std::move(*m);
  }

  if (!spec.secret_files.empty() && !mounts) {
    return early_outcome(Status::setup_failed, "secret files need a mount namespace, which this host does not provide", *iso);
  }
  std::vector<std::string> step_env = spec.env;
  if (!spec.secret_files.empty()) step_env.push_back(std::string("DELEGATE_SECRETS_DIR=") + kSecretsDir);
  auto env = build_env(step_env, workdir_str);
  if (!env) return early_outcome(Status::setup_failed, env.error().message, *iso);
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
  auto go = make_pipe();
  if (!go) return std::unexpected(go.error());
  auto status_pipe = make_pipe();
  if (!status_pipe) return std::unexpected(status_pipe.error());
  for (const Pipe* p : {&*out, &*err}) {
    if (auto r = nonblocking(p->read.get()); !r) return std::unexpected(r.error());
  }

  ChildPlan plan;
  plan.path = program->c_str();
  plan.argv = argv.data();
  plan.envp = envp.data();
  plan.workdir = workdir_str.c_str();
  plan.stdin_fd = in->get();
  plan.stdout_fd = out->write.get();
  plan.stderr_fd = err->write.get();
  plan.error_fd = report->write.get();
  plan.go_fd = go->read.get();
  plan.status_fd = status_pipe->write.get();
  plan.rlimits = build_rlimits(spec.limits, !memory_cgroup);
  plan.parent_pid = ::getpid();
  plan.max_fd = max_fd_bound();
  plan.filter = &filter;
  sigemptyset(&plan.empty_mask);
  plan.init = iso->pid_ns;
  plan.cgroup_ns = iso->cgroup_ns;
  plan.hostname = iso->uts_ns ? spec.isolation.hostname.c_str() : nullptr;
  plan.loopback_up = iso->net_ns;
  plan.mounts = mounts ? &*mounts : nullptr;
  plan.creds = CredPlan{iso->uid, iso->gid, host.is_root, host.is_root || iso->user_ns};
  // The init starts the step on this stack (child.cpp, start_step), decided here,
  // before the clone, like everything else the child uses.
  if (plan.init) {
    const StepStack stack = step_start_stack();
    plan.step_stack = stack.base;
    plan.step_stack_size = stack.size;
  }

  // A network namespace made ahead of time keeps its creation off this path; the child
  // is cloned while this thread stands in it. Without one, clone() creates it.
  // A namespace the caller prepared (Spec::netns_fd) is joined the same way.
  unsigned long flags = clone_flags(*iso);
  if (spec.netns_fd >= 0 && !(iso->net_ns && host.is_root)) {
    return early_outcome(Status::setup_failed,
                         "a prepared network namespace needs a root agent and a step without host networking", *iso);
  }
  std::optional<UniqueFd> pooled;
  if (iso->net_ns && host.is_root && spec.netns_fd < 0) pooled = NetnsPool::instance().take();
  std::optional<ThreadNetns> in_netns;
  if (pooled || spec.netns_fd >= 0) {
    in_netns.emplace(pooled ? pooled->get() : spec.netns_fd, NetnsPool::instance().home());
    if (!in_netns->entered()) {
      return early_outcome(Status::setup_failed, errno_message("setns into a fresh network namespace", in_netns->error()),
                           *iso);
    }
    flags &= ~static_cast<unsigned long>(CLONE_NEWNET);
    plan.loopback_up = false;  // done when the namespace was made
  }

  // Every signal stays blocked from clone until the child has reset all dispositions,
  // so none of the agent's handlers can ever run in the child.
  sigset_t all{};
  sigset_t old{};
  sigfillset(&all);
  if (const int rc = ::pthread_sigmask(SIG_SETMASK, &all, &old); rc != 0) {
    return fail(Errc::internal, errno_message("pthread_sigmask", rc));
  }
  // The raw syscall: glibc's fork() cannot create namespaces, and clone() wants a stack.
  // With a null stack the child runs on a copy of ours, exactly like fork.
  const long raw = ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (raw == 0) child_main(plan);
  const int clone_errno = errno;
  in_netns.reset();  // back home before anything else runs on this thread
  pooled.reset();    // the child holds the namespace now
  (void)::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (raw < 0) {
    return early_outcome(Status::setup_failed, errno_message("clone", clone_errno), *iso);
  }
  const auto pid = static_cast<pid_t>(raw);
  // With a pid namespace, killing its init ends every process of the step; the cgroup
  // sweep (reading cgroup.procs) is the tree kill only without one.
  ChildGuard child(pid, cgroup.empty() || iso->pid_ns ? nullptr : &cgroup);

  // Only the child may hold the write ends, or EOF would never come.
  out->write.reset();
  err->write.reset();
  report->write.reset();
  status_pipe->write.reset();
  go->read.reset();
  in->reset();

  // The child waits for this: its cgroup and its identity must be in place before it
  // runs anything. On failure the guard kills it (closing `go` alone would too).
  if (!cgroup.empty()) {
    if (auto r = cgroup.attach(pid); !r) return early_outcome(Status::setup_failed, r.error().message, *iso);
  }
  if (auto r = write_id_maps(pid, *iso, host.is_root); !r) {
    return early_outcome(Status::setup_failed, r.error().message, *iso);
  }
  const char byte = 1;
  if (::write(go->write.get(), &byte, 1) != 1) {
    return fail(Errc::io, errno_message("starting the step", errno));
  }
  go->write.reset();

  std::array<OutputStream, 2> streams{OutputStream{std::move(out->read), Stream::stdout_stream},
                                      OutputStream{std::move(err->read), Stream::stderr_stream}};
  auto loop = supervise(spec, sink, cancel, child, report->read, streams, start);
  if (!loop) return std::unexpected(loop.error());
  auto reaped = child.reap();
  if (!reaped) return std::unexpected(reaped.error());
  if (!loop->sink_error.empty()) {
    return fail(Errc::internal, "output sink failed, step killed: " + loop->sink_error);
  }
  const auto [child_status, ru] = *reaped;
  bool status_known = false;
  const int status = step_status(child_status, status_pipe->read, plan.init, &status_known);

  Outcome o;
  o.isolation = *iso;
  o.duration = std::chrono::duration_cast<milliseconds>(Clock::now() - start);
  o.max_rss_kb = static_cast<std::uint64_t>(std::max<long>(ru.ru_maxrss, 0));
  o.cpu_ms = static_cast<std::uint64_t>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1000 +
             static_cast<std::uint64_t>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1000;
  o.bytes_dropped = loop->dropped;
  if (WIFSIGNALED(status)) o.signal = WTERMSIG(status);

  if (loop->report) {
    // The program never ran: the child failed before or at execve.
    const auto stage = static_cast<ChildStage>(loop->report->stage);
    const int e = loop->report->error;
    const bool missing = stage == ChildStage::exec && (e == ENOENT || e == EACCES || e == ENOTDIR);
    o.status = missing ? Status::not_found : Status::setup_failed;
    o.error = std::string(stage_name(stage)) + " failed: " + std::strerror(e);
    if (stage == ChildStage::mounts && mounts) {
      o.error += " (" + describe_step(*mounts, loop->report->detail) + ")";
    }
    o.signal = 0;
    return o;
  }

  const bool oom = !cgroup.empty() && cgroup.oom_killed();
  if (loop->timed_out) {
    o.status = Status::timed_out;
    o.limits_hit.emplace_back("timeout");
  } else if (loop->cancelled) {
    o.status = Status::cancelled;
  } else if (status_known && WIFEXITED(status)) {
    o.status = Status::exited;
    o.exit_code = WEXITSTATUS(status);
  } else {
    o.status = Status::signaled;
    if (o.signal == 0) o.signal = SIGKILL;  // the init was killed without reporting
    // SIGKILL after at least the soft CPU limit is the hard RLIMIT_CPU kill.
    if (o.signal == SIGXCPU || (o.signal == SIGKILL && !oom && o.cpu_ms >= spec.limits.cpu_seconds * 1000)) {
      o.limits_hit.emplace_back("cpu");
    } else if (o.signal == SIGXFSZ) {
      o.limits_hit.emplace_back("file_size");
    }
  }
  if (oom) o.limits_hit.emplace_back("memory");
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