// `delegate-agent doctor` against a real control plane (and, for the clock, a fake one
// whose Date header is chosen by the test): it passes on this host with a valid
// configuration, and names each deliberately broken part with exit status 1.
#include <gtest/gtest.h>

#include <ctime>
#include <sstream>

#include "fake_cp.hpp"
#include "harness.hpp"

namespace delegate::testing {
namespace {

std::vector<std::string> lines_of(const std::string& out) {
  std::vector<std::string> lines;
  std::istringstream in(out);
  for (std::string l; std::getline(in, l);) lines.push_back(l);
  return lines;
}

// The line of check `name`, or "".
std::string line_of(const std::string& out, const std::string& name) {
  for (const auto& l : lines_of(out)) {
    if (l.size() > 6 && l.compare(6, name.size() + 1, name + ":") == 0) return l;
  }
  return "";
}

RunResult doctor(const fs::path& config) { return run({Bins::agent(), "doctor", "--config", config.string()}); }

void replace_line(std::string& cfg, const std::string& key, const std::string& value) {
  const auto at = cfg.find(key + ": ");
  ASSERT_NE(at, std::string::npos) << key;
  cfg.replace(at, cfg.find('\n', at) - at, key + ": " + value);
}

class Doctor : public ::testing::Test {
 protected:
  void SetUp() override {
    cp_ = std::make_unique<ControlPlane>(tmp_.path / "cp");
    config_ = cp_->dir() / "agent.yaml";
  }
  TempDir tmp_;
  std::unique_ptr<ControlPlane> cp_;
  fs::path config_;
};

TEST_F(Doctor, PassesOnThisHostAgainstTheRealControlPlane) {
  const auto r = doctor(config_);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  for (const auto& l : lines_of(r.out)) {
    if (l.starts_with("all checks") || l.starts_with("some checks")) continue;
    EXPECT_TRUE(l.starts_with("ok    ")) << l;
  }
  for (const char* check : {"config", "user namespaces", "cgroup memory", "cgroup pids", "cgroup cpu", "seccomp",
                            "mount_setattr", "sandbox launch", "egress network namespace", "mode of enrollment token", "mode of spool key", "runbook catalog",
                            "control plane CA", "control plane TLS", "clock skew"}) {
    EXPECT_TRUE(line_of(r.out, check).starts_with("ok    ")) << check << "\n" << r.out;
  }
  // The dev issuer's JWKS is served by the control plane itself, over the same CA.
  EXPECT_NE(r.out.find("ok    jwks https://127.0.0.1:"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("TLS 1.3"), std::string::npos) << r.out;
}

TEST_F(Doctor, BrokenConfigIsNamedAndHostChecksStillRun) {
  auto cfg = read_text(config_);
  cfg.replace(cfg.find("agent:\n"), 7, "agent:\n  colour: blue\n");
  write_text(tmp_.path / "broken.yaml", cfg, 0600);
  const auto r = doctor(tmp_.path / "broken.yaml");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  const auto l = line_of(r.out, "config");
  EXPECT_TRUE(l.starts_with("FAIL  config: ")) << r.out;
  EXPECT_NE(l.find("agent.colour"), std::string::npos) << l;
  EXPECT_TRUE(line_of(r.out, "seccomp").starts_with("ok    ")) << r.out;
}

// doctor inside a step: the step's seccomp filter and its lack of capabilities refuse
// what a nested launch needs, as a container runtime's default policy does. The launch
// check runs a real step and names the refusal instead of passing on probes alone.
TEST_F(Doctor, RefusedLaunchIsNamedWithWhatToDo) {
  const auto r = run({Bins::agent(), "sandbox-run", "--timeout", "60", "--", Bins::agent(), "doctor", "--config",
                      "/nonexistent/agent.yaml"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const auto launch = line_of(r.out, "sandbox launch");
  EXPECT_TRUE(launch.starts_with("FAIL  sandbox launch: a test step (")) << r.out;
  EXPECT_NE(launch.find("every step would fail closed"), std::string::npos) << launch;
  EXPECT_NE(launch.find("docs/install.md"), std::string::npos) << launch;
  const auto egress = line_of(r.out, "egress network namespace");
  EXPECT_TRUE(egress.starts_with("FAIL  ")) << r.out;
  EXPECT_NE(egress.find("--cap-add SYS_ADMIN,NET_ADMIN"), std::string::npos) << egress;
}

// An agent that is root in a user namespace of its own but shares a network namespace
// owned by another one (a container with --userns and --network host) can create a
// network namespace and never return from it. The egress check used to make one and
// abort the whole process (SIGABRT) on the way back; it must name the problem instead.
TEST_F(Doctor, NetworkNamespaceOfAnotherUserNamespaceIsNamedNotFatal) {
  const auto r = run({"/usr/bin/unshare", "--user", "--map-root-user", Bins::agent(), "doctor", "--config",
                      "/nonexistent/agent.yaml"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  const auto egress = line_of(r.out, "egress network namespace");
  EXPECT_TRUE(egress.starts_with("FAIL  ")) << r.out << r.err;
  EXPECT_NE(egress.find("cannot re-enter the agent's own network namespace"), std::string::npos) << egress;
  EXPECT_NE(egress.find("not --network host"), std::string::npos) << egress;
}

TEST_F(Doctor, CaFileWithoutCertificatesIsNamed) {
  write_text(tmp_.path / "not-a-ca.pem", "this is not a certificate\n", 0644);
  auto cfg = read_text(config_);
  replace_line(cfg, "  ca_file", (tmp_.path / "not-a-ca.pem").string());
  write_text(tmp_.path / "agent.yaml", cfg, 0600);
  const auto r = doctor(tmp_.path / "agent.yaml");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(line_of(r.out, "control plane CA").starts_with("FAIL  ")) << r.out;
  EXPECT_NE(line_of(r.out, "control plane CA").find("holds no PEM certificate"), std::string::npos) << r.out;
  EXPECT_TRUE(line_of(r.out, "control plane TLS").starts_with("FAIL  ")) << r.out;
}

TEST_F(Doctor, CaThatDidNotIssueTheServerCertificateIsNamed) {
  // Another control plane's CA: a valid certificate that did not sign this server's.
  auto other = run({Bins::controlplane(), "init", "--dir", (tmp_.path / "other").string(), "--listen", "127.0.0.1:1"});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  auto cfg = read_text(config_);
  replace_line(cfg, "  ca_file", (tmp_.path / "other" / "ca.pem").string());
  write_text(tmp_.path / "agent.yaml", cfg, 0600);
  const auto r = doctor(tmp_.path / "agent.yaml");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(line_of(r.out, "control plane CA").starts_with("ok    ")) << r.out;
  const auto tls = line_of(r.out, "control plane TLS");
  EXPECT_TRUE(tls.starts_with("FAIL  ")) << r.out;
  EXPECT_NE(tls.find("certificate verification failed"), std::string::npos) << tls;
}

TEST_F(Doctor, GroupReadableSecretIsNamed) {
  const auto token = cp_->dir() / "enrollment.token";
  fs::permissions(token, static_cast<fs::perms>(0644));
  const auto r = doctor(config_);
  EXPECT_EQ(r.exit_code, 1) << r.out;
  const auto l = line_of(r.out, "mode of enrollment token");
  EXPECT_TRUE(l.starts_with("FAIL  ")) << r.out;
  EXPECT_NE(l.find("mode 0644"), std::string::npos) << l;
  EXPECT_NE(l.find("chmod 600 " + token.string()), std::string::npos) << l;
}

TEST_F(Doctor, ConfiguredSpoolKeyReadableByOthersIsNamed) {
  write_text(tmp_.path / "spool.key", std::string(32, 'k'), 0604);
  auto cfg = read_text(config_);
  cfg.replace(cfg.find("agent:\n"), 7, "agent:\n  spool_key_file: " + (tmp_.path / "spool.key").string() + "\n");
  write_text(tmp_.path / "agent.yaml", cfg, 0600);
  const auto r = doctor(tmp_.path / "agent.yaml");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(line_of(r.out, "mode of spool key").starts_with("FAIL  ")) << r.out;
  EXPECT_NE(line_of(r.out, "mode of spool key").find("mode 0604"), std::string::npos) << r.out;
}

TEST_F(Doctor, BrokenRunbookIsNamed) {
  auto cfg = read_text(config_);
  const auto at = cfg.find("runbooks_dir: ");
  const fs::path books = cfg.substr(at + 14, cfg.find('\n', at) - at - 14);
  write_text(books / "zz-broken.yaml", "name: [unclosed\n", 0644);
  const auto r = doctor(config_);
  fs::remove(books / "zz-broken.yaml");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(line_of(r.out, "runbook catalog").starts_with("FAIL  ")) << r.out;
}

TEST_F(Doctor, JwksUriNotTrustedByTheIssuersCaIsNamed) {
  auto other = run({Bins::controlplane(), "init", "--dir", (tmp_.path / "other").string(), "--listen", "127.0.0.1:1"});
  ASSERT_EQ(other.exit_code, 0) << other.err;
  auto cfg = read_text(config_);
  replace_line(cfg, "      ca_file", (tmp_.path / "other" / "ca.pem").string());
  write_text(tmp_.path / "agent.yaml", cfg, 0600);
  const auto r = doctor(tmp_.path / "agent.yaml");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(line_of(r.out, "control plane TLS").starts_with("ok    ")) << r.out;
  const auto at = r.out.find("FAIL  jwks https://127.0.0.1:");
  ASSERT_NE(at, std::string::npos) << r.out;
  EXPECT_NE(r.out.find("certificate verification failed", at), std::string::npos) << r.out;
}

TEST(DoctorTls, ControlPlaneOfferingOnlyTls12IsNamed) {
  TempDir tmp;
  auto init = run({Bins::controlplane(), "init", "--dir", (tmp.path / "cp").string(), "--listen", "127.0.0.1:1"});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  FakeControlPlane server({tmp.path / "cp" / "server.pem", tmp.path / "cp" / "server.key", TLS1_2_VERSION, TLS1_2_VERSION},
                          [](const FakeRequest&) { return FakeAnswer{}; });
  write_text(tmp.path / "agent.yaml", agent_config_for(tmp.path / "cp", server.port()), 0600);
  const auto r = doctor(tmp.path / "agent.yaml");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  const auto l = line_of(r.out, "control plane TLS");
  EXPECT_TRUE(l.starts_with("FAIL  ")) << r.out;
  EXPECT_NE(l.find("offers TLS 1.3"), std::string::npos) << l;
  EXPECT_EQ(server.count("/healthz"), 0u);  // no request over the older protocol
}

TEST(DoctorClock, SkewBeyondTheConfiguredLimitFails) {
  TempDir tmp;
  auto init = run({Bins::controlplane(), "init", "--dir", (tmp.path / "cp").string(), "--listen", "127.0.0.1:1"});
  ASSERT_EQ(init.exit_code, 0) << init.err;
  // An hour ahead of this host.
  const std::time_t ahead = std::time(nullptr) + 3600;
  std::tm tm{};
  ::gmtime_r(&ahead, &tm);
  char date[64];
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  FakeControlPlane server({tmp.path / "cp" / "server.pem", tmp.path / "cp" / "server.key"}, [&](const FakeRequest&) {
    FakeAnswer a;
    a.body = R"({"status":"ok"})";
    a.headers.emplace_back("Date", date);
    return a;
  });
  auto cfg = agent_config_for(tmp.path / "cp", server.port());
  // No JWKS fetch from the fake: keys from a file.
  write_text(tmp.path / "jwks.json", R"({"keys":[]})", 0644);
  const auto uri = cfg.find("      jwks_uri: ");
  cfg.replace(uri, cfg.find('\n', uri) - uri, "      jwks_file: " + (tmp.path / "jwks.json").string());
  write_text(tmp.path / "agent.yaml", cfg, 0600);
  const auto r = doctor(tmp.path / "agent.yaml");
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_TRUE(line_of(r.out, "control plane TLS").starts_with("ok    ")) << r.out;
  const auto l = line_of(r.out, "clock skew");
  EXPECT_TRUE(l.starts_with("FAIL  ")) << r.out;
  EXPECT_TRUE(l.find("-3599 s") != std::string::npos || l.find("-3600 s") != std::string::npos ||
              l.find("-3601 s") != std::string::npos)
      << l;
  EXPECT_NE(l.find("auth.clock_skew_s = 60"), std::string::npos) << l;
}

}  // namespace
}  // namespace delegate::testing
