#include "supervise.hpp"

#include <poll.h>
#include <signal.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <exception>

#include <delegate/common/log.hpp>

#include "prepare.hpp"

namespace delegate::sandbox::detail {

using std::chrono::milliseconds;

namespace {

constexpr std::size_t kChunk = 16 * 1024;  // output records carry ≤ 16 KiB (docs/audit.md)
// How long pipes are still read after the main child exited and its group was killed.
// Only a process that left the group (setsid) can keep them open longer; it must not
// hang the agent.
constexpr milliseconds kDrainGrace{500};
// Poll interval when the kernel has no pidfd_open (before 5.3).
constexpr milliseconds kNoPidfdPoll{50};

}  // namespace

ChildGuard::~ChildGuard() {
  if (reaped_) return;
  kill_group();
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
}

void ChildGuard::kill_group() const noexcept {
  (void)::kill(-pid_, SIGKILL);
  (void)::kill(pid_, SIGKILL);
  if (cgroup_ != nullptr) cgroup_->kill_all();
}

Result<std::pair<int, rusage>> ChildGuard::reap() {
  int status = 0;
  rusage ru{};
  while (::wait4(pid_, &status, 0, &ru) < 0) {
    if (errno != EINTR) return fail(Errc::io, errno_message("wait4", errno));
  }
  reaped_ = true;
  return std::pair{status, ru};
}

namespace {

bool child_has_exited(pid_t pid) {
  siginfo_t info{};
  // WNOWAIT: only peek, the zombie keeps the pgid reserved until reap().
  if (::waitid(P_PID, static_cast<id_t>(pid), &info, WEXITED | WNOHANG | WNOWAIT) != 0) {
    return errno == ECHILD;
  }
  return info.si_pid == pid;
}

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

}  // namespace

Result<LoopResult> supervise(const Spec& spec, const OutputSink& sink, const CancelToken* cancel,
                             ChildGuard& child, UniqueFd& error_read,
                             std::array<OutputStream, 2>& streams, SteadyClock::time_point start) {
  LoopResult st;
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, child.pid(), 0)));
  if (!pidfd && errno != ENOSYS) return fail(Errc::io, errno_message("pidfd_open", errno));

  const SteadyClock::time_point deadline = start + spec.limits.timeout;
  std::optional<SteadyClock::time_point> drain_until;  // set once the main child has exited
  bool killed = false;
  bool watch_cancel = cancel != nullptr;
  std::array<char, kChunk> buf;

  for (;;) {
    const bool streams_open = streams[0].fd || streams[1].fd;
    const SteadyClock::time_point now = SteadyClock::now();
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
      ChildReport report{};
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
      drain_until = SteadyClock::now() + kDrainGrace;
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
}  // namespace delegate::sandbox::detail
