#pragma once
// What a run_job test needs: a working directory, an identity key, an API key allowed
// runbooks:execute, a catalog to add runbooks to, and a run() over any record sink.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>

#include <delegate/agent/job_runner.hpp>
#include <delegate/policies/api_keys.hpp>
#include <delegate/policies/job.hpp>
#include <delegate/policies/runbook.hpp>

namespace delegate::agent::testing {

class RunnerFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    work_ = std::filesystem::temp_directory_path() /
            ("delegate-runner-" + std::to_string(::getpid()) + "-" +
             ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(work_ / "work");
    auto key = keys_.create("ops", {"runbooks:execute"}, {}, std::nullopt, clock_.now());
    ASSERT_TRUE(key) << key.error().message;
    api_key_ = *key;
    auto ident = Ed25519PrivateKey::generate();
    ASSERT_TRUE(ident);
    ident_ = std::make_unique<Ed25519PrivateKey>(std::move(*ident));
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(work_, ec);
  }

  // The job as the control plane would send it, authorised with the fixture's API key.
  Json job_json(const std::string& runbook, const Json& params) const {
    return Json{{"id", "job_1"},
                {"runbook", runbook},
                {"params", params},
                {"authorization", {{"type", "api_key"}, {"key", api_key_}}}};
  }

  JobResult run(const Json& raw, RecordSink& sink) {
    auto job = policies::parse_job(raw);
    EXPECT_TRUE(job) << job.error().message;
    if (!job) return {};
    connectors::StepContext ctx;
    ctx.work_parent = work_ / "work";
    RunnerDeps deps{*ident_, clock_, "agt_1", catalog_, std::make_shared<const policies::ApiKeyStore>(keys_),
                    policies::AuthorizerOptions{}, sink, ctx, filters_};
    JobControl control;
    return run_job(raw, *job, deps, control);
  }

  std::filesystem::path work_;
  FixedClock clock_{std::chrono::system_clock::now()};
  policies::Catalog catalog_;
  policies::ApiKeyStore keys_;
  std::string api_key_;
  std::unique_ptr<Ed25519PrivateKey> ident_;
  FilterCache filters_;
};

}  // namespace delegate::agent::testing
