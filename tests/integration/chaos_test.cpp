// Chaos (issue #5): a few hundred short jobs with output while the control plane is
// SIGKILLed and restarted several times and the agent is SIGKILLed mid-job twice.
// Afterwards every job is final, every log verifies, interrupted jobs end
// "interrupted", nothing ran twice, and the agent stream verifies and lists every job.
// The sleeps shape the chaos (uptime between kills); no assertion depends on timing.
#include <gtest/gtest.h>
#include <signal.h>

#include <chrono>
#include <map>
#include <set>
#include <thread>

#include "crash_util.hpp"

namespace delegate::testing {
namespace {

constexpr int kRounds = 8;
constexpr int kJobsPerRound = 30;  // 240 jobs

TEST(Chaos, JobsSurviveRepeatedControlPlaneAndAgentKills) {
  const auto started = std::chrono::steady_clock::now();
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp", /*lease_s=*/4);
  write_text(cp.dir() / "runbooks" / "chaos.yaml",
             command_runbook("chaos",
                             "echo chaos-begin; i=0; while [ $i -lt 30 ]; do echo out-$i; i=$((i+1)); done; "
                             "echo err-line >&2; sleep 0.2; echo chaos-end",
                             60));
  // Before each agent kill, one job of this runbook is seen running: the kill certainly
  // hits a live step, and that job must end "interrupted", never run again.
  write_text(cp.dir() / "runbooks" / "nap.yaml", command_runbook("nap", "echo nap-begin; sleep 600", 900));
  auto agent = make_agent(cp, tmp.path,
                          "  heartbeat_s: 1\n  checkpoint_interval_s: 1\n  poll_wait_s: 2\n  shutdown_grace_s: 5\n");
  const auto log = tmp.path / "agent.log";
  const std::vector<std::string> argv{Bins::agent(), "run", "--config", agent.config};
  auto proc = std::make_unique<Process>(argv, log);

  std::vector<std::string> ids, naps;
  int cp_kills = 0, agent_kills = 0;
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kJobsPerRound; ++i) ids.push_back(cp.submit(keyed_job("chaos", agent.api_key)));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    if (round == 2 || round == 5) {
      const auto nap = cp.submit(keyed_job("nap", agent.api_key));
      ids.push_back(nap);
      naps.push_back(nap);
      ASSERT_TRUE(eventually([&] { return count_kind(cp.records(nap), "step.start") == 1; }, std::chrono::seconds(120)))
          << read_text(log);
      proc->signal(SIGKILL);  // mid-job: the nap job at least is running
      ASSERT_NE(proc->wait(std::chrono::seconds(30)), -1);
      ++agent_kills;
    }
    cp.kill();
    ++cp_kills;
    std::this_thread::sleep_for(std::chrono::milliseconds(round % 2 ? 1500 : 500));
    if (!proc->running()) proc = std::make_unique<Process>(argv, log);
    cp.start();
  }

  // Everything settles.
  std::map<std::string, std::string> status;
  for (const auto& id : ids) {
    status[id] = cp.wait_final(id, std::chrono::seconds(180));
    ASSERT_FALSE(status[id].empty()) << id << " never reached a final status\n" << read_text(log);
  }
  proc->signal(SIGTERM);  // a clean stop: final checkpoint and agent.stop
  ASSERT_NE(proc->wait(std::chrono::seconds(60)), -1);
  // The agent's completion is what counts: re-read after it drained (a lease that ran
  // out meanwhile may have set "interrupted" first).
  for (const auto& id : ids) status[id] = Json::parse(cp.admin_get("/v1/jobs/" + id).body)["status"].get<std::string>();

  std::string all;
  std::size_t interrupted = 0;
  std::map<std::string, std::pair<std::uint64_t, std::string>> ends;  // job -> records, last hash
  for (const auto& id : ids) {
    SCOPED_TRACE(id);
    auto recs = cp.records(id);
    ASSERT_FALSE(recs.empty()) << status[id];
    EXPECT_EQ(recs.back()["kind"], "job.end");
    EXPECT_EQ(recs.back()["data"]["status"], status[id]);
    EXPECT_EQ(recs.back()["data"]["records"], recs.size());
    EXPECT_LE(count_kind(recs, "step.start"), 1u);  // never run twice
    auto out = stdout_of(recs);
    EXPECT_LE(occurrences(out, "chaos-begin"), 1u);
    if (status[id] == "succeeded") {
      EXPECT_EQ(occurrences(out, "chaos-end"), 1u);
    } else {
      EXPECT_EQ(status[id], "interrupted");
      ++interrupted;
    }
    ends[id] = {recs.size(), recs.back()["hash"].get<std::string>()};
    all += cp.admin_get("/v1/jobs/" + id + "/records").body;
  }
  // Each agent kill hit a running step, and that job was closed, not run again.
  ASSERT_EQ(naps.size(), static_cast<std::size_t>(agent_kills));
  for (const auto& nap : naps) {
    EXPECT_EQ(status[nap], "interrupted") << nap;
    auto recs = cp.records(nap);
    EXPECT_EQ(count_kind(recs, "step.start"), 1u) << nap;
    EXPECT_LE(occurrences(stdout_of(recs), "nap-begin"), 1u) << nap;
  }
  EXPECT_GE(interrupted, naps.size());
  auto v = verify_body(tmp.path, "all", all, agent.pubkey);
  EXPECT_EQ(v.exit_code, 0) << v.out.substr(0, 2000) << v.err;
  EXPECT_EQ(occurrences(v.out, "OK "), ids.size());

  // The agent stream: one chain across every boot, every job listed in a checkpoint
  // with the count and hash of its job.end.
  const auto agent_id = cp.first_agent_id();
  auto stream_body = cp.admin_get("/v1/agents/" + agent_id + "/records").body;
  // The whole export at once: the verifier cross-checks every checkpoint against the
  // jobs it lists, so a deleted or cut job would be caught here.
  auto sv = verify_body(tmp.path, "export", stream_body + all, agent.pubkey);
  EXPECT_EQ(sv.exit_code, 0) << sv.out.substr(0, 2000) << sv.err;
  EXPECT_EQ(occurrences(sv.out, "OK "), ids.size() + 1);
  auto stream = cp.agent_records(agent_id);
  EXPECT_EQ(count_kind(stream, "agent.start"), static_cast<std::size_t>(agent_kills + 1));
  EXPECT_EQ(stream.back()["kind"], "agent.stop");
  std::set<std::string> listed;
  for (const auto& r : stream) {
    if (r["kind"] != "checkpoint") continue;
    for (const auto& j : r["data"]["jobs"]) {
      const auto job = j["job"].get<std::string>();
      auto it = ends.find(job);
      ASSERT_NE(it, ends.end()) << "checkpoint lists unknown job " << job;
      EXPECT_EQ(j["records"], it->second.first) << job;
      EXPECT_EQ(j["last_hash"], it->second.second) << job;
      listed.insert(job);
    }
  }
  EXPECT_EQ(listed.size(), ids.size());

  const auto secs = std::chrono::duration_cast<std::chrono::seconds>(std::chrono::steady_clock::now() - started).count();
  RecordProperty("jobs", static_cast<int>(ids.size()));
  RecordProperty("interrupted", static_cast<int>(interrupted));
  RecordProperty("cp_kills", cp_kills);
  RecordProperty("agent_kills", agent_kills);
  std::cout << "chaos: " << ids.size() << " jobs (" << interrupted << " interrupted), " << cp_kills
            << " control-plane kills, " << agent_kills << " agent kills, " << secs << " s\n";
  if (HasFailure()) {
    std::cerr << "---- agent log (tail) ----\n" << read_text(log).substr(read_text(log).size() > 20000 ? read_text(log).size() - 20000 : 0);
  }
}

}  // namespace
}  // namespace delegate::testing
