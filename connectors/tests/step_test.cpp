#include <gtest/gtest.h>

#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
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
  auto ctx = policy_context();
  ctx.allow_host_network = true;  // the host's network is the agent's choice
  auto p = prepare_step(s, 3, Json{{"service", "x"}}, ctx);
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
  EXPECT_EQ(sb["sockets"], Json::array());
  EXPECT_EQ(sb["egress"], Json::array());
  // The isolation as literal values: every namespace but net (network: true shares the
  // host's), the policy's step user (an unprivileged agent can only map itself), the
  // cgroup controllers this host offers, no socket, nothing degraded.
  const auto& h = sandbox::host_support();
  if (!h.user_ns) GTEST_SKIP() << "the literal record below assumes user namespaces";
  auto version = [](sandbox::CgroupVersion v) {
    return v == sandbox::CgroupVersion::v2 ? "v2" : v == sandbox::CgroupVersion::v1 ? "v1" : "none";
  };
  const bool any_cgroup = h.memory != sandbox::CgroupVersion::none || h.pids != sandbox::CgroupVersion::none ||
                          h.cpu != sandbox::CgroupVersion::none;
  const Json expected{
      {"namespaces", Json::array({"user", "pid", "mount", "ipc", "uts", "cgroup"})},
      {"user", Json{{"uid", h.is_root ? 4242u : ::getuid()}, {"gid", h.is_root ? 4343u : ::getgid()}, {"root", false}}},
      {"cgroup", Json{{"memory", version(h.memory)}, {"pids", version(h.pids)}, {"cpu", version(h.cpu)}}},
      {"limits_via", any_cgroup ? "cgroup+rlimits" : "rlimits"},
      {"sockets", Json::array()},
      {"degraded", Json::array()}};
  EXPECT_EQ(sb["isolation"], expected);
}

// A listening Unix socket in a private directory, plus a symlink to it.
class HostSocket {
 public:
  HostSocket() {
    std::string tmpl = "/tmp/delegate-step-sock-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    dir_ = tmpl;
    fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::snprintf(addr.sun_path, sizeof addr.sun_path, "%s", path().c_str());
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) std::abort();
    std::filesystem::create_symlink(path(), link());
  }
  ~HostSocket() {
    ::close(fd_);
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  HostSocket(const HostSocket&) = delete;
  HostSocket& operator=(const HostSocket&) = delete;
  std::string path() const { return (dir_ / "service.sock").string(); }
  std::string link() const { return (dir_ / "alias.sock").string(); }
  std::string dir() const { return dir_.string(); }

 private:
  std::filesystem::path dir_;
  int fd_ = -1;
};

// A host socket needs the runbook's request AND the agent's allow_sockets.
TEST(PrepareStepSandbox, HostSocketNeedsBothTheRunbookAndTheAgentPolicy) {
  if (!host_has_mount_ns()) GTEST_SKIP() << "no mount namespace on this host";
  const HostSocket sock;
  auto asks = sandboxed_step();
  asks.sandbox.sockets = {sock.path()};

  // Runbook only: refused before anything runs.
  auto refused = prepare_step(asks, 0, Json{{"service", "x"}}, policy_context());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::permission);
  EXPECT_EQ(refused.error().message, "step restart asks for host socket " + sock.path() +
                                         ", which this agent's policy does not allow (sandbox.allow_sockets)");

  // Agent policy only: nothing is granted to a step that does not ask.
  auto ctx = policy_context();
  ctx.allowed_sockets = {sock.path()};
  auto not_asked = prepare_step(sandboxed_step(), 0, Json{{"service", "x"}}, ctx);
  ASSERT_TRUE(not_asked) << not_asked.error().message;
  EXPECT_TRUE(not_asked->spec.isolation.sockets.empty());
  EXPECT_EQ(not_asked->audit["sandbox"]["isolation"]["sockets"], Json::array());

  // Both: granted, at its canonical path, and recorded in step.start.
  auto granted = prepare_step(asks, 0, Json{{"service", "x"}}, ctx);
  ASSERT_TRUE(granted) << granted.error().message;
  EXPECT_EQ(granted->spec.isolation.sockets, (std::vector<std::filesystem::path>{sock.path()}));
  EXPECT_EQ(granted->audit["sandbox"]["sockets"], Json::array({sock.path()}));
  EXPECT_EQ(granted->audit["sandbox"]["isolation"]["sockets"], Json::array({sock.path()}));

  // The two sides are compared after resolving symlinks: an alias is the same socket.
  auto via_alias = asks;
  via_alias.sandbox.sockets = {sock.link()};
  auto alias = prepare_step(via_alias, 0, Json{{"service", "x"}}, ctx);
  ASSERT_TRUE(alias) << alias.error().message;
  EXPECT_EQ(alias->spec.isolation.sockets, (std::vector<std::filesystem::path>{sock.path()}));

  // Another socket than the one the agent lists is refused; a missing one too.
  const HostSocket other;
  auto asks_other = sandboxed_step();
  asks_other.sandbox.sockets = {other.path()};
  auto wrong = prepare_step(asks_other, 0, Json{{"service", "x"}}, ctx);
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::permission);
  auto asks_missing = sandboxed_step();
  asks_missing.sandbox.sockets = {sock.dir() + "/missing.sock"};
  auto missing = prepare_step(asks_missing, 0, Json{{"service", "x"}}, ctx);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error().code, Errc::not_found);

  // Listed by the agent but not a socket: the isolation plan refuses it.
  auto asks_file = sandboxed_step();
  asks_file.sandbox.sockets = {"/etc/hostname"};
  auto file_ctx = policy_context();
  file_ctx.allowed_sockets = {"/etc/hostname"};
  auto file = prepare_step(asks_file, 0, Json{{"service", "x"}}, file_ctx);
  ASSERT_FALSE(file);
  EXPECT_EQ(file.error().message, "step restart: host socket /etc/hostname is not a socket");
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

namespace delegate::connectors {
namespace {

// network: true shares the host's namespace, bypassing any egress control: only an agent
// whose policy says so runs such a step.
TEST(PrepareStepSandbox, HostNetworkNeedsTheAgentsPolicy) {
  auto s = sandboxed_step();
  s.sandbox.network = true;
  s.sandbox.profile = "network";
  auto refused = prepare_step(s, 0, Json{{"service", "x"}}, policy_context());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::permission);
  EXPECT_NE(refused.error().message.find("sandbox.allow_host_network"), std::string::npos) << refused.error().message;
  auto ctx = policy_context();
  ctx.allow_host_network = true;
  auto allowed = prepare_step(s, 0, Json{{"service", "x"}}, ctx);
  EXPECT_TRUE(allowed) << allowed.error().message;
}

TEST(PrepareStepSandbox, StepStartRecordsTheEgressAllowlist) {
  auto s = sandboxed_step();
  s.sandbox.egress = {"api.example.com:443", "10.0.0.5:8443"};
  s.sandbox.profile = "network";
  auto p = prepare_step(s, 0, Json{{"service", "x"}}, policy_context());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->audit["sandbox"]["egress"], Json::array({"api.example.com:443", "10.0.0.5:8443"}));
  EXPECT_FALSE(p->spec.network);
}

}  // namespace
}  // namespace delegate::connectors
