// Agent authentication against the real control plane over TLS 1.3: registration needs
// proof of the identity key, every agent call is pinned to the registered key.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include <future>
#include <stdexcept>

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

// The takeover attack: enrollment token + a victim's public key (listed by
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

Json create_token(ControlPlane& cp, const Json& spec) {
  auto r = cp.admin_post("/v1/enrollment-tokens", spec);
  EXPECT_EQ(r.status, 201) << r.body;
  return Json::parse(r.body);
}

agent::HttpResult admin_delete(ControlPlane& cp, const std::string& path) {
  agent::CpClient c(agent::ClientOptions{.base_url = cp.url(), .ca_file = cp.dir() / "ca.pem"});
  auto r = c.del(path, cp.admin_token(), std::chrono::seconds(30));
  if (!r) throw std::runtime_error("DELETE " + path + ": " + r.error().message);
  return *r;
}

TEST_F(Identity, OneTimeTokenAdmitsOneNewAgentWithItsFixedTags) {
  auto token = create_token(cp, Json{{"one_time", true}, {"tags", Json::array({"db"})}, {"description", "db-07"}});
  const std::string secret = token["token"].get<std::string>();
  ASSERT_EQ(secret.rfind("denr_", 0), 0u);
  SimAgent first(cp, "db-07");
  auto r = first.enroll(Json::array({"prod", "payments"}), secret);
  ASSERT_EQ(r.status, 201) << r.body;
  EXPECT_EQ(agent_view(cp, first.id)["tags"], Json::array({"db"}));
  EXPECT_EQ(agent_view(cp, first.id)["enrollment_token"], token["id"]);
  SimAgent second(cp, "db-08");
  r = second.enroll(Json::array(), secret);
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_NE(r.body.find("already used"), std::string::npos) << r.body;
  // The agent it admitted may come back with it (lost its token file).
  const auto id = first.id;
  ASSERT_EQ(first.enroll(Json::array(), secret).status, 201);
  EXPECT_EQ(first.id, id);
  // The secret is shown once, never listed.
  auto listed = cp.admin_get("/v1/enrollment-tokens/" + token["id"].get<std::string>());
  ASSERT_EQ(listed.status, 200);
  EXPECT_EQ(listed.body.find(secret), std::string::npos);
  EXPECT_EQ(Json::parse(listed.body)["uses"], 1);
  EXPECT_EQ(Json::parse(cp.admin_get("/v1/agents").body)["agents"].size(), 1u);
}

TEST_F(Identity, ExpiredTokenAdmitsNoNewAgent) {
  auto token = create_token(cp, Json{{"expires_in_s", 1}});
  const auto expires_ms = token["expires_ms"].get<std::int64_t>();
  // Wait for the wall clock (shared with the control plane) to pass the expiry.
  ASSERT_TRUE(eventually([&] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
               .count() > expires_ms;
  }));
  SimAgent late(cp, "late");
  auto r = late.enroll(Json::array(), token["token"].get<std::string>());
  EXPECT_EQ(r.status, 401) << r.body;
  EXPECT_NE(r.body.find("expired"), std::string::npos) << r.body;
  EXPECT_TRUE(Json::parse(cp.admin_get("/v1/agents").body)["agents"].empty());
}

TEST_F(Identity, DeletedTokensIncludingTheDefaultAdmitNobody) {
  auto token = create_token(cp, Json::object());
  const std::string id = token["id"].get<std::string>();
  auto listed = Json::parse(cp.admin_get("/v1/enrollment-tokens").body)["enrollment_tokens"];
  ASSERT_EQ(listed.size(), 2u) << listed.dump();
  EXPECT_EQ(listed[0]["id"], "enr_default");
  auto del = admin_delete(cp, "/v1/enrollment-tokens/" + id);
  ASSERT_EQ(del.status, 200) << del.body;
  EXPECT_GT(Json::parse(del.body)["revoked_ms"].get<std::int64_t>(), 0);
  SimAgent a(cp, "a");
  EXPECT_EQ(a.enroll(Json::array(), token["token"].get<std::string>()).status, 401);
  ASSERT_EQ(admin_delete(cp, "/v1/enrollment-tokens/enr_default").status, 200);
  EXPECT_EQ(a.enroll().status, 401);
  EXPECT_EQ(admin_delete(cp, "/v1/enrollment-tokens/enr_nope").status, 404);
  EXPECT_TRUE(Json::parse(cp.admin_get("/v1/agents").body)["agents"].empty());
  // A restart re-seeds the default's secret but does not bring a revoked default back.
  cp.kill();
  cp.start();
  EXPECT_EQ(a.enroll().status, 401);
}

TEST_F(Identity, RevokedAgentIsRefusedItsRunningJobInterruptedAndItsRecordsStayVerifiable) {
  SimAgent agent(cp, "web-01");
  ASSERT_EQ(agent.enroll().status, 201);
  // One job it finished, one it is running.
  const auto done = cp.submit(Json{{"runbook", "host-diagnostics"}});
  ASSERT_EQ(agent.acquire().status, 200);
  auto wd = agent.writer(done);
  ASSERT_EQ(agent.post_records(done, agent.records(wd, {{audit::Kind::job_received, Json{{"runbook", "host-diagnostics"}}},
                                                        {audit::Kind::job_end, Json{{"status", "succeeded"}, {"records", 2}}}}))
                .status,
            200);
  ASSERT_EQ(agent.complete(done, "succeeded", wd).status, 200);
  const auto job = cp.submit(Json{{"runbook", "host-diagnostics"}});
  ASSERT_EQ(agent.acquire().status, 200);
  auto w = agent.writer(job);
  ASSERT_EQ(agent.post_records(job, agent.records(w, {{audit::Kind::job_received, Json{{"runbook", "host-diagnostics"}}}})).status, 200);

  auto revoked = cp.admin_post("/v1/agents/" + agent.id + "/revoke", Json::object());
  ASSERT_EQ(revoked.status, 200) << revoked.body;
  EXPECT_EQ(Json::parse(revoked.body)["interrupted_jobs"], Json::array({job}));
  EXPECT_EQ(Json::parse(cp.admin_get("/v1/jobs/" + job).body)["status"], "interrupted");
  EXPECT_EQ(Json::parse(cp.admin_get("/v1/jobs/" + done).body)["status"], "succeeded");
  EXPECT_GT(agent_view(cp, agent.id)["revoked_ms"].get<std::int64_t>(), 0);

  cp.submit(Json{{"runbook", "host-diagnostics"}});
  EXPECT_EQ(agent.heartbeat({job}).status, 403);
  auto acq = agent.acquire();
  EXPECT_EQ(acq.status, 403) << acq.body;
  EXPECT_EQ(agent.post_records(job, agent.records(w, {{audit::Kind::output, Json{{"step", "s"}, {"stream", "stdout"}, {"b64", ""}}}})).status, 403);
  auto again = agent.enroll();
  EXPECT_EQ(again.status, 403) << again.body;
  EXPECT_EQ(cp.admin_post("/v1/agents/agt_nope/revoke", Json::object()).status, 404);

  // What it logged is still exported and verifies under its key: the finished job in
  // full, the interrupted one up to where it was cut off.
  auto verify = [&](const std::string& id) {
    write_text(tmp.path / (id + ".jsonl"), cp.admin_get("/v1/jobs/" + id + "/records").body);
    return run({Bins::audit(), "verify", "--public-key", agent.public_key(), (tmp.path / (id + ".jsonl")).string()});
  };
  auto v = verify(done);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
  ASSERT_EQ(cp.records(job).size(), 1u);
  v = verify(job);
  EXPECT_NE(v.out.find("truncated"), std::string::npos) << v.out;
  EXPECT_EQ(v.out.find("bad_signature"), std::string::npos) << v.out;
}

TEST_F(Identity, OnlyAnAdminRenamesOrRetagsAnAgent) {
  SimAgent agent(cp, "web-01");
  ASSERT_EQ(agent.enroll(Json::array({"prod"})).status, 201);
  agent::CpClient admin(agent::ClientOptions{.base_url = cp.url(), .ca_file = cp.dir() / "ca.pem"});
  auto patch = [&](const std::string& id, const Json& body, const std::string& bearer) {
    auto r = admin.patch("/v1/agents/" + id, body, bearer, std::chrono::seconds(30));
    if (!r) throw std::runtime_error(r.error().message);
    return *r;
  };
  EXPECT_EQ(patch(agent.id, Json{{"tags", Json::array({"db"})}}, agent.token).status, 401);
  auto r = patch(agent.id, Json{{"name", "db-01"}, {"tags", Json::array({"db"})}}, cp.admin_token());
  ASSERT_EQ(r.status, 200) << r.body;
  auto view = agent_view(cp, agent.id);
  EXPECT_EQ(view["name"], "db-01");
  EXPECT_EQ(view["hostname"], "web-01.example");
  EXPECT_EQ(view["tags"], Json::array({"db"}));
  EXPECT_EQ(patch(agent.id, Json{{"tags", "db"}}, cp.admin_token()).status, 400);
  EXPECT_EQ(patch(agent.id, Json{{"public_key", "x"}}, cp.admin_token()).status, 400);
  EXPECT_EQ(patch("agt_nope", Json{{"name", "x"}}, cp.admin_token()).status, 404);
  // The new tags select its jobs, and registering again does not undo them.
  ASSERT_EQ(agent.enroll(Json::array({"prod"})).status, 201);
  EXPECT_EQ(agent_view(cp, agent.id)["tags"], Json::array({"db"}));
  const auto job = cp.submit(Json{{"runbook", "host-diagnostics"}, {"selector", Json{{"tags", Json::array({"db"})}}}});
  auto acquired = agent.acquire();
  ASSERT_EQ(acquired.status, 200) << acquired.body;
  EXPECT_EQ(Json::parse(acquired.body)["job"]["id"], job);
}

std::int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

TEST_F(Identity, LongPollThatBeganBeforeRevocationGetsNoJob) {
  SimAgent agent(cp, "web-01");
  ASSERT_EQ(agent.enroll().status, 201);
  const auto seen = agent_view(cp, agent.id)["last_seen_ms"].get<std::int64_t>();
  ASSERT_TRUE(eventually([&] { return wall_ms() > seen; }));
  auto poll = std::async(std::launch::async, [&] { return agent.acquire(30); });
  // Authenticating the poll touches the agent, and the control plane's single I/O thread
  // parks the poll before it serves the next request: once the change is visible, the
  // poll is waiting.
  ASSERT_TRUE(eventually([&] { return agent_view(cp, agent.id)["last_seen_ms"].get<std::int64_t>() > seen; }));
  ASSERT_EQ(cp.admin_post("/v1/agents/" + agent.id + "/revoke", Json::object()).status, 200);
  const auto job = cp.submit(Json{{"runbook", "host-diagnostics"}});
  auto r = poll.get();
  EXPECT_EQ(r.status, 403) << r.body;
  EXPECT_EQ(Json::parse(cp.admin_get("/v1/jobs/" + job).body)["status"], "queued");
}

}  // namespace
}  // namespace delegate::testing
