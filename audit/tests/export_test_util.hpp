#pragma once
// Builds real signed exports for the export verifier tests: an agent stream
// (agent.start, checkpoints, agent.stop) and job streams, all from ChainWriter with a
// shared clock that advances one second per record.
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <delegate/audit/checkpoint.hpp>

#include "audit_test_util.hpp"

namespace audit_test {

inline const std::string kBoot1 = "00112233445566778899aabbccddeeff";
inline const std::string kBoot2 = "ffeeddccbbaa99887766554433221100";

struct Export {
  std::vector<Record> agent;
  // Job streams in the order they were written.
  std::vector<std::pair<std::string, std::vector<Record>>> jobs;

  std::vector<Record>& job(const std::string& name) {
    for (auto& [n, recs] : jobs) {
      if (n == name) return recs;
    }
    throw std::runtime_error("no job " + name);
  }
  void erase_job(const std::string& name) {
    std::erase_if(jobs, [&](const auto& j) { return j.first == name; });
  }
  // `cat agent.jsonl job_a.jsonl ...`
  [[nodiscard]] std::vector<std::string> lines() const {
    auto out = to_lines(agent);
    for (const auto& [n, recs] : jobs) {
      for (const auto& l : to_lines(recs)) out.push_back(l);
    }
    return out;
  }
  [[nodiscard]] std::string text() const { return join(lines()); }
};

class ExportBuilder {
 public:
  explicit ExportBuilder(const Ed25519PrivateKey& key, std::string agent = "agt_1")
      : key_(key), agent_id_(std::move(agent)), agent_(key, clock_, agent_id_, std::string(kAgentStreamJob)) {}

  ExportBuilder& start(const std::string& boot, const std::string& public_key_b64 = "") {
    boot_ = boot;
    add_agent(Kind::agent_start,
              make_agent_start_data(boot, public_key_b64.empty() ? base64_encode(key_.public_key()) : public_key_b64,
                                    "0.1.0", "host-1"));
    return *this;
  }
  ExportBuilder& stop() {
    add_agent(Kind::agent_stop, make_agent_stop_data(boot_));
    return *this;
  }
  // Lists the jobs finished since the previous checkpoint.
  ExportBuilder& checkpoint() {
    add_agent(Kind::checkpoint, make_checkpoint_data(boot_, finished_));
    last_listed_ = finished_;
    finished_.clear();
    return *this;
  }
  // Lists the previous checkpoint's jobs again, as an agent killed right after writing
  // a checkpoint does after its restart; `edit` may alter the repeated entries.
  ExportBuilder& relist(const std::function<void(std::vector<FinishedJob>&)>& edit = {}) {
    auto jobs = last_listed_;
    if (edit) edit(jobs);
    add_agent(Kind::checkpoint, make_checkpoint_data(boot_, jobs));
    return *this;
  }
  // A whole job: received, decision, step.start, two outputs, step.end, job.end.
  ExportBuilder& run_job(const std::string& name, const std::string& status = "succeeded") {
    open_job(name);
    auto& w = *writers_.at(name);
    auto& recs = out_.job(name);
    recs.push_back(append(w, Kind::output, {{"step", "s1"}, {"stream", "stderr"}, {"b64", "d2FybmluZwo="}}));
    recs.push_back(append(w, Kind::step_end, {{"step", "s1"}, {"exit_code", 0}, {"duration_ms", 1200}}));
    recs.push_back(append(w, Kind::job_end, {{"status", status}}));
    finished_.push_back(FinishedJob{name, recs.size(), recs.back().hash, status});
    return *this;
  }
  // A job still running: four records, no job.end.
  ExportBuilder& open_job(const std::string& name) {
    writers_[name] = std::make_unique<ChainWriter>(key_, clock_, agent_id_, name);
    out_.jobs.emplace_back(name, std::vector<Record>{});
    auto& w = *writers_.at(name);
    auto& recs = out_.job(name);
    recs.push_back(append(w, Kind::job_received, {{"digest", std::string(64, 'a')}, {"runbook", "restart"}, {"params", Json::object()}}));
    recs.push_back(append(w, Kind::authz_decision, {{"decision", "allow"}, {"subject", "alice"}}));
    recs.push_back(append(w, Kind::step_start, {{"step", "s1"}}));
    recs.push_back(append(w, Kind::output, {{"step", "s1"}, {"stream", "stdout"}, {"b64", "aGVsbG8K"}}));
    return *this;
  }
  // Appends any record to the agent stream (for misplaced-kind cases).
  ExportBuilder& agent_record(Kind kind, Json data) {
    add_agent(kind, std::move(data));
    return *this;
  }
  [[nodiscard]] const std::string& boot() const { return boot_; }
  [[nodiscard]] Export done() const { return out_; }

 private:
  Record append(ChainWriter& w, Kind kind, Json data) {
    auto r = w.append(kind, std::move(data));
    if (!r) throw std::runtime_error(r.error().message);
    clock_.set(clock_.now() + std::chrono::seconds(1));
    return std::move(*r);
  }
  void add_agent(Kind kind, Json data) { out_.agent.push_back(append(agent_, kind, std::move(data))); }

  const Ed25519PrivateKey& key_;
  std::string agent_id_;
  FixedClock clock_{base_time()};
  ChainWriter agent_;
  std::map<std::string, std::unique_ptr<ChainWriter>> writers_;
  std::vector<FinishedJob> finished_;
  std::vector<FinishedJob> last_listed_;
  std::string boot_;
  Export out_;
};

// The standard export: agent.start, job_a, checkpoint [job_a], job_b, job_c,
// checkpoint [job_b, job_c], agent.stop. Agent stream seqs: start 0, checkpoints 1
// and 2, stop 3. Every job has 7 records (seq 0..6, job.end at 6).
inline Export standard_export(const Ed25519PrivateKey& key, const std::string& agent = "agt_1") {
  ExportBuilder b(key, agent);
  b.start(kBoot1).run_job("job_a").checkpoint().run_job("job_b").run_job("job_c", "failed").checkpoint().stop();
  return b.done();
}

}  // namespace audit_test
