#pragma once
// What a step is isolated with beyond seccomp: namespaces, the user it runs as, its
// view of the file system, and cgroup limits. The plan is computed in the parent from
// the spec and what the host supports, before anything is launched, so step.start can
// record exactly what will apply, and so a missing protection fails the step closed
// unless the step explicitly allowed degraded isolation.
#include <sys/types.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>

namespace delegate::sandbox {

struct BindMount {
  enum class Kind {
    read_only,   // host path visible read-only (re-exposes a hidden path, or documents intent)
    read_write,  // host path writable by the step
    hidden,      // replaced by an empty read-only directory (or /dev/null for a file)
  };
  Kind kind = Kind::read_only;
  std::filesystem::path path;  // absolute host path; the same path inside
};

// The unprivileged host account steps run as when the agent is root.
struct StepUser {
  uid_t uid = 65534;  // nobody
  gid_t gid = 65534;  // nogroup
};

struct IsolationOptions {
  // Run as uid/gid 0 (no capabilities, in its own user namespace). Only honoured when
  // the caller's local policy allowed it; the launcher itself does not decide policy.
  bool root = false;
  StepUser user;
  std::vector<BindMount> mounts;
  // Host Unix sockets the step may connect to (granted by the caller's local policy;
  // the launcher itself does not decide policy). Each must be a socket; it is bound
  // into the view at its canonical path, and the seccomp filter must allow AF_UNIX
  // sockets exactly when this is not empty (SeccompOptions::unix_sockets).
  std::vector<std::filesystem::path> sockets;
  std::string hostname = "delegate-step";
  // Accept weaker isolation than requested when the host cannot provide it (e.g. user
  // namespaces disabled). The weakening is reported in the plan; without this flag the
  // step fails with setup_failed.
  bool allow_degraded = false;
};

enum class CgroupVersion { none, v1, v2 };

// Probed once per process.
struct HostSupport {
  bool is_root = false;
  bool user_ns = false;    // clone(CLONE_NEWUSER | the others) works
  bool other_ns = false;   // clone(CLONE_NEWPID|NEWNS|NEWNET|NEWIPC|NEWUTS) works without a user ns
  bool mount_setattr = false;
  // Per controller: which hierarchy serves it (v2 only if the controller is enabled
  // for our subtree; on hybrid hosts v1 per controller), and where our own cgroup is.
  CgroupVersion memory = CgroupVersion::none;
  CgroupVersion pids = CgroupVersion::none;
  CgroupVersion cpu = CgroupVersion::none;
  std::filesystem::path memory_dir, pids_dir, cpu_dir;  // the agent's own cgroup per controller
  std::string notes;  // why something is unavailable, for logs
};

[[nodiscard]] const HostSupport& host_support();

// What a launch will apply. Namespace booleans are true when that namespace is created.
struct IsolationPlan {
  bool user_ns = false;
  bool pid_ns = false;
  bool mount_ns = false;
  bool net_ns = false;
  bool ipc_ns = false;
  bool uts_ns = false;
  bool cgroup_ns = false;
  uid_t uid = 0;  // the step's uid/gid (same number inside and outside: identity-mapped)
  gid_t gid = 0;
  bool root = false;
  CgroupVersion memory = CgroupVersion::none;
  CgroupVersion pids = CgroupVersion::none;
  CgroupVersion cpu = CgroupVersion::none;
  std::vector<std::string> sockets;   // canonical paths of the granted host sockets
  std::vector<std::string> degraded;  // one entry per protection that was requested but is missing
};

struct Spec;

// Fails (Errc::unavailable) when a protection the spec needs is missing and the spec
// does not allow degraded isolation; fails when a granted socket path does not resolve
// to a socket (Errc::not_found / Errc::invalid_argument).
[[nodiscard]] Result<IsolationPlan> plan_isolation(const Spec& spec, const HostSupport& host);

// For step.start: {"namespaces":[…],"user":{…},"cgroup":{…},"sockets":[…],"degraded":[…]}.
[[nodiscard]] Json describe(const IsolationPlan& plan);

}  // namespace delegate::sandbox
