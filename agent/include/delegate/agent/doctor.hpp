#pragma once
// `delegate-agent doctor`: checks whether this host, this configuration and the network
// let the agent run steps safely (docs/operations.md, "doctor"). Every check yields one
// line; a failing line says what to do about it. Nothing is changed on the host: files
// the agent would create on first start are reported, not created.
#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

#include <delegate/agent/config.hpp>

namespace delegate::agent {

struct DoctorCheck {
  std::string name;
  bool ok = false;
  std::string detail;  // on failure: what is wrong, then what to do
};

struct DoctorOptions {
  std::chrono::seconds connect_timeout{5};
  std::chrono::seconds request_timeout{10};
};

// All checks, in a fixed order. A configuration that does not load still gets the host
// checks (user namespaces, cgroups, seccomp, mount_setattr).
[[nodiscard]] std::vector<DoctorCheck> run_doctor(const std::filesystem::path& config_file, const Environment& env,
                                                  const DoctorOptions& options = {});

// "ok    name: detail" / "FAIL  name: detail".
[[nodiscard]] std::string format_check(const DoctorCheck& check);

// Checks of the network: the control plane (TLS 1.3 and trust, clock skew) and each
// OAuth issuer's JWKS URI (doctor_net.cpp).
void doctor_network_checks(const Config& config, const DoctorOptions& options, std::vector<DoctorCheck>& out);

// Host checks (doctor_host.cpp): user namespaces, cgroup controllers and delegation,
// seccomp, mount_setattr.
void doctor_host_checks(std::vector<DoctorCheck>& out);

// Host checks that launch (doctor_launch.cpp): a test step through the real launcher
// (with the configured step user when `config` is set), and the network namespace a
// step with egress gets. What a container runtime refuses shows up only here.
void doctor_launch_checks(const Config* config, std::vector<DoctorCheck>& out);

}  // namespace delegate::agent
