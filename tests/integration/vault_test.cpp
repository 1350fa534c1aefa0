// The Vault KV v2 provider against a stand-in that follows Vault's documented HTTP API
// (POST /v1/auth/<mount>/login for AppRole, GET /v1/<mount>/data/<path> with
// X-Vault-Token): real TLS 1.3 on loopback under a test CA, every request recorded.
// Vault itself is not installable here. Time is a FixedClock: leases end when the test
// moves it, never by waiting.
#include <gtest/gtest.h>

#include <unistd.h>

#include <atomic>
#include <mutex>

#include <delegate/agent/secrets.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/connectors/masker.hpp>

#include "fake_cp.hpp"
#include "harness.hpp"

namespace delegate::testing {
namespace {

const std::string kSecretId = "sid-7f3e9a1c-SECRETID";
const std::string kRoleId = "role-4411";
const std::string kValue = "pd-routing-key/9c1e\"77\"+R0UTE";

// Vault's behaviour, as far as the provider uses it. Tokens are "hvs.tokN"; a token is
// valid while it is the latest one issued and not revoked.
struct Vault {
  std::mutex mu;
  int logins = 0;
  int reads = 0;
  std::uint64_t login_lease = 3600;
  std::uint64_t kv_lease = 0;
  bool revoked = false;           // the current token answers 403
  bool always_forbidden = false;  // every read answers 403
  std::string kv_override;        // a body to answer KV reads with, when set
  int kv_status = 200;

  std::string current() { return "hvs.tok" + std::to_string(logins); }

  FakeAnswer operator()(const FakeRequest& r) {
    std::lock_guard lock(mu);
    if (r.method == "POST" && r.target == "/v1/auth/approle/login") {
      auto body = Json::parse(r.body, nullptr, false);
      if (!body.is_object() || body.value("role_id", "") != kRoleId || body.value("secret_id", "") != kSecretId) {
        return FakeAnswer{400, R"({"errors":["invalid role or secret ID"]})"};
      }
      ++logins;
      revoked = false;
      return FakeAnswer{200, Json{{"request_id", "r"},
                                  {"lease_id", ""},
                                  {"renewable", false},
                                  {"lease_duration", 0},
                                  {"data", nullptr},
                                  {"auth",
                                   {{"client_token", current()},
                                    {"accessor", "acc"},
                                    {"policies", {"default", "incident"}},
                                    {"lease_duration", login_lease},
                                    {"renewable", true}}}}
                                 .dump()};
    }
    if (r.method == "GET" && r.target.starts_with("/v1/secret/data/")) {
      ++reads;
      auto tok = r.headers.find("x-vault-token");
      if (always_forbidden || revoked || tok == r.headers.end() || tok->second != current() || logins == 0) {
        return FakeAnswer{403, R"({"errors":["permission denied"]})"};
      }
      if (r.target != "/v1/secret/data/incident/pagerduty") return FakeAnswer{404, R"({"errors":[]})"};
      if (kv_status != 200 || !kv_override.empty()) return FakeAnswer{kv_status, kv_override};
      return FakeAnswer{200, Json{{"request_id", "r"},
                                  {"lease_id", ""},
                                  {"renewable", false},
                                  {"lease_duration", kv_lease},
                                  {"data",
                                   {{"data", {{"routing_key", kValue}, {"count", 3}}},
                                    {"metadata", {{"version", 2}, {"destroyed", false}}}}},
                                  {"wrap_info", nullptr},
                                  {"warnings", nullptr},
                                  {"auth", nullptr}}
                                 .dump()};
    }
    return FakeAnswer{404, R"({"errors":[]})"};
  }
};

class VaultProviderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto init = run({Bins::controlplane(), "init", "--dir", (tmp_.path / "cp").string(), "--listen", "127.0.0.1:1"});
    ASSERT_EQ(init.exit_code, 0) << init.err;
    server_ = std::make_unique<FakeControlPlane>(
        FakeControlPlane::Tls{tmp_.path / "cp" / "server.pem", tmp_.path / "cp" / "server.key"},
        [this](const FakeRequest& r) { return vault_(r); });
    write_text(tmp_.path / "secret_id", kSecretId + "\n", 0600);
    write_text(tmp_.path / "token", "hvs.tok1\n", 0600);
    config_.agent.state_dir = tmp_.path / "state";
    config_.secrets.providers = {agent::SecretProvider::vault};
    agent::VaultConfig v;
    v.address = "https://127.0.0.1:" + std::to_string(server_->port());
    v.ca_file = tmp_.path / "cp" / "ca.pem";
    v.vault_namespace = "ops/incident";
    v.auth = agent::VaultConfig::Auth::approle;
    v.role_id = kRoleId;
    v.secret_id_file = tmp_.path / "secret_id";
    v.secrets["PD_KEY"] = {"incident/pagerduty", "routing_key"};
    v.secrets["PD_COUNT"] = {"incident/pagerduty", "count"};
    v.secrets["PD_NOFIELD"] = {"incident/pagerduty", "nope"};
    v.secrets["GONE"] = {"incident/gone", "routing_key"};
    v.cache_s = 0;
    config_.secrets.vault = v;
  }

  agent::SecretResolver resolver() {
    auto r = agent::SecretResolver::create(config_, "", clock_);
    EXPECT_TRUE(r) << r.error().message;
    return std::move(*r);
  }

  std::vector<FakeRequest> kv_requests() const {
    std::vector<FakeRequest> out;
    for (auto& r : server_->requests()) {
      if (r.method == "GET") out.push_back(r);
    }
    return out;
  }

  // An error must name nothing a reader of records or logs could use.
  void expect_clean(const std::string& message) {
    for (const std::string& s : {kSecretId, kValue, std::string("hvs.tok"), std::string("errors"), std::string("{")}) {
      EXPECT_EQ(message.find(s), std::string::npos) << message;
    }
    EXPECT_EQ(message.find('\n'), std::string::npos) << message;
  }

  TempDir tmp_;
  Vault vault_;
  std::unique_ptr<FakeControlPlane> server_;
  FixedClock clock_{std::chrono::system_clock::now()};
  agent::Config config_;
};

TEST_F(VaultProviderTest, AppRoleLogsInOnceReusesTheTokenAndLogsInAgainWhenTheLeaseEnds) {
  vault_.login_lease = 100;
  auto res = resolver();
  for (int i = 0; i < 3; ++i) {
    auto v = res.resolve("PD_KEY");
    ASSERT_TRUE(v) << v.error().message;
    EXPECT_EQ(*v, kValue);
  }
  EXPECT_EQ(vault_.logins, 1);
  auto reads = kv_requests();
  ASSERT_EQ(reads.size(), 3u);
  for (const auto& r : reads) {
    EXPECT_EQ(r.target, "/v1/secret/data/incident/pagerduty");
    EXPECT_EQ(r.headers.at("x-vault-token"), "hvs.tok1");
    EXPECT_EQ(r.headers.at("x-vault-namespace"), "ops/incident");
  }
  const auto login = server_->requests().front();
  EXPECT_EQ(login.target, "/v1/auth/approle/login");
  EXPECT_EQ(login.headers.count("x-vault-token"), 0u);
  EXPECT_EQ(Json::parse(login.body), (Json{{"role_id", kRoleId}, {"secret_id", kSecretId}}));

  // Still inside the lease (less the renewal margin): the same token.
  clock_.set(clock_.now() + std::chrono::seconds(70));
  ASSERT_TRUE(res.resolve("PD_KEY"));
  EXPECT_EQ(vault_.logins, 1);
  // Shortly before the lease ends: a new login, and the new token is used from then on.
  clock_.set(clock_.now() + std::chrono::seconds(15));
  ASSERT_TRUE(res.resolve("PD_KEY"));
  ASSERT_TRUE(res.resolve("PD_KEY"));
  EXPECT_EQ(vault_.logins, 2);
  reads = kv_requests();
  ASSERT_EQ(reads.size(), 6u);
  EXPECT_EQ(reads[4].headers.at("x-vault-token"), "hvs.tok2");
  EXPECT_EQ(reads[5].headers.at("x-vault-token"), "hvs.tok2");
}

TEST_F(VaultProviderTest, AForbiddenReadTriggersExactlyOneFreshLoginAndOneRetry) {
  auto res = resolver();
  ASSERT_TRUE(res.resolve("PD_KEY"));
  EXPECT_EQ(vault_.logins, 1);
  {
    std::lock_guard lock(vault_.mu);
    vault_.revoked = true;  // the token was revoked behind the agent's back
  }
  auto v = res.resolve("PD_KEY");
  ASSERT_TRUE(v) << v.error().message;
  EXPECT_EQ(*v, kValue);
  EXPECT_EQ(vault_.logins, 2);
  EXPECT_EQ(kv_requests().size(), 3u);

  // Vault keeps refusing: one re-login and one retry, then a clean error.
  {
    std::lock_guard lock(vault_.mu);
    vault_.always_forbidden = true;
  }
  auto refused = res.resolve("PD_KEY");
  ASSERT_FALSE(refused);
  EXPECT_EQ(vault_.logins, 3);
  EXPECT_EQ(kv_requests().size(), 5u);
  EXPECT_NE(refused.error().message.find("403"), std::string::npos) << refused.error().message;
  expect_clean(refused.error().message);
}

TEST_F(VaultProviderTest, TokenMethodSendsTheFileTokenAndRereadsItOnceOnForbidden) {
  config_.secrets.vault->auth = agent::VaultConfig::Auth::token;
  config_.secrets.vault->token_file = tmp_.path / "token";
  {
    std::lock_guard lock(vault_.mu);
    vault_.logins = 1;  // "hvs.tok1" is the valid token, issued out of band
  }
  auto res = resolver();
  ASSERT_TRUE(res.resolve("PD_KEY"));
  ASSERT_TRUE(res.resolve("PD_KEY"));
  EXPECT_EQ(kv_requests().size(), 2u);
  EXPECT_EQ(kv_requests()[0].headers.at("x-vault-token"), "hvs.tok1");
  // Rotated on disk (e.g. by a Vault agent): the 403 makes the provider read it again.
  {
    std::lock_guard lock(vault_.mu);
    vault_.logins = 2;
  }
  write_text(tmp_.path / "token", "hvs.tok2\n", 0600);
  ASSERT_TRUE(res.resolve("PD_KEY"));
  auto reads = kv_requests();
  ASSERT_EQ(reads.size(), 4u);
  EXPECT_EQ(reads[2].headers.at("x-vault-token"), "hvs.tok1");
  EXPECT_EQ(reads[3].headers.at("x-vault-token"), "hvs.tok2");
  EXPECT_EQ(server_->count("/login"), 0u);
}

TEST_F(VaultProviderTest, ValuesAreCachedForTheShorterOfCacheSecondsAndTheLease) {
  config_.secrets.vault->cache_s = 300;
  auto res = resolver();
  ASSERT_TRUE(res.resolve("PD_KEY"));
  clock_.set(clock_.now() + std::chrono::seconds(299));
  ASSERT_TRUE(res.resolve("PD_KEY"));
  EXPECT_EQ(kv_requests().size(), 1u);
  clock_.set(clock_.now() + std::chrono::seconds(2));
  ASSERT_TRUE(res.resolve("PD_KEY"));
  EXPECT_EQ(kv_requests().size(), 2u);

  // A value with a 10 s lease is cached for 10 s, not 300.
  {
    std::lock_guard lock(vault_.mu);
    vault_.kv_lease = 10;
  }
  clock_.set(clock_.now() + std::chrono::seconds(301));
  ASSERT_TRUE(res.resolve("PD_KEY"));
  EXPECT_EQ(kv_requests().size(), 3u);
  clock_.set(clock_.now() + std::chrono::seconds(9));
  ASSERT_TRUE(res.resolve("PD_KEY"));
  EXPECT_EQ(kv_requests().size(), 3u);
  clock_.set(clock_.now() + std::chrono::seconds(2));
  ASSERT_TRUE(res.resolve("PD_KEY"));
  EXPECT_EQ(kv_requests().size(), 4u);
}

TEST_F(VaultProviderTest, OnlyMappedNamesAreReadAndEveryBadAnswerFailsClosedWithoutSecrets) {
  auto res = resolver();
  auto unmapped = res.resolve("incident_pagerduty");
  ASSERT_FALSE(unmapped);
  EXPECT_NE(unmapped.error().message.find("not in any configured provider"), std::string::npos);
  EXPECT_TRUE(server_->requests().empty());  // not even a login

  auto no_field = res.resolve("PD_NOFIELD");
  ASSERT_FALSE(no_field);
  EXPECT_NE(no_field.error().message.find("no field \"nope\""), std::string::npos) << no_field.error().message;
  expect_clean(no_field.error().message);

  auto not_string = res.resolve("PD_COUNT");
  ASSERT_FALSE(not_string);
  EXPECT_NE(not_string.error().message.find("not a string"), std::string::npos) << not_string.error().message;
  expect_clean(not_string.error().message);

  auto gone = res.resolve("GONE");
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().code, Errc::not_found);
  EXPECT_NE(gone.error().message.find("404"), std::string::npos) << gone.error().message;
  expect_clean(gone.error().message);

  const std::string q = Json(kValue).dump();  // the value as a JSON string, quotes included
  const std::string huge = R"({"data":{"data":{"routing_key":")" + std::string(70 * 1024, 'k') + R"("}}})";
  const std::vector<std::pair<std::string, std::string>> bad = {
      {huge, "64 KiB"},
      {R"({"data":{"data":{"routing_key":)" + q + "}}", "not a JSON object"},  // truncated
      {R"({"data":{"data":{"routing_key":)" + q + R"(,"routing_key":"x"}}})", "not a JSON object"},  // duplicate
      {R"({"data":{"data":null,"metadata":{"destroyed":true}}})", "no data"},
      {R"({"data":[)" + q + "]}", "no data object"},
      {R"({"lease_duration":-1,"data":{"data":{"routing_key":)" + q + "}}}", "lease_duration"},
      {"[" + q + "]", "not a JSON object"},
  };
  for (const auto& [body, expected] : bad) {
    {
      std::lock_guard lock(vault_.mu);
      vault_.kv_override = body;
    }
    auto r = res.resolve("PD_KEY");
    ASSERT_FALSE(r) << body.substr(0, 80);
    EXPECT_NE(r.error().message.find(expected), std::string::npos) << r.error().message << " for " << body.substr(0, 60);
    expect_clean(r.error().message);
  }
  {
    std::lock_guard lock(vault_.mu);
    vault_.kv_override.clear();
    vault_.kv_status = 500;
  }
  auto down = res.resolve("PD_KEY");
  ASSERT_FALSE(down);
  EXPECT_NE(down.error().message.find("HTTP 500"), std::string::npos) << down.error().message;
  expect_clean(down.error().message);
}

TEST_F(VaultProviderTest, CredentialFilesReadableByGroupOrOthersAreRefused) {
  for (unsigned mode : {0640u, 0604u, 0644u}) {
    write_text(tmp_.path / "secret_id", kSecretId + "\n", mode);
    ::chmod((tmp_.path / "secret_id").c_str(), mode);
    auto r = agent::SecretResolver::create(config_, "", clock_);
    ASSERT_FALSE(r) << mode;
    EXPECT_EQ(r.error().code, Errc::permission);
    EXPECT_NE(r.error().message.find("accessible by group/others"), std::string::npos) << r.error().message;
    expect_clean(r.error().message);
  }
  config_.secrets.vault->auth = agent::VaultConfig::Auth::token;
  config_.secrets.vault->token_file = tmp_.path / "token";
  ::chmod((tmp_.path / "token").c_str(), 0660);
  auto r = agent::SecretResolver::create(config_, "", clock_);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::permission);
  // A symlink to a private file is refused too (the check is on what is opened).
  ::chmod((tmp_.path / "token").c_str(), 0600);
  std::filesystem::create_symlink(tmp_.path / "token", tmp_.path / "token-link");
  config_.secrets.vault->token_file = tmp_.path / "token-link";
  EXPECT_FALSE(agent::SecretResolver::create(config_, "", clock_));
  EXPECT_EQ(server_->requests().size(), 0u);
}

TEST_F(VaultProviderTest, AWrongSecretIdFailsTheLoginWithoutQuotingIt) {
  write_text(tmp_.path / "secret_id", "not-the-secret-id-0000\n", 0600);
  auto res = resolver();
  auto r = res.resolve("PD_KEY");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("login refused: HTTP 400"), std::string::npos) << r.error().message;
  EXPECT_EQ(r.error().message.find("not-the-secret-id"), std::string::npos);
  expect_clean(r.error().message);
  EXPECT_EQ(kv_requests().size(), 0u);
}

// The whole path: a real agent reads a KV value through AppRole, the step gets it in its
// environment, and the signed records and the agent's log carry it only masked.
TEST(VaultEndToEnd, AKvValueReachesAStepsEnvAndIsMaskedAndBadNamesFailClosed) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  auto vault = std::make_shared<Vault>();
  FakeControlPlane server({cp.dir() / "server.pem", cp.dir() / "server.key"},
                          [vault](const FakeRequest& r) { return (*vault)(r); });
  // Outside /tmp (steps have their own): where the step's read-only host view would show
  // the file, unless the agent hides it.
  const fs::path sid_dir = "/var/tmp/delegate-vault-it-" + std::to_string(::getpid());
  fs::remove_all(sid_dir);
  fs::create_directories(sid_dir);
  struct Cleanup {
    fs::path p;
    ~Cleanup() {
      std::error_code ec;
      fs::remove_all(p, ec);
    }
  } cleanup{sid_dir};
  const fs::path sid = sid_dir / "secret_id";
  write_text(sid, kSecretId + "\n", 0600);
  const auto cfg = (cp.dir() / "agent.yaml").string();
  write_text(cfg,
             read_text(cfg) + "secrets:\n  providers: [local, vault]\n  vault:\n    address: https://127.0.0.1:" +
                 std::to_string(server.port()) + "\n    ca_file: " + (cp.dir() / "ca.pem").string() +
                 "\n    auth: {method: approle, role_id: " + kRoleId +
                 ", secret_id_file: " + sid.string() +
                 "}\n    secrets:\n      PD_KEY: {path: incident/pagerduty, field: routing_key}\n"
                 "      PD_NOFIELD: {path: incident/pagerduty, field: nope}\n",
             0600);
  write_text(cp.dir() / "runbooks" / "page.yaml",
             "name: page\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: send\n    uses: script\n    with:\n"
             "      script: 'echo \"pd=$PD\"; printf %s \"$PD\" | base64 -w0; echo; test -s " + sid.string() +
                 " && echo sid-visible >&2 || echo sid-hidden >&2'\n"
             "    env: {PD: \"${secrets.PD_KEY}\"}\n");
  write_text(cp.dir() / "runbooks" / "unmapped.yaml",
             "name: unmapped\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: send\n    uses: command\n    with: {argv: [/bin/true]}\n"
             "    env: {PD: \"${secrets.NOT_MAPPED}\"}\n");
  write_text(cp.dir() / "runbooks" / "nofield.yaml",
             "name: nofield\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: send\n    uses: command\n    with: {argv: [/bin/true]}\n"
             "    env: {PD: \"${secrets.PD_NOFIELD}\"}\n");
  auto key = run({Bins::agent(), "api-key", "create", "--config", cfg, "--id", "oncall", "--scope", "runbooks:execute"});
  ASSERT_EQ(key.exit_code, 0) << key.err;
  const std::string api_key = key.out.substr(0, key.out.find('\n'));
  Process agent({Bins::agent(), "run", "--config", cfg, "--log-level", "debug"}, cp.dir() / "agent.log");
  auto job = [&](const std::string& rb) {
    return Json{{"runbook", rb}, {"params", Json::object()}, {"authorization", {{"type", "api_key"}, {"key", api_key}}}};
  };
  const auto first = cp.submit(job("page"));
  ASSERT_EQ(cp.wait_final(first), "succeeded") << agent.log_text();
  const auto second = cp.submit(job("page"));
  ASSERT_EQ(cp.wait_final(second), "succeeded") << agent.log_text();
  const auto unmapped = cp.submit(job("unmapped"));
  ASSERT_EQ(cp.wait_final(unmapped), "failed") << agent.log_text();
  const auto nofield = cp.submit(job("nofield"));
  ASSERT_EQ(cp.wait_final(nofield), "failed") << agent.log_text();
  {
    std::lock_guard lock(vault->mu);
    EXPECT_EQ(vault->logins, 1);  // one login for every job of this agent
    EXPECT_EQ(vault->reads, 2);   // PD_KEY once (cached for the second job), PD_NOFIELD once
  }
  EXPECT_EQ(server.count("/v1/secret/data/incident/gone"), 0u);

  std::string out;
  Json start;
  for (const auto& r : cp.records(first)) {
    if (r["kind"] == "output" && r["data"]["stream"] == "stdout") {
      auto b = base64_decode(r["data"]["b64"].get<std::string>());
      out.append(b->begin(), b->end());
    }
    if (r["kind"] == "step.start") start = r["data"];
  }
  // The base64 line keeps only the padding of its last, partial group.
  EXPECT_TRUE(out.starts_with("pd=***\n***")) << out;
  std::string err;
  for (const auto& r : cp.records(first)) {
    if (r["kind"] == "output" && r["data"]["stream"] == "stderr") {
      auto b = base64_decode(r["data"]["b64"].get<std::string>());
      err.append(b->begin(), b->end());
    }
  }
  EXPECT_EQ(err, "sid-hidden\n");  // the secret_id file is covered in the step's view
  EXPECT_LE(out.size(), std::string("pd=***\n***xy=\n").size()) << out;
  ASSERT_TRUE(start.contains("secrets")) << start.dump();
  EXPECT_EQ(start["secrets"][0]["name"], "PD_KEY");
  EXPECT_EQ(start["secrets"][0]["fingerprint"].get<std::string>().size(), 32u);

  connectors::Masker masker;
  ASSERT_TRUE(masker.add(kValue));
  const std::string log = agent.log_text();
  for (const auto& id : {first, second, unmapped, nofield}) {
    const std::string exported = cp.admin_get("/v1/jobs/" + id + "/records").body;
    for (const auto& p : masker.patterns()) EXPECT_EQ(exported.find(p), std::string::npos) << p;
    EXPECT_EQ(exported.find("hvs.tok"), std::string::npos);
    EXPECT_EQ(exported.find(kSecretId), std::string::npos);
  }
  for (const auto& p : masker.patterns()) EXPECT_EQ(log.find(p), std::string::npos) << p;
  EXPECT_EQ(log.find("hvs.tok"), std::string::npos);
  EXPECT_EQ(log.find(kSecretId), std::string::npos);

  auto step_error = [&](const std::string& id) {
    for (const auto& r : cp.records(id)) {
      if (r["kind"] == "step.end") return r["data"].value("error", std::string());
    }
    return std::string();
  };
  EXPECT_NE(step_error(unmapped).find("NOT_MAPPED is not in any configured provider"), std::string::npos)
      << step_error(unmapped);
  EXPECT_NE(step_error(nofield).find("no field \"nope\""), std::string::npos) << step_error(nofield);
}

}  // namespace
}  // namespace delegate::testing
