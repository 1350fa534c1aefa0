// What a delegate-agent process maps: a command that makes no HTTP request does not load
// libcurl and its dependency chain (docs/architecture.md, "Start-up and footprint").
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>

#include "harness.hpp"

namespace delegate::testing {
namespace {

std::string maps_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// Seen while the step runs (it waits on a FIFO the test opens only after looking), so
// the CLI process is past every launch step and still alive.
TEST(Footprint, SandboxRunLoadsNoLibcurl) {
  // Not under /tmp: the step has a private one.
  std::string tmpl = "/var/tmp/delegate-footprint-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl.data()), nullptr);
  struct Dir {
    fs::path path;
    ~Dir() { fs::remove_all(path); }
  } dir{tmpl};
  ::chmod(dir.path.c_str(), 0755);
  const auto fifo = dir.path / "go";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0666), 0);
  ::chmod(fifo.c_str(), 0666);  // the step runs as nobody
  Process cli({Bins::agent(), "sandbox-run", "--", "/bin/sh", "-c", "echo ready; read x < " + fifo.string() + "; echo $x"},
              dir.path / "cli.log");
  ASSERT_TRUE(eventually([&] { return cli.log_text().find("ready\n") != std::string::npos || !cli.running(); }));
  ASSERT_EQ(cli.log_text(), "ready\n");
  const std::string maps = maps_of(cli.pid());
  EXPECT_NE(maps.find("libcrypto"), std::string::npos) << maps;  // the read worked
  EXPECT_EQ(maps.find("libcurl"), std::string::npos) << maps;
  EXPECT_EQ(maps.find("libgnutls"), std::string::npos) << maps;
  std::ofstream(fifo) << "go\n";
  EXPECT_EQ(cli.wait(std::chrono::seconds(60)), 0);
  EXPECT_EQ(cli.log_text(), "ready\ngo\n");
}

}  // namespace
}  // namespace delegate::testing
