// controlplane.json goes through the common strict reader: a duplicated key is refused
// by name (never last-one-wins), an unknown key is refused by name.
#include <gtest/gtest.h>
#include <unistd.h>

#include <delegate/common/fs.hpp>
#include <delegate/controlplane/server.hpp>

namespace delegate::controlplane {
namespace {

class DirConfig : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/delegate-cpconf-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  Result<ServerConfig> load(const std::string& json) {
    EXPECT_TRUE(write_file_atomic(dir_ / "controlplane.json", json, 0600));
    return load_dir_config(dir_);
  }

  std::filesystem::path dir_;
};

TEST_F(DirConfig, DuplicateAndUnknownKeysAreRefusedByName) {
  const std::string base = R"("listen":"127.0.0.1:8443","db":"cp.db","cert":"s.pem","key":"s.key",)"
                           R"("admin_token_file":"admin.token","enrollment_token_file":"enrollment.token")";
  auto dup = load("{" + base + R"(,"lease_s":30,"lease_s":3600})");
  ASSERT_FALSE(dup);
  EXPECT_NE(dup.error().message.find("duplicate key lease_s"), std::string::npos) << dup.error().message;
  auto dup_listen = load(R"({"listen":"127.0.0.1:1",)" + base + "}");
  ASSERT_FALSE(dup_listen);
  EXPECT_NE(dup_listen.error().message.find("duplicate key listen"), std::string::npos) << dup_listen.error().message;
  auto unknown = load("{" + base + R"(,"lease":30})");
  ASSERT_FALSE(unknown);
  EXPECT_NE(unknown.error().message.find("lease: unknown key"), std::string::npos) << unknown.error().message;
}

}  // namespace
}  // namespace delegate::controlplane
