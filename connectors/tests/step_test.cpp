#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <delegate/connectors/step.hpp>

namespace delegate::connectors {
namespace {

policies::Step command_step() {
  policies::Step s;
  s.name = "restart";
  s.uses = policies::StepKind::command;
  s.argv = {"systemctl", "restart", "${params.service}"};
  s.env = {{"UNIT", "${params.service}"}};
  s.sandbox.timeout_s = 60;
  s.sandbox.memory_mb = 128;
  return s;
}

TEST(PrepareStep, ParametersBecomeWholeArgvElementsAndEnvValues) {
  const Json params{{"service", "nginx; rm -rf /"}};
  auto p = prepare_step(command_step(), 0, params, StepContext{"/tmp"});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->spec.argv, (std::vector<std::string>{"systemctl", "restart", "nginx; rm -rf /"}));
  EXPECT_EQ(p->spec.env, (std::vector<std::string>{"UNIT=nginx; rm -rf /"}));
  EXPECT_EQ(p->spec.limits.memory_bytes, 128ull << 20);
  EXPECT_EQ(p->audit["argv"][2], "nginx; rm -rf /");
  EXPECT_EQ(p->audit["uses"], "command");
}

TEST(PrepareStep, JobDeadlineCapsTheStepTimeout) {
  auto p = prepare_step(command_step(), 0, Json{{"service", "x"}}, StepContext{"/tmp", std::chrono::seconds(5)});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->spec.limits.timeout, std::chrono::seconds(5));
  auto q = prepare_step(command_step(), 0, Json{{"service", "x"}}, StepContext{"/tmp"});
  EXPECT_EQ(q->spec.limits.timeout, std::chrono::seconds(60));
}

TEST(PrepareStep, ScriptsSeeParametersOnlyThroughTheEnvironment) {
  policies::Step s;
  s.name = "check";
  s.uses = policies::StepKind::script;
  s.script = "echo \"$PARAM_HOST\"";
  auto p = prepare_step(s, 1, Json{{"host", "$(reboot)"}, {"count", 3}}, StepContext{"/tmp"});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->spec.argv, (std::vector<std::string>{"/bin/sh", "-c", "echo \"$PARAM_HOST\""}));
  EXPECT_NE(std::find(p->spec.env.begin(), p->spec.env.end(), "PARAM_HOST=$(reboot)"), p->spec.env.end());
  EXPECT_NE(std::find(p->spec.env.begin(), p->spec.env.end(), "PARAM_COUNT=3"), p->spec.env.end());
}

TEST(PrepareStep, UnknownParameterReferenceFails) {
  auto s = command_step();
  s.argv.push_back("${params.nope}");
  EXPECT_FALSE(prepare_step(s, 0, Json{{"service", "x"}}, StepContext{"/tmp"}));
}


// prepare_step plans against the real host: what it can check depends on what this
// machine (or container) lets the agent create.
bool host_has_namespaces() {
  const auto& h = sandbox::host_support();
  return h.user_ns || h.other_ns;
}
bool host_has_mount_ns() { return host_has_namespaces() && sandbox::host_support().mount_setattr; }

StepContext policy_context() {
  StepContext ctx{"/tmp"};
  ctx.step_user = sandbox::StepUser{4242, 4343};
  ctx.hidden = {"/var/lib/delegate", "/etc/delegate/enrollment.token"};
  return ctx;
}

policies::Step sandboxed_step() {
  auto s = command_step();
  s.sandbox.allow_degraded = true;  // these tests are about policy, not about the host
  return s;
}

TEST(PrepareStepSandbox, RootWithoutAllowRootIsAPermissionError) {
  auto s = sandboxed_step();
  s.sandbox.root = true;
  auto p = prepare_step(s, 0, Json{{"service", "x"}}, policy_context());
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, Errc::permission);
  EXPECT_NE(p.error().message.find("allow_root_steps"), std::string::npos) << p.error().message;
  EXPECT_NE(p.error().message.find("restart"), std::string::npos) << p.error().message;
}

TEST(PrepareStepSandbox, RootWithAllowRootRunsAsRoot) {
  if (!sandbox::host_support().is_root) GTEST_SKIP() << "a root step needs a root agent";
  if (!sandbox::host_support().user_ns) GTEST_SKIP() << "a root step needs a user namespace";
  auto s = sandboxed_step();
  s.sandbox.root = true;
  auto ctx = policy_context();
  ctx.allow_root = true;
  auto p = prepare_step(s, 0, Json{{"service", "x"}}, ctx);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(p->spec.isolation.root);
  const Json& user = p->audit["sandbox"]["isolation"]["user"];
  EXPECT_EQ(user["uid"], 0);
  EXPECT_EQ(user["gid"], 0);
  EXPECT_EQ(user["root"], true);
}

TEST(PrepareStepSandbox, StepUserAndLimitsComeFromPolicyAndRunbook) {
  if (!host_has_namespaces()) GTEST_SKIP() << "no namespaces on this host";
  auto s = sandboxed_step();
  s.sandbox.cpu_percent = 250;
  auto p = prepare_step(s, 0, Json{{"service", "x"}}, policy_context());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_FALSE(p->spec.isolation.root);
  EXPECT_TRUE(p->spec.isolation.allow_degraded);
  EXPECT_EQ(p->spec.isolation.user.uid, 4242u);
  EXPECT_EQ(p->spec.isolation.user.gid, 4343u);
  EXPECT_EQ(p->spec.limits.cpu_percent, 250u);
  // The agent's hidden paths are always mounted (those that exist), even for a step
  // that asks for none.
  StepContext ctx = policy_context();
  ctx.hidden = {"/etc/passwd", "/nonexistent/delegate/state"};
  auto h = prepare_step(s, 0, Json{{"service", "x"}}, ctx);
  ASSERT_TRUE(h) << h.error().message;
  ASSERT_EQ(h->spec.isolation.mounts.size(), 1u);
  EXPECT_EQ(h->spec.isolation.mounts[0].path, "/etc/passwd");
  if (sandbox::host_support().is_root) {
    EXPECT_EQ(p->audit["sandbox"]["isolation"]["user"]["uid"], 4242);
    EXPECT_EQ(p->audit["sandbox"]["isolation"]["user"]["gid"], 4343);
  }
  auto dflt = prepare_step(sandboxed_step(), 0, Json{{"service", "x"}}, policy_context());
  ASSERT_TRUE(dflt) << dflt.error().message;
  EXPECT_EQ(dflt->spec.limits.cpu_percent, 100u);
}

TEST(PrepareStepSandbox, HiddenPathsComeFirst) {
  if (!host_has_mount_ns()) GTEST_SKIP() << "no mount namespace on this host";
  auto s = sandboxed_step();
  s.sandbox.ro = {"/etc/nginx"};
  s.sandbox.rw = {"/var/log/nginx"};
  s.sandbox.hide = {"/etc/nginx/private"};
  // The agent's own paths are covered when they exist at launch (see hidden_test.cpp).
  const auto dir = std::filesystem::temp_directory_path() / ("delegate-hpcf-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "state");
  { std::ofstream(dir / "token") << "t"; }
  StepContext ctx = policy_context();
  ctx.hidden = {dir / "state", dir / "token"};
  auto p = prepare_step(s, 0, Json{{"service", "x"}}, ctx);
  std::filesystem::remove_all(dir);
  ASSERT_TRUE(p) << p.error().message;
  using Kind = sandbox::BindMount::Kind;
  const auto& m = p->spec.isolation.mounts;
  ASSERT_EQ(m.size(), 5u);
  EXPECT_EQ(m[0].kind, Kind::hidden);
  EXPECT_EQ(m[0].path, dir / "state");
  EXPECT_EQ(m[1].kind, Kind::hidden);
  EXPECT_EQ(m[1].path, dir / "token");
  EXPECT_EQ(m[2].kind, Kind::read_only);
  EXPECT_EQ(m[2].path, "/etc/nginx");
  EXPECT_EQ(m[3].kind, Kind::read_write);
  EXPECT_EQ(m[3].path, "/var/log/nginx");
  EXPECT_EQ(m[4].kind, Kind::hidden);
  EXPECT_EQ(m[4].path, "/etc/nginx/private");
}

TEST(PrepareStepSandbox, MountsOverlappingAHiddenPathAreRefused) {
  const std::vector<std::string> below = {"/var/lib/delegate", "/var/lib/delegate/", "/var/lib/delegate/spool",
                                          "/var/lib/./delegate/keys", "/var/lib/x/../delegate",
                                          "/etc/delegate/enrollment.token"};
  for (const auto& path : below) {
    for (bool rw : {false, true}) {
      auto s = sandboxed_step();
      (rw ? s.sandbox.rw : s.sandbox.ro) = {path};
      auto p = prepare_step(s, 0, Json{{"service", "x"}}, policy_context());
      ASSERT_FALSE(p) << (rw ? "rw " : "ro ") << path;
      EXPECT_EQ(p.error().code, Errc::permission) << path;
      EXPECT_NE(p.error().message.find("hidden"), std::string::npos) << p.error().message;
    }
  }
  // A bind of an ancestor would cover the hidden mount with the host's tree.
  for (const std::string path : {"/", "/var", "/var/lib", "/var/lib/", "/etc/delegate", "/etc/../var"}) {
    for (bool rw : {false, true}) {
      auto s = sandboxed_step();
      (rw ? s.sandbox.rw : s.sandbox.ro) = {path};
      auto p = prepare_step(s, 0, Json{{"service", "x"}}, policy_context());
      ASSERT_FALSE(p) << (rw ? "rw " : "ro ") << path;
      EXPECT_EQ(p.error().code, Errc::permission) << path;
      EXPECT_NE(p.error().message.find("keeps hidden"), std::string::npos) << p.error().message;
    }
  }
  // A symlink to a hidden path is the hidden path.
  const auto dir = std::filesystem::temp_directory_path() / ("step-test-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir / "state");
  std::filesystem::create_directory_symlink(dir / "state", dir / "link");
  {
    auto ctx = policy_context();
    ctx.hidden.push_back(dir / "state");
    for (const auto& path : {dir / "link", dir / "link" / "spool"}) {
      auto s = sandboxed_step();
      s.sandbox.ro = {path.string()};
      auto p = prepare_step(s, 0, Json{{"service", "x"}}, ctx);
      ASSERT_FALSE(p) << path;
      EXPECT_EQ(p.error().code, Errc::permission);
    }
  }
  std::filesystem::remove_all(dir);
  // Hiding more below a hidden path is harmless; a sibling with a common prefix is not below.
  if (!host_has_mount_ns()) GTEST_SKIP() << "no mount namespace on this host";
  auto s = sandboxed_step();
  s.sandbox.hide = {"/var/lib/delegate/spool"};
  s.sandbox.ro = {"/var/lib/delegate-other"};
  EXPECT_TRUE(prepare_step(s, 0, Json{{"service", "x"}}, policy_context()));
}

TEST(PrepareStepSandbox, StepStartRecordsTheSandbox) {
  if (!host_has_mount_ns()) GTEST_SKIP() << "no mount namespace on this host";
  auto s = sandboxed_step();
  s.sandbox.cpu_percent = 50;
  s.sandbox.ro = {"/etc/nginx"};
  s.sandbox.rw = {"/var/log/nginx"};
  s.sandbox.hide = {"/etc/nginx/private"};
  s.sandbox.network = true;
  s.sandbox.profile = "network";
  auto p = prepare_step(s, 3, Json{{"service", "x"}}, policy_context());
  ASSERT_TRUE(p) << p.error().message;
  const Json& sb = p->audit["sandbox"];
  EXPECT_EQ(p->audit["index"], 3);
  EXPECT_EQ(sb["profile"], "network");
  EXPECT_EQ(sb["network"], true);
  EXPECT_EQ(sb["cpu_percent"], 50);
  EXPECT_EQ(sb["ro"], Json::array({"/etc/nginx"}));
  EXPECT_EQ(sb["rw"], Json::array({"/var/log/nginx"}));
  // Only what the runbook asked for: the agent's own hidden paths are not recorded.
  EXPECT_EQ(sb["hide"], Json::array({"/etc/nginx/private"}));
  const Json& iso = sb["isolation"];
  for (const char* key : {"namespaces", "user", "cgroup", "limits_via", "degraded"}) {
    EXPECT_TRUE(iso.contains(key)) << key << " in " << iso.dump();
  }
  // The record is exactly the plan for this host.
  auto plan = sandbox::plan_isolation(p->spec, sandbox::host_support());
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(iso, sandbox::describe(*plan));
  const auto& ns = iso["namespaces"];
  EXPECT_NE(std::find(ns.begin(), ns.end(), Json("mount")), ns.end()) << ns.dump();
  EXPECT_NE(std::find(ns.begin(), ns.end(), Json("pid")), ns.end()) << ns.dump();
  // network: true shares the host network: no net namespace.
  EXPECT_EQ(std::find(ns.begin(), ns.end(), Json("net")), ns.end()) << ns.dump();
  for (const char* c : {"memory", "pids", "cpu"}) {
    const auto v = iso["cgroup"][c].get<std::string>();
    EXPECT_TRUE(v == "v1" || v == "v2" || v == "none") << c << "=" << v;
  }
}

TEST(PrepareStepSandbox, StepStartDefaultsForAPlainStep) {
  if (!host_has_namespaces()) GTEST_SKIP() << "no namespaces on this host";
  auto p = prepare_step(sandboxed_step(), 0, Json{{"service", "x"}}, policy_context());
  ASSERT_TRUE(p) << p.error().message;
  const Json& sb = p->audit["sandbox"];
  EXPECT_EQ(sb["cpu_percent"], 100);
  EXPECT_EQ(sb["ro"], Json::array());
  EXPECT_EQ(sb["rw"], Json::array());
  EXPECT_EQ(sb["hide"], Json::array());
  const auto& ns = sb["isolation"]["namespaces"];
  EXPECT_NE(std::find(ns.begin(), ns.end(), Json("net")), ns.end()) << ns.dump();
  EXPECT_EQ(sb["isolation"]["user"]["root"], false);
}

}  // namespace
}  // namespace delegate::connectors
