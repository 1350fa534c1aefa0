// Agent authentication against the real control plane over TLS 1.3: registration needs
// proof of the identity key, every agent call is pinned to the registered key.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include "harness.hpp"
#include "sim_agent.hpp"
#include "tls_client.hpp"

namespace delegate::testing {
namespace {

Json agent_view(ControlPlane& cp, const std::string& id) {
  auto r = cp.admin_get("/v1/agents/" + id);
  EXPECT_EQ(r.status, 200) << r.body;
  return Json::parse(r.body);
}

std::string raw_post(const std::string& path, const std::string& token, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + token +
         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

class Identity : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- control plane log ----\n" << cp.process().log_text();
  }
  TempDir tmp;
  ControlPlane cp{tmp.path / "cp"};
};

// The attack of issue §2: enrollment token + a victim's public key (listed by
// GET /v1/agents) used to be enough to take over the victim's id, token, tags and jobs.
TEST_F(Identity, EnrollmentTokenAndVictimPublicKeyDoNotMakeTheVictim) {
  SimAgent victim(cp, "victim");
  ASSERT_EQ(victim.enroll(Json::array({"prod"})).status, 201);
  const auto job = cp.submit(Json{{"runbook", "host-diagnostics"}, {"selector", Json{{"tags", Json::array({"prod"})}}}});

  auto listed = Json::parse(cp.admin_get("/v1/agents").body)["agents"];
  ASSERT_EQ(listed.size(), 1u);
  const std::string victim_pub = listed[0]["public_key"].get<std::string>();
  ASSERT_EQ(victim_pub, victim.public_key());

  SimAgent attacker(cp, "attacker");
  Json forged{{"name", "evil"}, {"hostname", "evil"}, {"tags", Json::array({"prod", "evil"})}, {"version", "x"},
              {"public_key", victim_pub}};
  // Without any client certificate, and with a certificate for the attacker's own key.
  for (const Ed25519PrivateKey* as : {static_cast<const Ed25519PrivateKey*>(nullptr), &attacker.key()}) {
    auto r = attacker.post("/v1/agents/register", forged, enrollment_token(cp), as);
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_EQ(r.body.find("agent_token"), std::string::npos) << r.body;
    EXPECT_EQ(r.body.find(victim.id), std::string::npos) << r.body;
  }
  auto view = agent_view(cp, victim.id);
  EXPECT_EQ(view["name"], "victim");
  EXPECT_EQ(view["tags"], Json::array({"prod"}));
  // The victim's token still works and the job is the victim's.
  auto acquired = victim.acquire();
  ASSERT_EQ(acquired.status, 200) << acquired.body;
  EXPECT_EQ(Json::parse(acquired.body)["job"]["id"], job);
}

TEST_F(Identity, ReplayedRegistrationRequestIsRefused) {
  SimAgent victim(cp, "victim");
  const Json body = victim.registration(Json::array({"prod"}));
  ASSERT_EQ(victim.enroll(Json::array({"prod"})).status, 201);
  // The exact bytes of the victim's registration, replayed on a connection that does not
  // hold the key.
  auto replay = raw_tls_exchange(cp.port(), cp.dir() / "ca.pem", TLS1_3_VERSION,
                                 raw_post("/v1/agents/register", enrollment_token(cp), body.dump()));
  ASSERT_TRUE(replay.handshake_ok) << replay.error;
  EXPECT_EQ(replay.response.substr(0, 12), "HTTP/1.1 401") << replay.response;
  EXPECT_EQ(replay.response.find("agent_token"), std::string::npos);
  // The victim's token was not replaced.
  EXPECT_EQ(victim.heartbeat({}).status, 200);
}

TEST_F(Identity, StolenAgentTokenWithoutTheKeyIsRefused) {
  SimAgent victim(cp, "victim");
  ASSERT_EQ(victim.enroll(Json::array({"prod"})).status, 201);
  cp.submit(Json{{"runbook", "host-diagnostics"}});
  SimAgent thief(cp, "thief");
  const Json acquire{{"capacity", 1}, {"wait_s", 0}};
  const auto path = "/v1/agents/" + victim.id + "/jobs/acquire";
  for (const Ed25519PrivateKey* as : {static_cast<const Ed25519PrivateKey*>(nullptr), &thief.key()}) {
    auto r = thief.post(path, acquire, victim.token, as);
    EXPECT_EQ(r.status, 401) << r.body;
    EXPECT_EQ(r.body.find("\"job\""), std::string::npos) << r.body;
  }
  EXPECT_EQ(victim.acquire().status, 200);
}

TEST_F(Identity, ReRegisteringAKnownKeyKeepsItsNameHostnameAndTags) {
  SimAgent agent(cp, "web-01");
  ASSERT_EQ(agent.enroll(Json::array({"prod"})).status, 201);
  const auto first_id = agent.id;
  const auto first_token = agent.token;
  agent.name = "renamed";
  auto again = agent.enroll(Json::array({"prod", "payments"}));
  ASSERT_EQ(again.status, 201) << again.body;
  EXPECT_EQ(agent.id, first_id);
  EXPECT_NE(agent.token, first_token);
  auto view = agent_view(cp, first_id);
  EXPECT_EQ(view["name"], "web-01");
  EXPECT_EQ(view["hostname"], "web-01.example");
  EXPECT_EQ(view["tags"], Json::array({"prod"}));
}

}  // namespace
}  // namespace delegate::testing
