// run_job with step outputs: read from stdout only, recorded in step.end, handed to the
// next step; a missing, invalid or possibly cut output fails the job before the next step.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <string>
#include <vector>

#include <delegate/agent/job_runner.hpp>
#include <delegate/audit/record.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/policies/api_keys.hpp>
#include <delegate/policies/job.hpp>
#include <delegate/policies/runbook.hpp>

#include "runner_fixture.hpp"

namespace delegate::agent {
namespace {

namespace fs = std::filesystem;

class KeepingSink final : public RecordSink {
 public:
  Result<void> append(const audit::Record& record) override {
    records.push_back(record);
    return {};
  }
  std::vector<Json> of_kind(audit::Kind kind) const {
    std::vector<Json> out;
    for (const auto& r : records) {
      if (r.kind == kind) out.push_back(r.data);
    }
    return out;
  }
  std::string stdout_of(const std::string& step) const {
    std::string out;
    for (const auto& d : of_kind(audit::Kind::output)) {
      if (d["step"] != step || d["stream"] != "stdout") continue;
      auto b = base64_decode(d["b64"].get<std::string>());
      if (b) out.append(b->begin(), b->end());
    }
    return out;
  }
  std::vector<audit::Record> records;
};

class JobOutputsTest : public testing::RunnerFixture {
 protected:
  // A runbook whose step `first` runs `script` (a /bin/sh script) declaring
  // `outputs_yaml`, then a step `second` that echoes ${steps.first.outputs.v}.
  JobResult run(const std::string& script, const std::string& outputs_yaml, KeepingSink& sink,
                const std::string& sandbox_yaml = "{}") {
    auto rb = policies::parse_runbook(
        "name: flow\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
        "  - name: first\n    uses: script\n    with: {script: '" + script + "', outputs: " + outputs_yaml + "}\n"
        "    sandbox: " + sandbox_yaml + "\n"
        "  - name: second\n    uses: command\n    with: {argv: [/bin/echo, 'got', '${steps.first.outputs.v}']}\n");
    EXPECT_TRUE(rb) << rb.error().message;
    if (!rb) return {};
    catalog_.add(std::move(*rb));
    return RunnerFixture::run(job_json("flow", Json::object()), sink);
  }
};

TEST_F(JobOutputsTest, TheNextStepGetsTheValueFromStdoutOnly) {
  KeepingSink sink;
  // The same prefix on stderr must not count: were stderr read, the line would be ambiguous.
  auto r = run("echo v=from-stderr >&2; echo v=INC-7", "{v: {line: v=, type: string}}", sink);
  ASSERT_EQ(r.status, "succeeded");
  auto ends = sink.of_kind(audit::Kind::step_end);
  ASSERT_EQ(ends.size(), 2u);
  EXPECT_EQ(ends[0]["outputs"], (Json{{"v", "INC-7"}}));
  EXPECT_FALSE(ends[1].contains("outputs"));
  EXPECT_EQ(sink.of_kind(audit::Kind::step_start).at(1)["argv"], (Json{"/bin/echo", "got", "INC-7"}));
  EXPECT_EQ(sink.stdout_of("second"), "got INC-7\n");
}

TEST_F(JobOutputsTest, AnInvalidOutputFailsTheJobBeforeTheNextStep) {
  KeepingSink sink;
  auto r = run("echo v=12x", "{v: {line: v=, type: integer}}", sink);
  EXPECT_EQ(r.status, "failed");
  auto ends = sink.of_kind(audit::Kind::step_end);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0]["exit_code"], 0);
  EXPECT_EQ(ends[0]["error"], "output first.v is not a decimal integer");
  EXPECT_EQ(sink.of_kind(audit::Kind::step_start).size(), 1u);
}

TEST_F(JobOutputsTest, AFailedStepRecordsNoOutputs) {
  KeepingSink sink;
  auto r = run("echo v=1; exit 4", "{v: {line: v=, type: integer}}", sink);
  EXPECT_EQ(r.status, "failed");
  auto ends = sink.of_kind(audit::Kind::step_end);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0]["exit_code"], 4);
  EXPECT_FALSE(ends[0].contains("outputs"));
  EXPECT_FALSE(ends[0].contains("error"));
}

TEST_F(JobOutputsTest, OutputCutAtTheLimitFailsClosed) {
  KeepingSink sink;
  // 4 KiB of noise, then the JSON line, under a 1 KiB output limit: the line the agent
  // would see last is not the step's last line.
  auto r = run("head -c 4096 /dev/zero | tr \"\\\\0\" x; echo; echo {\\\"v\\\":\\\"ok\\\"}", "{v: /v}", sink,
               "{output_kb: 1}");
  EXPECT_EQ(r.status, "failed");
  auto ends = sink.of_kind(audit::Kind::step_end);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_GT(ends[0]["bytes_dropped"].get<std::uint64_t>(), 0u);
  EXPECT_NE(ends[0]["error"].get<std::string>().find("cut at the sandbox's output limit"), std::string::npos)
      << ends[0].dump();
}

}  // namespace
}  // namespace delegate::agent
