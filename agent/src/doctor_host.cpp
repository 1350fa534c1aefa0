// Host checks of `delegate-agent doctor`: what this kernel, its cgroups and any
// container around us give the sandbox. They use the same probe the launcher uses, so
// doctor and the daemon cannot disagree about the host.
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <delegate/agent/doctor.hpp>
#include <delegate/sandbox/isolation.hpp>
#include <delegate/sandbox/seccomp.hpp>

namespace delegate::agent {
namespace {

const char* version_name(sandbox::CgroupVersion v) {
  switch (v) {
    case sandbox::CgroupVersion::none: return "none";
    case sandbox::CgroupVersion::v1: return "v1";
    case sandbox::CgroupVersion::v2: return "v2";
  }
  return "none";
}

DoctorCheck controller(const char* name, sandbox::CgroupVersion v, const std::filesystem::path& dir,
                       const std::string& notes, const char* without) {
  DoctorCheck c{std::string("cgroup ") + name, v != sandbox::CgroupVersion::none, ""};
  if (c.ok) {
    c.detail = std::string("cgroup ") + version_name(v) + ", delegated to the agent at " + dir.string();
  } else {
    c.detail = std::string("no usable controller (") + notes + "); " + without +
               ". Run the agent with its own delegated cgroup subtree (systemd: Delegate=yes, as the packaged unit "
               "does; containers: a writable cgroup namespace) with the " + name + " controller enabled";
  }
  return c;
}

// Loads the default step profile in a forked child: the only proof that this kernel
// (and a container's own seccomp policy) lets the agent stack a filter.
DoctorCheck seccomp_check() {
  DoctorCheck c{"seccomp", false, ""};
  auto program = sandbox::SeccompProgram::compile("default", sandbox::SeccompOptions{});
  if (!program) {
    c.detail = "the default step profile does not compile: " + program.error().message;
    return c;
  }
  const pid_t pid = ::fork();
  if (pid < 0) {
    c.detail = std::string("fork: ") + std::strerror(errno);
    return c;
  }
  if (pid == 0) {
    if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) ::_exit(2);
    const int rc = program->install();
    ::_exit(rc == 0 ? 0 : 3);
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    c.ok = true;
    c.detail = "a filter (" + std::to_string(program->instruction_count()) + " instructions) loads in a child";
    return c;
  }
  c.detail = WIFEXITED(status) && WEXITSTATUS(status) == 2
                 ? "no_new_privs cannot be set"
                 : "the kernel refused the step filter (CONFIG_SECCOMP_FILTER off, or a container seccomp policy "
                   "that forbids seccomp(2)/prctl): steps cannot be confined; run on a kernel with seccomp filters "
                   "and allow them in the container runtime";
  return c;
}

}  // namespace

void doctor_host_checks(std::vector<DoctorCheck>& out) {
  const sandbox::HostSupport& h = sandbox::host_support();
  if (h.user_ns) {
    out.push_back({"user namespaces", true, "a child can be cloned into new user, pid, mount, net, ipc, uts and cgroup namespaces"});
  } else {
    out.push_back({"user namespaces", false,
                   "cannot create a user namespace with the others (" + h.notes +
                       "); steps fail closed. Set user.max_user_namespaces > 0 (and kernel.unprivileged_userns_clone=1 "
                       "where it exists), or allow clone(CLONE_NEWUSER) in the container's seccomp profile"});
  }
  out.push_back(controller("memory", h.memory, h.memory_dir, h.notes, "steps get RLIMIT_AS instead of a memory limit"));
  out.push_back(controller("pids", h.pids, h.pids_dir, h.notes, "steps get only RLIMIT_NPROC against fork bombs"));
  out.push_back(controller("cpu", h.cpu, h.cpu_dir, h.notes, "steps run without a CPU bandwidth limit"));
  out.push_back(seccomp_check());
  if (h.mount_setattr) {
    out.push_back({"mount_setattr", true, "available (read-only, nosuid views of host paths)"});
  } else {
    out.push_back({"mount_setattr", false,
                   "unavailable (Linux < 5.12, or filtered by a container): steps get no mount namespace and fail "
                   "closed. Upgrade the kernel to 5.12 or later, or allow mount_setattr in the container's profile"});
  }
}

}  // namespace delegate::agent
