// sandbox.egress in a runbook: strict host:port entries, canonical, bounded.
#include <gtest/gtest.h>

#include <delegate/policies/runbook.hpp>

namespace delegate::policies {
namespace {

Result<Runbook> with_sandbox(const std::string& block) {
  return parse_runbook("name: rb\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
                       "  - name: s\n    uses: command\n    with: {argv: [/bin/true]}\n    sandbox: " +
                       block + "\n");
}

std::string error_of(const std::string& block) {
  auto rb = with_sandbox(block);
  return rb ? std::string("(loaded)") : rb.error().message;
}

TEST(RunbookEgress, CanonicalEntriesAndTheNetworkProfile) {
  auto rb = with_sandbox(R"({egress: ["API.Example.com:443", "10.0.0.5:8443", "[2001:DB8::1]:443"]})");
  ASSERT_TRUE(rb) << rb.error().message;
  const auto& sb = rb->steps[0].sandbox;
  EXPECT_EQ(sb.egress, (std::vector<std::string>{"api.example.com:443", "10.0.0.5:8443", "[2001:db8::1]:443"}));
  EXPECT_FALSE(sb.network);
  EXPECT_EQ(sb.profile, "network");
  auto named = with_sandbox(R"({egress: ["a.example:443"], profile: strict})");
  ASSERT_TRUE(named) << named.error().message;
  EXPECT_EQ(named->steps[0].sandbox.profile, "strict");
  auto none = with_sandbox("{timeout_s: 5}");
  ASSERT_TRUE(none);
  EXPECT_TRUE(none->steps[0].sandbox.egress.empty());
  EXPECT_EQ(none->steps[0].sandbox.profile, "default");
}

TEST(RunbookEgress, InvalidEntriesAreErrorsNamingTheEntry) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({egress: "a.example:443"})", "steps[0].sandbox.egress: must be a list of host:port"},
      {R"({egress: ["a.example"]})", "steps[0].sandbox.egress[0]: missing ':port'"},
      {R"({egress: ["a.example:0"]})", "steps[0].sandbox.egress[0]: port must be 1..65535"},
      {R"({egress: ["a.example:65536"]})", "steps[0].sandbox.egress[0]: port must be 1..65535"},
      {R"({egress: ["a_b.example:443"]})", "steps[0].sandbox.egress[0]: host name may contain only"},
      {R"({egress: ["2001:db8::1:443"]})", "steps[0].sandbox.egress[0]: an IPv6 literal must be in brackets"},
      {R"({egress: ["ok.example:443", "OK.example:443"]})", "steps[0].sandbox.egress[1]: duplicate entry ok.example:443"},
      {R"({egress: ["${params.host}:443"]})", "steps[0].sandbox.egress[0]: an egress target cannot be a parameter"},
      {R"({egress: ["a.example:443"], network: true})", "steps[0].sandbox.egress: cannot be combined with network: true"},
      {R"({egress: [[a]]})", "steps[0].sandbox.egress[0]: must be a string"},
  };
  for (const auto& [block, want] : cases) {
    const auto err = error_of(block);
    EXPECT_NE(err.find(want), std::string::npos) << block << " -> " << err;
  }
}

TEST(RunbookEgress, AtMost32Entries) {
  std::string list;
  for (int i = 1; i <= 33; ++i) list += std::string(i > 1 ? ", " : "") + "\"h" + std::to_string(i) + ".example:443\"";
  EXPECT_NE(error_of("{egress: [" + list + "]}").find("at most 32 entries"), std::string::npos);
  const auto cut = list.rfind(", ");
  EXPECT_TRUE(with_sandbox("{egress: [" + list.substr(0, cut) + "]}"));
}

}  // namespace
}  // namespace delegate::policies
