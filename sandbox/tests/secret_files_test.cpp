// Secret files: a step finds each one in a fresh tmpfs at /run/secrets, readable by the
// step user only, not writable by anyone, gone with the step; the content is never in
// the step's argv or environment.
#include <gtest/gtest.h>

#include <filesystem>

#include "test_support.hpp"

namespace delegate::sandbox::testing {
namespace {

const std::string kContent = "-----BEGIN KEY-----\nsecret-file-c0ntent/77\n-----END KEY-----\n";

Spec secret_spec(const std::string& script) {
  Spec spec;
  spec.argv = {"/bin/sh", "-c", script};
  spec.secret_files = {{"pd_key.txt", kContent}, {"second", "another-secret-value"}};
  return spec;
}

TEST(SecretFiles, TheStepReadsItsFilesFromAPrivateReadOnlyTmpfs) {
  auto c = run_capture(secret_spec(R"SH(
echo "dir=$DELEGATE_SECRETS_DIR"
cat "$DELEGATE_SECRETS_DIR/pd_key.txt"
echo "file=$(stat -c '%a %u %g' /run/secrets/pd_key.txt)"
echo "dir-mode=$(stat -c '%a %u' /run/secrets)"
echo "list=$(ls /run/secrets | tr '\n' ' ')"
echo "me=$(id -u)"
(echo x >> /run/secrets/pd_key.txt) 2>/dev/null && echo appended || echo append-refused
(: > /run/secrets/new) 2>/dev/null && echo created || echo create-refused
chmod 600 /run/secrets/pd_key.txt 2>/dev/null && echo chmodded || echo chmod-refused
rm -f /run/secrets/second 2>/dev/null; test -e /run/secrets/second && echo still-there
grep ' /run/secrets ' /proc/self/mountinfo
tr '\0' '\n' < /proc/self/environ | grep -c 'c0ntent' || true
echo "args=$(tr '\0' ' ' < /proc/self/cmdline | grep -c c0ntent)"
)SH"),
                       compile_or_die("default"));
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(c.outcome.exit_code, 0) << c.err;
  const std::string uid = std::to_string(c.outcome.isolation.uid);
  EXPECT_NE(c.out.find("dir=/run/secrets\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find(kContent), std::string::npos) << c.out;  // byte for byte
  EXPECT_NE(c.out.find("file=400 " + uid + " " + std::to_string(c.outcome.isolation.gid) + "\n"), std::string::npos)
      << c.out;
  EXPECT_NE(c.out.find("dir-mode=500 " + uid + "\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("list=pd_key.txt second \n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("me=" + uid + "\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("append-refused\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("create-refused\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("chmod-refused\n"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("still-there\n"), std::string::npos) << c.out;
  // Its own tmpfs, mounted read-only, nosuid, nodev, noexec.
  EXPECT_NE(c.out.find(" /run/secrets ro,nosuid,nodev,noexec"), std::string::npos) << c.out;
  EXPECT_NE(c.out.find(" - tmpfs "), std::string::npos) << c.out;
  EXPECT_NE(c.out.find("\n0\nargs=0\n"), std::string::npos) << c.out;  // not in env, not in argv
  // Nothing of it on the host.
  EXPECT_FALSE(std::filesystem::exists("/run/secrets/pd_key.txt"));
}

TEST(SecretFiles, AnotherStepSeesNoneOfThem) {
  Spec first = secret_spec("cat /run/secrets/second");
  auto a = run_capture(first, compile_or_die("default"));
  ASSERT_EQ(a.outcome.exit_code, 0) << a.outcome.error << a.err;
  EXPECT_EQ(a.out, "another-secret-value");
  Spec other;
  other.argv = {"/bin/sh", "-c", "ls -a /run/secrets 2>&1; echo \"dir=[$DELEGATE_SECRETS_DIR]\""};
  auto b = run_capture(other, compile_or_die("default"));
  ASSERT_EQ(b.outcome.status, Status::exited) << b.outcome.error;
  EXPECT_EQ(b.out.find("second"), std::string::npos) << b.out;
  EXPECT_NE(b.out.find("No such file"), std::string::npos) << b.out;
  EXPECT_NE(b.out.find("dir=[]"), std::string::npos) << b.out;
}

TEST(SecretFiles, AMountOverTheSecretsDirectoryIsRefused) {
  Spec spec = secret_spec("true");
  spec.isolation.mounts.push_back({BindMount::Kind::read_only, "/run/secrets/x"});
  auto c = run_capture(spec, compile_or_die("default"));
  EXPECT_EQ(c.outcome.status, Status::setup_failed);
  EXPECT_NE(c.outcome.error.find("would cover the step's secret files"), std::string::npos) << c.outcome.error;
}

}  // namespace
}  // namespace delegate::sandbox::testing
