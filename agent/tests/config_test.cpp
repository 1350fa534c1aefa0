#include <gtest/gtest.h>

#include <delegate/agent/backoff.hpp>
#include <delegate/agent/config.hpp>

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

}  // namespace
}  // namespace delegate::agent
