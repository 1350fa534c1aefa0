// run_job with an http step, up to the point where the request would leave: what the
// agent builds from parameters (percent-encoded URL, header values that cannot split the
// request) and what it records before anything is sent.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <vector>

#include <delegate/agent/job_runner.hpp>
#include <delegate/agent/secrets.hpp>
#include <delegate/audit/record.hpp>
#include <delegate/policies/job.hpp>
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

// The request process is what a hostile response may compromise: whatever it prints,
// the agent records the step as failed and goes on (here a stand-in that prints a
// result whose fields have the wrong types).
TEST_F(HttpStepTest, AResultWithWrongTypesFailsTheStepNotTheAgent) {
  // Steps have a private /tmp: the stand-in goes where their read-only host view shows it.
  const std::filesystem::path dir = "/var/tmp/delegate-http-result-" + std::to_string(::getpid());
  std::filesystem::create_directories(dir);
  const auto program = dir / "fake-http";
  {
    std::ofstream f(program);
    f << "#!/bin/sh\ncat >/dev/null\necho '{\"status\":\"200\",\"attempts\":[1]}'\n";
  }
  std::filesystem::permissions(program, std::filesystem::perms::owner_all | std::filesystem::perms::others_read |
                                            std::filesystem::perms::others_exec | std::filesystem::perms::group_read |
                                            std::filesystem::perms::group_exec);
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all | std::filesystem::perms::others_read |
                                        std::filesystem::perms::others_exec | std::filesystem::perms::group_read |
                                        std::filesystem::perms::group_exec);
  auto rb = policies::parse_runbook(
      "name: api\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
      "  - name: call\n    uses: http\n    with:\n      url: https://api.example.com/v1\n"
      "    sandbox: {egress: [api.example.com:443]}\n");
  ASSERT_TRUE(rb) << rb.error().message;
  catalog_.add(std::move(*rb));
  Sink sink;
  const Json raw = job_json("api", Json::object());
  auto job = policies::parse_job(raw);
  ASSERT_TRUE(job);
  connectors::StepContext ctx;
  ctx.work_parent = work_ / "work";
  ctx.http_program = program;
  RunnerDeps deps{*ident_, clock_, "agt_1", catalog_, std::make_shared<const policies::ApiKeyStore>(keys_),
                  policies::AuthorizerOptions{}, sink, ctx, filters_};
  JobControl control;
  EXPECT_EQ(run_job(raw, *job, deps, control).status, "failed");
  std::filesystem::remove_all(dir);
  auto ends = sink.of_kind(audit::Kind::step_end);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0]["status"], "failed");
  EXPECT_NE(ends[0]["error"].get<std::string>().find("malformed status"), std::string::npos) << ends[0].dump();
  EXPECT_EQ(sink.of_kind(audit::Kind::job_end).size(), 1u);
}


// Credentials come from secret stores (Vault among them) and token endpoints: a value
// with CR/LF must not split the request either, and the refusal does not quote it.
TEST_F(HttpStepTest, ACredentialWithALineBreakCannotSplitTheRequest) {
  const std::string injected = "tok-7f3a9\r\nX-Injected: yes";
  Config config;
  config.agent.state_dir = work_ / "state";
  auto store = SecretStore::open(config.agent.state_dir);
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_TRUE(store->set("API_TOKEN", injected));
  auto secrets = SecretResolver::create(config, "");
  ASSERT_TRUE(secrets) << secrets.error().message;
  auto rb = policies::parse_runbook(
      "name: api\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
      "  - name: call\n    uses: http\n    with:\n      url: https://api.example.com/v1\n"
      "      auth: {type: bearer, secret: API_TOKEN}\n    sandbox: {egress: [api.example.com:443]}\n");
  ASSERT_TRUE(rb) << rb.error().message;
  catalog_.add(std::move(*rb));
  Sink sink;
  const Json raw = job_json("api", Json::object());
  auto job = policies::parse_job(raw);
  ASSERT_TRUE(job);
  connectors::StepContext ctx;
  ctx.work_parent = work_ / "work";
  ctx.http_program = "/bin/true";  // never reached: the request is refused while it is built
  RunnerDeps deps{*ident_, clock_, "agt_1", catalog_, std::make_shared<const policies::ApiKeyStore>(keys_),
                  policies::AuthorizerOptions{}, sink, ctx, filters_, &*secrets};
  JobControl control;
  EXPECT_EQ(run_job(raw, *job, deps, control).status, "failed");
  auto ends = sink.of_kind(audit::Kind::step_end);
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0]["status"], "setup_failed");
  const std::string error = ends[0]["error"].get<std::string>();
  EXPECT_NE(error.find("header Authorization would contain CR, LF or NUL"), std::string::npos) << error;
  EXPECT_EQ(error.find("tok-7f3a9"), std::string::npos) << error;
}

}  // namespace
}  // namespace delegate::agent
