#include "child.hpp"

#include <fcntl.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace delegate::sandbox::detail {
namespace {

[[noreturn]] void die(const ChildPlan& plan, ChildStage stage, int err) noexcept {
  const ChildReport report{static_cast<int>(stage), err};
  // A short write to a pipe of this size cannot happen; nothing else could be done anyway.
  (void)!::write(plan.error_fd, &report, sizeof report);
  ::_exit(127);
}

// close_range(2) syscall directly: it is a plain syscall, and glibc may lack the wrapper
// on older build hosts.
int close_fds_between(unsigned first, unsigned last) noexcept {
  if (first > last) return 0;
  return static_cast<int>(::syscall(SYS_close_range, first, last, 0u));
}

bool close_all_but(const ChildPlan& plan) noexcept {
  const auto keep = static_cast<unsigned>(plan.error_fd);
  if (close_fds_between(3, keep - 1) == 0 && close_fds_between(keep + 1, ~0u) == 0) return true;
  if (errno != ENOSYS) return false;
  for (int fd = 3; fd < plan.max_fd; ++fd) {
    if (fd != plan.error_fd) ::close(fd);
  }
  return true;
}

}  // namespace

void child_main(const ChildPlan& plan) noexcept {
  // Own session and process group: the parent kills the whole group on timeout, and
  // the step loses the agent's controlling terminal.
  if (::setsid() < 0) die(plan, ChildStage::setsid, errno);

  // The parent blocked every signal around fork so no agent handler can run in this
  // child; handlers are reset before the mask is lifted (just before exec).
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    (void)::sigaction(sig, &dfl, nullptr);  // glibc-reserved signals answer EINVAL
  }

  // PDEATHSIG fires when the forking *thread* exits; run() blocks on that thread until
  // the step ends, so this covers an agent crash. A parent that died before prctl is
  // caught by the getppid() check.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die(plan, ChildStage::death_signal, errno);
  if (::getppid() != plan.parent_pid) ::_exit(127);

  if (::dup2(plan.stdin_fd, STDIN_FILENO) < 0 || ::dup2(plan.stdout_fd, STDOUT_FILENO) < 0 ||
      ::dup2(plan.stderr_fd, STDERR_FILENO) < 0) {
    die(plan, ChildStage::stdio, errno);
  }
  if (::chdir(plan.workdir) != 0) die(plan, ChildStage::chdir, errno);

  for (const RlimitSetting& r : plan.rlimits) {
    if (::setrlimit(static_cast<__rlimit_resource_t>(r.resource), &r.value) != 0) {
      die(plan, ChildStage::rlimit, errno);
    }
  }

  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die(plan, ChildStage::no_new_privs, errno);

  if (!close_all_but(plan)) die(plan, ChildStage::close_fds, errno);

  if (::sigprocmask(SIG_SETMASK, &plan.empty_mask, nullptr) != 0) die(plan, ChildStage::signals, errno);

  // Last before exec, so the filter never has to allow the setup calls above.
  if (const int rc = plan.filter->install(); rc != 0) die(plan, ChildStage::seccomp, -rc);

  ::execve(plan.path, plan.argv, plan.envp);
  die(plan, ChildStage::exec, errno);
}

const char* stage_name(ChildStage stage) noexcept {
  switch (stage) {
    case ChildStage::setsid: return "setsid";
    case ChildStage::signals: return "signal reset";
    case ChildStage::death_signal: return "parent-death signal";
    case ChildStage::stdio: return "stdio redirection";
    case ChildStage::chdir: return "chdir to working directory";
    case ChildStage::rlimit: return "setrlimit";
    case ChildStage::no_new_privs: return "no_new_privs";
    case ChildStage::close_fds: return "closing inherited descriptors";
    case ChildStage::seccomp: return "seccomp filter";
    case ChildStage::exec: return "execve";
  }
  return "unknown stage";
}

}  // namespace delegate::sandbox::detail
