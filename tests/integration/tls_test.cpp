// Transport security and robustness of both sides, from outside.
#include <gtest/gtest.h>
#include <openssl/ssl.h>

#include "harness.hpp"
#include "tls_client.hpp"

namespace delegate::testing {
namespace {

std::string http_post(const std::string& path, const std::string& token, const std::string& body) {
  return "POST " + path + " HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer " + token +
         "\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
         "\r\n\r\n" + body;
}

TEST(Tls, ControlPlaneRefusesTls12OnlyClientAndAcceptsTls13) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  const std::string get = "GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
  auto old = raw_tls_exchange(cp.port(), cp.dir() / "ca.pem", TLS1_2_VERSION, get);
  EXPECT_FALSE(old.handshake_ok);
  EXPECT_NE(old.error.find("protocol version"), std::string::npos) << old.error;
  auto modern = raw_tls_exchange(cp.port(), cp.dir() / "ca.pem", TLS1_3_VERSION, get);
  ASSERT_TRUE(modern.handshake_ok) << modern.error;
  EXPECT_EQ(modern.response.rfind("HTTP/1.1 200", 0), 0u) << modern.response;
}

TEST(Tls, MalformedRequestsGetClear4xxAndTheServerKeepsServing) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  const auto ca = cp.dir() / "ca.pem";
  const auto admin = cp.admin_token();
  struct Case {
    std::string name, request, status;
  } cases[] = {
      {"truncated JSON", http_post("/v1/jobs", admin, "{\"runbook\": "), "400"},
      {"duplicate member", http_post("/v1/jobs", admin, R"({"runbook":"a","runbook":"b"})"), "400"},
      {"array body", http_post("/v1/jobs", admin, "[1,2]"), "400"},
      {"invalid UTF-8", http_post("/v1/jobs", admin, "{\"runbook\":\"\xff\xfe\"}"), "400"},
      {"deep nesting", http_post("/v1/jobs", admin, std::string(10000, '[') + std::string(10000, ']')), "400"},
      {"wrong types", http_post("/v1/jobs", admin, R"({"runbook":"a","params":[]})"), "400"},
      {"unknown member", http_post("/v1/jobs", admin, R"({"runbook":"a","steps":[]})"), "400"},
      {"no admin token", http_post("/v1/jobs", "nope", R"({"runbook":"a"})"), "401"},
      {"oversized body", http_post("/v1/jobs", admin, std::string(5u << 20, ' ')), "413"},
      {"declared oversize", "POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Length: 999999999\r\n\r\n", "413"},
      {"garbage request line", "\x01\x02 nonsense\r\n\r\n", "400"},
      {"register bad key", http_post("/v1/agents/register", cp.admin_token(), "{}"), "401"},
      {"records without token", http_post("/v1/jobs/job_1/records", "", "{}"), "401"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = raw_tls_exchange(cp.port(), ca, TLS1_3_VERSION, c.request);
    ASSERT_TRUE(r.handshake_ok) << r.error;
    EXPECT_EQ(r.response.substr(0, 12), "HTTP/1.1 " + c.status) << r.response.substr(0, 200);
    if (c.status != "413") {
      EXPECT_NE(r.response.find("\"error\""), std::string::npos);
    }
  }
  auto enroll = read_text(cp.dir() / "enrollment.token");
  enroll.pop_back();
  auto bad_key = raw_tls_exchange(cp.port(), ca, TLS1_3_VERSION,
                                  http_post("/v1/agents/register", enroll,
                                            R"({"name":"a","hostname":"h","tags":[],"version":"1","public_key":"AAAA"})"));
  EXPECT_EQ(bad_key.response.substr(0, 12), "HTTP/1.1 400");
  EXPECT_TRUE(cp.process().running());
  auto ok = cp.admin_get("/healthz");
  EXPECT_EQ(ok.status, 200);
}

TEST(Tls, AgentRefusesServerCertificateFromUnknownCa) {
  TempDir tmp;
  ControlPlane trusted(tmp.path / "a");
  ControlPlane impostor(tmp.path / "b");
  // The agent is pointed at the impostor but trusts only the first CA.
  auto cfg = read_text(impostor.dir() / "agent.yaml");
  auto pos = cfg.find((impostor.dir() / "ca.pem").string());
  ASSERT_NE(pos, std::string::npos);
  cfg.replace(pos, (impostor.dir() / "ca.pem").string().size(), (trusted.dir() / "ca.pem").string());
  write_text(tmp.path / "agent.yaml", cfg, 0600);
  Process agent({Bins::agent(), "run", "--config", (tmp.path / "agent.yaml").string()}, tmp.path / "agent.log");
  EXPECT_TRUE(eventually([&] {
    return agent.log_text().find("TLS verification of the control plane failed") != std::string::npos;
  })) << agent.log_text();
  EXPECT_TRUE(agent.running());  // keeps retrying with backoff; never falls back
  auto agents = Json::parse(impostor.admin_get("/v1/agents").body);
  EXPECT_TRUE(agents["agents"].empty());
}

TEST(Tls, AgentConfigRejectsPlainHttpAndUnknownKeys) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  auto cfg = read_text(cp.dir() / "agent.yaml");
  auto http = cfg;
  http.replace(http.find("https://"), 8, "http://");
  write_text(tmp.path / "http.yaml", http, 0600);
  auto r = run({Bins::agent(), "run", "--config", (tmp.path / "http.yaml").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("https://"), std::string::npos) << r.err;
  write_text(tmp.path / "extra.yaml", cfg + "insecure_skip_verify: true\n", 0600);
  r = run({Bins::agent(), "run", "--config", (tmp.path / "extra.yaml").string()});
  EXPECT_EQ(r.exit_code, 2);
  EXPECT_NE(r.err.find("insecure_skip_verify: unknown key"), std::string::npos) << r.err;
}

}  // namespace
}  // namespace delegate::testing
