// The local secret store, the providers, and what run_job does with secrets: a step
// gets only the ones it references, its records name them by fingerprint, and its
// output never carries them.
#include <gtest/gtest.h>

#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <delegate/agent/config.hpp>
#include <delegate/agent/job_runner.hpp>
#include <delegate/agent/secrets.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/policies/api_keys.hpp>
#include <delegate/policies/job.hpp>

namespace delegate::agent {
namespace {

namespace fs = std::filesystem;

constexpr std::string_view kValue = "tok-3f9a0c7e-S3CR3T";

class SecretsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("delegate-secrets-" + std::to_string(::getpid()) + "-" +
                                        ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  Config config(std::vector<SecretProvider> providers = {SecretProvider::local}) const {
    Config c;
    c.agent.state_dir = dir_ / "state";
    c.secrets.providers = std::move(providers);
    return c;
  }
  static std::string slurp(const fs::path& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string(std::istreambuf_iterator<char>(in), {});
  }
  fs::path dir_;
};

TEST_F(SecretsTest, StoreRoundTripListAndDelete) {
  auto store = SecretStore::open(dir_ / "state");
  ASSERT_TRUE(store) << store.error().message;
  ASSERT_TRUE(store->set("API_TOKEN", kValue));
  ASSERT_TRUE(store->set("other", "another-value"));
  auto v = store->get("API_TOKEN");
  ASSERT_TRUE(v && *v);
  EXPECT_EQ(**v, kValue);
  EXPECT_EQ(*store->names(), (std::vector<std::string>{"API_TOKEN", "other"}));
  // A second handle (the CLI, then the daemon) reads the same file under the same key.
  auto again = SecretStore::open(dir_ / "state");
  ASSERT_TRUE(again);
  EXPECT_EQ(**again->get("other"), "another-value");
  EXPECT_TRUE(*again->remove("other"));
  EXPECT_FALSE(*again->remove("other"));
  EXPECT_FALSE(*store->get("other"));
  // The value is not in the file in the clear, and file and key are private.
  EXPECT_EQ(slurp(SecretStore::file_in(dir_ / "state")).find(kValue), std::string::npos);
  struct stat st {};
  ASSERT_EQ(::stat(SecretStore::file_in(dir_ / "state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat(SecretStore::key_file_in(dir_ / "state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

TEST_F(SecretsTest, InvalidNamesAndValuesAreRefused) {
  auto store = SecretStore::open(dir_ / "state");
  ASSERT_TRUE(store);
  for (const std::string& name : std::vector<std::string>{"", "a/b", "../x", "9lives", "a-b", std::string(65, 'a')}) {
    EXPECT_FALSE(store->set(name, kValue)) << name;
  }
  auto r = store->set("SHORT", "seven77");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message.find("seven77"), std::string::npos);
  EXPECT_FALSE(store->set("NUL", std::string("abcdefgh\0ij", 11)));
}

TEST_F(SecretsTest, AnotherKeyOrATamperedFileIsAnErrorNotAnEmptyStore) {
  auto a = SecretStore::open(dir_ / "a");
  auto b = SecretStore::open(dir_ / "b");
  ASSERT_TRUE(a && b);
  ASSERT_TRUE(a->set("API_TOKEN", kValue));
  fs::copy_file(SecretStore::file_in(dir_ / "a"), SecretStore::file_in(dir_ / "b"));
  auto wrong = b->get("API_TOKEN");
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().code, Errc::crypto);
  EXPECT_FALSE(b->names());
  EXPECT_FALSE(b->set("X_Y_Z_W", kValue));  // never overwrites what it cannot read

  const auto file = SecretStore::file_in(dir_ / "a");
  std::string data = slurp(file);
  for (std::size_t at : {std::size_t{3}, std::size_t{10}, std::size_t{25}, data.size() - 1}) {
    std::string bad = data;
    bad[at] = static_cast<char>(bad[at] ^ 1);
    ASSERT_TRUE(write_file_atomic(file, bad, 0600));
    EXPECT_FALSE(a->get("API_TOKEN")) << at;
  }
  ASSERT_TRUE(write_file_atomic(file, data.substr(0, 20), 0600));
  EXPECT_FALSE(a->get("API_TOKEN"));
}

TEST_F(SecretsTest, FileOrKeyReadableByOthersIsRefused) {
  auto store = SecretStore::open(dir_ / "state");
  ASSERT_TRUE(store);
  ASSERT_TRUE(store->set("API_TOKEN", kValue));
  ::chmod(SecretStore::file_in(dir_ / "state").c_str(), 0640);
  auto r = store->get("API_TOKEN");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Errc::permission);
  ::chmod(SecretStore::file_in(dir_ / "state").c_str(), 0600);
  ::chmod(SecretStore::key_file_in(dir_ / "state").c_str(), 0644);
  auto reopened = SecretStore::open(dir_ / "state");
  ASSERT_FALSE(reopened);
  EXPECT_EQ(reopened.error().code, Errc::permission);
}

TEST_F(SecretsTest, ProvidersInOrderAndSystemdCredentials) {
  const auto creds = dir_ / "creds";
  fs::create_directories(creds);
  std::ofstream(creds / "FROM_SYSTEMD") << "systemd-value-1\n";
  std::ofstream(creds / "BOTH") << "systemd-wins-here";
  fs::create_symlink("/etc/passwd", creds / "LINK");
  {
    auto store = SecretStore::open(dir_ / "state");
    ASSERT_TRUE(store);
    ASSERT_TRUE(store->set("BOTH", "local-value-both"));
    ASSERT_TRUE(store->set("LOCAL_ONLY", "local-only-value"));
  }
  auto r = SecretResolver::create(config({SecretProvider::systemd, SecretProvider::local}), creds.string());
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(*r->resolve("FROM_SYSTEMD"), "systemd-value-1");  // one trailing newline dropped
  EXPECT_EQ(*r->resolve("BOTH"), "systemd-wins-here");
  EXPECT_EQ(*r->resolve("LOCAL_ONLY"), "local-only-value");
  EXPECT_FALSE(r->resolve("LINK"));  // no symlinks out of the credentials directory
  auto missing = r->resolve("NOPE");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().message.find("NOPE"), std::string::npos);

  auto local_first = SecretResolver::create(config({SecretProvider::local, SecretProvider::systemd}), creds.string());
  ASSERT_TRUE(local_first);
  EXPECT_EQ(*local_first->resolve("BOTH"), "local-value-both");
  // Only local: the credentials directory is not consulted at all.
  auto local = SecretResolver::create(config(), creds.string());
  ASSERT_TRUE(local);
  EXPECT_FALSE(local->resolve("FROM_SYSTEMD"));
  // systemd without $CREDENTIALS_DIRECTORY is a start-up error, not an empty provider.
  EXPECT_FALSE(SecretResolver::create(config({SecretProvider::systemd}), ""));
  // Fingerprints are keyed, stable per agent, and differ between agents.
  auto other = SecretResolver::create(Config{.agent = {.state_dir = dir_ / "other"}}, "");
  ASSERT_TRUE(other);
  EXPECT_EQ(local->fingerprint(kValue), local_first->fingerprint(kValue));
  EXPECT_NE(local->fingerprint(kValue), other->fingerprint(kValue));
  EXPECT_EQ(local->fingerprint(kValue).size(), 32u);
}

TEST(SecretsConfig, ProvidersAreParsedStrictly) {
  const std::string base =
      "control_plane: {url: https://cp, enrollment_token_file: /t}\nagent: {name: a}\n"
      "auth: {api_keys_file: /k}\n";
  auto ok = parse_config(base + "secrets: {providers: [systemd, local]}\n", {});
  ASSERT_TRUE(ok) << ok.error().message;
  EXPECT_EQ(ok->secrets.providers, (std::vector<SecretProvider>{SecretProvider::systemd, SecretProvider::local}));
  auto dflt = parse_config(base, {});
  ASSERT_TRUE(dflt);
  EXPECT_EQ(dflt->secrets.providers, std::vector<SecretProvider>{SecretProvider::local});
  for (std::string bad : {"secrets: {providers: [vault]}\n", "secrets: {providers: []}\n",
                          "secrets: {providers: [local, local]}\n", "secrets: {provider: [local]}\n",
                          "secrets: {providers: local}\n", "secrets: [local]\n"}) {
    EXPECT_FALSE(parse_config(base + bad, {})) << bad;
  }
  auto env = parse_config(base, {{"DELEGATE_SECRETS_PROVIDERS", "local,systemd"}});
  ASSERT_TRUE(env);
  EXPECT_EQ(env->secrets.providers.size(), 2u);
}

TEST(SecretsConfig, VaultIsParsedStrictly) {
  const std::string base =
      "control_plane: {url: https://cp, enrollment_token_file: /t}\nagent: {name: a}\n"
      "auth: {api_keys_file: /k}\n";
  const std::string approle =
      "secrets:\n  providers: [local, vault]\n  vault:\n    address: https://vault.example:8200\n"
      "    namespace: ops/team-a\n    mount: kv\n"
      "    auth: {method: approle, role_id: r-1, secret_id_file: /etc/delegate/vault.sid, mount: ar}\n"
      "    secrets: {PD_KEY: {path: incident/pagerduty, field: routing_key}}\n    cache_s: 60\n";
  auto ok = parse_config(base + approle, {});
  ASSERT_TRUE(ok) << ok.error().message;
  ASSERT_TRUE(ok->secrets.vault);
  const auto& v = *ok->secrets.vault;
  EXPECT_EQ(v.address, "https://vault.example:8200");
  EXPECT_EQ(v.vault_namespace, "ops/team-a");
  EXPECT_EQ(v.mount, "kv");
  EXPECT_EQ(v.auth, VaultConfig::Auth::approle);
  EXPECT_EQ(v.role_id, "r-1");
  EXPECT_EQ(v.auth_mount, "ar");
  EXPECT_EQ(v.cache_s, 60u);
  EXPECT_EQ(v.secrets.at("PD_KEY").path, "incident/pagerduty");
  EXPECT_EQ(v.secrets.at("PD_KEY").field, "routing_key");
  auto token = parse_config(base +
                                "secrets:\n  providers: [vault]\n  vault:\n    address: https://v\n"
                                "    auth: {method: token, token_file: /etc/delegate/vault.token}\n"
                                "    secrets: {A: {path: a, field: f}}\n",
                            {});
  ASSERT_TRUE(token) << token.error().message;
  EXPECT_EQ(token->secrets.vault->mount, "secret");
  EXPECT_EQ(token->secrets.vault->cache_s, 300u);

  auto replace = [&](const std::string& from, const std::string& to) {
    std::string s = base + approle;
    auto pos = s.find(from);
    EXPECT_NE(pos, std::string::npos) << from;
    return s.replace(pos, from.size(), to);
  };
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"address: https://vault.example:8200", "address: http://vault.example:8200"},
      {"address: https://vault.example:8200", "address: https://vault.example:8200/v1"},
      {"address: https://vault.example:8200", "address: https://user@vault.example"},
      {"path: incident/pagerduty", "path: incident/../sys/raw"},
      {"path: incident/pagerduty", "path: /incident/pagerduty"},
      {"path: incident/pagerduty", "path: \"incident/pager duty?x=1\""},
      {"mount: kv", "mount: \"kv/../sys\""},
      {"PD_KEY:", "pd-key:"},
      {"field: routing_key", "field: \"\""},
      {"method: approle", "method: userpass"},
      {"role_id: r-1, ", ""},
      {"secret_id_file: /etc/delegate/vault.sid", "secret_id_file: vault.sid"},
      {"cache_s: 60", "cache_s: -1"},
      {"cache_s: 60", "cache_s: 86401"},
      {"cache_s: 60", "cache_ttl: 60"},
      {"mount: ar}", "mount: ar, token_file: /t}"},  // a token key under approle
      {"providers: [local, vault]", "providers: [local]"},  // configured but not listed
      {"    secrets: {PD_KEY: {path: incident/pagerduty, field: routing_key}}\n", "    secrets: {}\n"},
      {"field: routing_key}", "field: routing_key, version: 2}"},
  };
  for (const auto& [from, to] : bad) {
    auto r = parse_config(replace(from, to), {});
    EXPECT_FALSE(r) << to;
    if (!r) {
      EXPECT_NE(r.error().message.find("secrets.vault"), std::string::npos) << r.error().message;
      EXPECT_EQ(r.error().message.find('\n'), std::string::npos) << r.error().message;
    }
  }
  EXPECT_FALSE(parse_config(base + "secrets: {providers: [vault]}\n", {}));
  EXPECT_FALSE(parse_config(base + approle, {{"DELEGATE_SECRETS_VAULT", "x"}}));
}

}  // namespace
}  // namespace delegate::agent
