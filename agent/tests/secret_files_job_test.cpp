// run_job with with.secret_files: the step reads its secret from /run/secrets, the
// content is masked in the records, step.start names the files and the secret (by
// fingerprint), authz.decision names the secret, and the next step sees no file.
#include <gtest/gtest.h>

#include <delegate/agent/job_runner.hpp>
#include <delegate/agent/secrets.hpp>
#include <delegate/audit/record.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/policies/job.hpp>

#include "runner_fixture.hpp"

namespace delegate::agent {
namespace {

const std::string kKey = "pd-file-key/0c9e+SECRET==";

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

class SecretFilesJobTest : public testing::RunnerFixture {};

TEST_F(SecretFilesJobTest, TheStepReadsTheFileItsContentIsMaskedAndTheNextStepSeesNothing) {
  Config config;
  config.agent.state_dir = work_ / "state";
  auto store = SecretStore::open(config.agent.state_dir);
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_TRUE(store->set("PD_KEY", kKey));
  auto secrets = SecretResolver::create(config, "");
  ASSERT_TRUE(secrets) << secrets.error().message;

  auto rb = policies::parse_runbook(
      "name: page\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
      "  - name: send\n    uses: script\n"
      "    with: {script: 'cat \"$DELEGATE_SECRETS_DIR/pd_key.txt\"; echo; od -An -c /run/secrets/pd_key.txt | head -1 >&2;"
      " env | grep -c 0c9e || true', secret_files: {pd_key.txt: \"${secrets.PD_KEY}\"}}\n"
      "  - name: after\n    uses: command\n    with: {argv: [/bin/ls, /run/secrets]}\n");
  ASSERT_TRUE(rb) << rb.error().message;
  catalog_.add(std::move(*rb));

  Sink sink;
  const Json raw = job_json("page", Json::object());
  auto job = policies::parse_job(raw);
  ASSERT_TRUE(job);
  connectors::StepContext ctx;
  ctx.work_parent = work_ / "work";
  RunnerDeps deps{*ident_, clock_, "agt_1", catalog_, std::make_shared<const policies::ApiKeyStore>(keys_),
                  policies::AuthorizerOptions{}, sink, ctx, filters_, &*secrets};
  JobControl control;
  const auto result = run_job(raw, *job, deps, control);
  EXPECT_EQ(result.status, "failed");  // `after` finds no /run/secrets and ls exits non-zero

  EXPECT_EQ(sink.stdout_of("send"), "***\n0\n");  // read byte for byte, masked; not in env
  auto starts = sink.of_kind(audit::Kind::step_start);
  ASSERT_EQ(starts.size(), 2u);
  EXPECT_EQ(starts[0]["secret_files"], Json::parse(R"(["pd_key.txt"])"));
  ASSERT_EQ(starts[0]["secrets"].size(), 1u);
  EXPECT_EQ(starts[0]["secrets"][0]["name"], "PD_KEY");
  EXPECT_EQ(starts[0]["secrets"][0]["fingerprint"], secrets->fingerprint(kKey));
  EXPECT_FALSE(starts[1].contains("secret_files"));
  auto ends = sink.of_kind(audit::Kind::step_end);
  ASSERT_EQ(ends.size(), 2u);
  EXPECT_EQ(ends[0]["exit_code"], 0);
  EXPECT_NE(ends[1]["exit_code"], 0);
  EXPECT_EQ(sink.of_kind(audit::Kind::authz_decision)[0]["step_secrets"],
            Json::parse(R"([{"step":"send","index":0,"secrets":["PD_KEY"]}])"));
  for (const auto& r : sink.records) {
    const std::string dumped = r.data.dump();
    EXPECT_EQ(dumped.find("pd-file-key"), std::string::npos) << dumped;
    EXPECT_EQ(dumped.find(base64_encode(as_bytes(std::string_view(kKey)))), std::string::npos) << dumped;
  }
}

}  // namespace
}  // namespace delegate::agent
