#include <gtest/gtest.h>

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

}  // namespace
}  // namespace delegate::connectors
