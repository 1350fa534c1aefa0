// agent.yaml metrics.listen: loopback TCP or a Unix socket, anything else refused.
#include <gtest/gtest.h>

#include <algorithm>

#include <delegate/agent/config.hpp>
#include <delegate/agent/metrics.hpp>
#include <delegate/agent/reload.hpp>

namespace delegate::agent {
namespace {

const std::string kBase = R"(control_plane:
  url: https://cp.example.com:8443
  enrollment_token_file: /etc/delegate/enrollment.token
agent:
  name: web-01
auth:
  api_keys_file: /etc/delegate/api-keys.yaml
)";

TEST(MetricsConfig, AbsentMeansNoListener) {
  auto c = parse_config(kBase, {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_FALSE(c->metrics.address);
}

TEST(MetricsConfig, LoopbackAndUnixSocketsParse) {
  auto c = parse_config(kBase + "metrics:\n  listen: \"127.0.0.1:9464\"\n", {});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_TRUE(c->metrics.address);
  EXPECT_EQ(c->metrics.address->port, 9464);
  c = parse_config(kBase + "metrics: {listen: \"unix:/run/delegate/metrics.sock\"}\n", {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->metrics.address->kind, metrics::ListenAddress::Kind::unix_socket);
  // The environment can set it, and clear it.
  c = parse_config(kBase, {{"DELEGATE_METRICS_LISTEN", "[::1]:9464"}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_TRUE(c->metrics.address);
  c = parse_config(kBase + "metrics: {listen: \"127.0.0.1:9464\"}\n", {{"DELEGATE_METRICS_LISTEN", ""}});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_FALSE(c->metrics.address);
}

TEST(MetricsConfig, NetworkAddressesAndUnknownKeysFailClosed) {
  for (const char* bad : {"0.0.0.0:9464", "192.168.1.10:9464", "[::]:9464", "localhost:9464", "unix:metrics.sock"}) {
    auto c = parse_config(kBase + "metrics: {listen: \"" + bad + "\"}\n", {});
    ASSERT_FALSE(c) << bad;
    EXPECT_NE(c.error().message.find("metrics.listen"), std::string::npos) << c.error().message;
  }
  auto c = parse_config(kBase, {{"DELEGATE_METRICS_LISTEN", "0.0.0.0:9464"}});
  EXPECT_FALSE(c);
  c = parse_config(kBase + "metrics: {listen: \"127.0.0.1:9464\", path: /x}\n", {});
  ASSERT_FALSE(c);
  EXPECT_NE(c.error().message.find("metrics.path: unknown key"), std::string::npos) << c.error().message;
}

// Label values of every family come from closed sets: the series are all there before
// any job ran, and nothing a job carries can add one.
TEST(AgentMetrics, SeriesAreFixedUpFront) {
  const auto before = agent_metrics().registry().render();
  EXPECT_NE(before.find("delegate_agent_authz_denials_total{reason=\"api_key_revoked\"} "), std::string::npos);
  EXPECT_NE(before.find("delegate_agent_jobs_total{status=\"timed_out\"} "), std::string::npos);
  EXPECT_NE(before.find("delegate_agent_sandbox_launch_failures_total{cause=\"not_found\"} "), std::string::npos);
  agent_metrics().job_finished("not-a-status\"}");
  const auto after = agent_metrics().registry().render();
  EXPECT_EQ(after.find("not-a-status"), std::string::npos);
  EXPECT_EQ(std::count(before.begin(), before.end(), '\n'), std::count(after.begin(), after.end(), '\n'));
}

// Polling with credentials is not enough: a control plane that stopped answering (a
// heartbeat failed in transport) makes the agent unready until a request gets through.
TEST(AgentMetrics, ReadyNeedsPollingAndAReachableControlPlane) {
  auto& m = agent_metrics();
  m.control_plane_answered(true);
  m.set_polling(true);
  EXPECT_TRUE(m.ready());
  EXPECT_NE(m.registry().render().find("\ndelegate_agent_ready 1\n"), std::string::npos);
  m.control_plane_unreachable();
  EXPECT_FALSE(m.ready());
  EXPECT_NE(m.registry().render().find("\ndelegate_agent_ready 0\n"), std::string::npos);
  m.control_plane_answered(false);  // a 4xx/5xx answer: reachable
  EXPECT_TRUE(m.ready());
  m.set_polling(false);
  EXPECT_FALSE(m.ready());
}

// The listener is bound once at start: a SIGHUP that moves it must say so, not be
// accepted and silently left unapplied.
TEST(MetricsConfig, MovingTheListenerNeedsARestart) {
  auto before = parse_config(kBase + "metrics: {listen: \"127.0.0.1:9464\"}\n", {});
  auto moved = parse_config(kBase + "metrics: {listen: \"127.0.0.1:9465\"}\n", {});
  auto gone = parse_config(kBase, {});
  ASSERT_TRUE(before && moved && gone);
  EXPECT_TRUE(check_restart_keys(*before, *before));
  for (const Config* next : {&*moved, &*gone}) {
    auto r = check_restart_keys(*before, *next);
    ASSERT_FALSE(r);
    EXPECT_NE(r.error().message.find("metrics.listen"), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace delegate::agent
