// The http step end to end: the real agent and control plane, a third-party API
// stand-in (TLS 1.3 on loopback under its own test CA, trusted through
// connectors.ca_files) that records every request. Credentials arrive where they must
// and nowhere else: never in the exported records or the agent's log.
#include <gtest/gtest.h>

#include <atomic>
#include <mutex>

#include <delegate/common/encoding.hpp>
#include <delegate/connectors/masker.hpp>

#include "fake_cp.hpp"
#include "harness.hpp"

namespace delegate::testing {
namespace {

const std::string kApiKey = "pd-key/9f3a\"0c\"+K3Y";
const std::string kBearer = "bearer-7c1d5e90aa0b";
const std::string kBasic = "basic:pw-44e1bb09";
const std::string kClientSecret = "client-secret-5a6b7c8d";

// A stand-in for a ticketing API and its OAuth2 token endpoint.
struct Api {
  std::mutex mu;
  int tokens_issued = 0;
  bool revoke_current = false;  // the current token is answered with 401 from now on
  std::string current;
  std::string short_lived;
  int flaky_calls = 0;
  std::string other_base;  // a second, allowed API

  FakeAnswer operator()(const FakeRequest& r) {
    std::lock_guard lock(mu);
    const std::string& t = r.target;
    if (t == "/oauth/token") {
      const std::string short_client = "Basic " + base64_encode(as_bytes(std::string("short:") + kClientSecret));
      ++tokens_issued;
      const std::string tok = "tok-" + std::to_string(tokens_issued) + "-a1b2c3d4e5";
      // expires_in 30: within the agent's 30 s margin, so never reused: the next step refetches.
      if (r.authorization == short_client) {
        short_lived = tok;
        return {200, R"({"access_token":")" + tok + R"(","token_type":"Bearer","expires_in":30})"};
      }
      current = tok;
      revoke_current = false;
      return {200, R"({"access_token":")" + tok + R"(","token_type":"bearer","expires_in":3600,"scope":"chat:write"})"};
    }
    if (t == "/chat" || t == "/chat-always-401") {
      if (t == "/chat-always-401") return {401, R"({"error":"invalid_token"})"};
      const bool ok = (r.authorization == "Bearer " + current && !revoke_current) ||
                      (!short_lived.empty() && r.authorization == "Bearer " + short_lived);
      return ok ? FakeAnswer{200, R"({"ok":true})"} : FakeAnswer{401, R"({"error":"invalid_token"})"};
    }
    if (t == "/v2/incidents") {
      auto key = r.headers.find("x-api-key");
      return {201, Json{{"id", "INC-4711"}, {"echo", key == r.headers.end() ? "" : key->second}}.dump()};
    }
    if (t == "/v2/incidents/INC-4711/notes") return {200, R"({"noted":true})"};
    if (t == "/whoami") {
      // A hostile or careless API that echoes the credential it received, in its body and a header.
      Json echo{{"authorization", r.authorization}, {"padding", std::string(5000, 'p')}};
      return {200, echo.dump(), "application/json", {{"X-Request-Id", r.authorization}}};
    }
    if (t == "/whoami-padded") {
      // The echoed credential where the recorded header value is cut (1024 bytes): only a
      // prefix of it would be in the record.
      return {200, "{}", "application/json", {{"X-Request-Id", std::string(1010, 'x') + r.authorization}}};
    }
    if (t == "/redirect-away") return {302, "", "text/plain", {{"Location", "https://evil.example.net:443/steal"}}};
    if (t == "/redirect-home") return {302, "", "text/plain", {{"Location", "/v2/final"}}};
    if (t == "/redirect-other") return {307, "", "text/plain", {{"Location", other_base + "/landing"}}};
    if (t == "/v2/final") return {200, R"({"final":true})"};
    if (t == "/broken") return {500, R"({"error":"boom"})"};
    if (t == "/flaky") {
      // Busy once, then fine.
      if (++flaky_calls == 1) return {503, R"({"error":"busy"})", "application/json", {{"Retry-After", "0"}}};
      return {200, R"({"id":7})"};
    }
    if (t == "/always-busy") return {503, R"({"error":"busy"})", "application/json", {{"Retry-After", "0"}}};
    return {404, R"({"error":"not found"})"};
  }
};

std::string job(const std::string& runbook, const std::string& api_key, const Json& params = Json::object()) {
  return Json{{"runbook", runbook}, {"params", params}, {"authorization", {{"type", "api_key"}, {"key", api_key}}}}.dump();
}

Json step_record(const std::vector<Json>& recs, const std::string& kind, const std::string& step) {
  for (const auto& r : recs) {
    if (r["kind"] == kind && r["data"]["step"] == step) return r["data"];
  }
  return nullptr;
}

class HttpStep : public ::testing::Test {
 protected:
  void SetUp() override {
    auto init = run({Bins::controlplane(), "init", "--dir", (tmp_.path / "api").string(), "--listen", "127.0.0.1:1"});
    ASSERT_EQ(init.exit_code, 0) << init.err;
    server_ = std::make_unique<FakeControlPlane>(FakeControlPlane::Tls{tmp_.path / "api" / "server.pem", tmp_.path / "api" / "server.key"},
                                                 [this](const FakeRequest& r) { return api_(r); });
    cp_ = std::make_unique<ControlPlane>(tmp_.path / "cp");
    cfg_ = (cp_->dir() / "agent.yaml").string();
    // Steps reach the stand-in on loopback through the egress proxy, which refuses
    // loopback unless the agent's policy allows it.
    std::string text = read_text(cfg_);
    text.replace(text.find("sandbox:\n"), 9, "sandbox:\n  egress_allow_cidrs: [127.0.0.0/8]\n");
    write_text(cfg_, text + "secrets: {providers: [local]}\nconnectors: {ca_files: [" +
                         (tmp_.path / "api" / "ca.pem").string() + "]}\n", 0600);
    for (const auto& [name, value] : std::vector<std::pair<std::string, std::string>>{
             {"pd_key", kApiKey}, {"bearer_key", kBearer}, {"basic_key", kBasic}, {"chat_secret", kClientSecret}}) {
      auto set = run({Bins::agent(), "secret", "set", name, "--config", cfg_}, value);
      ASSERT_EQ(set.exit_code, 0) << set.err;
    }
    auto key = run({Bins::agent(), "api-key", "create", "--config", cfg_, "--id", "oncall", "--scope", "runbooks:execute"});
    ASSERT_EQ(key.exit_code, 0) << key.err;
    api_key_ = key.out.substr(0, key.out.find('\n'));
  }

  std::string authority() const { return "127.0.0.1:" + std::to_string(server_->port()); }
  std::string base() const { return "https://" + authority(); }

  void runbook(const std::string& name, const std::string& steps) {
    write_text(cp_->dir() / "runbooks" / (name + ".yaml"),
               "name: " + name + "\nauthorize: {scopes: [runbooks:execute]}\n"
               "params:\n  title: {type: string, default: \"disk full\"}\nsteps:\n" + steps);
  }

  std::string submit(const std::string& rb) { return cp_->submit(Json::parse(job(rb, api_key_))); }

  // Every form of every secret the jobs touched, and derived values, absent from `text`.
  void expect_no_secrets(const std::string& text, const std::string& where, const std::vector<std::string>& extra = {}) {
    connectors::Masker m;
    for (const auto& s : {kApiKey, kBearer, kBasic, kClientSecret}) ASSERT_TRUE(m.add(s));
    for (const auto& s : extra) ASSERT_TRUE(m.add(s));
    ASSERT_TRUE(m.add(base64_encode(as_bytes("ops:" + kBasic))));
    for (const auto& p : m.patterns()) EXPECT_EQ(text.find(p), std::string::npos) << where << " carries " << p;
  }

  TempDir tmp_;
  Api api_;
  std::unique_ptr<FakeControlPlane> server_;
  std::unique_ptr<ControlPlane> cp_;
  std::string cfg_, api_key_;
};

TEST_F(HttpStep, CredentialsArriveOutputsFlowAndNothingSecretIsRecordedOrLogged) {
  runbook("ticket",
          "  - name: create\n    uses: http\n    with:\n      method: POST\n"
          "      url: " + base() + "/v2/incidents\n"
          "      headers: {Accept: application/json}\n      body: {title: \"${params.title}\", n: 3}\n"
          "      expect_status: [201]\n      timeout_s: 30\n"
          "      auth: {type: api_key, header: X-Api-Key, secret: pd_key}\n      outputs: {ticket: /id}\n"
          "    sandbox: {egress: [\"" + authority() + "\"]}\n"
          "  - name: note\n    uses: http\n    with:\n      method: PUT\n"
          "      url: \"" + base() + "/v2/incidents/${steps.create.outputs.ticket}/notes\"\n"
          "      body: {ticket: \"${steps.create.outputs.ticket}\"}\n"
          "      auth: {type: bearer, secret: bearer_key}\n    sandbox: {egress: [\"" + authority() + "\"]}\n"
          "  - name: whoami\n    uses: http\n    with:\n      url: " + base() + "/whoami\n"
          "      auth: {type: basic, username: ops, secret: basic_key}\n    sandbox: {egress: [\"" + authority() + "\"]}\n");
  Process agent({Bins::agent(), "run", "--config", cfg_, "--log-level", "debug"}, cp_->dir() / "agent.log");
  const auto id = submit("ticket");
  ASSERT_EQ(cp_->wait_final(id), "succeeded") << agent.log_text();

  // What the API received: each credential in its header, the output of step one in step two.
  const auto reqs = server_->requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].headers.at("x-api-key"), kApiKey);
  EXPECT_EQ(reqs[0].headers.at("accept"), "application/json");
  EXPECT_EQ(reqs[0].headers.at("content-type"), "application/json");
  EXPECT_EQ(Json::parse(reqs[0].body), (Json{{"title", "disk full"}, {"n", 3}}));
  EXPECT_EQ(reqs[1].method, "PUT");
  EXPECT_EQ(reqs[1].target, "/v2/incidents/INC-4711/notes");
  EXPECT_EQ(Json::parse(reqs[1].body)["ticket"], "INC-4711");
  EXPECT_EQ(reqs[1].authorization, "Bearer " + kBearer);
  EXPECT_EQ(reqs[2].authorization, "Basic " + base64_encode(as_bytes("ops:" + kBasic)));

  const auto recs = cp_->records(id);
  const Json start = step_record(recs, "step.start", "create");
  EXPECT_EQ(start["uses"], "http");
  EXPECT_EQ(start["http"]["method"], "POST");
  EXPECT_EQ(start["auth"]["type"], "api_key");
  EXPECT_EQ(start["secrets"][0]["name"], "pd_key");
  EXPECT_EQ(start["sandbox"]["egress"], Json::array({authority()}));
  // The request left through the agent's egress proxy, and the proxy recorded it.
  bool connected = false;
  for (const auto& r : recs) {
    if (r["kind"] == "net.connect" && r["data"]["step"] == "create") connected = r["data"]["allowed"] == true;
  }
  EXPECT_TRUE(connected) << "no allowed net.connect for step create";
  EXPECT_TRUE(start["sandbox"].contains("isolation")) << start.dump();
  const Json end = step_record(recs, "step.end", "create");
  EXPECT_EQ(end["status"], "succeeded");
  EXPECT_EQ(end["outputs"]["ticket"], "INC-4711");
  EXPECT_EQ(end["http"]["request"], "POST " + base() + "/v2/incidents");
  EXPECT_EQ(end["http"]["status"], 201);
  EXPECT_EQ(end["http"]["headers"]["content-type"], "application/json");
  // The API echoed the key: the recorded body has it masked.
  EXPECT_NE(end["http"]["body"].get<std::string>().find("\"echo\":\"***\""), std::string::npos) << end.dump();
  const Json who = step_record(recs, "step.end", "whoami");
  EXPECT_EQ(who["http"]["headers"]["x-request-id"], "Basic ***") << who.dump();
  EXPECT_LE(who["http"]["body"].get<std::string>().size(), 4096u);
  EXPECT_GT(who["http"]["body_bytes"].get<std::uint64_t>(), 5000u);

  const std::string exported = cp_->admin_get("/v1/jobs/" + id + "/records").body;
  expect_no_secrets(exported, "export");
  expect_no_secrets(agent.log_text(), "agent log");
}

TEST_F(HttpStep, OAuthTokenFetchedOnceReusedAcrossStepsAndJobsRefetchedAfterExpiryAndRefreshedOnceOn401) {
  const std::string auth = "      auth: {type: oauth2_client_credentials, token_url: \"" + base() +
                           "/oauth/token\", client_id: chat-bot, client_secret: chat_secret, scopes: [\"chat:write\"]}\n";
  const std::string post = "  - name: STEP\n    uses: http\n    with:\n      method: POST\n      url: " + base() +
                           "/chat\n      body: {text: hi}\n" + auth + "    sandbox: {egress: [\"" + authority() + "\"]}\n";
  auto named = [](std::string s, const std::string& n) { return s.replace(s.find("STEP"), 4, n); };
  runbook("chat", named(post, "one") + named(post, "two"));
  std::string short_post = named(post, "s1");
  short_post.replace(short_post.find("chat-bot"), 8, "short");
  std::string short_post2 = named(post, "s2");
  short_post2.replace(short_post2.find("chat-bot"), 8, "short");
  runbook("short", short_post + short_post2);
  // A later job with the cached token, against an API that echoes it back.
  runbook("echo", "  - name: echo\n    uses: http\n    with:\n      url: " + base() + "/whoami\n" + auth +
                      "    sandbox: {egress: [\"" + authority() + "\"]}\n"
                      "  - name: padded\n    uses: http\n    with:\n      url: " + base() + "/whoami-padded\n" + auth +
                      "    sandbox: {egress: [\"" + authority() + "\"]}\n");
  std::string always = named(post, "denied");
  always.replace(always.find("/chat"), 5, "/chat-always-401");
  runbook("always401", always);

  Process agent({Bins::agent(), "run", "--config", cfg_, "--log-level", "debug"}, cp_->dir() / "agent.log");
  const auto j1 = submit("chat");
  ASSERT_EQ(cp_->wait_final(j1), "succeeded") << agent.log_text();
  const auto j2 = submit("chat");
  ASSERT_EQ(cp_->wait_final(j2), "succeeded") << agent.log_text();
  // Two jobs, four API calls, one token.
  EXPECT_EQ(server_->count("/oauth/token"), 1u);
  EXPECT_EQ(server_->count("/chat"), 4u);
  const auto token_req = server_->requests().front();
  EXPECT_EQ(token_req.target, "/oauth/token");
  EXPECT_EQ(token_req.body, "grant_type=client_credentials&scope=chat%3Awrite");
  EXPECT_EQ(token_req.authorization, "Basic " + base64_encode(as_bytes("chat-bot:" + kClientSecret)));
  EXPECT_EQ(step_record(cp_->records(j1), "step.start", "one")["auth"]["token"], "fetched");
  EXPECT_EQ(step_record(cp_->records(j1), "step.start", "two")["auth"]["token"], "cached");
  EXPECT_EQ(step_record(cp_->records(j2), "step.start", "one")["auth"]["token"], "cached");
  EXPECT_EQ(step_record(cp_->records(j2), "step.start", "one")["auth"]["client_id"], "chat-bot");
  // Masked in every job that uses it, not only in the one that fetched it; and where the
  // record cuts an echoed value, the token's prefix at the cut is dropped, not recorded.
  const auto je = submit("echo");
  ASSERT_EQ(cp_->wait_final(je), "succeeded") << agent.log_text();
  EXPECT_EQ(server_->count("/oauth/token"), 1u);
  EXPECT_EQ(step_record(cp_->records(je), "step.start", "echo")["auth"]["token"], "cached");
  EXPECT_EQ(step_record(cp_->records(je), "step.end", "echo")["http"]["headers"]["x-request-id"], "Bearer ***")
      << step_record(cp_->records(je), "step.end", "echo").dump();
  EXPECT_EQ(step_record(cp_->records(je), "step.end", "padded")["http"]["headers"]["x-request-id"],
            std::string(1010, 'x') + "Bearer ");

  // The API revokes the token early: one refresh, one retry, success.
  {
    std::lock_guard lock(api_.mu);
    api_.revoke_current = true;
  }
  const auto j3 = submit("chat");
  ASSERT_EQ(cp_->wait_final(j3), "succeeded") << agent.log_text();
  EXPECT_EQ(server_->count("/oauth/token"), 2u);
  EXPECT_EQ(step_record(cp_->records(j3), "step.end", "one")["http"]["token_refreshed"], true);
  EXPECT_FALSE(step_record(cp_->records(j3), "step.end", "two")["http"].contains("token_refreshed"));

  // A token that expires within the margin is used once: each step fetches its own.
  const auto j4 = submit("short");
  ASSERT_EQ(cp_->wait_final(j4), "succeeded") << agent.log_text();
  EXPECT_EQ(server_->count("/oauth/token"), 4u);

  // An API that keeps answering 401: refreshed exactly once, then the step fails.
  const auto j5 = submit("always401");
  ASSERT_EQ(cp_->wait_final(j5), "failed") << agent.log_text();
  EXPECT_EQ(server_->count("/oauth/token"), 5u);
  EXPECT_EQ(server_->count("/chat-always-401"), 2u);
  const Json denied = step_record(cp_->records(j5), "step.end", "denied");
  EXPECT_EQ(denied["http"]["status"], 401);
  EXPECT_NE(denied["error"].get<std::string>().find("unexpected status 401"), std::string::npos) << denied.dump();

  std::vector<std::string> tokens;
  for (int i = 1; i <= 5; ++i) tokens.push_back("tok-" + std::to_string(i) + "-a1b2c3d4e5");
  for (const auto& j : {j1, j2, je, j3, j4, j5}) expect_no_secrets(cp_->admin_get("/v1/jobs/" + j + "/records").body, "export", tokens);
  expect_no_secrets(agent.log_text(), "agent log", tokens);
}

TEST_F(HttpStep, RedirectsLeaveOnlyForAllowedHostsRetriesAreBoundedAndUnexpectedStatusesFailTheStep) {
  auto get = [&](const std::string& name, const std::string& path) {
    return "  - name: " + name + "\n    uses: http\n    with: {url: \"" + base() + path + "\"}\n    sandbox: {egress: [\"" + authority() + "\"]}\n";
  };
  runbook("home", get("home", "/redirect-home"));
  // A second API the step may also reach: a redirect there is followed, without the credentials.
  FakeControlPlane other({tmp_.path / "api" / "server.pem", tmp_.path / "api" / "server.key"},
                         [](const FakeRequest&) { return FakeAnswer{200, R"({"landed":true})"}; });
  const std::string other_authority = "127.0.0.1:" + std::to_string(other.port());
  {
    std::lock_guard lock(api_.mu);
    api_.other_base = "https://" + other_authority;
  }
  runbook("other",
          "  - name: other\n    uses: http\n    with:\n      url: \"" + base() + "/redirect-other\"\n"
          "      headers: {X-Trace: \"t-${secrets.bearer_key}\", Accept: application/json}\n"
          "      auth: {type: api_key, header: X-Api-Key, secret: pd_key}\n"
          "    sandbox: {egress: [\"" + authority() + "\", \"" + other_authority + "\"]}\n");
  runbook("otherbody",
          "  - name: otherbody\n    uses: http\n    with:\n      method: POST\n      url: \"" + base() + "/redirect-other\"\n"
          "      body: {key: \"${secrets.pd_key}\"}\n"
          "    sandbox: {egress: [\"" + authority() + "\", \"" + other_authority + "\"]}\n");
  runbook("away", get("away", "/redirect-away"));
  runbook("broken", get("broken", "/broken") + get("never", "/v2/final"));
  auto retrying = [&](const std::string& name, const std::string& path) {
    return "  - name: " + name + "\n    uses: http\n    with:\n      url: \"" + base() + path +
           "\"\n      retry: {attempts: 3, on_status: [503]}\n      outputs: {id: {json: /id, type: integer}}\n"
           "    sandbox: {egress: [\"" + authority() + "\"]}\n";
  };
  runbook("flaky", retrying("flaky", "/flaky"));
  runbook("busy", retrying("busy", "/always-busy"));
  Process agent({Bins::agent(), "run", "--config", cfg_}, cp_->dir() / "agent.log");
  const auto home = submit("home");
  ASSERT_EQ(cp_->wait_final(home), "succeeded") << agent.log_text();
  const Json h = step_record(cp_->records(home), "step.end", "home");
  EXPECT_EQ(h["http"]["redirects"][0], base() + "/v2/final");
  EXPECT_EQ(h["http"]["status"], 200);

  const auto moved = submit("other");
  ASSERT_EQ(cp_->wait_final(moved), "succeeded") << agent.log_text();
  ASSERT_EQ(other.requests().size(), 1u);
  const auto landed = other.requests()[0];
  EXPECT_EQ(landed.target, "/landing");
  EXPECT_EQ(landed.headers.count("x-api-key"), 0u);
  EXPECT_EQ(landed.headers.count("x-trace"), 0u);
  EXPECT_EQ(landed.headers.at("accept"), "application/json");
  EXPECT_EQ(server_->requests().back().headers.at("x-api-key"), kApiKey);  // the first hop had them
  // A body holding a secret is not carried to another host: the step fails instead.
  const auto body_moved = submit("otherbody");
  ASSERT_EQ(cp_->wait_final(body_moved), "failed") << agent.log_text();
  EXPECT_EQ(other.requests().size(), 1u);
  EXPECT_NE(step_record(cp_->records(body_moved), "step.end", "otherbody")["error"].get<std::string>().find(
                "would carry a secret in the request body"),
            std::string::npos);

  const auto away = submit("away");
  ASSERT_EQ(cp_->wait_final(away), "failed") << agent.log_text();
  const Json a = step_record(cp_->records(away), "step.end", "away");
  EXPECT_EQ(a["status"], "failed");
  EXPECT_NE(a["error"].get<std::string>().find("redirect to evil.example.net:443, which is not in the step's egress allowlist"),
            std::string::npos) << a.dump();

  const auto broken = submit("broken");
  ASSERT_EQ(cp_->wait_final(broken), "failed") << agent.log_text();
  const auto recs = cp_->records(broken);
  const Json b = step_record(recs, "step.end", "broken");
  EXPECT_EQ(b["http"]["status"], 500);
  EXPECT_EQ(b["error"], "unexpected status 500");
  EXPECT_EQ(b["http"]["body"], R"({"error":"boom"})");
  EXPECT_TRUE(step_record(recs, "step.start", "never").is_null());  // the job stopped there

  // Retry on a listed status: busy once, then the answer; always busy: every attempt, then failed.
  const auto flaky = submit("flaky");
  ASSERT_EQ(cp_->wait_final(flaky), "succeeded") << agent.log_text();
  const Json f = step_record(cp_->records(flaky), "step.end", "flaky");
  EXPECT_EQ(f["http"]["attempts"], 2);
  EXPECT_EQ(f["outputs"]["id"], 7);
  EXPECT_EQ(server_->count("/flaky"), 2u);
  const auto busy = submit("busy");
  ASSERT_EQ(cp_->wait_final(busy), "failed") << agent.log_text();
  const Json bz = step_record(cp_->records(busy), "step.end", "busy");
  EXPECT_EQ(bz["http"]["attempts"], 3);
  EXPECT_EQ(bz["http"]["status"], 503);
  EXPECT_EQ(server_->count("/always-busy"), 3u);
}

}  // namespace
}  // namespace delegate::testing

namespace delegate::testing {
namespace {

// The agent refuses its whole catalog (and so does not start) when a runbook puts a
// reference in a URL's host or a secret anywhere in a URL: nothing can choose where a
// request goes, and URLs are recorded.
TEST_F(HttpStep, AReferenceInTheHostOrASecretInTheUrlStopsTheAgentAtLoad) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"https://${params.title}.example.com/x", "scheme, host or port"},
      {base() + "/x?key=${secrets.pd_key}", "cannot be part of a URL"},
  };
  for (const auto& [url, needle] : cases) {
    runbook("bad", "  - name: call\n    uses: http\n    with: {url: \"" + url + "\"}\n    sandbox: {egress: [\"" + authority() + "\"]}\n");
    auto r = run({Bins::agent(), "run", "--config", cfg_});
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    const std::string out = r.out + r.err;
    EXPECT_NE(out.find(needle), std::string::npos) << out;
    EXPECT_NE(out.find("bad.yaml"), std::string::npos) << out;
  }
  EXPECT_EQ(server_->requests().size(), 0u);
}

}  // namespace
}  // namespace delegate::testing
