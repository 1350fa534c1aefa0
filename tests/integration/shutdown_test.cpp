// SIGTERM with a step still running: the agent stops acquiring, gives the step the grace
// period, interrupts it, records job.end "interrupted", flushes, completes, exits 0.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include "harness.hpp"

namespace delegate::testing {
namespace {

TEST(Shutdown, SigtermInterruptsStepsPastTheGracePeriodAndFlushesTheirRecords) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  write_text(cp.dir() / "runbooks" / "slow.yaml",
             "name: slow\ndescription: sleeps\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: nap\n    uses: command\n    with: {argv: [/bin/sleep, '60']}\n"
             "    sandbox: {profile: default, network: false, timeout_s: 120, memory_mb: 64}\n");
  auto cfg = read_text(cp.dir() / "agent.yaml");
  cfg.replace(cfg.find("agent:\n"), 7, "agent:\n  shutdown_grace_s: 1\n");
  const auto config = (tmp.path / "agent.yaml").string();
  write_text(config, cfg, 0600);
  auto key = run({Bins::agent(), "api-key", "create", "--config", config, "--id", "k", "--scope", "runbooks:execute"});
  ASSERT_EQ(key.exit_code, 0) << key.err;
  auto pub = run({Bins::agent(), "identity", "--config", config});
  Process agent({Bins::agent(), "run", "--config", config}, tmp.path / "agent.log");

  auto id = cp.submit(Json{{"runbook", "slow"},
                           {"authorization", {{"type", "api_key"}, {"key", key.out.substr(0, key.out.find('\n'))}}}});
  // Wait until the step has started (its step.start record reached the store).
  ASSERT_TRUE(eventually([&] {
    for (const auto& r : cp.records(id)) {
      if (r["kind"] == "step.start") return true;
    }
    return false;
  })) << agent.log_text();
  agent.signal(SIGTERM);
  int st = agent.wait(std::chrono::seconds(60));
  ASSERT_NE(st, -1) << agent.log_text();
  ASSERT_TRUE(WIFEXITED(st));
  EXPECT_EQ(WEXITSTATUS(st), 0) << agent.log_text();

  EXPECT_EQ(cp.wait_final(id, std::chrono::seconds(5)), "interrupted");
  auto recs = cp.records(id);
  ASSERT_FALSE(recs.empty());
  EXPECT_EQ(recs.back()["kind"], "job.end");
  EXPECT_EQ(recs.back()["data"]["status"], "interrupted");
  write_text(tmp.path / "export.jsonl", cp.admin_get("/v1/jobs/" + id + "/records").body);
  auto v = run({Bins::audit(), "verify", "--public-key", pub.out.substr(0, pub.out.find('\n')),
                (tmp.path / "export.jsonl").string()});
  EXPECT_EQ(v.exit_code, 0) << v.out;
  // No job is acquired after the signal: a job queued now stays queued.
  auto later = cp.submit(Json{{"runbook", "slow"}});
  EXPECT_EQ(Json::parse(cp.admin_get("/v1/jobs/" + later).body)["status"], "queued");
}

}  // namespace
}  // namespace delegate::testing
