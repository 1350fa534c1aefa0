// The runbooks shipped under examples/ are what operators copy: each must load with the
// agent's own strict loader, and ask for exactly the network and secrets it documents.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <set>

#include <delegate/policies/runbook.hpp>

namespace delegate::policies {
namespace {

const std::filesystem::path kExamples = DELEGATE_EXAMPLES_DIR;

std::set<std::string> secrets_of(const Runbook& rb) {
  std::set<std::string> out;
  for (const auto& st : rb.steps) out.insert(st.secrets.begin(), st.secrets.end());
  return out;
}

TEST(ExampleRunbooks, EveryOneLoadsWithTheStrictLoader) {
  auto catalog = Catalog::load_dir(kExamples / "runbooks");
  ASSERT_TRUE(catalog) << catalog.error().message;
  EXPECT_EQ(catalog->size(), 5u);
  for (const char* name : {"page-oncall", "ticket-open-update", "chat-notify", "collect-diagnostics",
                           "restart-and-verify"}) {
    const Runbook* rb = catalog->find(name);
    ASSERT_NE(rb, nullptr) << name;
    // Least privilege: every example says who may run it.
    EXPECT_TRUE(rb->authorize.has_value()) << name;
  }
}

TEST(ExampleRunbooks, NetworkIsOnlyTheListedEgressAndSecretsAreTheDocumentedOnes) {
  auto catalog = Catalog::load_dir(kExamples / "runbooks");
  ASSERT_TRUE(catalog) << catalog.error().message;
  for (const char* name : {"page-oncall", "ticket-open-update", "chat-notify", "collect-diagnostics",
                           "restart-and-verify"}) {
    for (const auto& st : catalog->find(name)->steps) {
      EXPECT_FALSE(st.sandbox.network) << name << "/" << st.name << ": host network";
      EXPECT_EQ(st.uses == StepKind::http, !st.sandbox.egress.empty()) << name << "/" << st.name;
    }
  }
  EXPECT_EQ(secrets_of(*catalog->find("page-oncall")), std::set<std::string>{"pd_routing_key"});
  EXPECT_EQ(secrets_of(*catalog->find("ticket-open-update")), std::set<std::string>{"jira_api_token"});
  EXPECT_EQ(secrets_of(*catalog->find("chat-notify")), std::set<std::string>{"chat_client_secret"});
  EXPECT_EQ(secrets_of(*catalog->find("restart-and-verify")), std::set<std::string>{});
  const auto& chat = catalog->find("chat-notify")->steps.front();
  EXPECT_EQ(chat.sandbox.egress, (std::vector<std::string>{"chat.example.com:443", "login.example.com:443"}));
}

TEST(ExampleRunbooks, TheDemoRunbookLoadsAndItsSecondStepUsesTheFirstStepsOutput) {
  auto catalog = Catalog::load_dir(kExamples / "demo");
  ASSERT_TRUE(catalog) << catalog.error().message;
  const Runbook* rb = catalog->find("incident-ticket");
  ASSERT_NE(rb, nullptr);
  ASSERT_EQ(rb->steps.size(), 3u);
  EXPECT_EQ(rb->steps[0].outputs.count("id"), 1u);
  EXPECT_NE(rb->steps[1].http.url.find("${steps.open.outputs.id}"), std::string::npos);
  EXPECT_EQ(secrets_of(*rb), std::set<std::string>{"ticket_api_key"});
}

}  // namespace
}  // namespace delegate::policies
