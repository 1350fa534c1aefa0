#include <gtest/gtest.h>

#include <delegate/policies/runbook.hpp>

namespace delegate::policies {
namespace {

std::string with_step(const std::string& step_body, const std::string& top = "") {
  return "name: rb\nauthorize: {scopes: [x]}\n" + top + "steps:\n  - name: deploy\n" + step_body;
}

TEST(RunbookSecrets, EnvValuesMayReferenceSecretsAndTheStepListsThem) {
  auto rb = parse_runbook(with_step(
      "    uses: command\n    with: {argv: [/bin/true]}\n"
      "    env: {TOKEN: \"${secrets.API_TOKEN}\", AUTH: \"Bearer ${secrets.API_TOKEN} ${secrets.other_1}\"}\n"));
  ASSERT_TRUE(rb.has_value()) << rb.error().message;
  EXPECT_EQ(rb->steps[0].secrets, (std::vector<std::string>{"API_TOKEN", "other_1"}));
}

TEST(RunbookSecrets, RefusedEverywhereButEnvValuesNamingTheStep) {
  const std::vector<std::string> bodies = {
      "    uses: command\n    with: {argv: [/usr/bin/curl, \"-H\", \"Authorization: ${secrets.TOKEN}\"]}\n",
      "    uses: command\n    with: {argv: [\"${secrets.TOKEN}\"]}\n",
      "    uses: script\n    with: {script: \"echo ${secrets.TOKEN}\"}\n",
      "    uses: script\n    with: {script: \"echo hi\", interpreter: [/bin/sh, \"${secrets.TOKEN}\"]}\n",
      "    uses: command\n    with: {argv: [/bin/true]}\n    sandbox: {ro: [\"/srv/${secrets.TOKEN}\"]}\n",
      "    uses: command\n    with: {argv: [/bin/true]}\n    env: {\"${secrets.TOKEN}\": x}\n",
      "    uses: command\n    with: {argv: [/bin/true]}\n    env: {LD_PRELOAD: \"${secrets.TOKEN}\"}\n",
  };
  for (const auto& body : bodies) {
    auto rb = parse_runbook(with_step(body));
    ASSERT_FALSE(rb.has_value()) << body;
    EXPECT_NE(rb.error().message.find("step \"deploy\""), std::string::npos) << rb.error().message;
    EXPECT_EQ(rb.error().message.find('\n'), std::string::npos) << rb.error().message;
  }
  // Outside steps too (a default that would end up in argv).
  auto rb = parse_runbook(with_step("    uses: command\n    with: {argv: [/bin/true]}\n",
                                    "params:\n  p: {type: string, default: \"${secrets.TOKEN}\"}\n"));
  ASSERT_FALSE(rb.has_value());
  EXPECT_NE(rb.error().message.find("params.p.default"), std::string::npos) << rb.error().message;
}

TEST(RunbookSecrets, MalformedReferencesAreErrors) {
  for (std::string v : {"${secrets.}", "${secrets.a-b}", "${secrets.TOKEN", "${secrets.9x}"}) {
    auto rb = parse_runbook(with_step("    uses: command\n    with: {argv: [/bin/true]}\n    env: {A: \"" + v + "\"}\n"));
    EXPECT_FALSE(rb.has_value()) << v;
  }
}

}  // namespace
}  // namespace delegate::policies
