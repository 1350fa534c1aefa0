// The default /etc/delegate/agent.yaml the Debian package installs must load with the
// agent's strict loader, and its commented OAuth issuer example must name only real
// keys: a renamed or removed key breaks this test rather than an operator's first start.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <delegate/agent/config.hpp>

namespace delegate::agent {
namespace {

std::string packaged() {
  std::ifstream in(std::string(DELEGATE_SOURCE_DIR) + "/packaging/agent.yaml");
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(PackagedConfig, LoadsWithThePackagedLayout) {
  auto c = parse_config(packaged(), {});
  ASSERT_TRUE(c) << c.error().message;
  EXPECT_EQ(c->agent.state_dir, "/var/lib/delegate/agent");
  EXPECT_EQ(c->agent.spool_key_file, "/etc/delegate/spool.key");
  EXPECT_EQ(c->control_plane.enrollment_token_file, "/etc/delegate/enrollment.token");
  EXPECT_EQ(c->runbooks_dir, "/etc/delegate/runbooks");
  EXPECT_FALSE(c->sandbox.allow_root_steps);
}

TEST(PackagedConfig, TheCommentedIssuerExampleNamesOnlyRealKeys) {
  // Uncomment "  # oauth:" and the issuer lines below it.
  std::istringstream in(packaged());
  std::string out, line;
  bool in_oauth = false;
  while (std::getline(in, line)) {
    if (line == "  # oauth:") in_oauth = true;
    else if (in_oauth && !line.starts_with("  #   ")) in_oauth = false;
    if (in_oauth) line = "  " + line.substr(4);
    out += line + "\n";
  }
  ASSERT_NE(out.find("\n  oauth:\n"), std::string::npos) << out;
  auto c = parse_config(out, {});
  ASSERT_TRUE(c) << c.error().message;
  ASSERT_EQ(c->auth.oauth.size(), 1u);
  EXPECT_EQ(c->auth.oauth[0].authorization_details_type, "delegate_runbook");
  EXPECT_EQ(c->auth.oauth[0].max_lifetime_s, 3600u);
}

}  // namespace
}  // namespace delegate::agent
