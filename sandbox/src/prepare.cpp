#include "prepare.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

namespace delegate::sandbox::detail {
namespace {
// The clean environment's PATH; argv[0] is resolved against it in the parent.
constexpr const char* kPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
}  // namespace

std::string errno_message(const std::string& what, int err) {
  return what + ": " + std::strerror(err);
}


bool has_nul(std::string_view s) { return s.find('\0') != std::string_view::npos; }

static bool is_executable_file(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(path.c_str(), X_OK) == 0;
}

// Returns the absolute path to exec, or nullopt when there is none.
std::optional<std::string> resolve_program(const std::string& name) {
  if (name.empty()) return std::nullopt;
  if (name.find('/') != std::string::npos) {
    std::error_code ec;
    // Relative paths mean "relative to where the agent/CLI runs", not to the workdir.
    const auto abs = std::filesystem::absolute(name, ec);
    if (ec || !is_executable_file(abs.string())) return std::nullopt;
    return abs.string();
  }
  std::string_view dirs(kPath);
  while (!dirs.empty()) {
    const auto colon = dirs.find(':');
    const std::string_view dir = dirs.substr(0, colon);
    dirs = colon == std::string_view::npos ? std::string_view{} : dirs.substr(colon + 1);
    std::string candidate = std::string(dir) + "/" + name;
    if (is_executable_file(candidate)) return candidate;
  }
  return std::nullopt;
}

// Base environment plus spec.env; a spec entry replaces a base entry of the same name.
Result<std::vector<std::string>> build_env(const std::vector<std::string>& extra,
                                           const std::string& workdir) {
  std::vector<std::string> env = {std::string("PATH=") + kPath, "HOME=" + workdir,
                                  "TMPDIR=" + workdir, "LANG=C.UTF-8"};
  for (const std::string& entry : extra) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos || eq == 0 || has_nul(entry)) {
      return fail(Errc::invalid_argument, "invalid environment entry (want NAME=value)");
    }
    const std::string_view name(entry.data(), eq + 1);  // includes '='
    auto same = std::find_if(env.begin(), env.end(),
                             [&](const std::string& e) { return e.starts_with(name); });
    if (same != env.end()) {
      *same = entry;
    } else {
      env.push_back(entry);
    }
  }
  return env;
}

std::vector<char*> to_pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

// Never asks for more than the agent's own hard limit: an unprivileged agent cannot
// raise it, and a lower value is only stricter.
namespace {
rlimit clamp(int resource, rlim_t soft, rlim_t hard) {
  rlimit cur{};
  if (::getrlimit(static_cast<__rlimit_resource_t>(resource), &cur) == 0 &&
      cur.rlim_max != RLIM_INFINITY) {
    hard = std::min(hard, cur.rlim_max);
    soft = std::min(soft, hard);
  }
  return {soft, hard};
}

rlim_t as_rlim(std::uint64_t v) { return static_cast<rlim_t>(v); }
}  // namespace

std::array<RlimitSetting, 6> build_rlimits(const Limits& l, bool memory_via_rlimit) {
  // RLIMIT_CPU: SIGXCPU at the soft limit, SIGKILL one second later at the hard limit
  // (for programs that catch or ignore SIGXCPU).
  const rlim_t cpu_hard = l.cpu_seconds >= RLIM_INFINITY - 1 ? RLIM_INFINITY : as_rlim(l.cpu_seconds + 1);
  // RLIMIT_NPROC counts the processes of the real uid within its user namespace (one
  // per step), and is not enforced for root; the pids cgroup is the real per-step bound.
  return {{
      {RLIMIT_CPU, clamp(RLIMIT_CPU, as_rlim(l.cpu_seconds), cpu_hard)},
      // With a memory cgroup the address-space limit would only break programs that
      // reserve large virtual ranges (Go, JVMs, sanitizers) without limiting memory.
      {RLIMIT_AS, memory_via_rlimit ? clamp(RLIMIT_AS, as_rlim(l.memory_bytes), as_rlim(l.memory_bytes))
                                    : clamp(RLIMIT_AS, RLIM_INFINITY, RLIM_INFINITY)},
      {RLIMIT_NOFILE, clamp(RLIMIT_NOFILE, as_rlim(l.open_files), as_rlim(l.open_files))},
      {RLIMIT_NPROC, clamp(RLIMIT_NPROC, as_rlim(l.processes), as_rlim(l.processes))},
      {RLIMIT_FSIZE, clamp(RLIMIT_FSIZE, as_rlim(l.file_size_bytes), as_rlim(l.file_size_bytes))},
      {RLIMIT_CORE, {0, 0}},
  }};
}

// Moves a fresh descriptor above 0..2: if the agent runs with a closed stdio slot,
// a pipe could land there and be clobbered by the child's dup2 onto stdio.
static Result<UniqueFd> above_stdio(UniqueFd fd) {
  if (fd.get() > 2) return fd;
  UniqueFd moved(::fcntl(fd.get(), F_DUPFD_CLOEXEC, 3));
  if (!moved) return fail(Errc::io, errno_message("fcntl(F_DUPFD_CLOEXEC)", errno));
  return moved;
}

Result<Pipe> make_pipe() {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return fail(Errc::io, errno_message("pipe2", errno));
  Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
  auto r = above_stdio(std::move(p.read));
  if (!r) return std::unexpected(r.error());
  auto w = above_stdio(std::move(p.write));
  if (!w) return std::unexpected(w.error());
  return Pipe{std::move(*r), std::move(*w)};
}

// stdin as a sealed memfd rather than a pipe: no writer loop, no SIGPIPE in the agent
// when the step ignores its input, and the step cannot modify it.
Result<UniqueFd> make_stdin(const std::string& data) {
  if (data.empty()) {
    UniqueFd null(::open("/dev/null", O_RDONLY | O_CLOEXEC));
    if (!null) return fail(Errc::io, errno_message("/dev/null", errno));
    return above_stdio(std::move(null));
  }
  UniqueFd mem(::memfd_create("delegate-stdin", MFD_CLOEXEC | MFD_ALLOW_SEALING));
  if (!mem) return fail(Errc::io, errno_message("memfd_create", errno));
  std::size_t done = 0;
  while (done < data.size()) {
    const ssize_t n = ::write(mem.get(), data.data() + done, data.size() - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return fail(Errc::io, errno_message("writing step stdin", errno));
    done += static_cast<std::size_t>(n);
  }
  if (::fcntl(mem.get(), F_ADD_SEALS, F_SEAL_WRITE | F_SEAL_GROW | F_SEAL_SHRINK | F_SEAL_SEAL) != 0 ||
      ::lseek(mem.get(), 0, SEEK_SET) != 0) {
    return fail(Errc::io, errno_message("sealing step stdin", errno));
  }
  return above_stdio(std::move(mem));
}

int max_fd_bound() {
  rlimit r{};
  if (::getrlimit(RLIMIT_NOFILE, &r) != 0 || r.rlim_cur == RLIM_INFINITY) return 65536;
  return static_cast<int>(std::clamp<rlim_t>(r.rlim_cur, 1024, 65536));
}

}  // namespace delegate::sandbox::detail
