#include <delegate/sandbox/isolation.hpp>

#include <sched.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include <delegate/sandbox/launcher.hpp>

#include "cgroup.hpp"
#include "namespaces.hpp"

namespace delegate::sandbox {
namespace {

// Clones a child into the given namespaces that exits at once: the only reliable test
// of what this kernel, its sysctls, LSMs and our container let us create.
bool can_clone(unsigned long flags) {
  const long pid = ::syscall(SYS_clone, flags | SIGCHLD, nullptr, nullptr, nullptr, nullptr);
  if (pid == 0) ::_exit(0);
  if (pid < 0) return false;
  int status = 0;
  while (::waitpid(static_cast<pid_t>(pid), &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) && WEXITSTATUS(status) == 0;
}

HostSupport probe() {
  HostSupport h;
  h.is_root = ::geteuid() == 0;
  h.user_ns = can_clone(detail::kAllNamespaces | CLONE_NEWCGROUP);
  if (!h.user_ns) h.notes += "user namespaces unavailable; ";
  // Only decides anything without user namespaces (plan_isolation), so it is probed only
  // then and left false otherwise: each probe creates
  // and tears down a full set of namespaces, a network namespace included, on the path
  // of the process's first launch (all of `sandbox-run`'s cost that is not the launch).
  h.other_ns = h.is_root && !h.user_ns &&
               can_clone(detail::kAllNamespaces & ~static_cast<unsigned long>(CLONE_NEWUSER));
  // An invalid descriptor tells ENOSYS (no mount_setattr, Linux < 5.12) from EBADF.
  errno = 0;
  (void)::syscall(SYS_mount_setattr, -1, "", 0, nullptr, 0);
  h.mount_setattr = errno != ENOSYS;
  if (!h.mount_setattr) h.notes += "mount_setattr unavailable (Linux < 5.12); ";
  detail::probe_cgroups(h);
  return h;
}

}  // namespace

const HostSupport& host_support() {
  static const HostSupport host = probe();
  return host;
}

Result<IsolationPlan> plan_isolation(const Spec& spec, const HostSupport& host) {
  IsolationPlan p;
  const IsolationOptions& iso = spec.isolation;

  const bool namespaces = host.user_ns || host.other_ns;
  if (host.user_ns) {
    p.user_ns = true;
  } else if (namespaces) {
    p.degraded.emplace_back("user_ns");
  }
  if (namespaces) {
    p.pid_ns = p.ipc_ns = p.uts_ns = p.cgroup_ns = true;
    p.net_ns = !spec.network;
    p.mount_ns = host.mount_setattr;
    if (!p.mount_ns) p.degraded.emplace_back("mount_ns");
  } else {
    for (const char* ns : {"user_ns", "pid_ns", "mount_ns", "ipc_ns", "uts_ns", "cgroup_ns"}) {
      p.degraded.emplace_back(ns);
    }
    if (!spec.network) p.degraded.emplace_back("net_ns");
  }
  if (!p.degraded.empty() && !iso.allow_degraded) {
    std::string missing;
    for (const auto& d : p.degraded) missing += (missing.empty() ? "" : ", ") + d;
    return fail(Errc::unavailable, "sandbox isolation unavailable on this host (" + missing + "; " + host.notes +
                                       "the step does not allow degraded isolation)");
  }
  if (!p.mount_ns && !iso.mounts.empty()) {
    return fail(Errc::unavailable, "bind mounts need a mount namespace, which is unavailable on this host");
  }
  if (!p.mount_ns && !iso.sockets.empty()) {
    return fail(Errc::unavailable, "host socket grants need a mount namespace, which is unavailable on this host");
  }
  for (const auto& s : iso.sockets) {
    if (!s.is_absolute()) return fail(Errc::invalid_argument, "host socket path must be absolute: " + s.string());
    std::error_code ec;
    const auto canon = std::filesystem::canonical(s, ec);
    if (ec) return fail(Errc::not_found, "host socket " + s.string() + ": " + ec.message());
    struct stat st {};
    if (::stat(canon.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) {
      return fail(Errc::invalid_argument, "host socket " + s.string() + " is not a socket");
    }
    if (std::find(p.sockets.begin(), p.sockets.end(), canon.string()) == p.sockets.end()) {
      p.sockets.push_back(canon.string());
    }
  }

  if (host.is_root) {
    // uid 0 outside a user namespace of its own is the host's root: it owns /etc and
    // can signal every root process, capabilities or not. No degraded mode for that.
    if (iso.root && !p.user_ns) {
      return fail(Errc::unavailable, "a root step needs its own user namespace, which is unavailable on this host");
    }
    p.root = iso.root;
    p.uid = iso.root ? 0 : iso.user.uid;
    p.gid = iso.root ? 0 : iso.user.gid;
  } else {
    // An unprivileged agent can only map itself: steps run as the agent's own user.
    if (iso.root) return fail(Errc::permission, "a step can run as root only when the agent runs as root");
    p.uid = ::getuid();
    p.gid = ::getgid();
  }

  p.memory = host.memory;
  p.pids = host.pids;
  p.cpu = host.cpu;
  return p;
}

Json describe(const IsolationPlan& p) {
  Json ns = Json::array();
  const std::pair<bool, const char*> all[] = {{p.user_ns, "user"}, {p.pid_ns, "pid"},   {p.mount_ns, "mount"},
                                              {p.net_ns, "net"},   {p.ipc_ns, "ipc"},   {p.uts_ns, "uts"},
                                              {p.cgroup_ns, "cgroup"}};
  for (const auto& [on, name] : all) {
    if (on) ns.push_back(name);
  }
  auto version = [](CgroupVersion v) -> const char* {
    switch (v) {
      case CgroupVersion::none: return "none";
      case CgroupVersion::v1: return "v1";
      case CgroupVersion::v2: return "v2";
    }
    return "none";
  };
  Json degraded = Json::array();
  for (const auto& d : p.degraded) degraded.push_back(d);
  Json sockets = Json::array();
  for (const auto& s : p.sockets) sockets.push_back(s);
  const bool any_cgroup = p.memory != CgroupVersion::none || p.pids != CgroupVersion::none ||
                          p.cpu != CgroupVersion::none;
  return Json{{"namespaces", ns},
              {"user", Json{{"uid", p.uid}, {"gid", p.gid}, {"root", p.root}}},
              {"cgroup",
               Json{{"memory", version(p.memory)}, {"pids", version(p.pids)}, {"cpu", version(p.cpu)}}},
              // Without a memory cgroup the memory limit is RLIMIT_AS; without pids, RLIMIT_NPROC.
              {"limits_via", any_cgroup ? "cgroup+rlimits" : "rlimits"},
              // Host Unix sockets the step may connect to; empty: none at all.
              {"sockets", sockets},
              {"degraded", degraded}};
}

}  // namespace delegate::sandbox
