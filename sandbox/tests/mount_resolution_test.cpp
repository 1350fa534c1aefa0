// ro/rw/hide paths are resolved once, in the parent, and the child binds exactly the
// object that was checked (docs/sandbox.md, "The file-system view"). The race is replayed deterministically: the
// plan is built, the path is swapped, then the child's half runs.
#include <fcntl.h>
#include <sched.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>

#include "mounts.hpp"
#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;
using testing::compile_or_die;
using testing::run_capture;

// /var/tmp/delegate-mount-XXXXXX with data/marker = "original" and secret/marker =
// "secret"; `secret` plays a path the agent hides.
class Tree {
 public:
  Tree() {
    std::string tmpl = "/var/tmp/delegate-mount-XXXXXX";
    if (::mkdtemp(tmpl.data()) == nullptr) std::abort();
    root_ = tmpl;
    ::chmod(root_.c_str(), 0755);
    for (const char* d : {"data", "secret", "decoy"}) {
      fs::create_directory(root_ / d);
      fs::permissions(root_ / d, fs::perms(0755));
      std::ofstream(root_ / d / "marker") << (std::string(d) == "data" ? "original" : d);
    }
    // Below /tmp, like the launcher's own: elsewhere the view covers its parent.
    std::string work = "/tmp/delegate-mount-work-XXXXXX";
    if (::mkdtemp(work.data()) == nullptr) std::abort();
    work_ = work;
  }
  ~Tree() {
    std::error_code ec;
    fs::remove_all(root_, ec);
    fs::remove_all(work_, ec);
  }
  const fs::path& work() const { return work_; }
  Tree(const Tree&) = delete;
  Tree& operator=(const Tree&) = delete;
  fs::path operator/(const std::string& name) const { return root_ / name; }

 private:
  fs::path root_;
  fs::path work_;
};

// The child's half of a launch, in a forked child with its own mount namespace: apply
// the plan, then read `marker` in the view. "failed <errno> <detail>" or the content.
std::string apply_in_child(const detail::MountPlan& plan, const std::string& marker) {
  int out[2];
  if (::pipe(out) != 0) return "pipe failed";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(out[0]);
    std::string answer;
    int failed = -1;
    if (::unshare(CLONE_NEWNS) != 0) {
      answer = std::string("unshare ") + std::strerror(errno);
    } else if (const int e = detail::apply_mounts(plan, &failed); e != 0) {
      answer = "failed " + std::string(std::strerror(e)) + " at " + detail::describe_step(plan, failed);
    } else {
      std::ifstream in(marker);
      answer.assign(std::istreambuf_iterator<char>(in), {});
    }
    (void)!::write(out[1], answer.data(), answer.size());
    ::_exit(0);
  }
  ::close(out[1]);
  std::string got;
  char buf[512];
  for (ssize_t n; (n = ::read(out[0], buf, sizeof buf)) > 0;) got.append(buf, static_cast<std::size_t>(n));
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return got;
}

class MountResolution : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "replaying the child's half needs CAP_SYS_ADMIN";
    if (!host_support().mount_setattr) GTEST_SKIP() << "no mount_setattr on this host";
  }
};

detail::MountRequest request_for(const Tree& t, BindMount::Kind kind) {
  detail::MountRequest r;
  r.workdir = t.work().string();
  r.binds = {{BindMount::Kind::hidden, t / "secret"}, {kind, t / "data"}};
  return r;
}

// Control: nothing swapped, the step sees the bound directory.
TEST_F(MountResolution, UnswappedPathIsBound) {
  const Tree t;
  auto plan = detail::build_mount_plan(request_for(t, BindMount::Kind::read_only));
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(apply_in_child(*plan, (t / "data" / "marker").string()), "original");
}

// After the checks, the path becomes a (relative) symlink to the hidden directory: the
// child must not follow it. It fails closed instead of binding the secret.
TEST_F(MountResolution, SymlinkSwappedInAfterTheCheckIsNotFollowed) {
  for (const auto kind : {BindMount::Kind::read_only, BindMount::Kind::read_write}) {
    const Tree t;
    auto plan = detail::build_mount_plan(request_for(t, kind));
    ASSERT_TRUE(plan) << plan.error().message;
    fs::rename(t / "data", t / "data.moved");
    fs::create_directory_symlink("secret", t / "data");
    const std::string got = apply_in_child(*plan, (t / "data" / "marker").string());
    EXPECT_NE(got, "secret");
    EXPECT_TRUE(got.starts_with("failed " + std::string(std::strerror(ELOOP)))) << got;
    EXPECT_NE(got.find((t / "data").string()), std::string::npos) << got;
  }
}

// Another directory renamed into place: same name, another object. Refused too.
TEST_F(MountResolution, DirectoryRenamedInAfterTheCheckIsRefused) {
  const Tree t;
  auto plan = detail::build_mount_plan(request_for(t, BindMount::Kind::read_only));
  ASSERT_TRUE(plan) << plan.error().message;
  fs::rename(t / "data", t / "data.moved");
  fs::rename(t / "decoy", t / "data");
  const std::string got = apply_in_child(*plan, (t / "data" / "marker").string());
  EXPECT_TRUE(got.starts_with("failed " + std::string(std::strerror(ESTALE)))) << got;
}

// The launcher checks the path it resolves itself against the hidden paths before it:
// a mount path that is (or has become) a symlink to a hidden directory is refused.
TEST_F(MountResolution, LauncherRefusesAPathThatResolvesIntoAHiddenPath) {
  const Tree t;
  fs::create_directory_symlink("secret", t / "link");
  for (const auto kind : {BindMount::Kind::read_only, BindMount::Kind::read_write}) {
    Spec spec;
    spec.argv = {"cat", (t / "secret" / "marker").string()};
    spec.limits.timeout = 60s;
    spec.isolation.mounts = {{BindMount::Kind::hidden, t / "secret"}, {kind, t / "link"}};
    const auto c = run_capture(spec, compile_or_die("default"));
    EXPECT_EQ(c.outcome.status, Status::setup_failed) << c.out;
    EXPECT_EQ(c.outcome.error, "mount path " + (t / "link").string() + " resolves to " + (t / "secret").string() +
                                   ", which overlaps the hidden path " + (t / "secret").string());
    EXPECT_EQ(c.out, "");
  }
  // Control: without the hidden entry the same bind runs and shows the file.
  Spec spec;
  spec.argv = {"cat", (t / "secret" / "marker").string()};
  spec.isolation.mounts = {{BindMount::Kind::read_only, t / "link"}};
  const auto c = run_capture(spec, compile_or_die("default"));
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  EXPECT_EQ(c.out, "secret");
}

// /run is an empty tmpfs in the view; a network step whose resolv.conf is a symlink
// into /run (systemd-resolved's stub) gets that one file back, read-only, and nothing
// else of its directory.
TEST_F(MountResolution, ResolvConfInRunComesBackForNetworkStepsOnly) {
  const Tree t;
  std::string run_dir = "/run/delegate-resolv-XXXXXX";
  ASSERT_NE(::mkdtemp(run_dir.data()), nullptr);
  struct RemoveOnExit {
    std::string dir;
    ~RemoveOnExit() {
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{run_dir};
  std::ofstream(run_dir + "/stub-resolv.conf") << "nameserver 127.0.0.53\n";
  std::ofstream(run_dir + "/other") << "other";
  fs::create_symlink(run_dir + "/stub-resolv.conf", t / "resolv.conf");
  detail::MountRequest r;
  r.workdir = t.work().string();
  r.resolv_conf = (t / "resolv.conf").string();
  r.host_network = true;
  auto plan = detail::build_mount_plan(r);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(apply_in_child(*plan, run_dir + "/stub-resolv.conf"), "nameserver 127.0.0.53\n");
  EXPECT_EQ(apply_in_child(*plan, run_dir + "/other"), "");
  r.host_network = false;
  plan = detail::build_mount_plan(r);
  ASSERT_TRUE(plan) << plan.error().message;
  EXPECT_EQ(apply_in_child(*plan, run_dir + "/stub-resolv.conf"), "");
}

}  // namespace
}  // namespace delegate::sandbox
