#include <gtest/gtest.h>

#include <map>

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

TEST(RunbookSecrets, SecretFilesTakeExactlyOneReferenceAndTheStepListsThem) {
  auto rb = parse_runbook(with_step(
      "    uses: command\n    with: {argv: [/bin/true], secret_files: {pd_key.txt: \"${secrets.PD_KEY}\", "
      "ca-2.pem: \"${secrets.CA}\"}}\n    env: {A: \"${secrets.PD_KEY}\"}\n"));
  ASSERT_TRUE(rb.has_value()) << rb.error().message;
  EXPECT_EQ(rb->steps[0].secret_files,
            (std::map<std::string, std::string>{{"pd_key.txt", "PD_KEY"}, {"ca-2.pem", "CA"}}));
  EXPECT_EQ(rb->steps[0].secrets, (std::vector<std::string>{"PD_KEY", "CA"}));  // document order
  auto script = parse_runbook(with_step("    uses: script\n    with: {script: \"cat $DELEGATE_SECRETS_DIR/k\", "
                                        "secret_files: {k: \"${secrets.K}\"}}\n"));
  ASSERT_TRUE(script.has_value()) << script.error().message;

  for (const std::string& bad : std::vector<std::string>{
           "{\".hidden\": \"${secrets.A}\"}", "{\"../x\": \"${secrets.A}\"}", "{\"a/b\": \"${secrets.A}\"}",
           "{\"" + std::string(65, 'f') + "\": \"${secrets.A}\"}", "{k: \"x${secrets.A}\"}",
           "{k: \"${secrets.A}${secrets.B}\"}", "{k: \"${secrets.A} \"}", "{k: \"${secrets.a-b}\"}", "{k: plain}",
           "{\"${secrets.A}\": \"${secrets.A}\"}", "{}", "[\"${secrets.A}\"]", "{k: [\"${secrets.A}\"]}"}) {
    auto r = parse_runbook(with_step("    uses: command\n    with: {argv: [/bin/true], secret_files: " + bad + "}\n"));
    ASSERT_FALSE(r.has_value()) << bad;
    EXPECT_NE(r.error().message.find("secret_files"), std::string::npos) << r.error().message;
    EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().message;
  }
  // A secret reference elsewhere in `with` stays refused when secret_files is present.
  auto argv = parse_runbook(with_step("    uses: command\n    with: {argv: [/bin/echo, \"${secrets.A}\"], "
                                      "secret_files: {k: \"${secrets.A}\"}}\n"));
  ASSERT_FALSE(argv.has_value());
  EXPECT_NE(argv.error().message.find("may only be used"), std::string::npos) << argv.error().message;
}

}  // namespace
}  // namespace delegate::policies
