#include <gtest/gtest.h>

#include <delegate/audit/jcs.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/policies/job.hpp>

namespace delegate::policies {
namespace {

Json J(const char* s) { return Json::parse(s); }

TEST(Job, ParsesDesignExample) {
  auto j = parse_job(J(R"({"id":"job_1","runbook":"restart-service","params":{"service":"nginx"},
    "incident":"IR-1234","timeout_s":300,"authorization":{"type":"oauth","token":"eyJ.x.y"}})"));
  ASSERT_TRUE(j.has_value()) << j.error().message;
  EXPECT_EQ(j->id, "job_1");
  EXPECT_EQ(j->runbook, "restart-service");
  EXPECT_EQ(j->params, J(R"({"service":"nginx"})"));
  EXPECT_EQ(j->incident, "IR-1234");
  EXPECT_EQ(j->timeout_s, 300u);
  EXPECT_EQ(j->credential.type, CredentialType::oauth);
  EXPECT_EQ(j->credential.secret, "eyJ.x.y");
  EXPECT_FALSE(j->has_inline_steps);
  EXPECT_TRUE(j->malformed.empty());
}

TEST(Job, ApiKeyAndDefaults) {
  auto j = parse_job(J(R"({"id":"a.b-c_d","runbook":"r","authorization":{"type":"api_key","key":"dlg.x.y"}})"));
  ASSERT_TRUE(j.has_value());
  EXPECT_EQ(j->credential.type, CredentialType::api_key);
  EXPECT_EQ(j->params, Json::object());
  EXPECT_EQ(j->timeout_s, 0u);
  EXPECT_TRUE(j->malformed.empty());
}

TEST(Job, NoAuthorizationIsNotMalformed) {
  for (const char* s : {R"({"id":"j","runbook":"r"})", R"({"id":"j","runbook":"r","authorization":null})"}) {
    auto j = parse_job(J(s));
    ASSERT_TRUE(j.has_value());
    EXPECT_EQ(j->credential.type, CredentialType::none);
    EXPECT_TRUE(j->malformed.empty()) << j->malformed;
  }
}

TEST(Job, UnrecoverableIdIsAnError) {
  for (const char* s : {R"([])", R"("job")", R"({})", R"({"id":5})", R"({"id":""})", R"({"id":"a b"})",
                        R"({"id":"../etc"})", R"({"runbook":"r"})"}) {
    EXPECT_FALSE(parse_job(J(s)).has_value()) << s;
  }
  EXPECT_FALSE(parse_job(Json{{"id", std::string(129, 'a')}}).has_value());
  EXPECT_TRUE(parse_job(Json{{"id", std::string(128, 'a')}}).has_value());
}

struct MalCase {
  const char* json;
  bool in_authorization;
};

class JobMalformed : public ::testing::TestWithParam<MalCase> {};

TEST_P(JobMalformed, RecordsReason) {
  auto j = parse_job(J(GetParam().json));
  ASSERT_TRUE(j.has_value()) << GetParam().json;
  EXPECT_FALSE(j->malformed.empty()) << GetParam().json;
  EXPECT_EQ(j->malformed_authorization, GetParam().in_authorization) << j->malformed;
  EXPECT_EQ(j->malformed.find('\n'), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Cases, JobMalformed,
    ::testing::Values(
        MalCase{R"({"id":"j","runbook":"r","authorization":"Bearer x"})", true},
        MalCase{R"({"id":"j","runbook":"r","authorization":{"type":"basic","token":"x"}})", true},
        MalCase{R"({"id":"j","runbook":"r","authorization":{"type":"oauth"}})", true},
        MalCase{R"({"id":"j","runbook":"r","authorization":{"type":"oauth","token":""}})", true},
        MalCase{R"({"id":"j","runbook":"r","authorization":{"type":"oauth","token":5}})", true},
        MalCase{R"({"id":"j","runbook":"r","authorization":{"type":"oauth","key":"x"}})", true},
        MalCase{R"({"id":"j","runbook":"r","authorization":{"type":"api_key","key":"x","extra":1}})", true},
        MalCase{R"({"id":"j","runbook":"r","authorization":{"token":"x"}})", true},
        // Credential defects win over other defects.
        MalCase{R"({"id":"j","runbook":5,"authorization":{"type":"x"}})", true},
        MalCase{R"({"id":"j"})", false},
        MalCase{R"({"id":"j","runbook":""})", false},
        MalCase{R"({"id":"j","runbook":["r"]})", false},
        MalCase{R"({"id":"j","runbook":"r","params":[]})", false},
        MalCase{R"({"id":"j","runbook":"r","params":"service=nginx"})", false},
        MalCase{R"({"id":"j","runbook":"r","incident":5})", false},
        MalCase{R"({"id":"j","runbook":"r","timeout_s":"300"})", false},
        MalCase{R"({"id":"j","runbook":"r","timeout_s":-1})", false},
        MalCase{R"({"id":"j","runbook":"r","timeout_s":86401})", false},
        MalCase{R"({"id":"j","runbook":"r","timeout_s":1.5})", false},
        MalCase{R"({"id":"j","runbook":"r","timeout_s":true})", false},
        MalCase{R"({"id":"j","runbook":"r","timeout_s":18446744073709551615})", false},
        MalCase{R"({"id":"j","runbook":"r","sudo":true})", false}));

TEST(Job, IncidentLength) {
  Json j = {{"id", "j"}, {"runbook", "r"}, {"incident", std::string(256, 'x')}};
  EXPECT_TRUE(parse_job(j)->malformed.empty());
  j["incident"] = std::string(257, 'x');
  EXPECT_FALSE(parse_job(j)->malformed.empty());
}

TEST(Job, TimeoutBounds) {
  EXPECT_EQ(parse_job(J(R"({"id":"j","runbook":"r","timeout_s":0})"))->timeout_s, 0u);
  EXPECT_EQ(parse_job(J(R"({"id":"j","runbook":"r","timeout_s":86400})"))->timeout_s, 86400u);
}

TEST(Job, InlineSteps) {
  auto j = parse_job(J(R"({"id":"j","runbook":"r","steps":[{"uses":"command"}]})"));
  ASSERT_TRUE(j.has_value());
  EXPECT_TRUE(j->has_inline_steps);
  EXPECT_TRUE(j->malformed.empty());
}

TEST(Job, DigestHidesSecretButBindsIt) {
  Json a = J(R"({"id":"j","runbook":"r","authorization":{"type":"api_key","key":"dlg.a.SECRET1"}})");
  Json b = J(R"({"runbook":"r","id":"j","authorization":{"key":"dlg.a.SECRET1","type":"api_key"}})");
  Json c = J(R"({"id":"j","runbook":"r","authorization":{"type":"api_key","key":"dlg.a.SECRET2"}})");
  std::string da = job_digest(a);
  EXPECT_EQ(da.size(), 64u);
  EXPECT_EQ(da, job_digest(b)) << "member order must not matter";
  EXPECT_NE(da, job_digest(c));
  // The digest equals the hash of the canonical form with the secret fingerprinted.
  Json redacted = a;
  redacted["authorization"]["key"] = "sha256:" + sha256_hex("dlg.a.SECRET1");
  auto canonical = audit::canonicalize(redacted);
  ASSERT_TRUE(canonical.has_value());
  EXPECT_EQ(da, sha256_hex(*canonical));
  EXPECT_EQ(canonical->find("SECRET1"), std::string::npos);
  EXPECT_NE(job_digest(a), job_digest(J(R"({"id":"j","runbook":"r2"})")));
  // Values JCS cannot represent still get a digest.
  EXPECT_EQ(job_digest(J(R"({"id":"j","n":18446744073709551615})")).size(), 64u);
}

}  // namespace
}  // namespace delegate::policies
