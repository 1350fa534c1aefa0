#include "child.hpp"

#include "namespaces.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string_view>

namespace delegate::sandbox::detail {
namespace {

[[noreturn]] void die(const ChildPlan& plan, ChildStage stage, int err, int detail = 0) noexcept {
  const ChildReport report{static_cast<int>(stage), err, detail};
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

// Closes every descriptor from 3 up except those in keep (unsorted, < 0 ignored).
bool close_all_except(std::array<int, 6> keep, int max_fd) noexcept {
  std::sort(keep.begin(), keep.end());
  unsigned next = 3;
  bool ok = true;
  for (const int fd : keep) {
    if (fd < static_cast<int>(next)) continue;
    if (close_fds_between(next, static_cast<unsigned>(fd) - 1) != 0) ok = false;
    next = static_cast<unsigned>(fd) + 1;
  }
  if (close_fds_between(next, ~0u) != 0) ok = false;
  if (ok) return true;
  if (errno != ENOSYS) return false;
  for (int fd = 3; fd < max_fd; ++fd) {
    if (std::find(keep.begin(), keep.end(), fd) == keep.end()) ::close(fd);
  }
  return true;
}

void reset_signal_handlers() noexcept {
  struct sigaction dfl {};
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < NSIG; ++sig) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    (void)::sigaction(sig, &dfl, nullptr);  // glibc-reserved signals answer EINVAL
  }
}


// The step itself: from here on only what the program needs, then exec.
[[noreturn]] void exec_step(const ChildPlan& plan) noexcept {
  // Own session and process group: the parent kills the whole group on timeout, and
  // the step loses the agent's controlling terminal (no TIOCSTI into it).
  if (::setsid() < 0) die(plan, ChildStage::setsid, errno);

  // The parent blocked every signal around clone so no agent handler can run in this
  // child; handlers are reset before the mask is lifted (just before exec).
  reset_signal_handlers();

  if (!plan.init) {
    // PDEATHSIG fires when the forking *thread* exits; run() blocks on that thread until
    // the step ends, so this covers an agent crash. (Under an init, the init's death
    // ends the whole pid namespace instead.)
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die(plan, ChildStage::death_signal, errno);
    if (::getppid() != plan.parent_pid) ::_exit(127);
  }

  if (::dup2(plan.stdin_fd, STDIN_FILENO) < 0 || ::dup2(plan.stdout_fd, STDOUT_FILENO) < 0 ||
      ::dup2(plan.stderr_fd, STDERR_FILENO) < 0) {
    die(plan, ChildStage::stdio, errno);
  }

  for (const RlimitSetting& r : plan.rlimits) {
    if (::setrlimit(static_cast<__rlimit_resource_t>(r.resource), &r.value) != 0) {
      die(plan, ChildStage::rlimit, errno);
    }
  }

  if (const int e = drop_privileges(plan.creds); e != 0) die(plan, ChildStage::credentials, e);
  // A credential change resets the dumpable flag of this memory, which the vfork-style
  // start shares with the init until execve (execve sets the step's own afresh).
  (void)::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
  // After the drop: the directory must be usable by the step user itself.
  if (::chdir(plan.workdir) != 0) die(plan, ChildStage::chdir, errno);

  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die(plan, ChildStage::no_new_privs, errno);

  if (!close_all_except({plan.error_fd, -1, -1, -1, -1, -1}, plan.max_fd)) {
    die(plan, ChildStage::close_fds, errno);
  }

  if (::sigprocmask(SIG_SETMASK, &plan.empty_mask, nullptr) != 0) die(plan, ChildStage::signals, errno);

  // Last before exec, so the filter never has to allow the setup calls above.
  if (const int rc = plan.filter->install(); rc != 0) die(plan, ChildStage::seccomp, -rc);

  ::execve(plan.path, plan.argv, plan.envp);
  die(plan, ChildStage::exec, errno);
}

#if defined(__SANITIZE_ADDRESS__)
#define DELEGATE_STEP_VFORK 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define DELEGATE_STEP_VFORK 0
#endif
#endif
#ifndef DELEGATE_STEP_VFORK
#define DELEGATE_STEP_VFORK 1
#endif

#if DELEGATE_STEP_VFORK
int step_entry(void* arg) { exec_step(*static_cast<const ChildPlan*>(arg)); }
#endif

// Starts the step under the init. A fork would copy the init's address space (which is
// a copy of the whole agent's) only for execve to throw it away again; instead the step
// runs on its own stack in the init's memory, with the init suspended until execve
// succeeds or the step exits (CLONE_VFORK), as posix_spawn does. Only the memory is
// shared: descriptors, credentials, signal dispositions, rlimits, the working
// directory and the seccomp filter are the step's own (no CLONE_FILES, CLONE_FS,
// CLONE_SIGHAND or CLONE_THREAD), so exec_step changes nothing of the init's.
// exec_step writes no memory but its own stack frame and errno, and the init is
// stopped meanwhile. Sanitizer builds (whose runtime tracks stacks and would see a
// foreign one) use _Fork.
pid_t start_step(const ChildPlan& plan) noexcept {
#if DELEGATE_STEP_VFORK
  if (plan.step_stack != nullptr) {
    // The stack grows down on every architecture this builds for.
    char* top = plan.step_stack + plan.step_stack_size;
    const pid_t pid = ::clone(step_entry, top, CLONE_VM | CLONE_VFORK | SIGCHLD, const_cast<ChildPlan*>(&plan));
    // The step's credential change reset the shared memory's dumpable flag (to
    // fs.suid_dumpable, 0 where this start is taken): the init's stays off whatever.
    (void)::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);
    return pid;
  }
#endif
  // _Fork, not fork: no atfork handlers, which could block on locks another agent
  // thread held at clone time.
  const pid_t pid = ::_Fork();
  if (pid == 0) exec_step(plan);
  return pid;
}

// pid 1 of the step's namespace. Signals stay blocked (SIGKILL from the parent's
// namespace still ends it); the step cannot signal it anyway: pid 1 only receives
// signals it has handlers for from inside its namespace.
[[noreturn]] void run_init(const ChildPlan& plan, pid_t step) noexcept {
  // Only the step holds the stdio pipes and the error pipe now: their EOF is the
  // parent's signal that exec happened / the output ended.
  ::close(plan.stdin_fd);
  ::close(plan.stdout_fd);
  ::close(plan.stderr_fd);
  ::close(plan.error_fd);
  int step_status = 0;
  for (;;) {
    int status = 0;
    const pid_t pid = ::waitpid(-1, &status, __WALL);
    if (pid < 0) {
      if (errno == EINTR) continue;
      break;  // ECHILD: cannot happen before the step is reaped
    }
    if (pid == step) {
      step_status = status;
      break;
    }
  }
  (void)!::write(plan.status_fd, &step_status, sizeof step_status);
  // Leaving pid 1 makes the kernel SIGKILL everything else in the namespace.
  ::_exit(0);
}

}  // namespace

void child_main(const ChildPlan& plan) noexcept {
  // An init outside the parent's pid namespace sees getppid() == 0, so the death
  // signal is armed first and the go-byte read below covers a parent that died
  // before it was armed (its end of the pipe closes).
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) die(plan, ChildStage::death_signal, errno);

  char go = 0;
  for (;;) {
    const ssize_t n = ::read(plan.go_fd, &go, 1);
    if (n == 1) break;
    if (n < 0 && errno == EINTR) continue;
    ::_exit(127);  // the parent gave up on this launch (or died); it reports why
  }

  // Core dumps and /proc/<pid>/{mem,environ} of this copy of the agent's memory must
  // not be reachable from the step. Only after the go byte: a non-dumpable process's
  // /proc/<pid> files belong to root of the initial user namespace, so an unprivileged
  // parent could no longer write this child's setgroups/uid_map/gid_map. Nothing of the
  // step runs before this point, so nothing could have read the memory meanwhile.
  (void)::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0);

  // Everything of the agent's but what this launch needs: the init lives as long as
  // the step and must not keep the agent's sockets, spool or key files open.
  if (!close_all_except({plan.stdin_fd, plan.stdout_fd, plan.stderr_fd, plan.error_fd, plan.status_fd, -1},
                        plan.max_fd)) {
    die(plan, ChildStage::close_fds, errno);
  }

  if (plan.cgroup_ns && ::unshare(CLONE_NEWCGROUP) != 0) die(plan, ChildStage::cgroup_ns, errno);
  if (plan.hostname != nullptr && ::sethostname(plan.hostname, std::strlen(plan.hostname)) != 0) {
    die(plan, ChildStage::hostname, errno);
  }
  if (plan.loopback_up) {
    if (const int e = bring_loopback_up(); e != 0) die(plan, ChildStage::loopback, e);
  }
  if (plan.mounts != nullptr) {
    int failed = -1;
    if (const int e = apply_mounts(*plan.mounts, &failed); e != 0) die(plan, ChildStage::mounts, e, failed);
  }

  if (!plan.init) exec_step(plan);

  const pid_t step = start_step(plan);
  if (step < 0) die(plan, ChildStage::fork_step, errno);
  run_init(plan, step);
}

bool vfork_start_safe(std::string_view suid_dumpable) noexcept {
  // Only "0" (the default): "1" leaves the window open, "2" the core file.
  return suid_dumpable == "0" || suid_dumpable == "0\n";
}

StepStack step_start_stack() noexcept {
#if DELEGATE_STEP_VFORK
  // While the step shares the init's memory (until execve), its own credential change
  // resets that memory's dumpable flag to fs.suid_dumpable. With "1", a host process
  // of the step's uid could attach to the step in that window and write into the
  // init's memory; with "2", a crash of the init could dump the agent's memory. So the
  // shared start is taken only where the setting is 0, read on every launch (it can
  // change at run time); anywhere else the step is forked.
  char buf[8] = {};
  const int fd = ::open("/proc/sys/fs/suid_dumpable", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  const ssize_t n = ::read(fd, buf, sizeof buf - 1);
  ::close(fd);
  if (n <= 0 || !vfork_start_safe(std::string_view(buf, static_cast<std::size_t>(n)))) return {};
  // One stack for every launch, mapped once with an inaccessible guard page below it,
  // so that an overflow faults instead of writing over the init's heap. The agent never
  // writes it: each init has its own copy-on-write copy, so concurrent launches share
  // the mapping safely. exec_step needs a few KiB (its frames, the seccomp program
  // header it builds on the stack).
  static constexpr std::size_t kGuard = 4096, kSize = 64 * 1024;
  static char* const base = [] {
    void* m = ::mmap(nullptr, kGuard + kSize, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) return static_cast<char*>(nullptr);
    char* p = static_cast<char*>(m);
    if (::mprotect(p + kGuard, kSize, PROT_READ | PROT_WRITE) != 0) {
      ::munmap(m, kGuard + kSize);
      return static_cast<char*>(nullptr);
    }
    return p + kGuard;
  }();
  if (base == nullptr) return {};
  return {base, kSize};
#else
  return {};
#endif
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
    case ChildStage::sync: return "waiting for the parent";
    case ChildStage::cgroup_ns: return "cgroup namespace";
    case ChildStage::hostname: return "sethostname";
    case ChildStage::loopback: return "loopback interface";
    case ChildStage::mounts: return "file-system view";
    case ChildStage::fork_step: return "forking the step";
    case ChildStage::credentials: return "dropping privileges";
  }
  return "unknown stage";
}

}  // namespace delegate::sandbox::detail
