// Crash safety end to end (issue #5): real agent and control plane processes, killed
// with SIGKILL at awkward moments. Sleeps below only shape the scenario (how long a
// process stays down); every assertion waits for an event with a generous deadline.
#include <gtest/gtest.h>
#include <signal.h>

#include <thread>

#include "crash_util.hpp"

namespace delegate::testing {
namespace {

void dump_logs(const fs::path& agent_log, ControlPlane& cp) {
  std::cerr << "---- agent log ----\n" << read_text(agent_log) << "---- control plane log ----\n"
            << read_text(cp.dir() / "controlplane.log");
}

TEST(Crash, AgentKilledMidJobClosesItInterruptedAfterRestartAndNeverRunsItTwice) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  write_text(cp.dir() / "runbooks" / "marker.yaml",
             command_runbook("marker", "echo marker-7c1e; exec /bin/sleep 60", 120));
  auto agent = make_agent(cp, tmp.path, "  heartbeat_s: 1\n  checkpoint_interval_s: 1\n");
  const auto log = tmp.path / "agent.log";
  auto proc = std::make_unique<Process>(std::vector<std::string>{Bins::agent(), "run", "--config", agent.config}, log);
  auto id = cp.submit(keyed_job("marker", agent.api_key));
  ASSERT_TRUE(eventually([&] { return stdout_of(cp.records(id)).find("marker-7c1e") != std::string::npos; }))
      << read_text(log);

  proc->signal(SIGKILL);
  ASSERT_NE(proc->wait(std::chrono::seconds(30)), -1);
  proc = std::make_unique<Process>(std::vector<std::string>{Bins::agent(), "run", "--config", agent.config}, log);

  ASSERT_EQ(cp.wait_final(id, std::chrono::seconds(60)), "interrupted") << read_text(log);
  auto recs = cp.records(id);
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs.back()["kind"], "job.end");
  EXPECT_EQ(recs.back()["data"], (Json{{"status", "interrupted"}, {"records", recs.size()}}));
  EXPECT_EQ(count_kind(recs, "step.start"), 1u);
  EXPECT_EQ(occurrences(stdout_of(recs), "marker-7c1e"), 1u);
  auto v = verify_body(tmp.path, id, cp.admin_get("/v1/jobs/" + id + "/records").body, agent.pubkey);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;

  // The agent stream: two boots in one chain, and a checkpoint naming the closed job.
  const auto agent_id = cp.first_agent_id();
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : cp.agent_records(agent_id)) {
      if (r["kind"] != "checkpoint") continue;
      for (const auto& j : r["data"]["jobs"]) {
        if (j["job"] == id) return true;
      }
    }
    return false;
  })) << read_text(log);
  auto stream = cp.agent_records(agent_id);
  EXPECT_EQ(count_kind(stream, "agent.start"), 2u);
  for (const auto& r : stream) {
    if (r["kind"] != "checkpoint") continue;
    for (const auto& j : r["data"]["jobs"]) {
      if (j["job"] != id) continue;
      EXPECT_EQ(j["status"], "interrupted");
      EXPECT_EQ(j["records"], recs.size());
      EXPECT_EQ(j["last_hash"], recs.back()["hash"]);
    }
  }
  // The agent stream with the job it lists: the verifier cross-checks the checkpoint.
  auto sv = verify_body(tmp.path, "export",
                        cp.admin_get("/v1/agents/" + agent_id + "/records").body +
                            cp.admin_get("/v1/jobs/" + id + "/records").body,
                        agent.pubkey);
  EXPECT_EQ(sv.exit_code, 0) << sv.out << sv.err;

  // Still exactly one execution after the lease would long have run out.
  proc->signal(SIGTERM);
  EXPECT_NE(proc->wait(std::chrono::seconds(60)), -1);
  EXPECT_EQ(count_kind(cp.records(id), "step.start"), 1u);
  if (HasFailure()) dump_logs(log, cp);
}

TEST(Crash, ControlPlaneKilledWhileJobsRunLosesNoAcknowledgedRecord) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  write_text(cp.dir() / "runbooks" / "chatty.yaml",
             command_runbook("chatty", "i=0; while [ $i -lt 40 ]; do echo line-$i; i=$((i+1)); sleep 0.02; done", 60));
  auto agent = make_agent(cp, tmp.path, "  heartbeat_s: 1\n");
  const auto log = tmp.path / "agent.log";
  Process proc({Bins::agent(), "run", "--config", agent.config}, log);
  std::vector<std::string> ids;
  for (int i = 0; i < 12; ++i) ids.push_back(cp.submit(keyed_job("chatty", agent.api_key)));
  ASSERT_TRUE(eventually([&] { return !cp.records(ids[0]).empty(); })) << read_text(log);

  const auto before = read_text(log).size();
  cp.kill();
  // The agent keeps running and spooling: an upload fails while the control plane is
  // down (the event), and only then does it come back.
  ASSERT_TRUE(eventually([&] {
    return read_text(log).find("failed", before) != std::string::npos;
  })) << read_text(log);
  cp.start();

  std::string expected;
  for (int i = 0; i < 40; ++i) expected += "line-" + std::to_string(i) + "\n";
  std::string all;
  for (const auto& id : ids) {
    ASSERT_EQ(cp.wait_final(id, std::chrono::seconds(120)), "succeeded") << read_text(log);
    auto recs = cp.records(id);
    EXPECT_EQ(stdout_of(recs), expected) << id;  // every chunk once, in order
    EXPECT_EQ(recs.back()["data"]["records"], recs.size());
    all += cp.admin_get("/v1/jobs/" + id + "/records").body;
  }
  auto v = verify_body(tmp.path, "all", all, agent.pubkey);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  EXPECT_EQ(occurrences(v.out, "OK "), ids.size());
  if (HasFailure()) dump_logs(log, cp);
}

TEST(Crash, FullSpoolBlocksStepOutputUntilTheControlPlaneReturns) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  // ~1 MB of output: four times the spool quota below.
  write_text(cp.dir() / "runbooks" / "flood.yaml",
             command_runbook("flood", "sleep 1; i=0; while [ $i -lt 1000 ]; do printf %05d%0994d\\\\n $i 0; i=$((i+1)); done", 300));
  constexpr std::uint64_t kQuota = 256 * 1024;
  auto agent = make_agent(cp, tmp.path, "  heartbeat_s: 1\n  spool_max_bytes: " + std::to_string(kQuota) + "\n");
  const auto log = tmp.path / "agent.log";
  Process proc({Bins::agent(), "run", "--config", agent.config}, log);
  auto id = cp.submit(keyed_job("flood", agent.api_key));
  ASSERT_TRUE(eventually([&] { return count_kind(cp.records(id), "step.start") == 1; })) << read_text(log);
  cp.kill();

  // With nobody acknowledging, the spool fills and the step's output waits.
  std::uint64_t peak = 0;
  ASSERT_TRUE(eventually(
      [&] {
        peak = std::max(peak, spool_bytes(agent.state_dir));
        return read_text(log).find("spool is full") != std::string::npos;
      },
      std::chrono::seconds(60)))
      << read_text(log);
  peak = std::max(peak, spool_bytes(agent.state_dir));
  // The quota holds (one segment header of slack per segment rolled while full).
  EXPECT_LE(peak, kQuota + 4096);
  // At rest the spool holds ciphertext only: with the control plane down it holds this
  // job's records, and none of their JSON (member names, kinds, the runbook name, the
  // step's output digits base64-encoded) appears in the files.
  std::size_t files = 0;
  for (const auto& e : fs::recursive_directory_iterator(agent.state_dir / "spool")) {
    if (!e.is_regular_file()) continue;
    const std::string raw = read_text(e.path());
    if (raw.size() < 1024) continue;  // metadata (acks, chain tails) is not record content
    ++files;
    for (const char* plain : {"\"b64\":", "\"kind\":", "step.start", "flood", "MDAwMDAw"}) {
      EXPECT_EQ(raw.find(plain), std::string::npos) << plain << " in " << e.path();
    }
  }
  EXPECT_GT(files, 0u);

  cp.start();
  ASSERT_EQ(cp.wait_final(id, std::chrono::seconds(120)), "succeeded") << read_text(log);
  auto out = stdout_of(cp.records(id));
  EXPECT_EQ(out.size(), 1000u * 1000u);
  EXPECT_EQ(out.substr(0, 6), "00000" + std::string("0"));
  EXPECT_EQ(out.substr(out.size() - 1000, 5), "00999");
  auto v = verify_body(tmp.path, id, cp.admin_get("/v1/jobs/" + id + "/records").body, agent.pubkey);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  if (HasFailure()) dump_logs(log, cp);
}

}  // namespace
}  // namespace delegate::testing
