#include <sys/stat.h>

#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <delegate/common/encoding.hpp>

#include <delegate/common/fs.hpp>
#include <delegate/policies/api_keys.hpp>

#include "test_util.hpp"

namespace delegate::policies {
namespace {

using testing::at;
using testing::TempDir;

const TimePoint kNow = at("2026-11-28T20:00:00Z");

TEST(ApiKeys, CreateProducesWellFormedKeyThatChecks) {
  ApiKeyStore store;
  auto key = store.create("ops-bot", {"runbooks:execute"}, {"sre-oncall"}, std::nullopt, kNow);
  ASSERT_TRUE(key.has_value()) << key.error().message;
  EXPECT_TRUE(key->starts_with("dlg.ops-bot."));
  EXPECT_EQ(key->size(), std::string("dlg.ops-bot.").size() + 43);
  auto c = store.check(*key, kNow);
  EXPECT_FALSE(c.deny.has_value());
  ASSERT_NE(c.entry, nullptr);
  EXPECT_EQ(c.entry->id, "ops-bot");
  EXPECT_EQ(c.entry->scopes, std::vector<std::string>{"runbooks:execute"});
  EXPECT_EQ(c.entry->roles, std::vector<std::string>{"sre-oncall"});
  EXPECT_EQ(c.entry->salt.size(), 16u);
  // Only the hash is stored: the secret part of the key appears nowhere in the entry.
  EXPECT_EQ(c.entry->created, kNow);
}

TEST(ApiKeys, TwoKeysDiffer) {
  ApiKeyStore store;
  auto a = store.create("a", {}, {}, std::nullopt, kNow);
  auto b = store.create("b", {}, {}, std::nullopt, kNow);
  ASSERT_TRUE(a && b);
  EXPECT_NE(a->substr(6), b->substr(6));
  EXPECT_NE(store.entries()[0].salt, store.entries()[1].salt);
}

TEST(ApiKeys, CreateRejectsBadOrDuplicateId) {
  ApiKeyStore store;
  EXPECT_FALSE(store.create("", {}, {}, std::nullopt, kNow));
  EXPECT_FALSE(store.create("has.dot", {}, {}, std::nullopt, kNow));
  EXPECT_FALSE(store.create("has space", {}, {}, std::nullopt, kNow));
  EXPECT_FALSE(store.create(std::string(65, 'a'), {}, {}, std::nullopt, kNow));
  EXPECT_TRUE(store.create(std::string(64, 'a'), {}, {}, std::nullopt, kNow));
  EXPECT_TRUE(store.create("dup", {}, {}, std::nullopt, kNow));
  auto again = store.create("dup", {}, {}, std::nullopt, kNow);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error().code, Errc::conflict);
  EXPECT_FALSE(store.create("x", {"bad scope"}, {}, std::nullopt, kNow));
}

TEST(ApiKeys, RevokeIsReportedOnlyWithTheSecret) {
  ApiKeyStore store;
  auto key = store.create("k1", {}, {}, std::nullopt, kNow);
  ASSERT_TRUE(key);
  ASSERT_TRUE(store.revoke("k1"));
  auto c = store.check(*key, kNow);
  EXPECT_EQ(c.deny, Reason::api_key_revoked);
  ASSERT_NE(c.entry, nullptr);
  // Without the secret, a revoked key looks like any unknown one.
  std::string wrong = *key;
  wrong.back() = wrong.back() == 'A' ? 'Q' : 'A';
  EXPECT_EQ(store.check(wrong, kNow).deny, Reason::api_key_unknown);
  EXPECT_EQ(store.revoke("nope").error().code, Errc::not_found);
}

TEST(ApiKeys, ExpiryIsInclusive) {
  ApiKeyStore store;
  auto exp = at("2026-12-01T00:00:00Z");
  auto key = store.create("k", {}, {}, exp, kNow);
  ASSERT_TRUE(key);
  EXPECT_FALSE(store.check(*key, exp - std::chrono::milliseconds(1)).deny.has_value());
  EXPECT_EQ(store.check(*key, exp).deny, Reason::api_key_expired);
  EXPECT_EQ(store.check(*key, exp + std::chrono::hours(1)).deny, Reason::api_key_expired);
}

TEST(ApiKeys, UnknownIdAndMalformed) {
  ApiKeyStore store;
  auto key = store.create("known", {}, {}, std::nullopt, kNow);
  ASSERT_TRUE(key);
  std::string other = "dlg.unknown." + key->substr(std::string("dlg.known.").size());
  EXPECT_EQ(store.check(other, kNow).deny, Reason::api_key_unknown);
  for (std::string bad : {std::string(""), std::string("dlg."), std::string("dlg.known"), std::string("dlg.known."),
                          std::string("DLG.known.") + key->substr(10), std::string("Bearer ") + *key,
                          *key + "=", *key + "A", std::string("dlg..") + key->substr(10),
                          std::string("dlg.a.b.c")}) {
    EXPECT_EQ(store.check(bad, kNow).deny, Reason::token_malformed) << bad;
  }
}

TEST(ApiKeys, BitFlipsAndTruncationsNeverAllowed) {
  ApiKeyStore store;
  auto key = store.create("flip", {}, {}, std::nullopt, kNow);
  ASSERT_TRUE(key);
  ASSERT_EQ(key->substr(0, 9), "dlg.flip.");
  std::size_t shaped_flips = 0;
  for (std::size_t i = 0; i < key->size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string k = *key;
      k[i] = static_cast<char>(k[i] ^ (1 << bit));
      // A flip that keeps the key's shape ("dlg.<id>.<43 base64url chars>") must be
      // refused by the secret/id lookup, not by the parser: api_key_unknown exactly.
      const bool id_ok = std::all_of(k.begin() + 4, k.begin() + 8, [](char ch) {
        return std::isalnum(static_cast<unsigned char>(ch)) || ch == '_' || ch == '-';
      });
      const bool shaped = k.starts_with("dlg.") && k[8] == '.' && id_ok &&
                          base64url_decode(std::string_view(k).substr(9)).has_value();
      shaped_flips += shaped;
      auto c = store.check(k, kNow);
      EXPECT_EQ(c.deny, shaped ? Reason::api_key_unknown : Reason::token_malformed)
          << "byte " << i << " bit " << bit;
    }
  }
  EXPECT_GT(shaped_flips, key->size());  // most flips of the secret keep its shape
  for (std::size_t n = 0; n < key->size(); ++n) {
    EXPECT_TRUE(store.check(std::string_view(*key).substr(0, n), kNow).deny.has_value()) << n;
  }
}

TEST(ApiKeys, SaveLoadRoundTripWithMode0600) {
  TempDir dir;
  auto file = dir / "api-keys.yaml";
  ApiKeyStore store;
  auto k1 = store.create("alpha", {"runbooks:execute", "x:y"}, {"sre-oncall"}, at("2027-01-01T00:00:00.250Z"), kNow);
  auto k2 = store.create("beta_2", {}, {}, std::nullopt, kNow);
  ASSERT_TRUE(k1 && k2);
  ASSERT_TRUE(store.revoke("beta_2"));
  ASSERT_TRUE(store.save(file));

  struct stat st {};
  ASSERT_EQ(::stat(file.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto text = read_file(file);
  ASSERT_TRUE(text);
  EXPECT_EQ(text->find(k1->substr(10)), std::string::npos) << "secret must never be stored";

  auto loaded = ApiKeyStore::load(file);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().message;
  ASSERT_EQ(loaded->entries().size(), 2u);
  const auto& a = loaded->entries()[0];
  EXPECT_EQ(a.id, "alpha");
  EXPECT_EQ(a.scopes, (std::vector<std::string>{"runbooks:execute", "x:y"}));
  EXPECT_EQ(a.roles, std::vector<std::string>{"sre-oncall"});
  EXPECT_EQ(a.expires, at("2027-01-01T00:00:00.250Z"));
  EXPECT_EQ(a.created, kNow);
  EXPECT_FALSE(a.revoked);
  EXPECT_TRUE(loaded->entries()[1].revoked);
  EXPECT_FALSE(loaded->entries()[1].expires.has_value());
  EXPECT_FALSE(loaded->check(*k1, kNow).deny.has_value());
  EXPECT_EQ(loaded->check(*k2, kNow).deny, Reason::api_key_revoked);
}

TEST(ApiKeys, MissingFileIsEmptyStore) {
  TempDir dir;
  auto s = ApiKeyStore::load(dir / "absent.yaml");
  ASSERT_TRUE(s.has_value());
  EXPECT_TRUE(s->entries().empty());
}

TEST(ApiKeys, GroupOrOtherReadableFileRefused) {
  TempDir dir;
  ApiKeyStore store;
  ASSERT_TRUE(store.create("a", {}, {}, std::nullopt, kNow));
  auto file = dir / "keys.yaml";
  ASSERT_TRUE(store.save(file));
  for (unsigned mode : {0640u, 0604u, 0660u, 0644u}) {
    ASSERT_EQ(::chmod(file.c_str(), mode), 0);
    auto r = ApiKeyStore::load(file);
    ASSERT_FALSE(r.has_value()) << std::oct << mode;
    EXPECT_EQ(r.error().code, Errc::permission);
  }
  ASSERT_EQ(::chmod(file.c_str(), 0400), 0);
  EXPECT_TRUE(ApiKeyStore::load(file).has_value());
}

TEST(ApiKeys, TamperedHashDenies) {
  TempDir dir;
  ApiKeyStore store;
  auto key = store.create("t", {}, {}, std::nullopt, kNow);
  ASSERT_TRUE(key);
  auto file = dir / "keys.yaml";
  ASSERT_TRUE(store.save(file));
  auto text = read_file(file);
  ASSERT_TRUE(text);
  std::string hash = hex_encode(store.entries()[0].hash);
  auto pos = text->find(hash);
  ASSERT_NE(pos, std::string::npos);
  (*text)[pos] = (*text)[pos] == '0' ? '1' : '0';
  dir.write("keys.yaml", *text);
  auto loaded = ApiKeyStore::load(file);
  ASSERT_TRUE(loaded.has_value()) << loaded.error().message;
  EXPECT_EQ(loaded->check(*key, kNow).deny, Reason::api_key_unknown);
}

TEST(ApiKeys, MalformedFilesRejected) {
  TempDir dir;
  const std::string salt = "AAAAAAAAAAAAAAAAAAAAAA==";
  const std::string hash(64, 'a');
  auto entry = [&](const std::string& extra) {
    return "keys:\n  - {id: a, salt: \"" + salt + "\", hash: \"" + hash +
           "\", created: \"2026-01-01T00:00:00Z\"" + extra + "}\n";
  };
  dir.write("ok.yaml", entry(""));
  auto okr = ApiKeyStore::load(dir / "ok.yaml");
  ASSERT_TRUE(okr.has_value()) << okr.error().message;
  EXPECT_EQ(okr->entries().size(), 1u);

  const std::vector<std::pair<std::string, std::string>> bad = {
      {"unknown entry key", entry(", colour: red")},
      {"unknown top key", "keys: []\nextra: 1\n"},
      {"bad salt", "keys:\n  - {id: a, salt: \"AAAA\", hash: \"" + hash + "\", created: \"2026-01-01T00:00:00Z\"}\n"},
      {"bad hash", "keys:\n  - {id: a, salt: \"" + salt + "\", hash: \"zz\", created: \"2026-01-01T00:00:00Z\"}\n"},
      {"bad id", "keys:\n  - {id: \"a.b\", salt: \"" + salt + "\", hash: \"" + hash + "\", created: \"2026-01-01T00:00:00Z\"}\n"},
      {"missing created", "keys:\n  - {id: a, salt: \"" + salt + "\", hash: \"" + hash + "\"}\n"},
      {"bad expires", entry(", expires: tomorrow")},
      {"bad revoked", entry(", revoked: maybe")},
      {"duplicate id", entry("") + "  - {id: a, salt: \"" + salt + "\", hash: \"" + hash + "\", created: \"2026-01-01T00:00:00Z\"}\n"},
      {"not yaml", "keys: [\n"},
      {"keys not list", "keys: 5\n"},
  };
  for (const auto& [what, text] : bad) {
    dir.write("bad.yaml", text);
    auto r = ApiKeyStore::load(dir / "bad.yaml");
    EXPECT_FALSE(r.has_value()) << what;
  }
}

// A duplicated key, at the top level or inside an entry, is refused by name: "last one
// wins" would let a reviewer read one revoked/expires value and the agent obey another.
TEST(ApiKeys, DuplicateKeysAreRefusedWithTheirPath) {
  TempDir dir;
  const std::string entry = "{id: a, salt: \"AAAAAAAAAAAAAAAAAAAAAA==\", hash: \"" + std::string(64, 'a') +
                            "\", created: \"2026-01-01T00:00:00Z\"";
  const std::pair<std::string, std::string> cases[] = {
      {"keys: []\nkeys:\n  - " + entry + "}\n", "duplicate key keys"},
      {"keys:\n  - " + entry + ", revoked: true, revoked: false}\n", "duplicate key keys[0].revoked"},
  };
  for (const auto& [text, want] : cases) {
    dir.write("dup.yaml", text);
    auto r = ApiKeyStore::load(dir / "dup.yaml");
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_NE(r.error().message.find(want), std::string::npos) << r.error().message;
  }
}

}  // namespace
}  // namespace delegate::policies
