// Step outputs in the runbook schema: declarations, references, checks of values.
#include <gtest/gtest.h>

#include <delegate/policies/runbook.hpp>

namespace delegate::policies {
namespace {

// A runbook whose first step declares outputs and whose second step uses `use_yaml`
// (a YAML flow mapping for the second step's body after "name: use, ").
std::string two_steps(const std::string& outputs_yaml, const std::string& use_yaml) {
  return "name: o\nauthorize: {scopes: [x]}\nsteps:\n"
         "  - {name: create, uses: command, with: {argv: [/bin/echo, hi], outputs: " + outputs_yaml + "}}\n"
         "  - {name: use, " + use_yaml + "}\n";
}

std::string error_of(const std::string& yaml) {
  auto rb = parse_runbook(yaml);
  return rb ? std::string("(parsed)") : rb.error().message;
}

TEST(RunbookOutputs, ParsesEveryForm) {
  auto rb = parse_runbook(two_steps(
      "{ticket: /id, n: {json: /count, type: integer, min: 0}, ok: {line: 'ok=', type: boolean},"
      " ref: {line: 'ticket=', type: string, pattern: '^[A-Z]+-[0-9]+$', max_length: 32}}",
      "uses: command, with: {argv: [/bin/echo, '${steps.create.outputs.ticket}', 'n=${steps.create.outputs.n}']},"
      " env: {REF: '${steps.create.outputs.ref}'}"));
  ASSERT_TRUE(rb) << rb.error().message;
  const auto& out = rb->steps[0].outputs;
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out.at("ticket").source, OutputSource::json);
  EXPECT_EQ(out.at("ticket").selector, "/id");
  EXPECT_EQ(out.at("ticket").value.type, ParamType::string);
  EXPECT_EQ(out.at("n").value.type, ParamType::integer);
  EXPECT_EQ(out.at("n").value.min, 0);
  EXPECT_EQ(out.at("ok").source, OutputSource::line);
  EXPECT_EQ(out.at("ok").selector, "ok=");
  EXPECT_TRUE(out.at("ref").value.compiled.has_value());
  EXPECT_EQ(out.at("ref").value.max_length, 32u);
}

TEST(RunbookOutputs, ScriptStepsDeclareOutputsAndReadThemFromEnv) {
  auto rb = parse_runbook(
      "name: o\nauthorize: {scopes: [x]}\nsteps:\n"
      "  - {name: make-id, uses: script, with: {script: 'echo id=7', outputs: {id: {line: 'id=', type: integer}}}}\n"
      "  - {name: use, uses: script, with: {script: 'echo \"$STEP_MAKE_ID_ID\"'}, env: {X: '${steps.make-id.outputs.id}'}}\n");
  ASSERT_TRUE(rb) << rb.error().message;
  EXPECT_EQ(output_env_name("make-id", "id"), "STEP_MAKE_ID_ID");
}

struct Bad {
  std::string yaml;
  const char* expect;
};

class RunbookOutputsReject : public ::testing::TestWithParam<Bad> {};

TEST_P(RunbookOutputsReject, WithOneLineError) {
  const std::string err = error_of(GetParam().yaml);
  EXPECT_NE(err.find(GetParam().expect), std::string::npos) << "got: " << err << "\nwant: " << GetParam().expect;
  EXPECT_EQ(err.find('\n'), std::string::npos) << err;
}

const std::string kUse = "uses: command, with: {argv: [/bin/echo, ";

INSTANTIATE_TEST_SUITE_P(
    Cases, RunbookOutputsReject,
    ::testing::Values(
        // References: an earlier step, a declared output, well formed.
        Bad{two_steps("{id: /id}", kUse + "'${steps.nope.outputs.id}']}"), "no earlier step is named nope"},
        Bad{two_steps("{id: /id}", kUse + "'${steps.create.outputs.other}']}"), "step create declares no output other"},
        Bad{two_steps("{id: /id}", kUse + "'${steps.use.outputs.id}']}"), "no earlier step is named use"},
        Bad{"name: o\nsteps:\n  - {name: a, uses: command, with: {argv: [/bin/echo, '${steps.b.outputs.id}']}}\n"
            "  - {name: b, uses: command, with: {argv: [/bin/echo], outputs: {id: /id}}}\n",
            "steps[0].with.argv[1]: references ${steps.b.outputs.id} but no earlier step is named b"},
        Bad{two_steps("{id: /id}", kUse + "'${steps.create.id}']}"), "malformed step output reference"},
        Bad{two_steps("{id: /id}", kUse + "'${steps.create.outputs.id']}"), "unterminated ${steps."},
        Bad{two_steps("{id: /id}", "uses: command, with: {argv: [/bin/echo]}, env: {X: '${steps.create.outputs.nope}'}"),
            "steps[1].env.X: references ${steps.create.outputs.nope}"},
        // Never into a shell string, the program, control variables or mounts.
        Bad{two_steps("{id: /id}", "uses: script, with: {script: 'echo ${steps.create.outputs.id}'}"),
            "cannot be substituted into script text"},
        Bad{two_steps("{id: /id}", "uses: command, with: {argv: [/bin/sh, -c, 'echo ${steps.create.outputs.id}']}"),
            "steps[1].with.argv[2]: step outputs cannot be substituted into a shell command string"},
        Bad{two_steps("{id: /id}", "uses: command, with: {argv: [bash, -ec, 'x ${steps.create.outputs.id}']}"),
            "shell command string"},
        Bad{two_steps("{id: /id}", "uses: command, with: {argv: ['${steps.create.outputs.id}']}"),
            "the program cannot be a parameter or step output"},
        Bad{two_steps("{id: /id}", "uses: command, with: {argv: [/bin/true]}, env: {PATH: '${steps.create.outputs.id}'}"),
            "loader/shell control variables"},
        Bad{two_steps("{id: /id}", "uses: command, with: {argv: [/bin/true]}, sandbox: {ro: ['/${steps.create.outputs.id}']}"),
            "a mount path cannot be a parameter or step output"},
        // Declarations.
        Bad{two_steps("{id: {json: /id, type: float}}", kUse + "x]}"), "outputs.id.type: must be string, integer or boolean"},
        Bad{two_steps("{id: {json: /id}}", kUse + "x]}"), "outputs.id.type: missing"},
        Bad{two_steps("{id: {json: /id, line: 'id=', type: string}}", kUse + "x]}"), "needs exactly one of json or line"},
        Bad{two_steps("{id: {type: string}}", kUse + "x]}"), "needs exactly one of json or line"},
        Bad{two_steps("{id: {json: /id, type: string, default: x}}", kUse + "x]}"), "outputs.id.default: unknown key"},
        Bad{two_steps("{id: {json: /id, type: string, required: true}}", kUse + "x]}"), "outputs.id.required: unknown key"},
        Bad{two_steps("{id: id}", kUse + "x]}"), "must be a JSON Pointer"},
        Bad{two_steps("{id: ''}", kUse + "x]}"), "must be a JSON Pointer"},
        Bad{two_steps("{id: '/a~2b'}", kUse + "x]}"), "is not a valid JSON Pointer"},
        Bad{two_steps("{id: {line: '', type: string}}", kUse + "x]}"), "outputs.id.line: must be 1..256"},
        Bad{two_steps("{id: {line: \"a\\tb\", type: string}}", kUse + "x]}"), "must be printable ASCII"},
        Bad{two_steps("{1id: /id}", kUse + "x]}"), "output names must match"},
        Bad{two_steps("{}", kUse + "x]}"), "must declare 1..16 outputs"},
        Bad{two_steps("{id: {json: /id, type: string, max_length: 4097}}", kUse + "x]}"), "outputs.id.max_length"},
        Bad{two_steps("{id: {json: /id, type: boolean, allow_leading_dash: true}}", kUse + "x]}"),
            "only applies to string or integer outputs"},
        Bad{two_steps("{id: {json: /id, type: integer, pattern: x}}", kUse + "x]}"), "only applies to string outputs"},
        Bad{"name: o\nsteps:\n  - {name: 'has space', uses: command, with: {argv: [/bin/echo], outputs: {id: /id}}}\n",
            "a step with outputs must be named"},
        Bad{"name: o\nsteps:\n  - {name: a-b, uses: command, with: {argv: [/bin/echo], outputs: {c: /c}}}\n"
            "  - {name: a, uses: command, with: {argv: [/bin/echo], outputs: {B_C: /c}}}\n",
            "environment name STEP_A_B_C is also that of output a-b.c"}));

TEST(RunbookOutputs, CheckOutputUsesTheParameterChecks) {
  auto rb = parse_runbook(two_steps(
      "{s: {json: /s, type: string, pattern: '^[a-z]+$'}, d: {json: /d, type: string, allow_leading_dash: true},"
      " n: {json: /n, type: integer, max: 10}, neg: {json: /neg, type: integer, allow_leading_dash: true},"
      " plain: /p}",
      kUse + "x]}"));
  ASSERT_TRUE(rb) << rb.error().message;
  const auto& o = rb->steps[0].outputs;
  EXPECT_TRUE(check_output("create", "s", o.at("s"), Json("abc")));
  EXPECT_FALSE(check_output("create", "s", o.at("s"), Json("ABC")));       // pattern
  EXPECT_FALSE(check_output("create", "s", o.at("s"), Json(5)));           // type
  EXPECT_FALSE(check_output("create", "n", o.at("n"), Json(11)));          // bounds
  EXPECT_FALSE(check_output("create", "n", o.at("n"), Json("5")));         // no coercion
  EXPECT_FALSE(check_output("create", "n", o.at("n"), Json(-1)));          // a negative number is an option
  EXPECT_TRUE(check_output("create", "neg", o.at("neg"), Json(-1)));
  auto dash = check_output("create", "plain", o.at("plain"), Json("--upload-file=/etc/shadow"));
  ASSERT_FALSE(dash);
  EXPECT_EQ(dash.error().message, "output create.plain starts with '-' (allow_leading_dash is not set)");
  EXPECT_TRUE(check_output("create", "d", o.at("d"), Json("-1d")));
  EXPECT_FALSE(check_output("create", "plain", o.at("plain"), Json(std::string("a\0b", 3))));
  EXPECT_FALSE(check_output("create", "plain", o.at("plain"), Json(std::string(4097, 'a'))));
  EXPECT_FALSE(check_output("create", "plain", o.at("plain"), Json::object()));
}

TEST(RunbookOutputs, SubstituteReadsRecordedOutputs) {
  const Json params{{"host", "db1"}};
  const Json outputs{{"create", {{"id", "T-1"}, {"n", 3}, {"ok", true}}}};
  EXPECT_EQ(substitute("${steps.create.outputs.id}", params, outputs).value(), "T-1");
  EXPECT_EQ(substitute("--n=${steps.create.outputs.n},${steps.create.outputs.ok}@${params.host}", params, outputs).value(),
            "--n=3,true@db1");
  EXPECT_EQ(substitute("${stepsX} ${steps}", params, outputs).value(), "${stepsX} ${steps}");
  EXPECT_FALSE(substitute("${steps.create.outputs.other}", params, outputs));
  EXPECT_FALSE(substitute("${steps.later.outputs.id}", params, outputs));
  EXPECT_FALSE(substitute("${steps.create.outputs.id}", params));
}

}  // namespace
}  // namespace delegate::policies
