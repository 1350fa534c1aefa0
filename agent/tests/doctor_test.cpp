// run_doctor without a control plane: the line format, the file checks' rules, and an
// unreachable control plane (the real control plane: tests/integration/doctor_test.cpp).
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <delegate/agent/doctor.hpp>

namespace delegate::agent {
namespace {

namespace fs = std::filesystem;

struct Dir {
  Dir() {
    char tmpl[] = "/tmp/delegate-doctor-XXXXXX";
    path = ::mkdtemp(tmpl);
  }
  ~Dir() { fs::remove_all(path); }
  fs::path path;
};

void write(const fs::path& p, const std::string& text, fs::perms mode) {
  std::ofstream(p) << text;
  fs::permissions(p, mode);
}

const DoctorCheck* find(const std::vector<DoctorCheck>& checks, const std::string& name) {
  for (const auto& c : checks) {
    if (c.name == name) return &c;
  }
  return nullptr;
}

class DoctorOffline : public ::testing::Test {
 protected:
  void SetUp() override {
    fs::create_directories(dir_.path / "runbooks");
    // Port 1 on loopback: refused at once, no timeout involved.
    write(config_, "control_plane:\n  url: https://127.0.0.1:1\n  enrollment_token_file: " +
                       (dir_.path / "enrollment.token").string() + "\nagent:\n  name: t\n  state_dir: " +
                       (dir_.path / "state").string() + "\nauth:\n  api_keys_file: " +
                       (dir_.path / "keys.yaml").string() + "\nrunbooks_dir: " + (dir_.path / "runbooks").string() + "\n",
          fs::perms::owner_read | fs::perms::owner_write);
  }
  Dir dir_;
  fs::path config_ = dir_.path / "agent.yaml";
};

TEST(DoctorFormat, OneLinePerCheckWithItsVerdictFirst) {
  EXPECT_EQ(format_check({"seccomp", true, "loads"}), "ok    seccomp: loads");
  EXPECT_EQ(format_check({"clock skew", false, "90 s"}), "FAIL  clock skew: 90 s");
}

TEST_F(DoctorOffline, UnreachableControlPlaneFailsTlsAndLeavesSkewUnmeasured) {
  const auto checks = run_doctor(config_, {});
  ASSERT_NE(find(checks, "config"), nullptr);
  EXPECT_TRUE(find(checks, "config")->ok) << find(checks, "config")->detail;
  const auto* tls = find(checks, "control plane TLS");
  ASSERT_NE(tls, nullptr);
  EXPECT_FALSE(tls->ok);
  EXPECT_NE(tls->detail.find("unreachable"), std::string::npos) << tls->detail;
  const auto* skew = find(checks, "clock skew");
  ASSERT_NE(skew, nullptr);
  EXPECT_FALSE(skew->ok);
  EXPECT_NE(skew->detail.find("not measured"), std::string::npos) << skew->detail;
}

TEST_F(DoctorOffline, EnrollmentTokenIsRequiredOnlyUntilTheAgentIsRegistered) {
  auto checks = run_doctor(config_, {});
  const auto* token = find(checks, "mode of enrollment token");
  ASSERT_NE(token, nullptr);
  EXPECT_FALSE(token->ok);
  EXPECT_NE(token->detail.find("does not exist; create it"), std::string::npos) << token->detail;

  fs::create_directories(dir_.path / "state");
  fs::permissions(dir_.path / "state", fs::perms::owner_all);
  write(dir_.path / "state" / "agent.json", "{}", fs::perms::owner_read | fs::perms::owner_write);
  checks = run_doctor(config_, {});
  token = find(checks, "mode of enrollment token");
  ASSERT_NE(token, nullptr);
  EXPECT_TRUE(token->ok) << token->detail;
  EXPECT_TRUE(find(checks, "mode of state_dir")->ok);
  EXPECT_TRUE(find(checks, "mode of agent credentials")->ok);
}

TEST_F(DoctorOffline, StateDirReadableByOthersAndWorldReadableKeysFail) {
  fs::create_directories(dir_.path / "state");
  fs::permissions(dir_.path / "state", static_cast<fs::perms>(0755));
  write(dir_.path / "state" / "identity.key", "k", static_cast<fs::perms>(0640));
  write(dir_.path / "keys.yaml", "", static_cast<fs::perms>(0644));
  const auto checks = run_doctor(config_, {});
  EXPECT_FALSE(find(checks, "mode of state_dir")->ok);
  EXPECT_NE(find(checks, "mode of state_dir")->detail.find("chmod 700"), std::string::npos);
  EXPECT_FALSE(find(checks, "mode of identity key")->ok);
  EXPECT_NE(find(checks, "mode of identity key")->detail.find("mode 0640"), std::string::npos);
  EXPECT_FALSE(find(checks, "mode of API keys file")->ok);
}

TEST_F(DoctorOffline, JwksFileThatIsNotAJwkSetFails) {
  write(dir_.path / "jwks.json", "{\"kids\": []}", static_cast<fs::perms>(0644));
  auto text = std::string();
  {
    std::ifstream in(config_);
    text.assign(std::istreambuf_iterator<char>(in), {});
  }
  text.replace(text.find("auth:\n"), 6,
               "auth:\n  oauth:\n    - issuer: https://idp.example/\n      audience: d\n      jwks_file: " +
                   (dir_.path / "jwks.json").string() + "\n      algorithms: [EdDSA]\n");
  write(config_, text, fs::perms::owner_read | fs::perms::owner_write);
  auto checks = run_doctor(config_, {});
  const auto* jwks = find(checks, "jwks https://idp.example/");
  ASSERT_NE(jwks, nullptr);
  EXPECT_FALSE(jwks->ok);
  EXPECT_NE(jwks->detail.find("not a readable JWK set"), std::string::npos) << jwks->detail;

  write(dir_.path / "jwks.json", "{\"keys\": []}", static_cast<fs::perms>(0644));
  checks = run_doctor(config_, {});
  EXPECT_TRUE(find(checks, "jwks https://idp.example/")->ok) << find(checks, "jwks https://idp.example/")->detail;
}

}  // namespace
}  // namespace delegate::agent
