// `delegate-agent check-job` as a command: the real binary against a real control
// plane's development issuer (its JWKS over TLS 1.3). Exit 0 = allow, 3 = deny, 2 =
// unusable input; stdout is one JSON object whatever the token contained.
#include <gtest/gtest.h>

#include <delegate/common/encoding.hpp>
#include <delegate/common/strict.hpp>

#include "harness.hpp"

namespace delegate::testing {
namespace {

class CheckJob : public ::testing::Test {
 protected:
  void SetUp() override {
    cp_ = std::make_unique<ControlPlane>(tmp_.path / "cp");
    config_ = (cp_->dir() / "agent.yaml").string();
  }

  std::string token(const std::string& extra_form = "") {
    const std::string secret =
        Json::parse(read_text(cp_->dir() / "oauth-clients.json"))["clients"][0]["client_secret"];
    std::vector<std::string> argv{"/usr/bin/curl", "-s", "--fail", "--cacert", (cp_->dir() / "ca.pem").string(),
                                  "-u", "incident-bot:" + secret, "--data-urlencode", "grant_type=client_credentials"};
    if (!extra_form.empty()) argv.insert(argv.end(), {"--data-urlencode", extra_form});
    argv.push_back(cp_->url() + "/oauth/token");
    auto r = run(argv);
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return Json::parse(r.out)["access_token"];
  }

  static std::string oauth_job(const std::string& tok, const std::string& runbook = "host-diagnostics") {
    return Json{{"id", "job-1"}, {"runbook", runbook}, {"authorization", {{"type", "oauth"}, {"token", tok}}}}.dump();
  }

  RunResult check(const std::string& job_text, const std::string& config = "") {
    const auto file = tmp_.path / "job.json";
    write_text(file, job_text);
    return run({Bins::agent(), "check-job", "--config", config.empty() ? config_ : config, "--job", file.string()});
  }

  // The command's stdout must be exactly one JSON object on one line.
  static Json output(const RunResult& r) {
    auto j = parse_json_strict(r.out.substr(0, r.out.find('\n')));
    EXPECT_TRUE(j && j->is_object()) << r.out;
    EXPECT_EQ(r.out.find('\n'), r.out.size() - 1) << r.out;
    return j ? *j : Json();
  }

  // Re-signs nothing: swaps the header of `tok` for `header_bytes` (any bytes).
  static std::string with_header(const std::string& tok, const std::string& header_bytes) {
    return base64url_encode(as_bytes(header_bytes)) + tok.substr(tok.find('.'));
  }

  TempDir tmp_;
  std::unique_ptr<ControlPlane> cp_;
  std::string config_;
};

TEST_F(CheckJob, AllowExitsZeroWithTheDecisionAndDenyExitsThree) {
  const std::string tok = token();
  auto allow = check(oauth_job(tok));
  ASSERT_EQ(allow.exit_code, 0) << allow.out << allow.err;
  Json a = output(allow);
  EXPECT_EQ(a["decision"], "allow");
  EXPECT_EQ(a["method"], "oauth");
  EXPECT_EQ(a["subject"], "incident-bot");
  EXPECT_EQ(a["job"], "job-1");
  EXPECT_EQ(a["runbook"], "host-diagnostics");
  EXPECT_EQ(a["params"], Json::parse(R"({"detail":"basic"})"));
  // Offline evaluation does not consume the jti: the same token is allowed again.
  EXPECT_EQ(check(oauth_job(tok)).exit_code, 0);

  // Altered claim under the issuer's signature: denied by the signature.
  const auto d1 = tok.find('.'), d2 = tok.rfind('.');
  const auto payload = base64url_decode(tok.substr(d1 + 1, d2 - d1 - 1));
  ASSERT_TRUE(payload);
  auto claims = Json::parse(payload->begin(), payload->end());
  claims["roles"] = Json::array({"sre-oncall", "admin"});
  const std::string altered = tok.substr(0, d1 + 1) + base64url_encode(as_bytes(claims.dump())) + tok.substr(d2);
  auto deny = check(oauth_job(altered));
  EXPECT_EQ(deny.exit_code, 3) << deny.out << deny.err;
  Json d = output(deny);
  EXPECT_EQ(d["decision"], "deny");
  EXPECT_EQ(d["reason"], "bad_signature");
  EXPECT_FALSE(d.contains("params"));

  // The token of another runbook.
  auto other = check(oauth_job(tok, "restart-service"));
  EXPECT_EQ(other.exit_code, 3);
  EXPECT_EQ(output(other)["reason"], "invalid_params");  // restart-service requires `service`
}

// Header bytes that are not UTF-8, or a control character: a deny with a reason code
// and valid JSON on stdout (this used to end in a JSON library exception, exit 1).
TEST_F(CheckJob, HostileHeaderBytesEndInADenyWithValidJson) {
  const std::string tok = token();
  for (const std::string& header : {std::string("{\"alg\":\"Ed\xff\xfe\",\"typ\":\"at+jwt\"}"),
                                    std::string("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"\xc3\"}"),
                                    std::string("{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\\u001b[2J\"}"),
                                    std::string("{\"alg\":\"x") + std::string(15, '\xc3') + std::string(15, '\xa9') + "\"}"}) {
    auto r = check(oauth_job(with_header(tok, header)));
    EXPECT_EQ(r.exit_code, 3) << printable(header) << "\n" << r.out << r.err;
    Json j = output(r);
    EXPECT_EQ(j["decision"], "deny") << printable(header);
    EXPECT_TRUE(j["reason"] == "token_malformed" || j["reason"] == "alg_not_allowed") << j.dump();
    for (char c : r.out) EXPECT_TRUE(static_cast<unsigned char>(c) >= 0x20 || c == '\n') << printable(header);
  }
  // An alg name whose detail message used to be cut inside a UTF-8 character.
  std::string alg = "x";
  for (int i = 0; i < 20; ++i) alg += "\xc3\xa9";
  auto r = check(oauth_job(with_header(tok, Json{{"alg", alg}, {"typ", "at+jwt"}}.dump())));
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_EQ(output(r)["reason"], "alg_not_allowed");
}

TEST_F(CheckJob, UnusableInputExitsTwo) {
  auto not_json = check("{");
  EXPECT_EQ(not_json.exit_code, 2);
  EXPECT_EQ(not_json.out, "");
  auto dup = check(R"({"runbook":"host-diagnostics","authorization":{"type":"oauth","token":"a.b.c","token":"d.e.f"}})");
  EXPECT_EQ(dup.exit_code, 2);
  EXPECT_NE(dup.err.find("duplicate key authorization.token"), std::string::npos) << dup.err;
  EXPECT_EQ(check("{}", (tmp_.path / "missing.yaml").string()).exit_code, 2);
  // A configuration with a duplicated key is refused by name, not read last-one-wins.
  const std::string yaml = read_text(config_);
  write_text(tmp_.path / "dup.yaml", yaml + "sandbox:\n  allow_root_steps: true\n", 0600);
  auto cfg = check(oauth_job(token()), (tmp_.path / "dup.yaml").string());
  EXPECT_EQ(cfg.exit_code, 2);
  EXPECT_NE(cfg.err.find("duplicate key sandbox"), std::string::npos) << cfg.err;
}

// RFC 9396 end to end: details are honoured without require_authorization_details;
// require_locations binds a token to this agent ("dev-agent").
TEST_F(CheckJob, AuthorizationDetailsAndLocations) {
  auto details = [](const std::string& runbook, const Json& locations) {
    Json e{{"type", "delegate_runbook"}, {"identifier", runbook}, {"actions", Json::array({"execute"})}};
    if (!locations.is_null()) e["locations"] = locations;
    return "authorization_details=" + Json::array({e}).dump();
  };
  const std::string here = token(details("host-diagnostics", Json::array({"dev-agent"})));
  const std::string elsewhere = token(details("host-diagnostics", Json::array({"db-07"})));
  const std::string unbound = token(details("host-diagnostics", Json()));
  const std::string other_runbook = token(details("restart-service", Json()));
  const std::string plain = token();

  EXPECT_EQ(check(oauth_job(here)).exit_code, 0);
  EXPECT_EQ(check(oauth_job(unbound)).exit_code, 0);
  EXPECT_EQ(check(oauth_job(plain)).exit_code, 0);
  auto away = check(oauth_job(elsewhere));
  EXPECT_EQ(away.exit_code, 3);
  EXPECT_EQ(output(away)["reason"], "binding_mismatch");
  auto wrong = check(oauth_job(other_runbook));
  EXPECT_EQ(wrong.exit_code, 3);
  EXPECT_EQ(output(wrong)["reason"], "binding_mismatch");

  std::string yaml = read_text(config_);
  const std::string anchor = "      roles_claim: roles\n";
  const auto pos = yaml.find(anchor);
  ASSERT_NE(pos, std::string::npos);
  yaml.insert(pos + anchor.size(), "      require_locations: true\n");
  const auto bound = (tmp_.path / "bound.yaml").string();
  write_text(bound, yaml, 0600);
  EXPECT_EQ(check(oauth_job(here), bound).exit_code, 0);
  for (const auto& tok : {unbound, plain, elsewhere}) {
    auto r = check(oauth_job(tok), bound);
    EXPECT_EQ(r.exit_code, 3) << r.out;
    EXPECT_EQ(output(r)["reason"], "binding_mismatch");
  }
}

}  // namespace
}  // namespace delegate::testing
