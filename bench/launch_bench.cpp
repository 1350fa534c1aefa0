// Sandboxed launches of /bin/true in process, against posix_spawn (no isolation) and
// bubblewrap with comparable isolation, measured in the same run.
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <delegate/sandbox/launcher.hpp>

#include "benches.hpp"
#include "timing.hpp"

extern char** environ;

namespace delegate::bench {

namespace {

// CPU time of this process and its reaped children (a launcher's init and step, bwrap
// and its child), in microseconds: unlike wall-clock medians it hardly moves when other
// work shares the machine, so it compares launchers on a busy host too. It leaves out
// waits (RCU grace periods at unmount, the scheduler).
double cpu_us() {
  double total = 0;
  for (const int who : {RUSAGE_SELF, RUSAGE_CHILDREN}) {
    rusage ru{};
    ::getrusage(who, &ru);
    total += static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
             static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
  }
  return total;
}

}  // namespace

void launch_rows(Table& t) {
  auto spawn_wait = [](std::vector<const char*> argv) {
    argv.push_back(nullptr);
    pid_t pid;
    if (posix_spawn(&pid, argv[0], nullptr, nullptr, const_cast<char* const*>(argv.data()), environ) != 0) return false;
    int st = 0;
    waitpid(pid, &st, 0);
    return WIFEXITED(st) && WEXITSTATUS(st) == 0;
  };
  constexpr int kLaunches = 200;
  const auto pause = std::chrono::milliseconds(20);
  const double ps = time_us([&] { spawn_wait({"/bin/true"}); }, kLaunches, pause);
  const std::vector<const char*> bwrap = {"/usr/bin/bwrap", "--unshare-all", "--ro-bind", "/", "/", "--dev", "/dev",
                                          "--proc", "/proc", "--tmpfs", "/tmp", "/bin/true"};
  const bool have_bwrap = std::filesystem::exists("/usr/bin/bwrap") && spawn_wait(bwrap);
  const double bw_cpu0 = cpu_us();
  const double bw = have_bwrap ? time_us([&] { spawn_wait(bwrap); }, kLaunches, pause) : 0;
  const double bw_cpu = (cpu_us() - bw_cpu0) / kLaunches;

  const auto& host = sandbox::host_support();
  std::printf("sandbox host: user_ns=%d cgroups memory/pids/cpu=%d/%d/%d (0 none, 1 v1, 2 v2)\n", host.user_ns,
              static_cast<int>(host.memory), static_cast<int>(host.pids), static_cast<int>(host.cpu));
  auto sink = [](sandbox::Stream, std::string_view) {};
  bool failed = false;
  auto launch = [&](bool network, std::chrono::milliseconds gap) {
    auto filter = sandbox::SeccompProgram::compile(network ? "network" : "default", {.network = network});
    sandbox::Spec spec;
    spec.argv = {"/bin/true"};
    spec.network = network;
    return time_us(
        [&] {
          auto o = sandbox::run(spec, *filter, sink);
          if (!o || o->status != sandbox::Status::exited) failed = true;
        },
        kLaunches, gap);
  };
  const double full_cpu0 = cpu_us();
  const double full = launch(false, pause);
  const double full_cpu = (cpu_us() - full_cpu0) / kLaunches;
  const double shared_net = launch(true, pause);
  const double saturated = launch(false, std::chrono::milliseconds(0));
  if (failed) std::fprintf(stderr, "delegate-bench: a sandboxed launch failed; launch rows are not valid\n");
  t.add({.what = "posix_spawn /bin/true (no isolation)", .value = ps / 1000, .unit = "ms"});
  if (!have_bwrap) {
    t.skipped("bwrap --unshare-all /bin/true", "/usr/bin/bwrap missing or refused");
  } else {
    t.add({.what = "bwrap --unshare-all /bin/true, in process", .value = bw / 1000, .unit = "ms"});
  }
  const std::string ref = have_bwrap ? "bwrap --unshare-all" : "";
  const std::string note = std::to_string(kLaunches) + " launches, medians, " + std::to_string(pause.count()) +
                           " ms pause between launches";
  t.add({.what = "full-isolation step launch, in process", .value = full / 1000, .unit = "ms", .ref_name = ref,
         .ref = bw / 1000, .target_on = TargetOn::ratio, .target = 0.5, .note = note});
  if (have_bwrap) {
    t.add({.what = "full-isolation step launch, CPU (all processes)", .value = full_cpu / 1000, .unit = "ms",
           .ref_name = "bwrap --unshare-all CPU", .ref = bw_cpu / 1000,
           .note = "CPU time of the launcher and its children per launch, means; leaves out waits"});
  }
  t.add({.what = "step launch, host network, in process", .value = shared_net / 1000, .unit = "ms",
         .ref_name = ref, .ref = bw / 1000});
  t.add({.what = "full-isolation step launch, back to back", .value = saturated / 1000, .unit = "ms",
         .ref_name = ref, .ref = bw / 1000, .note = "no pause between launches"});
}

}  // namespace delegate::bench
