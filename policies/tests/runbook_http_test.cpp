// The http step: what loads, what is refused at load (attacks first), and substitution
// into its URL, header values and body.
#include <gtest/gtest.h>

#include <delegate/policies/runbook.hpp>

namespace delegate::policies {
namespace {

const char* kTop =
    "name: rb\nauthorize: {scopes: [x]}\nparams:\n  title: {type: string, required: true}\n"
    "  n: {type: integer, default: 3}\nsteps:\n";

std::string http_step(const std::string& with, const std::string& extra = "    sandbox: {egress: [\"api.example.com:443\"]}\n") {
  return std::string(kTop) + "  - name: create\n    uses: http\n    with:\n" + with + extra;
}

Result<Runbook> load(const std::string& with, const std::string& extra = "    sandbox: {egress: [\"api.example.com:443\"]}\n") {
  return parse_runbook(http_step(with, extra));
}

void expect_refused(const std::string& with, const std::string& needle,
                    const std::string& extra = "    sandbox: {egress: [\"api.example.com:443\"]}\n") {
  auto rb = load(with, extra);
  ASSERT_FALSE(rb.has_value()) << with;
  EXPECT_NE(rb.error().message.find(needle), std::string::npos) << rb.error().message;
  EXPECT_EQ(rb.error().message.find('\n'), std::string::npos) << rb.error().message;
}

TEST(RunbookHttp, TheOperatorShapeLoads) {
  auto rb = load(
      "      method: POST\n      url: https://api.example.com/v2/incidents\n"
      "      headers: {Accept: application/json}\n"
      "      body: {title: \"${params.title}\", count: \"${params.n}\", nested: [1, true, null, \"x\"]}\n"
      "      expect_status: [201]\n      timeout_s: 30\n"
      "      auth: {type: api_key, header: X-Api-Key, secret: pd_key}\n"
      "      outputs: {ticket: /id}\n"
      "      retry: {attempts: 3, on_status: [429, 502, 503]}\n");
  ASSERT_TRUE(rb.has_value()) << rb.error().message;
  const auto& st = rb->steps[0];
  EXPECT_EQ(st.uses, StepKind::http);
  EXPECT_EQ(st.http.method, "POST");
  EXPECT_EQ(st.http.authority, "api.example.com:443");
  EXPECT_EQ(st.http.expect_status, std::vector<int>{201});
  EXPECT_EQ(st.http.auth.type, HttpAuthType::api_key);
  EXPECT_EQ(st.secrets, std::vector<std::string>{"pd_key"});
  EXPECT_EQ(st.http.retry_attempts, 3u);
  ASSERT_TRUE(st.http.body);
  EXPECT_EQ((*st.http.body)["nested"], Json::parse(R"([1, true, null, "x"])"));
  EXPECT_EQ(st.outputs.at("ticket").selector, "/id");
}

TEST(RunbookHttp, AReferenceInTheSchemeHostOrPortIsRefused) {
  for (const std::string url : {"https://${params.title}/x", "https://api.${params.title}.com/x",
                                "https://api.example.com:${params.n}/x", "https://${steps.a.outputs.b}/"}) {
    expect_refused("      url: \"" + url + "\"\n", "scheme, host or port");
  }
}

TEST(RunbookHttp, ASecretInTheUrlIsRefusedWhereverItIs) {
  for (const std::string url : {"https://api.example.com/x?key=${secrets.pd_key}", "https://api.example.com/${secrets.k1234567}",
                                "https://${secrets.host_name}/"}) {
    expect_refused("      url: \"" + url + "\"\n", "cannot be part of a URL");
  }
}

TEST(RunbookHttp, UrlsThatAreNotPlainHttpsAreRefused) {
  expect_refused("      url: http://api.example.com/\n", "https://");
  expect_refused("      url: https://user@api.example.com/\n", "user information");
  expect_refused("      url: https://api.example.com/#frag\n", "fragment");
  expect_refused("      url: \"https://api.example.com/a b\"\n", "spaces");
  expect_refused("      url: https://api.example.com:99999/\n", "port");
  expect_refused("      url: https://api_example.com/\n", "malformed host");
}

TEST(RunbookHttp, TheHostMustBeInTheEgressAllowlistUnlessTheStepHasTheNetwork) {
  expect_refused("      url: https://other.example.com/\n", "other.example.com:443 is not in sandbox.egress");
  expect_refused("      url: https://api.example.com:8443/\n", "api.example.com:8443 is not in sandbox.egress");
  expect_refused(
      "      url: https://api.example.com/\n"
      "      auth: {type: oauth2_client_credentials, token_url: \"https://idp.example.com/token\", client_id: c1, client_secret: cs}\n",
      "idp.example.com:443 is not in sandbox.egress");
  EXPECT_TRUE(load("      url: https://API.example.com/\n").has_value());
  EXPECT_TRUE(load("      url: https://other.example.com:8443/\n", "    sandbox: {network: true}\n").has_value());
  expect_refused("      url: https://api.example.com/\n", "missing ':port'", "    sandbox: {egress: [\"api.example.com\"]}\n");
}

TEST(RunbookHttp, ReferencesArePlacedOnlyWhereTheyAreSafe) {
  // In the path and query: fine. An undeclared parameter or a later step: refused.
  EXPECT_TRUE(load("      url: \"https://api.example.com/t/${params.title}?n=${params.n}\"\n").has_value());
  expect_refused("      url: \"https://api.example.com/t/${params.nope}\"\n", "undeclared parameter nope");
  expect_refused("      url: https://api.example.com/\n      headers: {\"X-${params.title}\": v}\n", "not a valid header name");
  expect_refused("      url: https://api.example.com/\n      body: {\"${params.title}\": 1}\n", "a key cannot hold a reference");
  expect_refused("      url: https://api.example.com/\n      auth: {type: basic, username: \"${params.title}\", secret: s12345678}\n",
                 "cannot hold a reference");
  expect_refused("      url: https://api.example.com/\n      auth: {type: oauth2_client_credentials, token_url: \"https://api.example.com/${params.title}\", client_id: c, client_secret: s}\n",
                 "cannot hold a reference");
}

TEST(RunbookHttp, SecretsInHeadersAndBodyAreListedWithTheAuthSecrets) {
  auto rb = load(
      "      url: https://api.example.com/\n      headers: {X-Trace: \"t-${secrets.trace_key}\"}\n"
      "      body: {token: \"${secrets.body_key}\"}\n"
      "      auth: {type: bearer, secret: bearer_key}\n");
  ASSERT_TRUE(rb.has_value()) << rb.error().message;
  EXPECT_EQ(rb->steps[0].secrets, (std::vector<std::string>{"bearer_key", "trace_key", "body_key"}));
}

TEST(RunbookHttp, StrictKeysAndBoundsWithOneLineErrors) {
  expect_refused("      url: https://api.example.com/\n      methd: GET\n", "methd");
  expect_refused("      url: https://api.example.com/\n      method: TRACE\n", "must be GET, POST");
  expect_refused("      url: https://api.example.com/\n      retry: {attempts: 6}\n", "between 1 and 5");
  expect_refused("      url: https://api.example.com/\n      expect_status: [99]\n", "between 100 and 599");
  expect_refused("      url: https://api.example.com/\n      auth: {type: api_key, header: X-K}\n", "auth.secret: missing");
  expect_refused("      url: https://api.example.com/\n      auth: {type: digest, secret: s}\n", "must be api_key, bearer");
  expect_refused("      url: https://api.example.com/\n      auth: {type: bearer, secret: s}\n      headers: {authorization: x}\n",
                 "is set by with.auth");
  expect_refused("      url: https://api.example.com/\n      headers: {Host: evil.example.com}\n", "is set by the agent");
  expect_refused("      url: https://api.example.com/\n      outputs: {t: {line: \"id=\", type: string}}\n", "JSON Pointers");
  expect_refused("      url: https://api.example.com/\n", "no environment", "    env: {A: b}\n    sandbox: {network: true}\n");
}

TEST(RunbookHttp, UrlSubstitutionPercentEncodesSoAValueStaysInItsSegment) {
  const Json params{{"title", "a/../b?x=1&y=2#z %"}, {"n", 3}};
  auto url = substitute_url("https://api.example.com/t/${params.title}?n=${params.n}&q=${params.title}", params, Json::object());
  ASSERT_TRUE(url) << url.error().message;
  EXPECT_EQ(*url, "https://api.example.com/t/a%2F..%2Fb%3Fx%3D1%26y%3D2%23z%20%25?n=3&q=a%2F..%2Fb%3Fx%3D1%26y%3D2%23z%20%25");
}

TEST(RunbookHttp, AValueThatIsADotSegmentIsRefusedNotResolvedToAnotherPath) {
  // /v1/tickets/${id}/close with id ".." would reach /v1/close once the client resolves
  // dot segments, with the same credential.
  const std::string tmpl = "https://api.example.com/v1/tickets/${steps.open.outputs.id}/close";
  for (const char* dots : {"..", "."}) {
    auto url = substitute_url(tmpl, Json::object(), Json{{"open", {{"id", dots}}}});
    ASSERT_FALSE(url) << dots << " -> " << *url;
    EXPECT_NE(url.error().message.find("dot segment"), std::string::npos) << url.error().message;
  }
  // Positive control: dots inside a value are just characters of that segment.
  auto ok = substitute_url(tmpl, Json::object(), Json{{"open", {{"id", "..a"}}}});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(*ok, "https://api.example.com/v1/tickets/..a/close");
}

TEST(RunbookHttp, BodySubstitutionKeepsTypesAndEscapesText) {
  const Json params{{"title", "say \"hi\"\n"}, {"n", 3}};
  const Json outputs{{"s1", {{"id", 42}}}};
  const Json tmpl{{"title", "${params.title}"},
                  {"count", "${params.n}"},
                  {"id", "${steps.s1.outputs.id}"},
                  {"text", "n=${params.n} id=${steps.s1.outputs.id}"},
                  {"auth", "k ${secrets.key_1}"},
                  {"list", Json::array({"${params.n}", false})}};
  auto body = substitute_body(tmpl, params, outputs, {{"key_1", "s3cr3t-value"}});
  ASSERT_TRUE(body) << body.error().message;
  EXPECT_EQ((*body)["title"], "say \"hi\"\n");
  EXPECT_EQ((*body)["count"], 3);
  EXPECT_EQ((*body)["id"], 42);
  EXPECT_EQ((*body)["text"], "n=3 id=42");
  EXPECT_EQ((*body)["auth"], "k s3cr3t-value");
  EXPECT_EQ((*body)["list"][0], 3);
  EXPECT_EQ(body->dump(), R"({"auth":"k s3cr3t-value","count":3,"id":42,"list":[3,false],"text":"n=3 id=42","title":"say \"hi\"\n"})");
  // A value never becomes a reference: substituted text is not scanned again.
  auto again = substitute_body(Json("${params.title}"), Json{{"title", "${secrets.key_1}"}}, Json::object(), {{"key_1", "s3cr3t-value"}});
  ASSERT_TRUE(again);
  EXPECT_EQ(*again, "${secrets.key_1}");
}

}  // namespace
}  // namespace delegate::policies
