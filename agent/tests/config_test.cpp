#include <gtest/gtest.h>

#include <delegate/agent/backoff.hpp>
#include <delegate/agent/config.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace delegate::agent {
namespace {

const char* kFull = R"(control_plane:
  url: https://cp.example.com:8443
  enrollment_token_file: /etc/delegate/enrollment.token
agent:
  name: web-01
  tags: [prod, eu-west]
  state_dir: /var/lib/delegate
  concurrency: 4
auth:
  clock_skew_s: 60
  oauth:
    - issuer: https://idp.example.com/
      audience: delegate
      jwks_file: /etc/delegate/idp-jwks.json
      algorithms: [RS256, PS256, ES256, ES384, EdDSA]
      scope_claim: scope
      roles_claim: roles
  api_keys_file: /etc/delegate/api-keys.yaml
runbooks_dir: /etc/delegate/runbooks
)";

std::string with(const std::string& from, const std::string& to) {
  std::string s = kFull;
  auto pos = s.find(from);
  EXPECT_NE(pos, std::string::npos) << from;
  s.replace(pos, from.size(), to);
  return s;
}

TEST(Config, TheDesignExampleParses) {
  auto c = parse_config(kFull, {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->control_plane.url, "https://cp.example.com:8443");
  EXPECT_EQ(c->agent.tags, (std::vector<std::string>{"prod", "eu-west"}));
  EXPECT_EQ(c->agent.concurrency, 4u);
  ASSERT_EQ(c->auth.oauth.size(), 1u);
  EXPECT_EQ(c->auth.oauth[0].audience, "delegate");
  EXPECT_EQ(c->auth.oauth[0].algorithms.size(), 5u);
  EXPECT_EQ(c->runbooks_dir, "/etc/delegate/runbooks");
}

TEST(Config, EveryUnknownKeyIsAnErrorNamingIt) {
  const std::pair<std::string, std::string> cases[] = {
      {with("runbooks_dir:", "runbook_dir:"), "runbook_dir: unknown key"},
      {with("  concurrency: 4", "  concurency: 4"), "agent.concurency: unknown key"},
      {with("  url: https", "  verify_tls: false\n  url: https"), "control_plane.verify_tls: unknown key"},
      {with("      scope_claim: scope", "      scope_claims: scope"), "auth.oauth[0].scope_claims: unknown key"},
      {std::string(kFull) + "extra: 1\n", "extra: unknown key"},
  };
  for (const auto& [text, msg] : cases) {
    auto c = parse_config(text, {});
    ASSERT_FALSE(c) << msg;
    EXPECT_NE(c.error().message.find(msg), std::string::npos) << c.error().message;
  }
}

// Last-one-wins would let a reviewer read `allow_root_steps: false` while the agent
// obeys a second `true` further down: every duplicate is refused, naming its path.
TEST(Config, DuplicateKeysAreRefusedNamingThePath) {
  const std::pair<std::string, std::string> cases[] = {
      {with("  name: web-01", "  name: web-01\n  name: db-01"), "duplicate key agent.name"},
      {std::string(kFull) + "sandbox:\n  allow_root_steps: false\n  allow_root_steps: true\n",
       "duplicate key sandbox.allow_root_steps"},
      {std::string(kFull) + "runbooks_dir: /tmp\n", "duplicate key runbooks_dir"},
      {with("      audience: delegate", "      audience: delegate\n      audience: other"),
       "duplicate key auth.oauth[0].audience"},
      {std::string(kFull) + "agent:\n  name: other\n", "duplicate key agent"},
  };
  for (const auto& [text, msg] : cases) {
    auto c = parse_config(text, {});
    ASSERT_FALSE(c) << msg;
    EXPECT_NE(c.error().message.find(msg), std::string::npos) << c.error().message;
  }
}

TEST(Config, RequireLocationsParses) {
  auto c = parse_config(with("      roles_claim: roles", "      roles_claim: roles\n      require_locations: true"), {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->auth.oauth[0].require_locations);
  EXPECT_FALSE(parse_config(kFull, {})->auth.oauth[0].require_locations);
  EXPECT_FALSE(parse_config(with("      roles_claim: roles", "      roles_claim: roles\n      require_locations: yes"), {}));
}

TEST(Config, InvalidValuesFailClosed) {
  const std::pair<std::string, std::string> cases[] = {
      {with("https://cp.example.com:8443", "http://cp.example.com:8443"), "https://"},
      {with("  concurrency: 4", "  concurrency: 0"), "agent.concurrency"},
      {with("  concurrency: 4", "  concurrency: four"), "agent.concurrency"},
      {with("  concurrency: 4", "  concurrency: -1"), "agent.concurrency"},
      {with("      audience: delegate\n", ""), "audience: required"},
      {with("      jwks_file: /etc/delegate/idp-jwks.json", "      jwks_uri: https://x/\n      jwks_file: /j"), "exactly one of"},
      {with("  state_dir: /var/lib/delegate", "  state_dir: relative/dir"), "absolute"},
      {with("  tags: [prod, eu-west]", "  tags: [\"bad tag\"]"), "agent.tags"},
      {with("  tags: [prod, eu-west]", "  tags: prod"), "agent.tags"},
      {"control_plane: [1, 2]\n", "must be a mapping"},
      {"{{{{", "YAML"},
  };
  for (const auto& [text, msg] : cases) {
    auto c = parse_config(text, {});
    ASSERT_FALSE(c) << msg;
    EXPECT_NE(c.error().message.find(msg), std::string::npos) << c.error().message;
  }
}

TEST(Config, UnreadableCaFileIsAnError) {
  auto c = parse_config(with("  enrollment_token_file", "  ca_file: /nonexistent/ca.pem\n  enrollment_token_file"), {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("control_plane.ca_file"), std::string::npos);
}

TEST(Config, EnvironmentOverridesAndRejectsUnknownNames) {
  Environment env{{"DELEGATE_CONTROL_PLANE_URL", "https://other:9443"},
                  {"DELEGATE_AGENT_TAGS", "a,b"},
                  {"DELEGATE_AGENT_CONCURRENCY", "8"},
                  {"DELEGATE_RUNBOOKS_DIR", "/srv/runbooks"}};
  auto c = parse_config(kFull, env);
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->control_plane.url, "https://other:9443");
  EXPECT_EQ(c->agent.tags, (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(c->agent.concurrency, 8u);
  EXPECT_EQ(c->runbooks_dir, "/srv/runbooks");
  auto bad = parse_config(kFull, {{"DELEGATE_AGENT_NAMME", "x"}});
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error().message.find("DELEGATE_AGENT_NAMME"), std::string::npos);
  auto http = parse_config(kFull, {{"DELEGATE_CONTROL_PLANE_URL", "http://x"}});
  EXPECT_FALSE(http);
}

TEST(Backoff, StaysWithinItsCapAndResets) {
  Backoff b(std::chrono::milliseconds(100), std::chrono::milliseconds(1000), 42);
  std::chrono::milliseconds max_seen{0};
  for (int i = 0; i < 200; ++i) {
    auto d = b.next();
    EXPECT_GE(d.count(), 0);
    EXPECT_LE(d.count(), 1000);
    max_seen = std::max(max_seen, d);
  }
  EXPECT_GT(max_seen.count(), 400);  // it does grow beyond the base
  b.reset();
  EXPECT_LE(b.next().count(), 100);
}

TEST(Config, SpoolAndCheckpointKeys) {
  auto c = parse_config(kFull, {});
  ASSERT_TRUE(c);
  EXPECT_EQ(c->agent.spool_max_bytes, 256ull << 20);
  EXPECT_EQ(c->agent.checkpoint_interval_s, 10u);
  EXPECT_TRUE(c->agent.spool_key_file.empty());
  auto set = parse_config(with("  concurrency: 4\n", "  concurrency: 4\n  spool_key_file: /etc/delegate/spool.key\n"
                                                      "  spool_max_bytes: 1048576\n  checkpoint_interval_s: 3\n"),
                          {});
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_EQ(set->agent.spool_key_file, "/etc/delegate/spool.key");
  EXPECT_EQ(set->agent.spool_max_bytes, 1048576u);
  EXPECT_EQ(set->agent.checkpoint_interval_s, 3u);
  EXPECT_FALSE(parse_config(with("  concurrency: 4\n", "  concurrency: 4\n  spool_max_bytes: 1000\n"), {}));
  EXPECT_FALSE(parse_config(with("  concurrency: 4\n", "  concurrency: 4\n  spool_key_file: relative.key\n"), {}));
  EXPECT_FALSE(parse_config(with("  concurrency: 4\n", "  concurrency: 4\n  checkpoint_interval_s: 0\n"), {}));
  auto env = parse_config(kFull, {{"DELEGATE_AGENT_SPOOL_MAX_BYTES", "2097152"}});
  ASSERT_TRUE(env);
  EXPECT_EQ(env->agent.spool_max_bytes, 2097152u);
}


// The sandbox section sits before auth in these documents, like in the README example.
std::string with_sandbox(const std::string& body) { return with("auth:\n", "sandbox:\n" + body + "auth:\n"); }

std::string error_of(const std::string& text, const Environment& env = {}) {
  auto c = parse_config(text, env);
  EXPECT_FALSE(c) << text;
  return c ? std::string() : c.error().message;
}

TEST(ConfigSandbox, DefaultsWhenTheSectionIsAbsent) {
  auto c = parse_config(kFull, {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sandbox.step_user, "nobody");
  EXPECT_EQ(c->sandbox.step_uid, 65534u);
  EXPECT_EQ(c->sandbox.step_gid, 65534u);
  EXPECT_FALSE(c->sandbox.allow_root_steps);
  EXPECT_TRUE(c->sandbox.hide_paths.empty());
}

TEST(ConfigSandbox, StepUserByNameResolvesUidAndGid) {
  auto c = parse_config(with_sandbox("  step_user: daemon\n"), {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->sandbox.step_user, "daemon");
  EXPECT_EQ(c->sandbox.step_uid, 1u);  // Debian's fixed system account
  EXPECT_EQ(c->sandbox.step_gid, 1u);
  auto nobody = parse_config(with_sandbox("  step_user: nobody\n"), {});
  ASSERT_TRUE(nobody) << nobody.error().message;
  EXPECT_EQ(nobody->sandbox.step_uid, 65534u);
  EXPECT_EQ(nobody->sandbox.step_gid, 65534u);
}

TEST(ConfigSandbox, NumericStepUser) {
  // A known uid takes its passwd entry's group.
  auto known = parse_config(with_sandbox("  step_user: 65534\n"), {});
  ASSERT_TRUE(known) << known.error().message;
  EXPECT_EQ(known->sandbox.step_uid, 65534u);
  EXPECT_EQ(known->sandbox.step_gid, 65534u);
  // A uid without a passwd entry is accepted; its group is the same number.
  auto bare = parse_config(with_sandbox("  step_user: 4000123\n"), {});
  ASSERT_TRUE(bare) << bare.error().message;
  EXPECT_EQ(bare->sandbox.step_uid, 4000123u);
  EXPECT_EQ(bare->sandbox.step_gid, 4000123u);
  auto env = parse_config(kFull, {{"DELEGATE_SANDBOX_STEP_USER", "4000124"}});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->sandbox.step_uid, 4000124u);
}

TEST(ConfigSandbox, UnknownOrRootStepUserIsAnError) {
  auto unknown = error_of(with_sandbox("  step_user: no-such-user-delegate\n"));
  EXPECT_NE(unknown.find("sandbox.step_user"), std::string::npos) << unknown;
  EXPECT_NE(unknown.find("no-such-user-delegate"), std::string::npos) << unknown;
  for (const char* root : {"root", "0", "\"0\""}) {
    auto msg = error_of(with_sandbox(std::string("  step_user: ") + root + "\n"));
    EXPECT_NE(msg.find("sandbox.step_user"), std::string::npos) << root << ": " << msg;
  }
  EXPECT_NE(error_of(kFull, {{"DELEGATE_SANDBOX_STEP_USER", "root"}}).find("sandbox.step_user"), std::string::npos);
  EXPECT_NE(error_of(with_sandbox("  step_user: \"\"\n")).find("sandbox.step_user"), std::string::npos);
  EXPECT_NE(error_of(with_sandbox("  step_user: 4294967295\n")).find("sandbox.step_user"), std::string::npos);
  EXPECT_NE(error_of(with_sandbox("  step_user: [nobody]\n")).find("sandbox.step_user"), std::string::npos);
}

TEST(ConfigSandbox, AllowRootSteps) {
  auto on = parse_config(with_sandbox("  allow_root_steps: true\n"), {});
  ASSERT_TRUE(on) << on.error().message;
  EXPECT_TRUE(on->sandbox.allow_root_steps);
  auto off = parse_config(with_sandbox("  allow_root_steps: false\n"), {});
  ASSERT_TRUE(off) << off.error().message;
  EXPECT_FALSE(off->sandbox.allow_root_steps);
  auto env = parse_config(kFull, {{"DELEGATE_SANDBOX_ALLOW_ROOT_STEPS", "true"}});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_TRUE(env->sandbox.allow_root_steps);
  EXPECT_NE(error_of(with_sandbox("  allow_root_steps: yes\n")).find("sandbox.allow_root_steps"), std::string::npos);
  EXPECT_NE(error_of(with_sandbox("  allow_root_steps: 1\n")).find("sandbox.allow_root_steps"), std::string::npos);
  EXPECT_NE(error_of(kFull, {{"DELEGATE_SANDBOX_ALLOW_ROOT_STEPS", "on"}}).find("DELEGATE_SANDBOX_ALLOW_ROOT_STEPS"),
            std::string::npos);
}

TEST(ConfigSandbox, HidePathsFromYamlListAndEnvironmentCsv) {
  auto list = parse_config(with_sandbox("  hide_paths: [/srv/secrets, /etc/ssl/private]\n"), {});
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_EQ(list->sandbox.hide_paths,
            (std::vector<std::filesystem::path>{"/srv/secrets", "/etc/ssl/private"}));
  // The environment replaces the file's list rather than adding to it.
  auto env = parse_config(with_sandbox("  hide_paths: [/srv/secrets]\n"),
                          {{"DELEGATE_SANDBOX_HIDE_PATHS", "/a,/b/c,,/d"}});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->sandbox.hide_paths, (std::vector<std::filesystem::path>{"/a", "/b/c", "/d"}));
  auto rel = error_of(with_sandbox("  hide_paths: [/ok, relative/dir]\n"));
  EXPECT_NE(rel.find("sandbox.hide_paths"), std::string::npos) << rel;
  EXPECT_NE(rel.find("relative/dir"), std::string::npos) << rel;
  EXPECT_NE(error_of(kFull, {{"DELEGATE_SANDBOX_HIDE_PATHS", "/ok,rel"}}).find("sandbox.hide_paths"),
            std::string::npos);
  EXPECT_NE(error_of(with_sandbox("  hide_paths: /srv/secrets\n")).find("sandbox.hide_paths"), std::string::npos);
  EXPECT_NE(error_of(with_sandbox("  hide_paths: [[/a]]\n")).find("sandbox.hide_paths[0]"), std::string::npos);
}

// The agent's half of a host-socket grant: nothing unless listed, absolute paths only.
TEST(ConfigSandbox, AllowSocketsFromYamlListAndEnvironmentCsv) {
  auto none = parse_config(with_sandbox("  allow_root_steps: false\n"), {});
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_TRUE(none->sandbox.allow_sockets.empty());
  auto list = parse_config(with_sandbox("  allow_sockets: [/run/systemd/private]\n"), {});
  ASSERT_TRUE(list) << list.error().message;
  EXPECT_EQ(list->sandbox.allow_sockets, (std::vector<std::filesystem::path>{"/run/systemd/private"}));
  auto env = parse_config(with_sandbox("  allow_sockets: [/run/a.sock]\n"),
                          {{"DELEGATE_SANDBOX_ALLOW_SOCKETS", "/run/b.sock,/run/c.sock"}});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->sandbox.allow_sockets, (std::vector<std::filesystem::path>{"/run/b.sock", "/run/c.sock"}));
  auto rel = error_of(with_sandbox("  allow_sockets: [run/x.sock]\n"));
  EXPECT_NE(rel.find("sandbox.allow_sockets: run/x.sock is not absolute"), std::string::npos) << rel;
  EXPECT_NE(error_of(with_sandbox("  allow_sockets: /run/x.sock\n")).find("sandbox.allow_sockets"), std::string::npos);
}

// The host's network and internal egress ranges are the operator's choice; both off
// unless configured, and a range must be a real CIDR.
TEST(ConfigSandbox, HostNetworkAndEgressAllowCidrs) {
  auto none = parse_config(with_sandbox("  allow_root_steps: false\n"), {});
  ASSERT_TRUE(none) << none.error().message;
  EXPECT_FALSE(none->sandbox.allow_host_network);
  EXPECT_TRUE(none->sandbox.egress_allow_cidrs.empty());
  auto set = parse_config(with_sandbox("  allow_host_network: true\n  egress_allow_cidrs: [10.20.0.0/16, \"fd00::/8\"]\n"), {});
  ASSERT_TRUE(set) << set.error().message;
  EXPECT_TRUE(set->sandbox.allow_host_network);
  EXPECT_EQ(set->sandbox.egress_allow_cidrs, (std::vector<std::string>{"10.20.0.0/16", "fd00::/8"}));
  auto env = parse_config(with_sandbox("  allow_root_steps: false\n"), {{"DELEGATE_SANDBOX_EGRESS_ALLOW_CIDRS", "127.0.0.0/8"},
                                             {"DELEGATE_SANDBOX_ALLOW_HOST_NETWORK", "true"}});
  ASSERT_TRUE(env) << env.error().message;
  EXPECT_EQ(env->sandbox.egress_allow_cidrs, (std::vector<std::string>{"127.0.0.0/8"}));
  EXPECT_TRUE(env->sandbox.allow_host_network);
  auto bad = error_of(with_sandbox("  egress_allow_cidrs: [10.1.2.3/8]\n"));
  EXPECT_NE(bad.find("sandbox.egress_allow_cidrs: 10.1.2.3/8: host bits set after the prefix"), std::string::npos) << bad;
  EXPECT_NE(error_of(with_sandbox("  egress_allow_cidrs: [example.com]\n")).find("sandbox.egress_allow_cidrs"),
            std::string::npos);
  EXPECT_NE(error_of(with_sandbox("  allow_host_network: maybe\n")).find("sandbox.allow_host_network"), std::string::npos);
}

TEST(ConfigSandbox, UnknownKeysAndVariablesAreErrors) {
  auto key = error_of(with_sandbox("  step_users: nobody\n"));
  EXPECT_NE(key.find("sandbox.step_users: unknown key"), std::string::npos) << key;
  auto var = error_of(kFull, {{"DELEGATE_SANDBOX_BOGUS", "1"}});
  EXPECT_NE(var.find("DELEGATE_SANDBOX_BOGUS"), std::string::npos) << var;
  EXPECT_NE(var.find("unknown key"), std::string::npos) << var;
  EXPECT_NE(error_of("sandbox: [a]\n").find("sandbox: must be a mapping"), std::string::npos);
}

}  // namespace
}  // namespace delegate::agent

namespace delegate::agent {
namespace {

TEST(Config, AllowInlineTrueIsRefusedNotIgnored) {
  auto off = parse_config(with("  concurrency: 4", "  concurrency: 4\n  allow_inline: false"), {});
  ASSERT_TRUE(off) << off.error().message;
  auto on = parse_config(with("  concurrency: 4", "  concurrency: 4\n  allow_inline: true"), {});
  ASSERT_FALSE(on);
  EXPECT_NE(on.error().message.find("agent.allow_inline"), std::string::npos) << on.error().message;
  auto env = parse_config(kFull, {{"DELEGATE_AGENT_ALLOW_INLINE", "true"}});
  EXPECT_FALSE(env);
}

}  // namespace
}  // namespace delegate::agent

namespace delegate::agent {
namespace {

TEST(ConnectorsConfig, CaFilesAreReadAtLoadAndAnUnusableOneFailsClosed) {
  const auto dir = std::filesystem::temp_directory_path() / ("delegate-cafiles-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const auto good = dir / "ca.pem";
  const auto junk = dir / "junk.pem";
  {
    std::ofstream(good) << "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----";
    std::ofstream(junk) << "not a certificate\n";
  }
  auto cfg = [&](const std::string& files) {
    return with("runbooks_dir: /etc/delegate/runbooks\n", "runbooks_dir: /etc/delegate/runbooks\nconnectors: {ca_files: [" + files + "]}\n");
  };
  auto c = parse_config(cfg(good.string()), {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->connectors.ca_pem, "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n");
  for (const auto& bad : {(dir / "missing.pem").string(), junk.string(), std::string("relative.pem")}) {
    auto r = parse_config(cfg(bad), {});
    ASSERT_FALSE(r) << bad;
    EXPECT_NE(r.error().message.find("connectors.ca_files"), std::string::npos) << r.error().message;
  }
  auto unknown = parse_config(with("runbooks_dir: /etc/delegate/runbooks\n", "runbooks_dir: /x\nconnectors: {ca_file: /x}\n"), {});
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("connectors.ca_file"), std::string::npos) << unknown.error().message;
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace delegate::agent

namespace delegate::agent {
namespace {

TEST(Config, LogSectionSetsFormatAndLevelAndRefusesTheRest) {
  auto d = parse_config(kFull, {});
  ASSERT_TRUE(d) << d.error().message;
  EXPECT_EQ(d->log.format, log::Format::text);
  EXPECT_EQ(d->log.level, log::Level::info);
  auto c = parse_config(std::string(kFull) + "log: {format: json, level: debug}\n", {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->log.format, log::Format::json);
  EXPECT_EQ(c->log.level, log::Level::debug);
  auto e = parse_config(kFull, {{"DELEGATE_LOG_FORMAT", "json"}, {"DELEGATE_LOG_LEVEL", "warn"}});
  ASSERT_TRUE(e) << e.error().message;
  EXPECT_EQ(e->log.format, log::Format::json);
  EXPECT_EQ(e->log.level, log::Level::warn);
  const std::pair<std::string, std::string> bad[] = {
      {std::string(kFull) + "log: {format: xml}\n", "log.format: must be text or json"},
      {std::string(kFull) + "log: {level: verbose}\n", "log.level: must be"},
      {std::string(kFull) + "log: {colour: true}\n", "log.colour: unknown key"},
  };
  for (const auto& [text, msg] : bad) {
    auto r = parse_config(text, {});
    ASSERT_FALSE(r) << msg;
    EXPECT_NE(r.error().message.find(msg), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace delegate::agent
