#include <gtest/gtest.h>

#include <delegate/common/crypto.hpp>
#include <delegate/policies/authorizer.hpp>

#include "test_util.hpp"

namespace delegate::policies {
namespace {

using testing::at;

const TimePoint kNow = at("2026-11-28T20:00:00Z");

const char* kRestart = R"(
name: restart-service
authorize: {scopes: [runbooks:execute], roles: [sre-oncall, sre-lead]}
params:
  service: {type: string, pattern: '^[a-z0-9@._-]{1,64}$', required: true}
steps:
  - {name: restart, uses: command, with: {argv: [systemctl, restart, "${params.service}"]}}
)";

const char* kNoRule = R"(
name: no-rule
steps:
  - {name: a, uses: command, with: {argv: [true]}}
)";

const char* kScopesOnly = R"(
name: scopes-only
authorize: {scopes: [runbooks:execute, runbooks:restart]}
steps:
  - {name: a, uses: command, with: {argv: [true]}}
)";

class AuthorizerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* y : {kRestart, kNoRule, kScopesOnly}) {
      auto rb = parse_runbook(y);
      ASSERT_TRUE(rb.has_value()) << rb.error().message;
      catalog.add(std::move(*rb));
    }
    oncall = keys.create("oncall", {"runbooks:execute"}, {"sre-oncall"}, at("2027-01-01T00:00:00Z"), kNow).value();
    noscope = keys.create("noscope", {"other"}, {"sre-oncall"}, std::nullopt, kNow).value();
    norole = keys.create("norole", {"runbooks:execute"}, {"dev"}, std::nullopt, kNow).value();
    revoked = keys.create("revoked", {"runbooks:execute"}, {"sre-oncall"}, std::nullopt, kNow).value();
    ASSERT_TRUE(keys.revoke("revoked"));
  }

  static Job job(const std::string& extra_json) {
    std::string s = R"({"id":"job_1","runbook":"restart-service","params":{"service":"nginx"}})";
    if (!extra_json.empty()) s.insert(s.size() - 1, "," + extra_json);
    auto j = parse_job(Json::parse(s));
    EXPECT_TRUE(j.has_value());
    return j.value_or(Job{});
  }
  static Job with_key(const std::string& key, const std::string& extra = "") {
    Json k = key;
    return job(R"("authorization":{"type":"api_key","key":)" + k.dump() + "}" + (extra.empty() ? "" : "," + extra));
  }

  Decision decide(const Job& j, TimePoint now = kNow, AuthorizerOptions opt = {}) const {
    return Authorizer(catalog, keys, opt).decide(j, now);
  }

  static void expect_deny(const Decision& d, Reason r) {
    EXPECT_FALSE(d.allow);
    ASSERT_TRUE(d.reason.has_value()) << "expected " << to_string(r);
    EXPECT_EQ(*d.reason, r) << "got " << to_string(*d.reason) << ": " << d.detail;
    EXPECT_EQ(d.runbook, nullptr);
  }

  Catalog catalog;
  ApiKeyStore keys;
  std::string oncall, noscope, norole, revoked;
};

TEST_F(AuthorizerTest, Allow) {
  Decision d = decide(with_key(oncall));
  ASSERT_TRUE(d.allow) << d.detail;
  EXPECT_FALSE(d.reason.has_value());
  EXPECT_EQ(d.method, "api_key");
  EXPECT_EQ(d.subject, "oncall");
  EXPECT_EQ(d.credential_fingerprint, sha256_hex(oncall));
  EXPECT_EQ(d.scopes, std::vector<std::string>{"runbooks:execute"});
  ASSERT_NE(d.runbook, nullptr);
  EXPECT_EQ(d.runbook->name, "restart-service");
  EXPECT_EQ(d.params, Json::parse(R"({"service":"nginx"})"));

  Json j = to_json(d);
  EXPECT_EQ(j["decision"], "allow");
  EXPECT_FALSE(j.contains("reason"));
  EXPECT_EQ(j["method"], "api_key");
  EXPECT_EQ(j["subject"], "oncall");
  EXPECT_EQ(j["scopes"], Json::parse(R"(["runbooks:execute"])"));
  EXPECT_EQ(j["roles"], Json::parse(R"(["sre-oncall"])"));
  EXPECT_EQ(j["credential_sha256"], sha256_hex(oncall));
  EXPECT_EQ(j.dump().find(oncall), std::string::npos) << "the secret must never be in the decision";
}

TEST_F(AuthorizerTest, AnAllowNamesTheSecretsEachStepWillReceiveNeverTheirValues) {
  auto rb = parse_runbook(R"(
name: page
authorize: {scopes: [runbooks:execute]}
steps:
  - name: plain
    uses: command
    with: {argv: [/bin/true]}
  - name: send
    uses: command
    with: {argv: [/bin/true]}
    env: {A: "${secrets.PD_KEY}", B: "x ${secrets.TICKET} ${secrets.PD_KEY}"}
)");
  ASSERT_TRUE(rb) << rb.error().message;
  catalog.add(std::move(*rb));
  auto page = [&](const Json& auth) {
    Json j{{"id", "job_1"}, {"runbook", "page"}, {"params", Json::object()}};
    if (!auth.is_null()) j["authorization"] = auth;
    auto parsed = parse_job(j);
    EXPECT_TRUE(parsed);
    return parsed.value_or(Job{});
  };
  Decision d = decide(page(Json{{"type", "api_key"}, {"key", oncall}}));
  ASSERT_TRUE(d.allow) << d.detail;
  EXPECT_EQ(to_json(d)["step_secrets"],
            Json::parse(R"([{"step":"send","index":1,"secrets":["PD_KEY","TICKET"]}])"));
  // Nothing to name: no key at all; a denial names nothing.
  EXPECT_FALSE(to_json(decide(with_key(oncall))).contains("step_secrets"));
  EXPECT_FALSE(to_json(decide(page(nullptr))).contains("step_secrets"));
}

TEST_F(AuthorizerTest, NoAuthorization) {
  Decision d = decide(job(""));
  expect_deny(d, Reason::no_authorization);
  EXPECT_EQ(d.method, "none");
  Json j = to_json(d);
  EXPECT_EQ(j["decision"], "deny");
  EXPECT_EQ(j["reason"], "no_authorization");
}

TEST_F(AuthorizerTest, TokenMalformed) {
  expect_deny(decide(job(R"("authorization":{"type":"magic","token":"x"})")), Reason::token_malformed);
  expect_deny(decide(job(R"("authorization":"dlg.x.y")")), Reason::token_malformed);
  expect_deny(decide(with_key("not-a-key")), Reason::token_malformed);
  Decision d = decide(with_key(oncall + "x"));
  expect_deny(d, Reason::token_malformed);
  EXPECT_EQ(d.detail.find(oncall), std::string::npos);
}

TEST_F(AuthorizerTest, OauthWithoutIssuerIsWrongIssuer) {
  Decision d = decide(job(R"("authorization":{"type":"oauth","token":"eyJhbGciOiJSUzI1NiJ9.e30.sig"})"));
  expect_deny(d, Reason::wrong_issuer);
  EXPECT_EQ(d.detail, "no OAuth issuer is configured on this agent");
  EXPECT_EQ(d.method, "oauth");
}

TEST_F(AuthorizerTest, OauthSeamUsesVerifier) {
  struct Fake final : TokenVerifier {
    TokenCheck verify(std::string_view token, const Job&, TimePoint) const override {
      if (token == "good") return {std::nullopt, "", {"alice", {"runbooks:execute"}, {"sre-lead"}}};
      return {Reason::bad_signature, "signature does not verify", {}};
    }
  } fake;
  AuthorizerOptions opt;
  opt.oauth = &fake;
  Decision ok = decide(job(R"("authorization":{"type":"oauth","token":"good"})"), kNow, opt);
  EXPECT_TRUE(ok.allow) << ok.detail;
  EXPECT_EQ(ok.subject, "alice");
  expect_deny(decide(job(R"("authorization":{"type":"oauth","token":"bad"})"), kNow, opt), Reason::bad_signature);
}

TEST_F(AuthorizerTest, ApiKeyUnknownExpiredRevoked) {
  std::string unknown = "dlg.ghost." + oncall.substr(std::string("dlg.oncall.").size());
  expect_deny(decide(with_key(unknown)), Reason::api_key_unknown);
  std::string wrong = oncall;
  wrong[wrong.size() - 2] = wrong[wrong.size() - 2] == 'A' ? 'B' : 'A';
  expect_deny(decide(with_key(wrong)), Reason::api_key_unknown);

  Decision e = decide(with_key(oncall), at("2027-01-01T00:00:00Z"));
  expect_deny(e, Reason::api_key_expired);
  EXPECT_EQ(e.subject, "oncall");
  FixedClock clock(at("2026-12-31T23:59:59Z"));
  EXPECT_TRUE(decide(with_key(oncall), clock.now()).allow);
  clock.set(at("2027-06-01T00:00:00Z"));
  expect_deny(decide(with_key(oncall), clock.now()), Reason::api_key_expired);

  Decision r = decide(with_key(revoked));
  expect_deny(r, Reason::api_key_revoked);
  EXPECT_EQ(r.subject, "revoked");
}

TEST_F(AuthorizerTest, UnknownRunbook) {
  Job missing = with_key(oncall);
  missing.runbook = "nope";
  Decision d = decide(missing);
  expect_deny(d, Reason::unknown_runbook);

  Job nr = with_key(oncall);
  nr.runbook = "no-rule";
  nr.params = Json::object();
  Decision n = decide(nr);
  expect_deny(n, Reason::unknown_runbook);
  EXPECT_EQ(n.detail, "runbook has no authorize rule (not runnable)");
}

TEST_F(AuthorizerTest, MissingScope) {
  Decision d = decide(with_key(noscope));
  expect_deny(d, Reason::missing_scope);
  EXPECT_NE(d.detail.find("runbooks:execute"), std::string::npos);

  Job j = with_key(oncall);
  j.runbook = "scopes-only";
  j.params = Json::object();
  Decision s = decide(j);
  expect_deny(s, Reason::missing_scope);
  EXPECT_NE(s.detail.find("runbooks:restart"), std::string::npos);
}

TEST_F(AuthorizerTest, RoleNotAllowed) { expect_deny(decide(with_key(norole)), Reason::role_not_allowed); }

TEST_F(AuthorizerTest, InvalidParams) {
  Job j = with_key(oncall);
  j.params = Json{{"service", "nginx; rm -rf /"}};
  Decision d = decide(j);
  expect_deny(d, Reason::invalid_params);
  EXPECT_NE(d.detail.find("service"), std::string::npos);

  j.params = Json::object();
  expect_deny(decide(j), Reason::invalid_params);
  // Structural defects outside the credential are invalid_params too.
  Job m = with_key(oncall, R"("timeout_s":"soon")");
  Decision md = decide(m);
  expect_deny(md, Reason::invalid_params);
  EXPECT_EQ(md.detail, m.malformed);
}

TEST_F(AuthorizerTest, InlineNotAllowed) {
  Job j = with_key(oncall, R"("steps":[{"uses":"command","with":{"argv":["id"]}}])");
  expect_deny(decide(j), Reason::inline_not_allowed);
  // Never replaced by the catalog runbook of the same name, whatever else holds.
  Job empty = with_key(oncall, R"("steps":[])");
  expect_deny(decide(empty), Reason::inline_not_allowed);
}

TEST_F(AuthorizerTest, OrderMalformedBeforeNoAuthorization) {
  expect_deny(decide(job(R"("timeout_s":-5)")), Reason::invalid_params);
  expect_deny(decide(job(R"("steps":[])")), Reason::no_authorization);
}

}  // namespace
}  // namespace delegate::policies
