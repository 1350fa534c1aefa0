#pragma once
// Shared by the crash, quota and chaos tests: an agent configuration with extra keys,
// its API key and public key, exports and their verification.
#include <string>
#include <vector>

#include <delegate/common/encoding.hpp>

#include "harness.hpp"

namespace delegate::testing {

struct TestAgent {
  std::string config;  // path of agent.yaml
  std::string api_key;
  std::string pubkey;  // base64
  fs::path state_dir;
};

// Writes a copy of the control plane's agent.yaml with `agent_lines` (indented YAML
// lines, e.g. "  heartbeat_s: 1\n") added under agent:, creates an API key allowed to
// run runbooks and returns the agent's identity.
inline TestAgent make_agent(ControlPlane& cp, const fs::path& dir, const std::string& agent_lines) {
  auto cfg = read_text(cp.dir() / "agent.yaml");
  cfg.replace(cfg.find("agent:\n"), 7, "agent:\n" + agent_lines);
  TestAgent a;
  a.config = (dir / "agent.yaml").string();
  a.state_dir = cp.dir() / "agent-state";
  write_text(a.config, cfg, 0600);
  auto key = run({Bins::agent(), "api-key", "create", "--config", a.config, "--id", "chaos", "--scope", "runbooks:execute"});
  if (key.exit_code != 0) throw std::runtime_error("api-key create: " + key.err);
  a.api_key = key.out.substr(0, key.out.find('\n'));
  auto pub = run({Bins::agent(), "identity", "--config", a.config});
  if (pub.exit_code != 0) throw std::runtime_error("identity: " + pub.err);
  a.pubkey = pub.out.substr(0, pub.out.find('\n'));
  return a;
}

inline std::string command_runbook(const std::string& name, const std::string& shell, int timeout_s) {
  return "name: " + name + "\ndescription: crash test\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
         "  - name: main\n    uses: command\n    with: {argv: [/bin/sh, -c, '" + shell + "']}\n"
         "    sandbox: {profile: default, network: false, timeout_s: " + std::to_string(timeout_s) + ", memory_mb: 256}\n";
}

inline Json keyed_job(const std::string& runbook, const std::string& key) {
  return Json{{"runbook", runbook}, {"authorization", {{"type", "api_key"}, {"key", key}}}};
}

inline std::size_t count_kind(const std::vector<Json>& recs, const std::string& kind) {
  std::size_t n = 0;
  for (const auto& r : recs) n += r["kind"] == kind;
  return n;
}

inline std::string stdout_of(const std::vector<Json>& recs) {
  std::string out;
  for (const auto& r : recs) {
    if (r["kind"] == "output" && r["data"]["stream"] == "stdout") {
      auto b = base64_decode(r["data"]["b64"].get<std::string>());
      if (b) out.append(b->begin(), b->end());
    }
  }
  return out;
}

inline std::size_t occurrences(const std::string& hay, const std::string& needle) {
  std::size_t n = 0;
  for (auto pos = hay.find(needle); pos != std::string::npos; pos = hay.find(needle, pos + 1)) ++n;
  return n;
}

// delegate-audit verify on a JSON Lines body (one or more streams).
inline RunResult verify_body(const fs::path& dir, const std::string& name, const std::string& body,
                             const std::string& pubkey) {
  auto file = dir / (name + ".jsonl");
  write_text(file, body);
  return run({Bins::audit(), "verify", "--public-key", pubkey, file.string()});
}

inline std::uint64_t spool_bytes(const fs::path& state_dir) {
  std::uint64_t n = 0;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(state_dir / "spool", ec)) {
    if (e.path().extension() == ".seg") n += e.file_size(ec);
  }
  return n;
}

}  // namespace delegate::testing
