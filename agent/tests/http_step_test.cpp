// run_job with an http step, up to the point where the request would leave: what the
// agent builds from parameters (percent-encoded URL, header values that cannot split the
// request) and what it records before anything is sent.
#include <gtest/gtest.h>

#include <vector>

#include <delegate/agent/job_runner.hpp>
#include <delegate/audit/record.hpp>
#include <delegate/policies/runbook.hpp>

#include "runner_fixture.hpp"

namespace delegate::agent {
namespace {

class Sink final : public RecordSink {
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
  std::vector<audit::Record> records;
};

class HttpStepTest : public testing::RunnerFixture {
 protected:
  JobResult run_with(const std::string& t, Sink& sink) {
    auto rb = policies::parse_runbook(
        "name: api\nauthorize: {scopes: [runbooks:execute]}\nparams:\n  t: {type: string, required: true}\nsteps:\n"
        "  - name: call\n    uses: http\n    with:\n      url: \"https://api.example.com/t/${params.t}?q=${params.t}\"\n"
        "      headers: {X-Title: \"${params.t}\"}\n    sandbox: {egress: [api.example.com:443]}\n"
        "  - name: after\n    uses: command\n    with: {argv: [/bin/true]}\n");
    EXPECT_TRUE(rb) << rb.error().message;
    if (!rb) return {};
    catalog_.add(std::move(*rb));
    return run(job_json("api", Json{{"t", t}}), sink);
  }
};

TEST_F(HttpStepTest, AParameterCannotSplitTheRequestThroughAHeaderValue) {
  Sink sink;
  auto r = run_with("x\r\nX-Injected: yes", sink);
  EXPECT_EQ(r.status, "failed");
  auto ends = sink.of_kind(audit::Kind::step_end);
  ASSERT_EQ(ends.size(), 1u);  // the next step never started
  EXPECT_EQ(ends[0]["status"], "setup_failed");
  EXPECT_NE(ends[0]["error"].get<std::string>().find("header X-Title would contain CR, LF or NUL"), std::string::npos)
      << ends[0].dump();
}

TEST_F(HttpStepTest, UrlValuesArePercentEncodedAndRecordedAndAMissingProgramFailsClosed) {
  Sink sink;
  auto r = run_with("a/../admin?x=1&y", sink);
  EXPECT_EQ(r.status, "failed");
  auto starts = sink.of_kind(audit::Kind::step_start);
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0]["uses"], "http");
  EXPECT_EQ(starts[0]["http"]["url"], "https://api.example.com/t/a%2F..%2Fadmin%3Fx%3D1%26y?q=a%2F..%2Fadmin%3Fx%3D1%26y");
  auto ends = sink.of_kind(audit::Kind::step_end);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0]["status"], "setup_failed");
  EXPECT_NE(ends[0]["error"].get<std::string>().find("no http program"), std::string::npos) << ends[0].dump();
}

}  // namespace
}  // namespace delegate::agent
