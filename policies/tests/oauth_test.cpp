// OAuthVerifier end to end: issuer selection, key isolation between issuers, key
// rotation through the cache, jti replay (also across a restart) and RFC 9396 binding.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>

#include <delegate/policies/authorizer.hpp>
#include <delegate/policies/oauth.hpp>
#include <delegate/policies/runbook.hpp>
#include <memory>
#include <optional>
#include <string>

#include "jwt_test_util.hpp"
#include "test_util.hpp"

namespace delegate::policies {
namespace {

using namespace testing;
using R = Reason;

constexpr const char* kIssuerB = "https://login.other.example";

class OAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    job.id = "job-1";
    job.runbook = "restart-service";
    job.params = Json{{"service", "nginx"}, {"graceful", true}};
    build();
  }

  void build(std::shared_ptr<ReplayCache> replay = nullptr) {
    std::vector<OAuthIssuer> issuers;
    IssuerPolicy a = default_policy();
    a.require_authorization_details = require_binding;
    auto fetch_a = [this]() -> Result<std::string> {
      ++fetches_a;
      return doc_a;
    };
    issuers.push_back(
        {a, std::make_shared<JwksCache>(fetch_a, clock, a.algorithms, JwksCacheOptions{}), replay});
    IssuerPolicy b = default_policy();
    b.issuer = kIssuerB;
    b.roles_claim = "groups";
    auto fetch_b = [this]() -> Result<std::string> { return doc_b; };
    issuers.push_back(
        {b, std::make_shared<JwksCache>(fetch_b, clock, b.algorithms, JwksCacheOptions{}),
         nullptr});
    auto v = OAuthVerifier::create(std::move(issuers));
    ASSERT_TRUE(v.has_value()) << v.error().message;
    verifier = std::move(*v);
  }

  std::optional<Reason> check(const std::string& tok, std::int64_t now = kNow) {
    auto tc = verifier->verify(tok, job, now_tp(now));
    return tc.deny;
  }

  Json binding() const {
    return Json::array({Json{{"type", "delegate_runbook"},
                             {"identifier", "restart-service"},
                             {"actions", Json::array({"execute"})},
                             {"locations", Json::array({"prod"})},
                             {"params", job.params}}});
  }

  TestKey key_a = make_key("p256", "P-256", "a-1");
  TestKey key_b = make_key("ed", "Ed25519", "b-1");
  TestKey key_a2 = make_key("rsa3072", "RSA", "a-2", 3072);
  FixedClock clock{now_tp()};
  std::string doc_a = jwks_of({key_a});
  std::string doc_b = jwks_of({key_b});
  int fetches_a = 0;
  bool require_binding = false;
  Job job;
  std::unique_ptr<OAuthVerifier> verifier;
};

TEST_F(OAuthTest, AcceptsAndReportsPrincipal) {
  Json c = default_claims();
  c["roles"] = Json::array({"operator"});
  auto tc = verifier->verify(token(c, key_a), job, now_tp());
  ASSERT_FALSE(tc.deny.has_value()) << tc.detail;
  EXPECT_EQ(tc.principal.subject, "alice");
  EXPECT_EQ(tc.principal.roles, (std::vector<std::string>{"operator"}));
  Json cb = default_claims();
  cb["iss"] = kIssuerB;
  cb["groups"] = "admins";
  auto tb = verifier->verify(token(cb, key_b), job, now_tp());
  ASSERT_FALSE(tb.deny.has_value()) << tb.detail;
  EXPECT_EQ(tb.principal.roles, (std::vector<std::string>{"admins"}));
}

TEST_F(OAuthTest, KeyOfIssuerANeverVerifiesIssuerB) {
  Json c = default_claims();
  c["iss"] = kIssuerB;
  // Signed by A's key, claims B: B's set has no kid a-1.
  EXPECT_EQ(check(token(c, key_a)), R::unknown_key);
  // Even when the kid collides with one of B's kids.
  auto a_as_b = key_a;
  a_as_b.kid = "b-1";
  a_as_b.alg = JwsAlg::es256;
  EXPECT_EQ(check(token(c, a_as_b)), R::alg_not_allowed);  // b-1 is bound to EdDSA
  auto ed_other = TestKey{TestKey::generate("Ed25519"), "Ed25519", JwsAlg::eddsa, "b-1"};
  EXPECT_EQ(check(token(c, ed_other)), R::bad_signature);
}

TEST_F(OAuthTest, UnknownOrMissingIssuer) {
  Json c = default_claims();
  c["iss"] = "https://idp.example.com/";
  EXPECT_EQ(check(token(c, key_a)), R::wrong_issuer);
  c.erase("iss");
  EXPECT_EQ(check(token(c, key_a)), R::wrong_issuer);
  EXPECT_EQ(check("garbage"), R::token_malformed);
  EXPECT_EQ(fetches_a, 0);  // nothing fetched for tokens that never got that far
}

TEST_F(OAuthTest, DisallowedAlgNeverTriggersFetch) {
  Json h = {{"alg", "HS256"}, {"typ", "at+jwt"}, {"kid", "zzz"}};
  std::string input = b64(h) + "." + b64(default_claims());
  EXPECT_EQ(check(input + "." + b64(std::string(32, 'x'))), R::alg_not_allowed);
  EXPECT_EQ(fetches_a, 0);
}

TEST_F(OAuthTest, KeyUrlHeadersAreNeverFetched) {
  for (const char* name : {"jku", "x5u"}) {
    Json h = default_header(key_a);
    h["kid"] = "attacker-kid";
    h[name] = "https://attacker.example/keys";
    EXPECT_EQ(check(token(h, default_claims(), key_a)), R::token_malformed) << name;
  }
  Json h = default_header(key_a);
  h["jwk"] = key_a.jwk();
  EXPECT_EQ(check(token(h, default_claims(), key_a)), R::token_malformed);
  // Rejected before any key-set access: no fetch of any kind happened.
  EXPECT_EQ(fetches_a, 0);
}

TEST_F(OAuthTest, KeyRotationByKid) {
  EXPECT_EQ(check(token(default_claims(), key_a)), std::nullopt);
  EXPECT_EQ(fetches_a, 1);
  doc_a = jwks_of({key_a, key_a2});
  clock.set(now_tp(kNow + 31));
  // Unknown kid → one refresh → accepted.
  EXPECT_EQ(check(token(default_claims(), key_a2)), std::nullopt);
  EXPECT_EQ(fetches_a, 2);
  // A second unknown kid within the interval: no refresh.
  auto stranger = make_key("ed", "Ed25519", "a-3");
  EXPECT_EQ(check(token(default_claims(), stranger)), R::unknown_key);
  EXPECT_EQ(fetches_a, 2);
  // The old key is removed later: tokens signed by it fail.
  doc_a = jwks_of({key_a2});
  clock.set(now_tp(kNow + 400));
  EXPECT_EQ(check(token(default_claims(), key_a), kNow + 400 - 350), R::unknown_key);
}

TEST_F(OAuthTest, StaleKeySetFailsClosed) {
  EXPECT_EQ(check(token(default_claims(), key_a)), std::nullopt);
  doc_a = "";  // the issuer's publication breaks
  clock.set(now_tp(kNow + 24 * 3600 + 1));
  EXPECT_EQ(check(token(default_claims(), key_a)), R::unknown_key);
}

TEST_F(OAuthTest, ReplayedJtiAcrossRestart) {
  TempDir dir;
  {
    auto cache = FileReplayCache::open(dir.path(), clock);
    ASSERT_TRUE(cache.has_value()) << cache.error().message;
    build(std::shared_ptr<ReplayCache>(std::move(*cache)));
    const std::string tok = token(default_claims(), key_a);
    EXPECT_EQ(check(tok), std::nullopt);
    EXPECT_EQ(check(tok), R::replayed);
    Json other = default_claims();
    other["jti"] = "jti-2";
    EXPECT_EQ(check(token(other, key_a)), std::nullopt);
    Json none = default_claims();
    none.erase("jti");
    EXPECT_EQ(check(token(none, key_a)), R::token_malformed);
    // A token rejected for another reason does not consume its jti.
    Json bad_aud = default_claims();
    bad_aud["jti"] = "jti-3";
    bad_aud["aud"] = "elsewhere";
    EXPECT_EQ(check(token(bad_aud, key_a)), R::wrong_audience);
  }
  // Restart: a fresh verifier and cache over the same directory.
  auto cache = FileReplayCache::open(dir.path(), clock);
  ASSERT_TRUE(cache.has_value());
  EXPECT_EQ((*cache)->size(), 2u);
  build(std::shared_ptr<ReplayCache>(std::move(*cache)));
  EXPECT_EQ(check(token(default_claims(), key_a)), R::replayed);
  Json j3 = default_claims();
  j3["jti"] = "jti-3";
  EXPECT_EQ(check(token(j3, key_a)), std::nullopt);
}

TEST_F(OAuthTest, ReplayCachePrunesExpiredOnLoad) {
  TempDir dir;
  {
    auto cache = FileReplayCache::open(dir.path(), clock, std::chrono::seconds(0));
    ASSERT_TRUE(cache.has_value());
    EXPECT_FALSE((*cache)->seen_or_insert("iss", "old", now_tp(kNow + 10)));
    EXPECT_FALSE((*cache)->seen_or_insert("iss", "new", now_tp(kNow + 1000)));
    EXPECT_TRUE((*cache)->seen_or_insert("iss", "old", now_tp(kNow + 10)));
    EXPECT_FALSE((*cache)->seen_or_insert("other-iss", "old", now_tp(kNow + 10)));
  }
  // A torn last line is ignored.
  {
    auto text = read_file(dir / "jti-replay");
    ASSERT_TRUE(text.has_value());
    ASSERT_TRUE(write_file_atomic(dir / "jti-replay", *text + "123 abc").has_value());
  }
  FixedClock later{now_tp(kNow + 100)};
  auto cache = FileReplayCache::open(dir.path(), later, std::chrono::seconds(0));
  ASSERT_TRUE(cache.has_value());
  EXPECT_EQ((*cache)->size(), 1u);
  EXPECT_TRUE((*cache)->seen_or_insert("iss", "new", now_tp(kNow + 1000)));
}

// A write that fails half-way (here: the file-size limit cuts it) must not leave a
// partial line that swallows the next entry: the jti accepted after it stays known
// after a restart.
TEST_F(OAuthTest, ReplayCacheSurvivesATornWrite) {
  TempDir dir;
  const auto file = dir / "jti-replay";
  {
    auto cache = FileReplayCache::open(dir.path(), clock);
    ASSERT_TRUE(cache.has_value());
    EXPECT_FALSE((*cache)->seen_or_insert("iss", "first", now_tp(kNow + 600)));
    const auto size = std::filesystem::file_size(file);
    struct sigaction ign {}, old {};
    ign.sa_handler = SIG_IGN;
    ASSERT_EQ(::sigaction(SIGXFSZ, &ign, &old), 0);
    rlimit saved{};
    ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
    rlimit small = saved;
    small.rlim_cur = size + 20;  // the next line (~76 bytes) is cut after 20
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
    const bool torn_result = (*cache)->seen_or_insert("iss", "torn", now_tp(kNow + 600));
    ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &saved), 0);
    ASSERT_EQ(::sigaction(SIGXFSZ, &old, nullptr), 0);
    EXPECT_TRUE(torn_result);  // not recorded: refused (fail closed)
    EXPECT_FALSE((*cache)->seen_or_insert("iss", "later", now_tp(kNow + 600)));
  }
  // Also a file that already holds torn bytes in front of a whole line (as an older
  // agent would have left it) keeps that line's entry.
  {
    auto text = read_file(file);
    ASSERT_TRUE(text.has_value());
    ASSERT_TRUE(write_file_atomic(file, *text + "18000006").has_value());
  }
  {
    auto cache = FileReplayCache::open(dir.path(), clock);
    ASSERT_TRUE(cache.has_value());
    EXPECT_FALSE((*cache)->seen_or_insert("iss", "after-torn", now_tp(kNow + 600)));
    auto text = read_file(file);
    ASSERT_TRUE(text.has_value());
    // Simulate the old writer: append torn bytes, then a whole line, with no cut.
    const auto cut = text->rfind('\n', text->size() - 2) + 1;
    ASSERT_TRUE(write_file_atomic(file, text->substr(0, cut) + "1800000" + text->substr(cut)).has_value());
  }
  auto cache = FileReplayCache::open(dir.path(), clock);
  ASSERT_TRUE(cache.has_value());
  EXPECT_TRUE((*cache)->seen_or_insert("iss", "first", now_tp(kNow + 600)));
  EXPECT_TRUE((*cache)->seen_or_insert("iss", "later", now_tp(kNow + 600)));
  EXPECT_TRUE((*cache)->seen_or_insert("iss", "after-torn", now_tp(kNow + 600)));
  EXPECT_FALSE((*cache)->seen_or_insert("iss", "torn", now_tp(kNow + 600)));
}

TEST_F(OAuthTest, BindingAccepted) {
  require_binding = true;
  build();
  Json c = default_claims();
  c["authorization_details"] = binding();
  EXPECT_EQ(check(token(c, key_a)), std::nullopt);
  // Other entries may precede ours; locations by agent name; params absent.
  Json ad = Json::array(
      {Json{{"type", "payment_initiation"}}, Json{{"type", "delegate_runbook"},
                                                  {"identifier", "restart-service"},
                                                  {"actions", Json::array({"read", "execute"})},
                                                  {"locations", Json::array({"web-01"})}}});
  c["authorization_details"] = ad;
  EXPECT_EQ(check(token(c, key_a)), std::nullopt);
}

// A token that carries authorization_details is held to them whether or not the issuer
// requires them (RFC 9396): the flag only decides whether a token without them passes.
TEST_F(OAuthTest, EachBindingFailure) {
  for (bool required : {true, false}) {
    SCOPED_TRACE(required ? "require_authorization_details: true" : "require_authorization_details: false");
    require_binding = required;
    build();
    auto with = [&](auto mutate) {
      Json c = default_claims();
      Json ad = binding();
      mutate(ad);
      c["authorization_details"] = ad;
      return check(token(c, key_a));
    };
    Json c = default_claims();
    EXPECT_EQ(check(token(c, key_a)), required ? std::optional(R::binding_mismatch) : std::nullopt);  // absent
    c["authorization_details"] = Json::object();
    EXPECT_EQ(check(token(c, key_a)), R::binding_mismatch);  // not an array
    EXPECT_EQ(with([](Json&) {}), std::nullopt);              // positive control
    EXPECT_EQ(with([](Json& ad) { ad[0]["type"] = "other_type"; }), R::binding_mismatch);
    EXPECT_EQ(with([](Json& ad) { ad[0]["identifier"] = "host-diagnostics"; }), R::binding_mismatch);
    EXPECT_EQ(with([](Json& ad) { ad[0].erase("identifier"); }), R::binding_mismatch);
    EXPECT_EQ(with([](Json& ad) { ad[0]["actions"] = Json::array({"read"}); }), R::binding_mismatch);
    EXPECT_EQ(with([](Json& ad) { ad[0]["actions"] = "execute"; }), R::binding_mismatch);
    EXPECT_EQ(with([](Json& ad) {
                ad[0]["locations"] = Json::array({"staging", "web-02"});
              }),
              R::binding_mismatch);
    EXPECT_EQ(with([](Json& ad) { ad[0]["params"]["service"] = "sshd"; }), R::binding_mismatch);
    EXPECT_EQ(with([](Json& ad) { ad[0]["params"]["extra"] = 1; }), R::binding_mismatch);
    EXPECT_EQ(with([](Json& ad) { ad[0]["params"].erase("graceful"); }), R::binding_mismatch);
    EXPECT_EQ(with([](Json& ad) { ad[0]["params"] = Json::array(); }), R::binding_mismatch);
  }
}

// require_locations binds a token to one agent: the agent's own name must be listed
// (a tag names a group). Unbound, one token runs on every agent of the issuer.
TEST_F(OAuthTest, RequireLocationsBindsATokenToOneAgent) {
  auto build_with = [&](bool require_locations, const std::string& agent) {
    IssuerPolicy a = default_policy();
    a.require_locations = require_locations;
    a.agent_name = agent;
    auto fetch_a = [this]() -> Result<std::string> { return doc_a; };
    auto v = OAuthVerifier::create(
        {{a, std::make_shared<JwksCache>(fetch_a, clock, a.algorithms, JwksCacheOptions{}), nullptr}});
    EXPECT_TRUE(v.has_value());
    return std::move(*v);
  };
  auto decide = [&](const OAuthVerifier& v, const Json& locations) {
    Json c = default_claims();
    Json ad = binding();
    if (locations.is_null()) ad[0].erase("locations");
    else ad[0]["locations"] = locations;
    c["authorization_details"] = ad;
    return v.verify(token(c, key_a), job, now_tp()).deny;
  };
  auto bound01 = build_with(true, "web-01");
  auto bound02 = build_with(true, "web-02");
  const Json names01 = Json::array({"web-01"});
  EXPECT_EQ(decide(*bound01, names01), std::nullopt);
  EXPECT_EQ(decide(*bound02, names01), R::binding_mismatch);
  EXPECT_EQ(decide(*bound01, Json::array({"prod"})), R::binding_mismatch);  // tag only
  EXPECT_EQ(decide(*bound01, Json()), R::binding_mismatch);                 // no locations
  EXPECT_EQ(bound01->verify(token(default_claims(), key_a), job, now_tp()).deny, R::binding_mismatch);

  // Unbound (the default): a token without locations is accepted by every agent.
  auto open01 = build_with(false, "web-01");
  auto open02 = build_with(false, "web-02");
  EXPECT_EQ(decide(*open01, Json()), std::nullopt);
  EXPECT_EQ(decide(*open02, Json()), std::nullopt);
  // ... but locations, when present, are still honoured.
  EXPECT_EQ(decide(*open02, names01), R::binding_mismatch);
}

TEST_F(OAuthTest, CreateValidatesConfiguration) {
  EXPECT_FALSE(OAuthVerifier::create({}).has_value());
  auto cache =
      std::make_shared<JwksCache>([] { return Result<std::string>(std::string("{\"keys\":[]}")); },
                                  clock, std::vector<JwsAlg>{JwsAlg::eddsa});
  OAuthIssuer i{default_policy(), cache, nullptr};
  EXPECT_TRUE(OAuthVerifier::create({i}).has_value());
  EXPECT_FALSE(OAuthVerifier::create({i, i}).has_value());
  OAuthIssuer no_aud = i;
  no_aud.policy.audience.clear();
  EXPECT_FALSE(OAuthVerifier::create({no_aud}).has_value());
  OAuthIssuer no_keys = i;
  no_keys.keys.reset();
  EXPECT_FALSE(OAuthVerifier::create({no_keys}).has_value());
}

// Through the Authorizer: the verified principal feeds RBAC of the shipped runbook
// (restart-service: scope runbooks:execute, role sre-oncall).
TEST_F(OAuthTest, AuthorizerRbac) {
  auto catalog = Catalog::load_dir(shipped_runbooks_dir());
  ASSERT_TRUE(catalog.has_value()) << catalog.error().message;
  ApiKeyStore keys;
  Authorizer authz(*catalog, keys, AuthorizerOptions{.oauth = verifier.get()});
  job.params = Json{{"service", "nginx"}};
  job.credential.type = CredentialType::oauth;
  auto decide = [&](const Json& claims) {
    job.credential.secret = token(claims, key_a);
    return authz.decide(job, now_tp());
  };
  Json c = default_claims();
  c["roles"] = Json::array({"sre-oncall"});
  auto d = decide(c);
  EXPECT_TRUE(d.allow) << d.detail;
  EXPECT_EQ(d.subject, "alice");
  c["jti"] = "j2";
  c["scope"] = "diag";
  d = decide(c);
  EXPECT_EQ(d.reason, R::missing_scope);
  c["scope"] = "runbooks:execute";
  c["roles"] = Json::array({"viewer"});
  d = decide(c);
  EXPECT_EQ(d.reason, R::role_not_allowed);
  c.erase("roles");
  d = decide(c);
  EXPECT_EQ(d.reason, R::role_not_allowed);
  c["roles"] = "sre-oncall";
  c["exp"] = kNow - 3600;
  d = decide(c);
  EXPECT_EQ(d.reason, R::expired);
  EXPECT_EQ(d.detail.find(job.credential.secret), std::string::npos);
}

}  // namespace
}  // namespace delegate::policies
