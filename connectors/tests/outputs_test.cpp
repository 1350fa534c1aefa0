// Extracting step outputs from hostile stdout, and handing them to later steps.
#include <gtest/gtest.h>

#include <algorithm>

#include <delegate/connectors/outputs.hpp>
#include <delegate/connectors/step.hpp>

namespace delegate::connectors {
namespace {

// A one-step runbook (plus a consumer) declaring `outputs_yaml`.
policies::Runbook runbook(const std::string& outputs_yaml) {
  auto rb = policies::parse_runbook(
      "name: o\nauthorize: {scopes: [x]}\nsteps:\n"
      "  - {name: create, uses: command, with: {argv: [/bin/echo], outputs: " + outputs_yaml + "}}\n");
  EXPECT_TRUE(rb) << rb.error().message;
  return rb.value_or(policies::Runbook{});
}

// Feeds `chunks` as the sandbox would and returns finish()'s result.
Result<Json> extract(const policies::Runbook& rb, std::initializer_list<std::string_view> chunks, bool truncated = false) {
  OutputCapture cap(rb.steps.at(0));
  for (auto c : chunks) cap.feed(c);
  return cap.finish(truncated);
}

std::string err(const Result<Json>& r) { return r ? "(ok: " + r->dump() + ")" : r.error().message; }

TEST(OutputCapture, LineForm) {
  auto rb = runbook("{ticket: {line: 'ticket=', type: string, pattern: '^INC-[0-9]+$'},"
                    " n: {line: 'count: ', type: integer}, ok: {line: 'ok=', type: boolean}}");
  // A prefix split across chunks, CRLF line ends, a last line without '\n'.
  auto r = extract(rb, {"noise\ntick", "et=INC-42\r\ncount: 7\n", "ok=true"});
  ASSERT_TRUE(r) << err(r);
  EXPECT_EQ(*r, (Json{{"ticket", "INC-42"}, {"n", 7}, {"ok", true}}));
}

TEST(OutputCapture, JsonFormReadsTheLastNonEmptyLine) {
  auto rb = runbook("{id: /id, n: {json: /data/0/n, type: integer}, ok: {json: '/a~1b', type: boolean}}");
  auto r = extract(rb, {"{\"id\": \"old\"}\nprogress...\n", R"({"id":"T-9","data":[{"n":3}],"a/b":false})", "\n\n"});
  ASSERT_TRUE(r) << err(r);
  EXPECT_EQ(*r, (Json{{"id", "T-9"}, {"n", 3}, {"ok", false}}));
}

TEST(OutputCapture, MissingOutputsFail) {
  EXPECT_NE(err(extract(runbook("{t: {line: 't=', type: string}}"), {"x=1\n"})).find(
                "output create.t: no stdout line starts with \"t=\""),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{id: /id}"), {""})).find("printed no JSON line"), std::string::npos);
  EXPECT_NE(err(extract(runbook("{id: /id}"), {"{\"other\":1}\n"})).find("nothing at /id"), std::string::npos);
  EXPECT_NE(err(extract(runbook("{id: /0/x}"), {"[1]\n"})).find("nothing at /0/x"), std::string::npos);
  EXPECT_NE(err(extract(runbook("{id: /id}"), {"done.\n"})).find("is not a JSON document"), std::string::npos);
}

TEST(OutputCapture, AnAmbiguousLineFails) {
  // A step that echoes untrusted text must not let that text choose the value.
  auto r = extract(runbook("{t: {line: 't=', type: string}}"), {"t=good\nremote said: hi\nt=evil\n"});
  EXPECT_NE(err(r).find("2 stdout lines start with \"t=\" (exactly one must)"), std::string::npos) << err(r);
}

TEST(OutputCapture, WrongTypesAndPatternsFail) {
  EXPECT_NE(err(extract(runbook("{n: {line: 'n=', type: integer}}"), {"n=+5\n"})).find("not a decimal integer"),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{n: {line: 'n=', type: integer}}"), {"n=99999999999999999999\n"})).find("not a decimal"),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{n: {line: 'n=', type: integer}}"), {"n=9007199254740993\n"})).find("beyond +-(2^53-1)"),
            std::string::npos);
  EXPECT_TRUE(extract(runbook("{n: {line: 'n=', type: integer}}"), {"n=9007199254740991\n"}));
  EXPECT_NE(err(extract(runbook("{b: {line: 'b=', type: boolean}}"), {"b=yes\n"})).find("not true or false"),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{n: {json: /n, type: integer}}"), {"{\"n\":\"5\"}\n"})).find("must be an integer"),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{n: {json: /n, type: integer}}"), {"{\"n\":5.5}\n"})).find("must be an integer"),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{s: /s}"), {"{\"s\":{\"a\":1}}\n"})).find("must be a string"), std::string::npos);
  EXPECT_NE(err(extract(runbook("{s: {line: 's=', type: string, pattern: '^[a-z]+$'}}"), {"s=abc;rm\n"}))
                .find("output create.s does not match its pattern"),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{n: {json: /n, type: integer, min: 1}}"), {"{\"n\":0}\n"})).find("below the minimum"),
            std::string::npos);
}

TEST(OutputCapture, LeadingDashIsRefusedUnlessAllowed) {
  EXPECT_NE(err(extract(runbook("{s: /s}"), {"{\"s\":\"--output=/etc/passwd\"}\n"})).find("starts with '-'"),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{n: {line: 'n=', type: integer}}"), {"n=-1\n"})).find("negative"), std::string::npos);
  auto ok = extract(runbook("{s: {json: /s, type: string, allow_leading_dash: true}}"), {"{\"s\":\"-1d\"}\n"});
  ASSERT_TRUE(ok) << err(ok);
  EXPECT_EQ(ok->at("s"), "-1d");
}

TEST(OutputCapture, OversizeValuesFail) {
  const std::string big(policies::kMaxOutputValueBytes + 1, 'a');
  EXPECT_NE(err(extract(runbook("{t: {line: 't=', type: string, max_length: 4096}}"), {"t=" + big + "\n"}))
                .find("longer than 4096 bytes"),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{s: {json: /s, type: string, max_length: 4096}}"), {"{\"s\":\"" + big + "\"}\n"}))
                .find("longer than 4096 bytes"),
            std::string::npos);
  // The default cap is the parameters' 1024.
  EXPECT_NE(err(extract(runbook("{s: /s}"), {"{\"s\":\"" + std::string(1025, 'a') + "\"}\n"})).find("longer than 1024"),
            std::string::npos);
  const std::string exact(4096, 'b');
  auto r = extract(runbook("{t: {line: 't=', type: string, max_length: 4096}}"), {"t=" + exact + "\n"});
  ASSERT_TRUE(r) << err(r);
  EXPECT_EQ(r->at("t"), exact);
}

TEST(OutputCapture, HostileStdout) {
  // NUL bytes: in a line value, and JSON-escaped.
  EXPECT_NE(err(extract(runbook("{t: {line: 't=', type: string}}"), {std::string("t=a\0b\n", 6)})).find("NUL byte"),
            std::string::npos);
  EXPECT_NE(err(extract(runbook("{s: /s}"), {"{\"s\":\"a\\u0000b\"}\n"})).find("NUL byte"), std::string::npos);
  // Invalid UTF-8: a lone continuation byte, an overlong '/', a surrogate.
  for (std::string bad : {"t=\x80\n", "t=\xc0\xaf\n", "t=\xed\xa0\x80\n", "t=\xf4\x90\x80\x80\n"}) {
    EXPECT_NE(err(extract(runbook("{t: {line: 't=', type: string}}"), {bad})).find("not valid UTF-8"), std::string::npos)
        << bad;
  }
  EXPECT_NE(err(extract(runbook("{s: /s}"), {"{\"s\":\"\xff\"}\n"})).find("not a JSON document"), std::string::npos);
  auto utf8 = extract(runbook("{t: {line: 't=', type: string}}"), {"t=caf\xc3\xa9 \xf0\x9f\x94\xa5\n"});
  ASSERT_TRUE(utf8) << err(utf8);
  // A huge line (16 MiB, in chunks) is neither kept nor taken for a value, and memory
  // stays bounded; the value on the line after it is still found.
  auto rb = runbook("{t: {line: 't=', type: string}, j: /j}");
  OutputCapture cap(rb.steps.at(0));
  const std::string chunk(1 << 16, 'x');
  for (int i = 0; i < 256; ++i) cap.feed(chunk);
  cap.feed("\nt=after\n{\"j\":\"last\"}\n");
  auto r = cap.finish(false);
  ASSERT_TRUE(r) << err(r);
  EXPECT_EQ(*r, (Json{{"t", "after"}, {"j", "last"}}));
  // A huge line that starts with the prefix is an oversize value, not a truncated one.
  OutputCapture cap2(rb.steps.at(0));
  cap2.feed("t=");
  for (int i = 0; i < 256; ++i) cap2.feed(chunk);
  cap2.feed("\n{\"j\":\"x\"}\n");
  EXPECT_NE(err(cap2.finish(false)).find("output create.t is longer than 4096 bytes"), std::string::npos);
  // A huge last line is not parsed as the JSON document.
  OutputCapture cap3(rb.steps.at(0));
  cap3.feed("t=1\n{\"j\":\"");
  for (int i = 0; i < 256; ++i) cap3.feed(chunk);
  cap3.feed("\"}\n");
  EXPECT_NE(err(cap3.finish(false)).find("last stdout line is longer than 65536 bytes"), std::string::npos);
  // Duplicate keys in the JSON line: which one a reader sees is not for the step to decide.
  EXPECT_NE(err(extract(runbook("{s: /s}"), {"{\"s\":\"a\",\"s\":\"b\"}\n"})).find("duplicate key"), std::string::npos);
}

TEST(OutputCapture, TruncatedStdoutFailsClosed) {
  auto r = extract(runbook("{id: /id}"), {"{\"id\":\"x\"}\n"}, true);
  EXPECT_NE(err(r).find("cut at the sandbox's output limit"), std::string::npos) << err(r);
}

TEST(PrepareStepOutputs, SubstitutedIntoArgvAndEnv) {
  auto rb = policies::parse_runbook(
      "name: o\nauthorize: {scopes: [x]}\nsteps:\n"
      "  - {name: create, uses: command, with: {argv: [/bin/echo], outputs: {id: /id, n: {json: /n, type: integer}}}}\n"
      "  - {name: use, uses: command, with: {argv: [/bin/echo, '${steps.create.outputs.id}', "
      "'--n=${steps.create.outputs.n}']}, env: {TICKET: '${steps.create.outputs.id}'}}\n"
      "  - {name: script, uses: script, with: {script: 'echo \"$STEP_CREATE_ID\"', interpreter: [/bin/sh, -eu]}}\n");
  ASSERT_TRUE(rb) << rb.error().message;
  const Json outputs{{"create", {{"id", "INC-1; rm -rf / $(x)"}, {"n", 3}}}};
  auto p = prepare_step(rb->steps[1], 1, Json::object(), StepContext{"/tmp"}, outputs);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->spec.argv, (std::vector<std::string>{"/bin/echo", "INC-1; rm -rf / $(x)", "--n=3"}));
  EXPECT_NE(std::find(p->spec.env.begin(), p->spec.env.end(), "TICKET=INC-1; rm -rf / $(x)"), p->spec.env.end());
  EXPECT_EQ(p->audit.at("argv").at(1), "INC-1; rm -rf / $(x)");
  // Scripts: the value only as STEP_<STEP>_<NAME>, never in the script text.
  auto s = prepare_step(rb->steps[2], 2, Json::object(), StepContext{"/tmp"}, outputs);
  ASSERT_TRUE(s) << s.error().message;
  EXPECT_EQ(s->spec.argv, (std::vector<std::string>{"/bin/sh", "-eu", "-c", "echo \"$STEP_CREATE_ID\""}));
  EXPECT_NE(std::find(s->spec.env.begin(), s->spec.env.end(), "STEP_CREATE_ID=INC-1; rm -rf / $(x)"), s->spec.env.end());
  EXPECT_NE(std::find(s->spec.env.begin(), s->spec.env.end(), "STEP_CREATE_N=3"), s->spec.env.end());
  // Without the earlier step's outputs, the step does not run.
  EXPECT_FALSE(prepare_step(rb->steps[1], 1, Json::object(), StepContext{"/tmp"}));
}

TEST(PrepareStepOutputs, InterpreterArgumentsAreSubstituted) {
  // Before: the interpreter's argv went to the sandbox with the reference text in it.
  auto rb = policies::parse_runbook(
      "name: o\nauthorize: {scopes: [x]}\nparams: {mode: {type: string, default: x}}\nsteps:\n"
      "  - {name: s, uses: script, with: {script: 'echo \"$0\"', interpreter: [/bin/sh, -eu]}}\n"
      "  - {name: t, uses: script, with: {script: 'echo \"$1\"', interpreter: [/bin/bash, '--norc', '${params.mode}']}}\n");
  ASSERT_TRUE(rb) << rb.error().message;
  auto p = prepare_step(rb->steps[1], 1, Json{{"mode", "abc"}}, StepContext{"/tmp"});
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->spec.argv, (std::vector<std::string>{"/bin/bash", "--norc", "abc", "-c", "echo \"$1\""}));
}

}  // namespace
}  // namespace delegate::connectors
