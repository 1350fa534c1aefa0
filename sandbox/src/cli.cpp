#include <delegate/sandbox/cli.hpp>

#include <signal.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include <delegate/sandbox/launcher.hpp>
#include <delegate/sandbox/seccomp.hpp>
#include <delegate/sandbox/one_shot.hpp>

namespace delegate::sandbox {
namespace {

constexpr int kSetupFailed = 125;

constexpr const char* kUsage =
    "usage: sandbox-run [--profile NAME|FILE] [--network] [--timeout S] [--memory-mb N]\n"
    "                   [--pids N] [--cpu-percent N] [--ro PATH]... [--rw PATH]...\n"
    "                   [--hide PATH]... [--socket PATH]... [--root] [--allow-degraded]\n"
    "                   -- PROGRAM [ARGS...]\n"
    "\n"
    "Runs PROGRAM exactly as a runbook step would: new user, pid, mount, network, ipc,\n"
    "uts and cgroup namespaces; a read-only view of the host with a private /tmp, /dev,\n"
    "/proc and working directory; cgroup limits; an unprivileged user (nobody when run\n"
    "as root); no capabilities, no_new_privs, rlimits, a clean environment, seccomp.\n"
    "\n"
    "  --profile NAME|FILE  seccomp profile: default, network, strict (default: default),\n"
    "                   or the path of an OCI/Docker JSON profile (contains a '/')\n"
    "  --network        share the host network (otherwise: an empty namespace with only\n"
    "                   loopback) and lift the deny of non-AF_UNIX sockets that applies\n"
    "                   on top of any profile; the profile must allow them too\n"
    "                   (e.g. --profile network)\n"
    "  --timeout S      wall-clock limit in seconds, also the CPU-time limit (default: 300)\n"
    "  --memory-mb N    memory limit in MiB, OOM kill beyond it (default: 512)\n"
    "  --pids N         process limit for the whole step (default: 256)\n"
    "  --cpu-percent N  CPU bandwidth, 100 = one CPU (default: 100)\n"
    "  --ro PATH        make a host path visible read-only (the default view)\n"
    "  --rw PATH        make a host path writable by the step\n"
    "  --hide PATH      cover a host path with an empty directory (or /dev/null)\n"
    "  --socket PATH    grant a host Unix socket (without one the step cannot create\n"
    "                   Unix sockets at all; with one, every other named host socket\n"
    "                   is covered)\n"
    "  --root           run as uid 0 (still without capabilities); needs a root caller\n"
    "  --allow-degraded run even if the host cannot provide every namespace\n"
    "\n"
    "Exit status: the program's; 128+N if killed by signal N; 124 on timeout;\n"
    "125 if the sandbox could not be set up; 127 if PROGRAM was not found.\n";

struct Options {
  std::string profile = "default";
  bool network = false;
  std::optional<std::uint64_t> timeout_s;
  std::optional<std::uint64_t> memory_mb;
  std::optional<std::uint64_t> pids;
  std::optional<std::uint64_t> cpu_percent;
  std::vector<std::string> ro;
  std::vector<std::string> rw;
  std::vector<std::string> hide;
  std::vector<std::string> sockets;
  bool root = false;
  bool allow_degraded = false;
  std::vector<std::string> command;
  bool help = false;
  bool version = false;
};

struct UsageError {
  std::string message;
};

// Positive integers only, with a ceiling that keeps later unit conversions
// (seconds→ms, MiB→bytes) far from overflow.
std::optional<std::uint64_t> parse_count(std::string_view text, std::uint64_t max) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v == 0 || v > max) return std::nullopt;
  return v;
}

std::variant<Options, UsageError> parse(int argc, char** argv) {
  Options o;
  int i = 1;
  // Accepts "--name value" and "--name=value".
  auto take_value = [&](std::string_view arg, std::string_view name,
                        std::optional<std::string>& value) -> bool {
    if (arg == name) {
      if (i + 1 >= argc) return false;
      value = argv[++i];
      return true;
    }
    if (arg.size() > name.size() && arg.starts_with(name) && arg[name.size()] == '=') {
      value = std::string(arg.substr(name.size() + 1));
      return true;
    }
    return false;
  };
  for (; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (!arg.starts_with("-")) break;  // the program; everything after it is its argv
    if (arg == "--help" || arg == "-h") {
      o.help = true;
      return o;
    }
    if (arg == "--version") {
      o.version = true;
      return o;
    }
    if (arg == "--network") {
      o.network = true;
      continue;
    }
    if (arg == "--root") {
      o.root = true;
      continue;
    }
    if (arg == "--allow-degraded") {
      o.allow_degraded = true;
      continue;
    }
    std::optional<std::string> value;
    const auto number = [&](std::string_view flag, std::uint64_t max,
                            std::optional<std::uint64_t>& out) -> std::optional<UsageError> {
      out = parse_count(*value, max);
      if (!out) {
        return UsageError{std::string(flag) + " wants a positive integer up to " + std::to_string(max) +
                          ", got '" + *value + "'"};
      }
      return std::nullopt;
    };
    if (take_value(arg, "--profile", value)) {
      o.profile = *value;
    } else if (take_value(arg, "--timeout", value)) {
      if (auto e = number("--timeout", 30ull * 24 * 3600, o.timeout_s)) return *e;
    } else if (take_value(arg, "--memory-mb", value)) {
      if (auto e = number("--memory-mb", 1ull << 30, o.memory_mb)) return *e;
    } else if (take_value(arg, "--pids", value)) {
      if (auto e = number("--pids", 1ull << 22, o.pids)) return *e;
    } else if (take_value(arg, "--cpu-percent", value)) {
      if (auto e = number("--cpu-percent", 100000, o.cpu_percent)) return *e;
    } else if (take_value(arg, "--hide", value)) {
      o.hide.push_back(*value);
    } else if (take_value(arg, "--socket", value)) {
      o.sockets.push_back(*value);
    } else if (take_value(arg, "--ro", value)) {
      o.ro.push_back(*value);
    } else if (take_value(arg, "--rw", value)) {
      o.rw.push_back(*value);
    } else {
      const bool known = arg == "--profile" || arg == "--timeout" || arg == "--memory-mb" ||
                         arg == "--pids" || arg == "--ro" || arg == "--rw" || arg == "--hide" || arg == "--socket" ||
                         arg == "--cpu-percent";
      return UsageError{known ? std::string(arg) + " needs a value"
                              : "unknown option '" + std::string(arg) + "' (see --help)"};
    }
  }
  for (; i < argc; ++i) o.command.emplace_back(argv[i]);
  if (o.command.empty()) return UsageError{"no program given (see --help)"};
  return o;
}

void write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;  // our own output is gone (EPIPE): the step still runs to its end
    data.remove_prefix(static_cast<std::size_t>(n));
  }
}

int error_exit(std::string_view message) {
  std::string line = "sandbox-run: ";
  line += message;
  line += '\n';
  write_all(STDERR_FILENO, line);
  return kSetupFailed;
}

// SIGINT/SIGTERM/SIGHUP to the CLI cancel the step: its process group lives in its own
// session, so a terminal's ^C would otherwise not reach the step's grandchildren.
CancelToken* g_cancel = nullptr;

extern "C" void on_terminate_signal(int) {
  const int saved = errno;
  if (g_cancel != nullptr) g_cancel->cancel();  // eventfd write: async-signal-safe
  errno = saved;
}

class SignalScope {
 public:
  explicit SignalScope(CancelToken& token) {
    g_cancel = &token;
    struct sigaction sa {};
    sa.sa_handler = on_terminate_signal;
    sa.sa_flags = SA_RESTART;
    sigemptyset(&sa.sa_mask);
    for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &sa, &saved_[i]);
    // Writing to a closed stdout must not kill the CLI while the step still runs.
    struct sigaction ign {};
    ign.sa_handler = SIG_IGN;
    ::sigaction(SIGPIPE, &ign, &saved_pipe_);
  }
  ~SignalScope() {
    for (std::size_t i = 0; i < kSignals.size(); ++i) ::sigaction(kSignals[i], &saved_[i], nullptr);
    ::sigaction(SIGPIPE, &saved_pipe_, nullptr);
    g_cancel = nullptr;
  }
  SignalScope(const SignalScope&) = delete;
  SignalScope& operator=(const SignalScope&) = delete;

 private:
  static constexpr std::array<int, 3> kSignals{SIGINT, SIGTERM, SIGHUP};
  std::array<struct sigaction, 3> saved_{};
  struct sigaction saved_pipe_ {};
};

int main_impl(int argc, char** argv) {
  auto parsed = parse(argc, argv);
  if (auto* e = std::get_if<UsageError>(&parsed)) return error_exit(e->message);
  const Options& o = std::get<Options>(parsed);
  if (o.help) {
    write_all(STDOUT_FILENO, kUsage);
    return 0;
  }
  if (o.version) {
    write_all(STDOUT_FILENO, std::string("sandbox-run (delegate) ") + DELEGATE_VERSION + "\n");
    return 0;
  }
  disable_netns_pool();  // one launch, then exit: no namespaces made ahead
  auto filter = SeccompProgram::compile(o.profile,
                                        SeccompOptions{.network = o.network, .unix_sockets = !o.sockets.empty()});
  if (!filter) return error_exit(filter.error().message);

  Spec spec;
  spec.argv = o.command;
  spec.profile = o.profile;
  spec.network = o.network;
  if (o.timeout_s) {
    spec.limits.timeout = std::chrono::seconds(*o.timeout_s);
    // A step cannot legitimately burn more CPU than wall-clock time per core; tying the
    // two keeps an explicit --timeout from being undercut by the default CPU limit.
    spec.limits.cpu_seconds = *o.timeout_s;
  }
  if (o.memory_mb) spec.limits.memory_bytes = *o.memory_mb << 20;
  if (o.pids) spec.limits.processes = *o.pids;
  if (o.cpu_percent) spec.limits.cpu_percent = static_cast<std::uint32_t>(*o.cpu_percent);
  // Relative paths mean relative to where the CLI runs, as for the program itself.
  auto add_mounts = [&](const std::vector<std::string>& paths, BindMount::Kind kind) {
    for (const auto& p : paths) spec.isolation.mounts.push_back({kind, std::filesystem::absolute(p)});
  };
  add_mounts(o.ro, BindMount::Kind::read_only);
  add_mounts(o.rw, BindMount::Kind::read_write);
  add_mounts(o.hide, BindMount::Kind::hidden);
  for (const auto& p : o.sockets) spec.isolation.sockets.emplace_back(std::filesystem::absolute(p));
  spec.isolation.root = o.root;
  spec.isolation.allow_degraded = o.allow_degraded;

  CancelToken cancel;
  SignalScope signals(cancel);
  const OutputSink sink = [](Stream s, std::string_view data) {
    switch (s) {
      case Stream::stdout_stream: write_all(STDOUT_FILENO, data); return;
      case Stream::stderr_stream: write_all(STDERR_FILENO, data); return;
    }
  };
  auto outcome = run(spec, *filter, sink, &cancel);
  if (!outcome) return error_exit(outcome.error().message);
  switch (outcome->status) {
    case Status::not_found:
    case Status::setup_failed:
      (void)error_exit(outcome->error);
      break;
    case Status::timed_out:
      (void)error_exit("timed out, process group killed");
      break;
    case Status::exited:
    case Status::signaled:
    case Status::cancelled:
      break;
  }
  return exit_status(*outcome);
}

}  // namespace

int sandbox_run_main(int argc, char** argv) {
  try {
    return main_impl(argc, argv);
  } catch (const std::exception& e) {
    return error_exit(e.what());
  } catch (...) {
    return error_exit("unexpected internal error");
  }
}

}  // namespace delegate::sandbox
