// plan_isolation and describe are pure functions of the spec and a HostSupport value:
// every host situation can be exercised here with synthetic values, without needing a
// host that actually lacks user namespaces or cgroups.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <string>
#include <vector>

#include <delegate/sandbox/isolation.hpp>
#include <delegate/sandbox/launcher.hpp>

namespace delegate::sandbox {
namespace {

using Strings = std::vector<std::string>;

// A root agent on a host that supports everything (cgroup v2 for all controllers).
HostSupport full_root() {
  HostSupport h;
  h.is_root = true;
  h.user_ns = true;
  h.other_ns = true;
  h.mount_setattr = true;
  h.memory = h.pids = h.cpu = CgroupVersion::v2;
  h.memory_dir = h.pids_dir = h.cpu_dir = "/sys/fs/cgroup/system.slice/delegate.service";
  return h;
}

// Root, but user namespaces are disabled (e.g. user.max_user_namespaces=0).
HostSupport root_without_userns() {
  HostSupport h = full_root();
  h.user_ns = false;
  h.notes = "user namespaces unavailable; ";
  return h;
}

// No namespaces at all (e.g. inside a container that forbids them).
HostSupport no_namespaces(bool root) {
  HostSupport h;
  h.is_root = root;
  h.mount_setattr = true;
  h.notes = "user namespaces unavailable; ";
  return h;
}

// An unprivileged agent on a host that allows user namespaces.
HostSupport full_unprivileged() {
  HostSupport h = full_root();
  h.is_root = false;
  h.other_ns = false;  // never probed without root
  return h;
}

Spec spec_with(bool network = false, bool allow_degraded = false) {
  Spec s;
  s.argv = {"/bin/true"};
  s.network = network;
  s.isolation.user = StepUser{4242, 4343};
  s.isolation.allow_degraded = allow_degraded;
  return s;
}

Strings namespaces_of(const Json& described) {
  Strings out;
  for (const auto& n : described.at("namespaces")) out.push_back(n.get<std::string>());
  return out;
}

Strings degraded_of(const IsolationPlan& p) { return p.degraded; }

TEST(IsolationPlan, FullHostRootAgentGetsEveryNamespaceAndTheStepUser) {
  auto p = plan_isolation(spec_with(), full_root());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(p->user_ns);
  EXPECT_TRUE(p->pid_ns);
  EXPECT_TRUE(p->mount_ns);
  EXPECT_TRUE(p->net_ns);
  EXPECT_TRUE(p->ipc_ns);
  EXPECT_TRUE(p->uts_ns);
  EXPECT_TRUE(p->cgroup_ns);
  EXPECT_EQ(p->uid, 4242u);
  EXPECT_EQ(p->gid, 4343u);
  EXPECT_FALSE(p->root);
  EXPECT_EQ(p->memory, CgroupVersion::v2);
  EXPECT_EQ(p->pids, CgroupVersion::v2);
  EXPECT_EQ(p->cpu, CgroupVersion::v2);
  EXPECT_TRUE(p->degraded.empty());

  const Json d = describe(*p);
  EXPECT_EQ(namespaces_of(d), (Strings{"user", "pid", "mount", "net", "ipc", "uts", "cgroup"}));
  EXPECT_EQ(d.at("user"), (Json{{"uid", 4242}, {"gid", 4343}, {"root", false}}));
  EXPECT_EQ(d.at("cgroup"), (Json{{"memory", "v2"}, {"pids", "v2"}, {"cpu", "v2"}}));
  EXPECT_EQ(d.at("limits_via"), "cgroup+rlimits");
  EXPECT_EQ(d.at("degraded"), Json::array());
  EXPECT_EQ(d.at("sockets"), Json::array());
  EXPECT_EQ(d.size(), 6u) << d.dump();
}

TEST(IsolationPlan, DefaultStepUserIsNobody) {
  Spec s;
  s.argv = {"/bin/true"};
  auto p = plan_isolation(s, full_root());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->uid, 65534u);
  EXPECT_EQ(p->gid, 65534u);
}

TEST(IsolationPlan, NetworkStepsShareTheHostNetwork) {
  auto p = plan_isolation(spec_with(/*network=*/true), full_root());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_FALSE(p->net_ns);
  EXPECT_TRUE(p->degraded.empty());  // sharing the network was asked for, not a weakening
  EXPECT_EQ(namespaces_of(describe(*p)), (Strings{"user", "pid", "mount", "ipc", "uts", "cgroup"}));
}

TEST(IsolationPlan, NoUserNamespaceFailsClosedUnlessDegradedIsAllowed) {
  auto refused = plan_isolation(spec_with(), root_without_userns());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::unavailable);
  EXPECT_NE(refused.error().message.find("user_ns"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("user namespaces unavailable"), std::string::npos)
      << "the host notes explain why: " << refused.error().message;
  EXPECT_NE(refused.error().message.find("degraded"), std::string::npos) << refused.error().message;

  auto p = plan_isolation(spec_with(false, /*allow_degraded=*/true), root_without_userns());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_FALSE(p->user_ns);
  // The root agent creates the other namespaces itself.
  EXPECT_TRUE(p->pid_ns && p->mount_ns && p->net_ns && p->ipc_ns && p->uts_ns && p->cgroup_ns);
  EXPECT_EQ(degraded_of(*p), (Strings{"user_ns"}));
  EXPECT_EQ(p->uid, 4242u);  // a root agent still switches to the step user
  const Json d = describe(*p);
  EXPECT_EQ(namespaces_of(d), (Strings{"pid", "mount", "net", "ipc", "uts", "cgroup"}));
  EXPECT_EQ(d.at("degraded"), Json::array({"user_ns"}));
}

TEST(IsolationPlan, NoNamespacesAtAll) {
  for (bool root : {true, false}) {
    SCOPED_TRACE(root ? "root agent" : "unprivileged agent");
    auto refused = plan_isolation(spec_with(), no_namespaces(root));
    ASSERT_FALSE(refused);
    EXPECT_EQ(refused.error().code, Errc::unavailable);
    for (const char* ns : {"user_ns", "pid_ns", "mount_ns", "ipc_ns", "uts_ns", "cgroup_ns", "net_ns"}) {
      EXPECT_NE(refused.error().message.find(ns), std::string::npos) << ns << ": " << refused.error().message;
    }

    auto p = plan_isolation(spec_with(false, true), no_namespaces(root));
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_FALSE(p->user_ns || p->pid_ns || p->mount_ns || p->net_ns || p->ipc_ns || p->uts_ns || p->cgroup_ns);
    EXPECT_EQ(degraded_of(*p), (Strings{"user_ns", "pid_ns", "mount_ns", "ipc_ns", "uts_ns", "cgroup_ns", "net_ns"}));
    const Json d = describe(*p);
    EXPECT_EQ(d.at("namespaces"), Json::array());
    EXPECT_EQ(d.at("degraded").size(), 7u);
    EXPECT_EQ(p->uid, root ? 4242u : ::getuid());

    // A step that shares the network anyway does not count the net namespace as lost.
    auto net = plan_isolation(spec_with(/*network=*/true, true), no_namespaces(root));
    ASSERT_TRUE(net) << net.error().message;
    EXPECT_EQ(degraded_of(*net), (Strings{"user_ns", "pid_ns", "mount_ns", "ipc_ns", "uts_ns", "cgroup_ns"}));
  }
}

TEST(IsolationPlan, NoMountSetattrMeansNoMountNamespace) {
  HostSupport h = full_root();
  h.mount_setattr = false;
  h.notes = "mount_setattr unavailable (Linux < 5.12); ";
  auto refused = plan_isolation(spec_with(), h);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::unavailable);
  EXPECT_NE(refused.error().message.find("mount_ns"), std::string::npos) << refused.error().message;
  EXPECT_NE(refused.error().message.find("mount_setattr"), std::string::npos) << refused.error().message;

  auto p = plan_isolation(spec_with(false, true), h);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(p->user_ns);
  EXPECT_FALSE(p->mount_ns);
  EXPECT_EQ(degraded_of(*p), (Strings{"mount_ns"}));
  EXPECT_EQ(namespaces_of(describe(*p)), (Strings{"user", "pid", "net", "ipc", "uts", "cgroup"}));
}

TEST(IsolationPlan, MountsWithoutAMountNamespaceAreAnErrorEvenWhenDegraded) {
  for (const auto kind : {BindMount::Kind::read_only, BindMount::Kind::read_write, BindMount::Kind::hidden}) {
    Spec s = spec_with(false, /*allow_degraded=*/true);
    s.isolation.mounts.push_back({kind, "/srv/data"});

    HostSupport no_setattr = full_root();
    no_setattr.mount_setattr = false;
    for (const HostSupport& h : {no_setattr, no_namespaces(true), no_namespaces(false)}) {
      auto p = plan_isolation(s, h);
      ASSERT_FALSE(p);
      EXPECT_EQ(p.error().code, Errc::unavailable);
      EXPECT_NE(p.error().message.find("mount namespace"), std::string::npos) << p.error().message;
    }
    // With one, they are fine.
    auto ok = plan_isolation(s, full_root());
    EXPECT_TRUE(ok) << ok.error().message;
  }
}

TEST(IsolationPlan, DegradedIsOnlyReportedForWhatIsMissing) {
  // allow_degraded on a host that has everything changes nothing.
  auto p = plan_isolation(spec_with(false, true), full_root());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(p->degraded.empty());
  EXPECT_TRUE(p->user_ns && p->mount_ns && p->net_ns);
}

TEST(IsolationPlan, RootStepFromARootAgent) {
  Spec s = spec_with();
  s.isolation.root = true;
  auto p = plan_isolation(s, full_root());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(p->root);
  EXPECT_EQ(p->uid, 0u);
  EXPECT_EQ(p->gid, 0u);
  EXPECT_TRUE(p->user_ns);
  EXPECT_EQ(describe(*p).at("user"), (Json{{"uid", 0}, {"gid", 0}, {"root", true}}));
}

TEST(IsolationPlan, RootStepNeedsAUserNamespaceEvenWhenDegradedIsAllowed) {
  // Without its own user namespace uid 0 would be the host's root (owner of /etc,
  // signaller of every root process), not "root for file ownership in the sandbox".
  for (bool allow : {false, true}) {
    Spec s = spec_with(false, allow);
    s.isolation.root = true;
    for (const HostSupport& h : {root_without_userns(), no_namespaces(true)}) {
      auto p = plan_isolation(s, h);
      ASSERT_FALSE(p) << "allow_degraded=" << allow;
      EXPECT_EQ(p.error().code, Errc::unavailable);
    }
  }
}

TEST(IsolationPlan, UnprivilegedAgentRunsStepsAsItself) {
  auto p = plan_isolation(spec_with(), full_unprivileged());
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_TRUE(p->user_ns);
  EXPECT_EQ(p->uid, ::getuid());  // the configured step user cannot be mapped
  EXPECT_EQ(p->gid, ::getgid());
  EXPECT_FALSE(p->root);
  EXPECT_TRUE(p->degraded.empty());

  Spec root = spec_with(false, true);
  root.isolation.root = true;
  auto refused = plan_isolation(root, full_unprivileged());
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::permission);
  EXPECT_NE(refused.error().message.find("root"), std::string::npos) << refused.error().message;
}

TEST(IsolationPlan, UnprivilegedAgentWithoutUserNamespaces) {
  // other_ns is only ever probed for a root agent: no namespaces at all.
  HostSupport h = full_unprivileged();
  h.user_ns = false;
  auto refused = plan_isolation(spec_with(), h);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, Errc::unavailable);
  auto p = plan_isolation(spec_with(false, true), h);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(describe(*p).at("namespaces"), Json::array());
  EXPECT_EQ(p->degraded.size(), 7u);
}

TEST(IsolationPlan, CgroupVersionsArePerControllerAndDecideLimitsVia) {
  HostSupport hybrid = full_root();
  hybrid.memory = CgroupVersion::v1;
  hybrid.pids = CgroupVersion::v2;
  hybrid.cpu = CgroupVersion::none;
  auto p = plan_isolation(spec_with(), hybrid);
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->memory, CgroupVersion::v1);
  EXPECT_EQ(p->pids, CgroupVersion::v2);
  EXPECT_EQ(p->cpu, CgroupVersion::none);
  // A missing cgroup controller is not a degraded namespace: rlimits stand in.
  EXPECT_TRUE(p->degraded.empty());
  Json d = describe(*p);
  EXPECT_EQ(d.at("cgroup"), (Json{{"memory", "v1"}, {"pids", "v2"}, {"cpu", "none"}}));
  EXPECT_EQ(d.at("limits_via"), "cgroup+rlimits");

  HostSupport none = full_root();
  none.memory = none.pids = none.cpu = CgroupVersion::none;
  auto q = plan_isolation(spec_with(), none);
  ASSERT_TRUE(q) << q.error().message;
  d = describe(*q);
  EXPECT_EQ(d.at("cgroup"), (Json{{"memory", "none"}, {"pids", "none"}, {"cpu", "none"}}));
  EXPECT_EQ(d.at("limits_via"), "rlimits");

  HostSupport only_cpu = none;
  only_cpu.cpu = CgroupVersion::v1;
  auto r = plan_isolation(spec_with(), only_cpu);
  ASSERT_TRUE(r) << r.error().message;
  EXPECT_EQ(describe(*r).at("limits_via"), "cgroup+rlimits");
}

TEST(IsolationPlan, DescribeOfADefaultPlan) {
  const Json d = describe(IsolationPlan{});
  EXPECT_EQ(d, (Json{{"namespaces", Json::array()},
                     {"user", Json{{"uid", 0}, {"gid", 0}, {"root", false}}},
                     {"cgroup", Json{{"memory", "none"}, {"pids", "none"}, {"cpu", "none"}}},
                     {"sockets", Json::array()},
                     {"limits_via", "rlimits"},
                     {"degraded", Json::array()}}));
}

TEST(IsolationPlan, TheRealHostProbeIsConsistent) {
  const HostSupport& h = host_support();
  EXPECT_EQ(&h, &host_support());  // probed once
  EXPECT_EQ(h.is_root, ::geteuid() == 0);
  if (!h.is_root) {
    EXPECT_FALSE(h.other_ns);
  }
  // With user namespaces the second probe (a whole set of namespaces made and torn down
  // on the first launch's path) decides nothing and is not made.
  if (h.user_ns) {
    EXPECT_FALSE(h.other_ns);
  }
  for (const auto& [v, dir] : {std::pair{h.memory, h.memory_dir}, std::pair{h.pids, h.pids_dir},
                               std::pair{h.cpu, h.cpu_dir}}) {
    EXPECT_EQ(v == CgroupVersion::none, dir.empty()) << dir;
  }
  // Whatever the host is, a step that allows degraded isolation and asks for no mounts
  // can always be planned (only root is refused, and only for an unprivileged agent).
  auto p = plan_isolation(spec_with(false, true), h);
  EXPECT_TRUE(p) << p.error().message << " notes: " << h.notes;
}

}  // namespace
}  // namespace delegate::sandbox
