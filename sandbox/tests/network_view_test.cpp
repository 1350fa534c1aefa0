// What a step learns about the host's network from its view (sysfs, /proc/net), with
// and without its own network namespace. Split from escape_test.cpp.
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace delegate::sandbox {
namespace {

using namespace std::chrono_literals;
using testing::Captured;
using testing::compile_or_die;
using testing::run_capture;

Captured run_step(const Spec& spec) { return run_capture(spec, compile_or_die(spec.profile, spec.network)); }

Captured run_script(const std::string& script) {
  Spec spec;
  spec.argv = {"sh", "-c", script};
  spec.limits.timeout = 60s;
  return run_step(spec);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) out.push_back(line);
  return out;
}

class NetworkView : public ::testing::Test {
 protected:
  void SetUp() override {
    const HostSupport& h = host_support();
    if (!(h.user_ns || h.other_ns) || !h.mount_setattr) {
      GTEST_SKIP() << "the sandbox cannot isolate steps on this host: " << h.notes;
    }
  }
};

// The step's sysfs is the host's, read-only (sysfs shows the network devices of the
// namespace that mounted it); with a private network the parts that describe the
// host's interfaces and cgroups are covered.
TEST_F(NetworkView, SysfsShowsNoHostInterfacesOrCgroups) {
  const auto c = run_script(
      "find /sys/class/net /sys/devices/virtual/net /sys/fs/cgroup -mindepth 1 | wc -l; ls /sys/devices | wc -w");
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  const auto l = lines(c.out);
  ASSERT_EQ(l.size(), 2u) << c.out;
  EXPECT_EQ(l[0], "0") << c.out;
  EXPECT_NE(l[1], "0") << "the rest of sysfs is still there: " << c.out;
  // Control: with the host network the interfaces are listed (the step must have run
  // and counted them: an empty output is a failed control, not a pass).
  Spec spec;
  spec.argv = {"sh", "-c", "ls /sys/class/net | wc -w"};
  spec.network = true;
  spec.profile = "network";
  const auto h = run_step(spec);
  ASSERT_EQ(h.outcome.status, Status::exited) << h.outcome.error << h.err;
  const auto hl = lines(h.out);
  ASSERT_EQ(hl.size(), 1u) << h.out;
  EXPECT_GT(std::atoi(hl[0].c_str()), 0) << h.out;
}

// Control for the interface check: with the network the host's interfaces are visible.
TEST_F(NetworkView, NetworkStepSeesTheHostInterfaces) {
  std::ifstream host_dev("/proc/net/dev");
  const std::string host((std::istreambuf_iterator<char>(host_dev)), {});
  std::size_t host_ifaces = 0;
  for (const auto& l : lines(host)) host_ifaces += l.find(':') != std::string::npos ? 1 : 0;
  if (host_ifaces < 2) GTEST_SKIP() << "the host has only loopback";
  Spec spec;
  spec.argv = {"cat", "/proc/net/dev"};
  spec.network = true;
  spec.profile = "network";
  const auto c = run_step(spec);
  ASSERT_EQ(c.outcome.status, Status::exited) << c.outcome.error << c.err;
  std::size_t inside = 0;
  for (const auto& l : lines(c.out)) inside += l.find(':') != std::string::npos ? 1 : 0;
  EXPECT_EQ(inside, host_ifaces) << c.out;
}

}  // namespace
}  // namespace delegate::sandbox
