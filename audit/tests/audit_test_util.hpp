#pragma once
// Shared fixtures for the audit tests: deterministic keys, clocks and signed chains.
#include <chrono>
#include <cstdint>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <delegate/audit/chain.hpp>
#include <delegate/audit/record.hpp>
#include <delegate/audit/export_verifier.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/time.hpp>

namespace audit_test {

using namespace delegate;
using namespace delegate::audit;

inline Ed25519PrivateKey key_from(std::uint8_t fill) {
  std::vector<std::uint8_t> seed(32, fill);
  auto k = Ed25519PrivateKey::from_seed(seed);
  if (!k) throw std::runtime_error(k.error().message);
  return std::move(*k);
}

inline TimePoint base_time() {
  auto t = parse_rfc3339("2026-11-28T20:00:00.123Z");
  if (!t) throw std::runtime_error("bad base time");
  return *t;
}

// A complete, correctly signed job stream: job.received, authz.decision, step.start,
// two outputs, step.end, job.end (7 records), one second apart.
inline std::vector<Record> make_job(const Ed25519PrivateKey& key, const std::string& agent,
                                    const std::string& job) {
  FixedClock clock(base_time());
  ChainWriter w(key, clock, agent, job);
  std::vector<Record> out;
  auto add = [&](Kind k, Json data) {
    auto r = w.append(k, std::move(data));
    if (!r) throw std::runtime_error(r.error().message);
    out.push_back(std::move(*r));
    clock.set(clock.now() + std::chrono::seconds(1));
  };
  add(Kind::job_received, {{"digest", std::string(64, 'a')}, {"runbook", "restart-service"}, {"params", {{"service", "nginx"}}}});
  add(Kind::authz_decision, {{"decision", "allow"}, {"subject", "alice"}, {"scopes", {"runbooks:execute"}}});
  add(Kind::step_start, {{"step", "restart"}});
  add(Kind::output, {{"step", "restart"}, {"stream", "stdout"}, {"b64", "aGVsbG8K"}});
  add(Kind::output, {{"step", "restart"}, {"stream", "stderr"}, {"b64", "d2FybmluZwo="}});
  add(Kind::step_end, {{"step", "restart"}, {"exit_code", 0}, {"duration_ms", 1200}});
  add(Kind::job_end, {{"status", "succeeded"}});
  return out;
}

// What an attacker holding `key` would do after editing records[from]: recompute the
// chain and signatures from there on.
inline void reseal_from(std::vector<Record>& records, std::size_t from, const Ed25519PrivateKey& key) {
  for (std::size_t i = from; i < records.size(); ++i) {
    if (i > 0) records[i].prev = records[i - 1].hash;
    auto s = seal(records[i], key);
    if (!s) throw std::runtime_error(s.error().message);
  }
}

inline std::vector<std::string> to_lines(const std::vector<Record>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(serialize(r));
  return out;
}

inline std::string join(const std::vector<std::string>& lines) {
  std::string s;
  for (const auto& l : lines) s += l + "\n";
  return s;
}

inline std::vector<JobVerdict> verify_text(const std::string& text, const Ed25519PublicKey& key,
                                           bool allow_incomplete = false) {
  std::istringstream in(text);
  return verify_export(in, key, VerifyOptions{.allow_incomplete = allow_incomplete});
}

}  // namespace audit_test
