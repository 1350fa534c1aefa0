// The agent's hidden paths are taken as they are at each launch, not as they were when
// the agent started: a file created later (the API-key file written by the first
// `api-key create`, a key rotated into place) is covered from then on.
#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>

#include <delegate/connectors/step.hpp>

namespace delegate::connectors {
namespace {

namespace fs = std::filesystem;

bool hides(const PreparedStep& p, const fs::path& path) {
  for (const auto& m : p.spec.isolation.mounts) {
    if (m.kind == sandbox::BindMount::Kind::hidden && m.path == path) return true;
  }
  return false;
}

TEST(HiddenPaths, APathCreatedAfterTheContextWasBuiltIsHiddenFromThenOn) {
  const auto& h = sandbox::host_support();
  if (!(h.user_ns || h.other_ns) || !h.mount_setattr) GTEST_SKIP() << "no mount namespace on this host";
  const fs::path dir = fs::temp_directory_path() / ("delegate-hidden-" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const fs::path keys = dir / "api-keys.yaml";
  StepContext ctx{"/tmp"};
  ctx.hidden = {keys};

  policies::Step s;
  s.name = "look";
  s.uses = policies::StepKind::command;
  s.argv = {"/bin/cat", keys.string()};
  s.sandbox.allow_degraded = true;

  auto before = prepare_step(s, 0, Json::object(), ctx);
  ASSERT_TRUE(before) << before.error().message;
  // Nothing to mount over yet, and a missing path must not fail the launch.
  EXPECT_FALSE(hides(*before, keys));

  { std::ofstream(keys) << "keys: []\n"; }
  auto after = prepare_step(s, 0, Json::object(), ctx);
  ASSERT_TRUE(after) << after.error().message;
  EXPECT_TRUE(hides(*after, keys));
  fs::remove_all(dir);
}

}  // namespace
}  // namespace delegate::connectors
