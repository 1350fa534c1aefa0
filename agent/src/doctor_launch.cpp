// Host checks of `delegate-agent doctor` that do the real thing instead of probing. A
// container runtime can let every probe of doctor_host.cpp pass (cloning all the
// namespaces works under podman's default seccomp profile) and still refuse what a
// launch does later: sethostname in the step's uts namespace, mounting the step's /proc
// over a masked one, unshare(CLONE_NEWNET) for a step with egress. Only a launch
// through the same launcher the job runner uses shows that, with its own message.
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include <delegate/agent/doctor.hpp>
#include <delegate/sandbox/launcher.hpp>
#include <delegate/sandbox/step_netns.hpp>

namespace delegate::agent {
namespace {

// What a container needs for steps, said once for both checks.
constexpr const char* kContainerHint =
    "; in a container: the agent as uid 0 of the container's own user namespace (--userns=auto), the seccomp "
    "profile packaging/seccomp-podman.json (it allows sethostname, setdomainname and setns), /proc unmasked "
    "(--security-opt unmask=/proc/*): docs/install.md, \"Container image\"";

std::string self_exe() {
  std::string buf(4096, '\0');
  const ssize_t n = ::readlink("/proc/self/exe", buf.data(), buf.size() - 1);
  if (n <= 0) return {};
  buf.resize(static_cast<std::size_t>(n));
  return buf;
}

const char* status_name(sandbox::Status s) {
  switch (s) {
    case sandbox::Status::exited: return "exited";
    case sandbox::Status::signaled: return "was killed by a signal";
    case sandbox::Status::timed_out: return "timed out";
    case sandbox::Status::cancelled: return "was cancelled";
    case sandbox::Status::not_found: return "was not found";
    case sandbox::Status::setup_failed: return "could not be set up";
  }
  return "could not be set up";
}

// Runs this binary's --version as a step: default profile, no network, the step user of
// the configuration (nobody without one), all namespaces, no degraded mode.
DoctorCheck launch_check(const Config* config) {
  DoctorCheck c{"sandbox launch", false, ""};
  const std::string exe = self_exe();
  if (exe.empty()) {
    c.detail = std::string("cannot read /proc/self/exe: ") + std::strerror(errno);
    return c;
  }
  auto filter = sandbox::SeccompProgram::compile("default", sandbox::SeccompOptions{});
  if (!filter) {
    c.detail = "the default step profile does not compile: " + filter.error().message;
    return c;
  }
  sandbox::Spec spec;
  spec.argv = {exe, "--version"};
  spec.limits.timeout = std::chrono::seconds(20);
  spec.limits.cpu_seconds = 20;
  if (config != nullptr) spec.isolation.user = {config->sandbox.step_uid, config->sandbox.step_gid};
  std::string out;
  const sandbox::OutputSink sink = [&out](sandbox::Stream, std::string_view data) {
    if (out.size() < 4096) out.append(data.substr(0, 4096 - out.size()));
  };
  auto outcome = sandbox::run(spec, *filter, sink);
  if (!outcome) {
    c.detail = "the launcher failed: " + outcome.error().message + kContainerHint;
    return c;
  }
  if (outcome->status == sandbox::Status::exited && outcome->exit_code == 0 &&
      out.find("delegate-agent ") != std::string::npos) {
    c.ok = true;
    c.detail = "a step ran (" + exe + " --version as uid " + std::to_string(spec.isolation.user.uid) +
               ", all namespaces, seccomp) in " + std::to_string(outcome->duration.count()) + " ms";
    return c;
  }
  c.detail = "a test step (" + exe + " --version) " + status_name(outcome->status);
  if (!outcome->error.empty()) c.detail += ": " + outcome->error;
  if (outcome->status == sandbox::Status::exited) c.detail += " with status " + std::to_string(outcome->exit_code);
  c.detail += "; every step would fail closed the same way" + std::string(kContainerHint);
  return c;
}

// The network namespace a step with egress (every http step) gets from the agent.
DoctorCheck egress_netns_check() {
  DoctorCheck c{"egress network namespace", false, ""};
  auto ns = sandbox::StepNetns::create();
  if (ns) {
    c.ok = true;
    c.detail = "the agent can prepare a step's network namespace (steps with egress, http steps)";
    return c;
  }
  c.detail = ns.error().message +
             "; steps with egress (http steps) fail closed, other steps are unaffected. The agent needs "
             "CAP_SYS_ADMIN and CAP_NET_ADMIN over its own network namespace: as root on a host; in a container, "
             "--cap-add SYS_ADMIN,NET_ADMIN together with --userns=auto and the container's own network (not "
             "--network host) (docs/install.md, \"Container image\")";
  return c;
}

}  // namespace

void doctor_launch_checks(const Config* config, std::vector<DoctorCheck>& out) {
  out.push_back(launch_check(config));
  out.push_back(egress_netns_check());
}

}  // namespace delegate::agent
