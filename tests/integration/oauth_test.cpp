// OAuth end to end: the control plane's development issuer mints RFC 9068 tokens, the
// agent fetches its JWKS over TLS 1.3 and verifies every token itself.
#include <gtest/gtest.h>
#include <signal.h>

#include <delegate/common/encoding.hpp>

#include "harness.hpp"

namespace delegate::testing {
namespace {

class OAuth : public ::testing::Test {
 protected:
  void SetUp() override {
    cp_ = std::make_unique<ControlPlane>(tmp_.path / "cp");
    config_ = (cp_->dir() / "agent.yaml").string();
    start_agent();
  }
  void start_agent() {
    // JSON lines here (text elsewhere): both formats run in a real agent.
    agent_ = std::make_unique<Process>(
        std::vector<std::string>{Bins::agent(), "run", "--config", config_, "--log-format", "json", "--log-level", "debug"},
        tmp_.path / "agent.log");
  }
  void TearDown() override {
    if (HasFailure()) std::cerr << agent_->log_text();
  }

  // Raw token endpoint call with HTTP Basic client authentication.
  agent::HttpResult token_request(const std::string& client, const std::string& secret, const std::string& form) {
    std::string cmd_out;
    auto r = run({"/usr/bin/curl", "-s", "-w", "\n%{http_code}", "--cacert", (cp_->dir() / "ca.pem").string(), "-u",
                  client + ":" + secret, "-d", form, cp_->url() + "/oauth/token"});
    auto nl = r.out.rfind('\n');
    return agent::HttpResult{std::stol(r.out.substr(nl + 1)), r.out.substr(0, nl)};
  }
  std::string secret() {
    return Json::parse(read_text(cp_->dir() / "oauth-clients.json"))["clients"][0]["client_secret"];
  }
  std::string token() {
    auto r = token_request("incident-bot", secret(), "grant_type=client_credentials");
    EXPECT_EQ(r.status, 200) << r.body;
    return Json::parse(r.body)["access_token"];
  }
  Json decision(const std::string& tok, const std::string& runbook = "host-diagnostics") {
    auto id = cp_->submit(Json{{"runbook", runbook}, {"authorization", {{"type", "oauth"}, {"token", tok}}}});
    const auto status = cp_->wait_final(id);
    EXPECT_NE(status, "");
    const auto records = cp_->records(id);
    // records[1] is job.authorize; without it the agent never recorded its decision.
    if (records.size() < 2 || !records[1].is_object() || !records[1].contains("data")) {
      ADD_FAILURE() << "job " << id << " ended " << status << " with " << records.size() << " record(s)";
      return Json::object();
    }
    return records[1]["data"];
  }

  TempDir tmp_;
  std::unique_ptr<ControlPlane> cp_;
  std::string config_;
  std::unique_ptr<Process> agent_;
};

TEST_F(OAuth, TokenFromTheIssuerIsAcceptedOnceAndReplayIsDeniedEvenAfterRestart) {
  auto tok = token();
  auto first = decision(tok);
  EXPECT_EQ(first["decision"], "allow") << first.dump();
  EXPECT_EQ(first["method"], "oauth");
  EXPECT_EQ(first["subject"], "incident-bot");
  EXPECT_EQ(first["issuer"], cp_->url() + "/");
  EXPECT_EQ(first["roles"], Json::array({"sre-oncall"}));
  EXPECT_EQ(first["credential_sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(decision(tok)["reason"], "replayed");
  agent_->signal(SIGTERM);
  ASSERT_NE(agent_->wait(std::chrono::seconds(30)), -1);
  start_agent();
  EXPECT_EQ(decision(tok)["reason"], "replayed");
  EXPECT_EQ(decision(token())["decision"], "allow");

  // The bearer token never reaches the log, not even its signature; every line of the
  // log (debug included) is one JSON object with the envelope members.
  const std::string log = agent_->log_text();
  EXPECT_EQ(log.find(tok), std::string::npos);
  EXPECT_EQ(log.find(tok.substr(tok.rfind('.') + 1)), std::string::npos);
  EXPECT_EQ(log.find(secret()), std::string::npos);
  std::size_t lines = 0;
  for (std::size_t at = 0, nl; (nl = log.find('\n', at)) != std::string::npos; at = nl + 1, ++lines) {
    const auto line = Json::parse(log.substr(at, nl - at));
    ASSERT_TRUE(line.is_object()) << line.dump();
    for (const char* k : {"ts", "level", "component", "msg"}) EXPECT_TRUE(line[k].is_string()) << line.dump();
  }
  EXPECT_GT(lines, 3u);
}

// Each case is denied for exactly the reason it names, so a regression in one check
// cannot hide behind another that happens to deny first.
TEST_F(OAuth, ForgedAlteredAndForeignTokensAreDenied) {
  auto tok = token();
  const auto dot1 = tok.find('.'), dot2 = tok.rfind('.');
  const std::string header = tok.substr(0, dot1), signature = tok.substr(dot2 + 1);
  const auto payload_bytes = base64url_decode(tok.substr(dot1 + 1, dot2 - dot1 - 1));
  ASSERT_TRUE(payload_bytes);
  const Json claims = Json::parse(payload_bytes->begin(), payload_bytes->end());
  auto encode = [](const Json& j) { return base64url_encode(as_bytes(j.dump())); };

  // Change one character inside the signature (not the last, whose low bits are padding).
  auto forged = tok;
  char& c = forged[dot2 + 10];
  c = c == 'A' ? 'B' : 'A';
  EXPECT_EQ(decision(forged)["reason"], "bad_signature");
  // A claim altered while iss and the header stay the issuer's: only the signature
  // check can refuse it.
  Json altered = claims;
  altered["roles"] = Json::array({"sre-oncall", "admin"});
  altered["sub"] = "root";
  ASSERT_EQ(altered["iss"], claims["iss"]);
  EXPECT_EQ(decision(header + "." + encode(altered) + "." + signature)["reason"], "bad_signature");
  // A payload naming an issuer this agent does not trust: refused before any key is
  // looked up, so the signature never matters.
  Json foreign = claims;
  foreign["iss"] = "https://idp.attacker.example/";
  EXPECT_EQ(decision(header + "." + encode(foreign) + "." + signature)["reason"], "wrong_issuer");
  EXPECT_EQ(decision("not.a.jwt")["reason"], "token_malformed");
  // alg "none" with a signature present: structurally a JWS, refused for its alg.
  const std::string none = base64url_encode(as_bytes(R"({"alg":"none","typ":"at+jwt"})"));
  EXPECT_EQ(decision(none + "." + tok.substr(dot1 + 1, dot2 - dot1 - 1) + "." + signature)["reason"],
            "alg_not_allowed");
  // HMAC with the issuer's public key as the secret (the classic confusion): alg refused.
  const std::string hs = base64url_encode(as_bytes(R"({"alg":"HS256","typ":"at+jwt","kid":"dev-1"})"));
  EXPECT_EQ(decision(hs + "." + tok.substr(dot1 + 1, dot2 - dot1 - 1) + "." + signature)["reason"],
            "alg_not_allowed");
  // An unsecured JWS (empty signature segment) is not even a JWS to us: malformed.
  EXPECT_EQ(decision(none + "." + tok.substr(dot1 + 1, dot2 - dot1 - 1) + ".")["reason"], "token_malformed");
}

// The daemon's path for hostile header bytes: a deny with a reason code in the job's
// signed job.authorize record, whose detail quotes nothing that is not printable.
TEST_F(OAuth, HostileHeaderBytesAreDeniedWithAReasonInTheRecord) {
  const auto tok = token();
  const auto rest = tok.substr(tok.find('.'));
  std::string alg = "x";  // 41 bytes: a 32-byte cut would split a character
  for (int i = 0; i < 20; ++i) alg += "\xc3\xa9";
  const std::pair<std::string, std::string> cases[] = {
      {Json{{"alg", alg}, {"typ", "at+jwt"}}.dump(), "alg_not_allowed"},
      {"{\"alg\":\"EdDSA\",\"typ\":\"at+jwt\",\"kid\":\"dev-1\xff\"}", "token_malformed"},
      {R"({"alg":"EdDSA","typ":"at+jwt\u001b[2J","kid":"dev-1"})", "token_malformed"},
  };
  for (const auto& [header, reason] : cases) {
    const Json d = decision(base64url_encode(as_bytes(header)) + rest);
    EXPECT_EQ(d.value("decision", ""), "deny") << d.dump();
    EXPECT_EQ(d.value("reason", ""), reason) << d.dump();
    for (char c : d.value("detail", std::string())) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << d.dump();
  }
}

TEST_F(OAuth, TokenEndpointRefusesBadClientsAndScopes) {
  EXPECT_EQ(token_request("incident-bot", "wrong-secret-wrong-secret", "grant_type=client_credentials").status, 401);
  EXPECT_EQ(token_request("nobody", secret(), "grant_type=client_credentials").status, 401);
  EXPECT_EQ(token_request("incident-bot", secret(), "grant_type=password").status, 400);
  EXPECT_EQ(token_request("incident-bot", secret(), "grant_type=client_credentials&scope=admin:all").status, 400);
}

}  // namespace
}  // namespace delegate::testing
