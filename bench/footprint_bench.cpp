// Whole processes, as a user times them from a shell: `delegate-agent sandbox-run --
// /bin/true` against bubblewrap with comparable isolation, with `delegate-agent
// --version` (the binary's start alone) and /bin/true (fork+exec+wait alone) as context.
// The four commands take turns in every round, so that a burst of load on this shared
// machine hits all of them alike.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <thread>
#include <vector>

#include "benches.hpp"

extern char** environ;

namespace delegate::bench {
namespace {

struct Command {
  std::vector<const char*> argv;
  std::vector<double> samples;
  bool failed = false;
};

// Microseconds from spawn to reaped, or -1 if it did not exit 0. Output goes to
// /dev/null: the figure is the process, not a terminal.
double run_once(const std::vector<const char*>& argv) {
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  std::vector<const char*> v = argv;
  v.push_back(nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, v[0], &fa, nullptr, const_cast<char* const*>(v.data()), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int st = 0;
  ::waitpid(pid, &st, 0);
  const auto t1 = std::chrono::steady_clock::now();
  if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) return -1;
  return std::chrono::duration<double, std::micro>(t1 - t0).count();
}

}  // namespace

void footprint_rows(Table& t) {
  constexpr int kRounds = 120;
  const auto pause = std::chrono::milliseconds(20);  // as the launch rows: teardown done
  const char* agent = DELEGATE_AGENT_BIN;
  Command run{{agent, "sandbox-run", "--", "/bin/true"}};
  Command bwrap{{"/usr/bin/bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                 "--tmpfs", "/tmp", "/bin/true"}};
  Command version{{agent, "--version"}};
  Command truth{{"/bin/true"}};
  const bool have_bwrap = std::filesystem::exists("/usr/bin/bwrap") && run_once(bwrap.argv) >= 0;
  std::vector<Command*> all = {&run, &version, &truth};
  if (have_bwrap) all.push_back(&bwrap);
  for (int i = 0; i < kRounds; ++i) {
    for (Command* c : all) {
      std::this_thread::sleep_for(pause);
      const double us = run_once(c->argv);
      if (us < 0) {
        c->failed = true;
      } else {
        c->samples.push_back(us);
      }
    }
  }
  for (Command* c : all) {
    if (c->failed) std::fprintf(stderr, "delegate-bench: '%s %s' failed; its row is not valid\n", c->argv[0], c->argv[1]);
  }
  const std::string note = std::to_string(kRounds) + " whole processes each (posix_spawn+waitpid, output to /dev/null), " +
                           "medians, the commands interleaved, " + std::to_string(pause.count()) + " ms apart";
  const double bw = have_bwrap ? median(bwrap.samples) / 1000 : 0;
  if (!have_bwrap) t.skipped("bwrap --unshare-all ... /bin/true, whole process", "/usr/bin/bwrap missing or refused");
  t.add({.what = "`delegate-agent sandbox-run -- /bin/true`, whole process", .value = median(run.samples) / 1000,
         .unit = "ms", .ref_name = have_bwrap ? "bwrap --unshare-all --ro-bind / / --dev --proc --tmpfs, whole process" : "",
         .ref = bw, .target_on = have_bwrap ? TargetOn::ratio : TargetOn::none, .target = 1.0, .note = note});
  t.add({.what = "`delegate-agent --version`, whole process", .value = median(version.samples) / 1000, .unit = "ms",
         .ref_name = have_bwrap ? "bwrap, whole process" : "", .ref = bw});
  t.add({.what = "`/bin/true`, whole process", .value = median(truth.samples) / 1000, .unit = "ms"});
}

}  // namespace delegate::bench
