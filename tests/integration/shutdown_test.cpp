// SIGTERM with steps still running: the agent stops acquiring at once, lets a step that
// finishes inside the grace period succeed, interrupts the one that does not, records
// job.end for both, flushes, completes, and exits 0.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.hpp"

namespace delegate::testing {
namespace {

bool has_record(ControlPlane& cp, const std::string& job, const std::string& kind) {
  for (const auto& r : cp.records(job)) {
    if (r["kind"] == kind) return true;
  }
  return false;
}

TEST(Shutdown, SigtermDrainsWithinGraceInterruptsTheRestAndAcquiresNothingMore) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  // The gated step ends when the test says so (a file appears in a directory it can
  // read), not after some time: the scenario is shaped by events only.
  const auto gate = tmp.path / "gate";
  fs::create_directories(gate);
  fs::permissions(gate, fs::perms::all);
  fs::permissions(tmp.path, fs::perms::others_exec | fs::perms::group_exec, fs::perm_options::add);
  write_text(cp.dir() / "runbooks" / "slow.yaml",
             "name: slow\ndescription: sleeps\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: nap\n    uses: command\n    with: {argv: [/bin/sleep, '600']}\n"
             "    sandbox: {profile: default, network: false, timeout_s: 900, memory_mb: 64}\n");
  write_text(cp.dir() / "runbooks" / "gated.yaml",
             "name: gated\ndescription: waits for the test\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: wait\n    uses: command\n"
             "    with: {argv: [/bin/sh, -c, 'while [ ! -e " + (gate / "open").string() +
                 " ]; do sleep 0.05; done']}\n"
             "    sandbox: {profile: default, network: false, timeout_s: 900, memory_mb: 64, ro: [" +
                 gate.string() + "]}\n");
  auto cfg = read_text(cp.dir() / "agent.yaml");
  // Long enough that the gated step certainly finishes inside it once released; the
  // slow step is interrupted when it ends.
  cfg.replace(cfg.find("agent:\n"), 7, "agent:\n  shutdown_grace_s: 20\n");
  const auto config = (tmp.path / "agent.yaml").string();
  write_text(config, cfg, 0600);
  auto key = run({Bins::agent(), "api-key", "create", "--config", config, "--id", "k", "--scope", "runbooks:execute"});
  ASSERT_EQ(key.exit_code, 0) << key.err;
  const Json auth{{"type", "api_key"}, {"key", key.out.substr(0, key.out.find('\n'))}};
  auto pub = run({Bins::agent(), "identity", "--config", config});
  Process agent({Bins::agent(), "run", "--config", config}, tmp.path / "agent.log");

  auto slow = cp.submit(Json{{"runbook", "slow"}, {"authorization", auth}});
  auto gated = cp.submit(Json{{"runbook", "gated"}, {"authorization", auth}});
  ASSERT_TRUE(eventually([&] { return has_record(cp, slow, "step.start") && has_record(cp, gated, "step.start"); }))
      << agent.log_text();

  agent.signal(SIGTERM);
  // The drain has begun once the agent says what it waits for; its acquire loop is over.
  ASSERT_TRUE(eventually([&] { return agent.log_text().find("waiting up to 20 s for 2 running job(s)") != std::string::npos; }))
      << agent.log_text();
  ASSERT_TRUE(agent.running());
  // A job queued while the agent drains is never leased to it.
  auto later = cp.submit(Json{{"runbook", "slow"}, {"authorization", auth}});
  write_text(gate / "open", "");

  int st = agent.wait(std::chrono::seconds(120));
  ASSERT_NE(st, -1) << agent.log_text();
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << agent.log_text();

  EXPECT_EQ(cp.wait_final(gated, std::chrono::seconds(10)), "succeeded") << agent.log_text();
  EXPECT_EQ(cp.wait_final(slow, std::chrono::seconds(10)), "interrupted") << agent.log_text();
  const auto later_job = Json::parse(cp.admin_get("/v1/jobs/" + later).body);
  EXPECT_EQ(later_job["status"], "queued") << later_job.dump();
  EXPECT_TRUE(cp.records(later).empty());

  auto recs = cp.records(slow);
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs.back()["kind"], "job.end");
  EXPECT_EQ(recs.back()["data"]["status"], "interrupted");
  for (const auto& id : {slow, gated}) {
    write_text(tmp.path / "export.jsonl", cp.admin_get("/v1/jobs/" + id + "/records").body);
    auto v = run({Bins::audit(), "verify", "--public-key", pub.out.substr(0, pub.out.find('\n')),
                  (tmp.path / "export.jsonl").string()});
    EXPECT_EQ(v.exit_code, 0) << id << ": " << v.out;
  }
}

}  // namespace
}  // namespace delegate::testing
