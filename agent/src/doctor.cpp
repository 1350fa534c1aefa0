// `delegate-agent doctor --config FILE`: the configuration, the files that hold
// secrets, the runbook catalog, then the host (doctor_host.cpp) and the network
// (doctor_net.cpp). Exit 0 when every check passes, 1 otherwise, 2 on usage errors.
#include <delegate/agent/doctor.hpp>

#include <sys/stat.h>

#include <boost/program_options.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <iostream>

#include <delegate/agent/secrets.hpp>
#include <delegate/policies/api_keys.hpp>
#include <delegate/policies/runbook.hpp>

#include "cli.hpp"

namespace delegate::agent {
namespace {

namespace fs = std::filesystem;

std::string octal_mode(mode_t m) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(m & 07777));
  return buf;
}

// What doctor says when a secret file does not exist yet.
enum class Missing {
  created_on_start,  // the agent makes it (0600) on first start
  required,          // the operator must supply it
  not_needed,        // e.g. the enrollment token once the agent is registered
};

DoctorCheck secret_file(const std::string& what, const fs::path& file, Missing missing) {
  DoctorCheck c{"mode of " + what, false, ""};
  struct stat st {};
  if (::lstat(file.c_str(), &st) != 0) {
    if (errno != ENOENT) {
      c.detail = file.string() + ": " + std::strerror(errno);
      return c;
    }
    switch (missing) {
      case Missing::created_on_start:
        c.ok = true;
        c.detail = file.string() + " does not exist yet; the agent creates it with mode 0600 on first start";
        return c;
      case Missing::not_needed:
        c.ok = true;
        c.detail = file.string() + " does not exist; not needed (the agent is already registered)";
        return c;
      case Missing::required:
        c.detail = file.string() + " does not exist; create it (mode 0600, owned by the agent's user)";
        return c;
    }
  }
  // A link could point anywhere; the agent's readers follow it, so judge the target.
  if (S_ISLNK(st.st_mode) && ::stat(file.c_str(), &st) != 0) {
    c.detail = file.string() + " is a dangling symbolic link";
    return c;
  }
  if (!S_ISREG(st.st_mode)) {
    c.detail = file.string() + " is not a regular file";
    return c;
  }
  if (st.st_mode & 077) {
    c.detail = file.string() + " has mode " + octal_mode(st.st_mode) +
               ": group/others can read or change it and the agent refuses it; run chmod 600 " + file.string();
    return c;
  }
  c.ok = true;
  c.detail = file.string() + " mode " + octal_mode(st.st_mode) + ", owner uid " + std::to_string(st.st_uid);
  return c;
}

void config_checks(const Config& c, std::vector<DoctorCheck>& out) {
  const fs::path& state = c.agent.state_dir;
  const bool registered = fs::exists(state / "agent.json");
  {
    DoctorCheck d{"mode of state_dir", false, ""};
    struct stat st {};
    if (::stat(state.c_str(), &st) != 0) {
      d.ok = errno == ENOENT;
      d.detail = state.string() + (d.ok ? " does not exist yet; the agent creates it with mode 0700 on first start"
                                        : std::string(": ") + std::strerror(errno));
    } else if (!S_ISDIR(st.st_mode)) {
      d.detail = state.string() + " is not a directory";
    } else if (st.st_mode & 077) {
      d.detail = state.string() + " has mode " + octal_mode(st.st_mode) +
                 ": it holds the identity key, credentials and spool; run chmod 700 " + state.string();
    } else {
      d.ok = true;
      d.detail = state.string() + " mode " + octal_mode(st.st_mode);
    }
    out.push_back(std::move(d));
  }
  out.push_back(secret_file("enrollment token", c.control_plane.enrollment_token_file,
                            registered ? Missing::not_needed : Missing::required));
  if (c.agent.spool_key_file.empty()) {
    out.push_back(secret_file("spool key", state / "spool.key", Missing::created_on_start));
  } else {
    out.push_back(secret_file("spool key", c.agent.spool_key_file, Missing::required));
  }
  out.push_back(secret_file("secret store key", SecretStore::key_file_in(state), Missing::created_on_start));
  out.push_back(secret_file("identity key", state / "identity.key", Missing::created_on_start));
  out.push_back(secret_file("agent credentials", state / "agent.json", Missing::created_on_start));
  if (!c.auth.api_keys_file.empty()) {
    auto d = secret_file("API keys file", c.auth.api_keys_file, Missing::created_on_start);
    if (d.ok && fs::exists(c.auth.api_keys_file)) {
      if (auto keys = policies::ApiKeyStore::load(c.auth.api_keys_file); !keys) {
        d.ok = false;
        d.detail = keys.error().message + "; fix or recreate it with delegate-agent api-key";
      }
    } else if (d.ok) {
      d.detail = c.auth.api_keys_file.string() + " does not exist yet: no API key is valid until "
                 "`delegate-agent api-key create` makes one (mode 0600)";
    }
    out.push_back(std::move(d));
  }
  auto catalog = policies::Catalog::load_dir(c.runbooks_dir);
  if (catalog) {
    out.push_back({"runbook catalog", true,
                   c.runbooks_dir.string() + ": " + std::to_string(catalog->size()) + " runbook(s)"});
  } else {
    out.push_back({"runbook catalog", false,
                   c.runbooks_dir.string() + ": " + catalog.error().message +
                       "; the agent refuses to start with an invalid catalog: fix or remove that runbook"});
  }
}

}  // namespace

std::string format_check(const DoctorCheck& check) {
  return std::string(check.ok ? "ok    " : "FAIL  ") + check.name + ": " + check.detail;
}

std::vector<DoctorCheck> run_doctor(const fs::path& config_file, const Environment& env, const DoctorOptions& options) {
  std::vector<DoctorCheck> out;
  auto config = load_config(config_file, env);
  if (config) {
    out.push_back({"config", true, config_file.string() + " loads (agent " + config->agent.name + ")"});
  } else {
    out.push_back({"config", false, config.error().message + "; fix the file (docs/configuration.md lists every key)"});
  }
  if (config) config_checks(*config, out);
  doctor_host_checks(out);
  doctor_launch_checks(config ? &*config : nullptr, out);
  if (config) doctor_network_checks(*config, options, out);
  return out;
}

namespace cli {

int doctor(const std::vector<std::string>& args) {
  namespace po = boost::program_options;
  po::options_description opts("delegate-agent doctor");
  opts.add_options()("config", po::value<std::string>()->required(), "agent configuration file");
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).run(), vm);
  po::notify(vm);
  const auto checks = run_doctor(vm["config"].as<std::string>(), process_environment());
  bool all_ok = true;
  for (const auto& c : checks) {
    std::cout << format_check(c) << "\n";
    all_ok = all_ok && c.ok;
  }
  std::cout << (all_ok ? "all checks passed\n" : "some checks failed\n");
  return all_ok ? 0 : 1;
}

}  // namespace cli
}  // namespace delegate::agent
