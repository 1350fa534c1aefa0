#include "cgroup.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <delegate/common/log.hpp>

#include "prepare.hpp"
#include "unique_fd.hpp"

namespace delegate::sandbox::detail {
namespace {

namespace fs = std::filesystem;

// cgroup files are written with one write(): the kernel parses each write separately.
[[nodiscard]] int write_text(const fs::path& path, std::string_view text) noexcept {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return errno;
  const ssize_t n = ::write(fd.get(), text.data(), text.size());
  if (n < 0) return errno;
  return n == static_cast<ssize_t>(text.size()) ? 0 : EIO;
}

std::string read_text(const fs::path& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// "key value" lines (memory.events, memory.oom_control).
std::uint64_t keyed_value(const std::string& text, std::string_view key) {
  std::istringstream in(text);
  std::string k;
  std::uint64_t v = 0;
  while (in >> k >> v) {
    if (k == key) return v;
  }
  return 0;
}

struct Mount {
  fs::path point;
  fs::path root;  // the part of the hierarchy this mount shows (not "/" inside a container)
  bool v2 = false;
  std::vector<std::string> controllers;  // v1 only
};

std::vector<std::string> split(std::string_view s, char sep) {
  std::vector<std::string> out;
  while (true) {
    const auto pos = s.find(sep);
    out.emplace_back(s.substr(0, pos));
    if (pos == std::string_view::npos) return out;
    s.remove_prefix(pos + 1);
  }
}

// /proc/self/mountinfo: "id parent maj:min root point opts [optional…] - fstype source superopts".
std::vector<Mount> cgroup_mounts() {
  std::vector<Mount> out;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  while (std::getline(in, line)) {
    const auto dash = line.find(" - ");
    if (dash == std::string::npos) continue;
    std::istringstream head(line.substr(0, dash));
    std::string id, parent, dev, root, point;
    head >> id >> parent >> dev >> root >> point;
    std::istringstream tail(line.substr(dash + 3));
    std::string fstype, source, opts;
    tail >> fstype >> source >> opts;
    if (fstype == "cgroup2") {
      out.push_back({point, root, true, {}});
    } else if (fstype == "cgroup") {
      out.push_back({point, root, false, split(opts, ',')});
    }
  }
  return out;
}

// /proc/self/cgroup: "id:controllers:path"; the v2 line is "0::path".
std::map<std::string, std::string> own_cgroups() {
  std::map<std::string, std::string> out;
  std::ifstream in("/proc/self/cgroup");
  std::string line;
  while (std::getline(in, line)) {
    const auto a = line.find(':');
    const auto b = line.find(':', a + 1);
    if (a == std::string::npos || b == std::string::npos) continue;
    const std::string controllers = line.substr(a + 1, b - a - 1);
    const std::string path = line.substr(b + 1);
    if (controllers.empty()) {
      out[""] = path;
    } else {
      for (const auto& c : split(controllers, ',')) out[c] = path;
    }
  }
  return out;
}

// Maps a cgroup path (as /proc/self/cgroup shows it) to a directory under the mount.
std::optional<fs::path> locate(const Mount& m, const std::string& cg_path) {
  const std::string root = m.root.string();
  std::string rel = cg_path;
  if (root != "/") {
    if (!rel.starts_with(root)) return std::nullopt;
    rel = rel.substr(root.size());
  }
  fs::path dir = m.point;
  if (!rel.empty() && rel != "/") dir /= fs::path(rel).relative_path();
  return dir;
}

bool can_create_children(const fs::path& dir) {
  const fs::path probe = dir / ("delegate-probe-" + std::to_string(::getpid()));
  if (::mkdir(probe.c_str(), 0755) != 0 && errno != EEXIST) return false;
  return ::rmdir(probe.c_str()) == 0;
}

std::atomic<std::uint64_t> g_counter{0};

}  // namespace

void probe_cgroups(HostSupport& host) {
  const auto mounts = cgroup_mounts();
  const auto own = own_cgroups();
  const char* controllers[] = {"memory", "pids", "cpu"};
  CgroupVersion* version[] = {&host.memory, &host.pids, &host.cpu};
  fs::path* dirs[] = {&host.memory_dir, &host.pids_dir, &host.cpu_dir};

  // v2 first: a controller enabled for our subtree there is authoritative.
  std::optional<fs::path> v2dir;
  for (const Mount& m : mounts) {
    if (!m.v2 || !own.contains("")) continue;
    v2dir = locate(m, own.at(""));
    break;
  }
  std::string v2_enabled;
  if (v2dir && can_create_children(*v2dir)) {
    for (const char* c : controllers) {
      // Enabling fails (EBUSY) when our own cgroup holds processes and is not the root:
      // then that controller comes from v1, or not at all.
      (void)write_text(*v2dir / "cgroup.subtree_control", std::string("+") + c);
    }
    v2_enabled = " " + read_text(*v2dir / "cgroup.subtree_control");
  }
  for (std::size_t i = 0; i < 3; ++i) {
    const std::string name = controllers[i];
    // Whole words: "cpu" must not match "cpuset".
    bool on_v2 = false;
    {
      std::istringstream words(v2_enabled);
      std::string w;
      while (words >> w) on_v2 = on_v2 || w == name;
    }
    if (v2dir && on_v2) {
      *version[i] = CgroupVersion::v2;
      *dirs[i] = *v2dir;
      continue;
    }
    for (const Mount& m : mounts) {
      if (m.v2 || std::find(m.controllers.begin(), m.controllers.end(), name) == m.controllers.end()) {
        continue;
      }
      if (!own.contains(name)) break;
      auto dir = locate(m, own.at(name));
      if (dir && can_create_children(*dir)) {
        *version[i] = CgroupVersion::v1;
        *dirs[i] = *dir;
      } else {
        host.notes += "cgroup " + name + " (v1) not writable; ";
      }
      break;
    }
    if (*version[i] == CgroupVersion::none && host.notes.find(name) == std::string::npos) {
      host.notes += "no usable cgroup " + name + " controller; ";
    }
  }
}

Result<StepCgroup> StepCgroup::create(const IsolationPlan& plan, const HostSupport& host,
                                      const CgroupLimits& limits) {
  StepCgroup cg;
  // pid and counter are not unique on their own: a v1 hierarchy's root (and a shared
  // parent in general) is also used by agents in other pid namespaces, whose pids repeat
  // ours. A random part keeps two agents from colliding there (mkdir would say EEXIST).
  std::uint32_t nonce = 0;
  if (::getrandom(&nonce, sizeof nonce, GRND_NONBLOCK) != static_cast<ssize_t>(sizeof nonce)) {
    nonce = static_cast<std::uint32_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  }
  char suffix[9];
  std::snprintf(suffix, sizeof suffix, "%08x", static_cast<unsigned>(nonce));
  const std::string name = "delegate-step-" + std::to_string(::getpid()) + "-" +
                           std::to_string(g_counter.fetch_add(1)) + "-" + suffix;
  // One directory per distinct parent; on v2 all controllers share it.
  auto dir_for = [&](CgroupVersion v, const fs::path& parent) -> Result<Dir*> {
    const fs::path path = parent / name;
    for (Dir& d : cg.dirs_) {
      if (d.path == path) return &d;
    }
    if (::mkdir(path.c_str(), 0755) != 0) return fail(Errc::io, errno_message("mkdir " + path.string(), errno));
    cg.dirs_.push_back({v, path, false});
    return &cg.dirs_.back();
  };
  auto set = [](const fs::path& file, const std::string& value) -> Result<void> {
    if (const int e = write_text(file, value); e != 0) {
      return fail(Errc::io, errno_message("cannot set " + file.string() + " to " + value, e));
    }
    return ok();
  };

  if (plan.memory != CgroupVersion::none) {
    auto d = dir_for(plan.memory, host.memory_dir);
    if (!d) return std::unexpected(d.error());
    (*d)->memory = true;
    const std::string bytes = std::to_string(limits.memory_bytes);
    if (plan.memory == CgroupVersion::v2) {
      if (auto r = set((*d)->path / "memory.max", bytes); !r) return std::unexpected(r.error());
      // No swap: a memory limit that spills to swap is no limit. Absent without swap.
      (void)write_text((*d)->path / "memory.swap.max", "0");
      // An OOM kill takes the whole step, not one victim chosen from it.
      (void)write_text((*d)->path / "memory.oom.group", "1");
    } else {
      if (auto r = set((*d)->path / "memory.limit_in_bytes", bytes); !r) return std::unexpected(r.error());
      // Only present with swap accounting; the memory limit already applies without it.
      (void)write_text((*d)->path / "memory.memsw.limit_in_bytes", bytes);
    }
  }
  if (plan.pids != CgroupVersion::none) {
    auto d = dir_for(plan.pids, host.pids_dir);
    if (!d) return std::unexpected(d.error());
    if (auto r = set((*d)->path / "pids.max", std::to_string(limits.pids)); !r) return std::unexpected(r.error());
  }
  if (plan.cpu != CgroupVersion::none) {
    auto d = dir_for(plan.cpu, host.cpu_dir);
    if (!d) return std::unexpected(d.error());
    constexpr std::uint64_t kPeriodUs = 100000;
    const std::uint64_t quota = kPeriodUs * limits.cpu_percent / 100;
    if (plan.cpu == CgroupVersion::v2) {
      if (auto r = set((*d)->path / "cpu.max", std::to_string(quota) + " " + std::to_string(kPeriodUs)); !r) {
        return std::unexpected(r.error());
      }
    } else {
      if (auto r = set((*d)->path / "cpu.cfs_period_us", std::to_string(kPeriodUs)); !r) {
        return std::unexpected(r.error());
      }
      if (auto r = set((*d)->path / "cpu.cfs_quota_us", std::to_string(quota)); !r) {
        return std::unexpected(r.error());
      }
    }
  }
  return cg;
}

StepCgroup::StepCgroup(StepCgroup&& other) noexcept : dirs_(std::move(other.dirs_)) { other.dirs_.clear(); }

StepCgroup& StepCgroup::operator=(StepCgroup&& other) noexcept {
  if (this != &other) {
    remove();
    dirs_ = std::move(other.dirs_);
    other.dirs_.clear();
  }
  return *this;
}

StepCgroup::~StepCgroup() { remove(); }

Result<void> StepCgroup::attach(pid_t pid) const {
  const std::string text = std::to_string(pid);
  for (const Dir& d : dirs_) {
    if (const int e = write_text(d.path / "cgroup.procs", text); e != 0) {
      return fail(Errc::io, errno_message("cannot move the step into " + d.path.string(), e));
    }
  }
  return ok();
}

void StepCgroup::kill_all() const noexcept {
  for (const Dir& d : dirs_) {
    // cgroup.kill (v2, Linux 5.14) kills atomically, including processes forking right now.
    if (d.version == CgroupVersion::v2 && write_text(d.path / "cgroup.kill", "1") == 0) continue;
    try {
      std::ifstream in(d.path / "cgroup.procs");
      pid_t pid = 0;
      while (in >> pid) (void)::kill(pid, SIGKILL);
    } catch (...) {
    }
  }
}

bool StepCgroup::oom_killed() const {
  for (const Dir& d : dirs_) {
    if (!d.memory) continue;
    const std::string file = d.version == CgroupVersion::v2 ? "memory.events" : "memory.oom_control";
    const std::string text = read_text(d.path / file);
    if (keyed_value(text, "oom_kill") > 0) return true;
    // Kernels before 4.13 lack oom_kill in v1; hitting the limit is the best evidence.
    if (d.version == CgroupVersion::v1 && keyed_value(text, "under_oom") > 0) return true;
  }
  return false;
}

std::uint64_t StepCgroup::peak_memory() const {
  for (const Dir& d : dirs_) {
    if (!d.memory) continue;
    const std::string file = d.version == CgroupVersion::v2 ? "memory.peak" : "memory.max_usage_in_bytes";
    try {
      return std::stoull(read_text(d.path / file));
    } catch (...) {
      return 0;
    }
  }
  return 0;
}

void StepCgroup::remove() noexcept {
  if (dirs_.empty()) return;
  // Processes of a torn-down pid namespace take a moment to leave; rmdir says EBUSY
  // until then. Bounded: a directory that stays busy is reported, not waited on forever.
  for (const Dir& d : dirs_) {
    bool removed = false;
    for (int attempt = 0; attempt < 400 && !removed; ++attempt) {
      if (::rmdir(d.path.c_str()) == 0 || errno == ENOENT) {
        removed = true;
        break;
      }
      if (errno != EBUSY) break;
      if (attempt == 20) kill_all();
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (!removed) {
      try {
        log::warn("sandbox", "cannot remove step cgroup " + d.path.string() + ": " + std::strerror(errno));
      } catch (...) {
      }
    }
  }
  dirs_.clear();
}

}  // namespace delegate::sandbox::detail
