#include "mounts.hpp"

#include <fcntl.h>
#include <linux/mount.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <algorithm>
#include <filesystem>
#include <system_error>

namespace delegate::sandbox::detail {
namespace {

namespace fs = std::filesystem;

// The scratch tmpfs is mounted over /tmp, which exists on every Linux host; inside the
// private mount namespace that hides nothing from anyone else.
constexpr const char* kScratch = "/tmp";
constexpr const char* kOld = "/oldroot";
constexpr const char* kNew = "/newroot";

// Device nodes a step may use; bind-mounted from the host (creating nodes needs
// privileges a user namespace does not have).
constexpr const char* kDevices[] = {"null", "zero", "full", "random", "urandom", "tty"};
// Kernel knobs under /proc that stay read-only even for a "root" step.
constexpr const char* kProcReadOnly[] = {"sys", "sysrq-trigger", "irq", "bus", "fs"};

class Builder {
 public:
  const char* str(std::string s) { return plan_.strings.emplace_back(std::move(s)).c_str(); }
  void add(MountStep s) { plan_.steps.push_back(s); }

  void mkdir(const std::string& path) { add({.op = MountOp::make_dir, .target = str(path)}); }
  void mkfile(const std::string& path) { add({.op = MountOp::make_file, .target = str(path)}); }
  void fs_mount(const char* fstype, const std::string& target, unsigned long flags, std::string data) {
    add({.op = MountOp::mount_fs,
         .source = fstype,
         .target = str(target),
         .fstype = fstype,
         .flags = flags,
         .data = data.empty() ? nullptr : str(std::move(data))});
  }
  void bind(const std::string& source, const std::string& target, bool recursive) {
    add({.op = MountOp::bind, .source = str(source), .target = str(target), .recursive = recursive});
  }
  void attr(const std::string& target, std::uint64_t set, bool recursive) {
    add({.op = MountOp::set_attr, .target = str(target), .attr_set = set, .recursive = recursive});
  }
  // Every ancestor of `inner` (an absolute path inside the step) below /newroot.
  void parents(const fs::path& inner) {
    std::string acc = kNew;
    const fs::path parent = inner.parent_path();
    for (const auto& part : parent.relative_path()) {
      acc += "/" + part.string();
      mkdir(acc);
    }
  }
  MountPlan take() { return std::move(plan_); }

 private:
  MountPlan plan_;
};

bool under(const fs::path& p, const fs::path& dir) {
  auto [a, b] = std::mismatch(dir.begin(), dir.end(), p.begin(), p.end());
  return a == dir.end();
}

}  // namespace

Result<MountPlan> build_mount_plan(const MountRequest& request) {
  Builder b;
  const std::string neu = kNew;
  const std::string old = kOld;

  b.add({.op = MountOp::make_private, .target = "/"});
  b.fs_mount("tmpfs", kScratch, MS_NOSUID | MS_NODEV, "mode=0700");
  b.add({.op = MountOp::change_dir, .target = kScratch});
  b.mkdir("newroot");
  b.mkdir("oldroot");
  b.add({.op = MountOp::pivot_old});

  // The host, read-only all the way down. nodev: the host's device nodes are not the
  // step's business; nosuid: a setuid binary gains nothing (no_new_privs also holds).
  b.bind(old, neu, true);
  b.attr(neu, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);

  // sysfs is not namespaced by mount: a fresh one needs CAP_SYS_ADMIN over the network
  // namespace, which a pre-made one does not grant. Cover what would describe the host
  // to a step that has its own network: interfaces (MACs, counters) and the cgroup
  // trees (other steps' cgroups). Device-level sysfs entries stay visible.
  if (request.private_network) {
    for (const char* dir : {"/sys/class/net", "/sys/devices/virtual/net", "/sys/fs/cgroup"}) {
      b.add({.op = MountOp::mount_fs,
             .source = "tmpfs",
             .target = b.str(neu + dir),
             .fstype = "tmpfs",
             .flags = MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_RDONLY,
             .data = "mode=0555,size=4k",
             .optional = true});
    }
  }

  b.fs_mount("tmpfs", neu + "/tmp", MS_NOSUID | MS_NODEV,
             "mode=1777,size=" + std::to_string(std::max<std::uint64_t>(request.tmp_bytes, 1 << 20)));

  b.fs_mount("tmpfs", neu + "/dev", MS_NOSUID | MS_NOEXEC, "mode=0755,size=1m");
  for (const char* dev : kDevices) {
    b.mkfile(neu + "/dev/" + dev);
    b.bind(old + "/dev/" + dev, neu + "/dev/" + dev, false);
    b.attr(neu + "/dev/" + dev, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false);
  }
  b.mkdir(neu + "/dev/shm");
  b.fs_mount("tmpfs", neu + "/dev/shm", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=1777,size=16m");
  for (const auto& [name, target] : {std::pair{"fd", "/proc/self/fd"}, std::pair{"stdin", "/proc/self/fd/0"},
                                     std::pair{"stdout", "/proc/self/fd/1"},
                                     std::pair{"stderr", "/proc/self/fd/2"}}) {
    b.add({.op = MountOp::make_symlink, .source = target, .target = b.str(neu + "/dev/" + name)});
  }
  b.attr(neu + "/dev", MOUNT_ATTR_RDONLY, false);

  b.fs_mount("proc", neu + "/proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, "");
  for (const char* knob : kProcReadOnly) {
    // Bind onto itself, then read-only; "bus" and "irq" are absent on some VMs.
    const char* path = b.str(neu + "/proc/" + knob);
    b.add({.op = MountOp::bind, .source = path, .target = path, .recursive = true, .optional = true});
    b.add({.op = MountOp::set_attr,
           .target = path,
           .attr_set = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
           .recursive = true,
           .optional = true});
  }

  // Binds and hidden paths first, the working directory last: it must stay visible even
  // when it lies below a hidden path.
  const fs::path work(request.workdir);
  if (!work.is_absolute()) return fail(Errc::invalid_argument, "working directory must be absolute");
  std::vector<std::string> hidden_dirs;
  for (const BindMount& m : request.binds) {
    std::error_code ec;
    if (!m.path.is_absolute()) {
      return fail(Errc::invalid_argument, "mount path must be absolute: " + m.path.string());
    }
    const fs::path canon = fs::canonical(m.path, ec);
    if (ec) return fail(Errc::not_found, "mount path " + m.path.string() + ": " + ec.message());
    for (const char* reserved : {"/proc", "/dev"}) {
      if (under(canon, reserved)) {
        return fail(Errc::invalid_argument, "mount path " + canon.string() + " is inside " + reserved +
                                                ", which the sandbox provides itself");
      }
    }
    const bool dir = fs::is_directory(canon, ec);
    const std::string inner = canon.string() == "/" ? "" : canon.string();
    switch (m.kind) {
      case BindMount::Kind::read_write:
        if (inner.empty()) return fail(Errc::invalid_argument, "refusing to make the whole host root writable");
        b.parents(canon);
        dir ? b.mkdir(neu + inner) : b.mkfile(neu + inner);
        b.bind(old + inner, neu + inner, true);
        b.attr(neu + inner, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
        break;
      case BindMount::Kind::read_only:
        b.parents(canon);
        dir ? b.mkdir(neu + inner) : b.mkfile(neu + inner);
        b.bind(old + inner, neu + inner, true);
        b.attr(neu + (inner.empty() ? "/" : inner), MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
               true);
        break;
      case BindMount::Kind::hidden:
        if (inner.empty()) return fail(Errc::invalid_argument, "cannot hide the root");
        // The mount point may be missing from the step's view (below its private /tmp).
        b.parents(canon);
        dir ? b.mkdir(neu + inner) : b.mkfile(neu + inner);
        if (dir) {
          // Writable until the working directory's mount point is made (it may lie
          // below, e.g. in the agent's hidden state_dir); read-only right after.
          b.fs_mount("tmpfs", neu + inner, MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=4k");
          hidden_dirs.push_back(neu + inner);
        } else {
          b.bind(old + "/dev/null", neu + inner, false);
          b.attr(neu + inner, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false);
        }
        break;
    }
  }

  // The working directory, writable, at the same path as on the host.
  b.parents(work);
  if (!under(work, "/tmp")) {
    // Outside /tmp the read-only host view would show the other steps' directories next
    // to this one: cover the parent so only this step's directory is visible.
    b.fs_mount("tmpfs", neu + work.parent_path().string(), MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=4k");
    hidden_dirs.push_back(neu + work.parent_path().string());
  }
  b.mkdir(neu + request.workdir);
  b.bind(old + request.workdir, neu + request.workdir, false);
  b.attr(neu + request.workdir, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, false);

  for (const auto& h : hidden_dirs) b.attr(h, MOUNT_ATTR_RDONLY, false);

  b.add({.op = MountOp::change_dir, .target = kNew});
  b.add({.op = MountOp::pivot_self});
  b.add({.op = MountOp::change_dir, .target = "/"});
  return b.take();
}

namespace {

int setattr(const char* path, std::uint64_t set, bool recursive) noexcept {
  mount_attr attr{};
  attr.attr_set = set;
  const unsigned flags = AT_NO_AUTOMOUNT | AT_SYMLINK_NOFOLLOW | (recursive ? AT_RECURSIVE : 0u);
  return static_cast<int>(::syscall(SYS_mount_setattr, AT_FDCWD, path, flags, &attr, sizeof attr));
}

int pivot(const char* new_root, const char* put_old) noexcept {
  return static_cast<int>(::syscall(SYS_pivot_root, new_root, put_old));
}

bool exists(const char* path) noexcept {
  struct stat st {};
  return ::lstat(path, &st) == 0;
}

int run_step(const MountStep& s) noexcept {
  if (s.optional && !exists(s.target)) return 0;
  switch (s.op) {
    case MountOp::make_private:
      return ::mount(nullptr, s.target, nullptr, MS_REC | MS_PRIVATE, nullptr);
    case MountOp::mount_fs:
      return ::mount(s.source, s.target, s.fstype, s.flags, s.data);
    case MountOp::bind:
      return ::mount(s.source, s.target, nullptr, s.recursive ? static_cast<unsigned long>(MS_BIND | MS_REC) : static_cast<unsigned long>(MS_BIND), nullptr);
    case MountOp::set_attr:
      return setattr(s.target, s.attr_set, s.recursive);
    case MountOp::make_dir:
      if (::mkdir(s.target, 0755) == 0 || errno == EEXIST || exists(s.target)) return 0;
      return -1;
    case MountOp::make_file: {
      if (exists(s.target)) return 0;
      const int fd = ::open(s.target, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
      if (fd < 0) return errno == EEXIST ? 0 : -1;
      ::close(fd);
      return 0;
    }
    case MountOp::make_symlink:
      return ::symlink(s.source, s.target) == 0 || errno == EEXIST ? 0 : -1;
    case MountOp::change_dir:
      return ::chdir(s.target);
    case MountOp::pivot_old:
      return pivot(".", "oldroot");
    case MountOp::pivot_self:
      // The old root ends up stacked on the new one; detaching it leaves only the view.
      if (pivot(".", ".") != 0) return -1;
      return ::umount2(".", MNT_DETACH);
  }
  errno = EINVAL;
  return -1;
}

}  // namespace

int apply_mounts(const MountPlan& plan, int* failed_step) noexcept {
  for (std::size_t i = 0; i < plan.steps.size(); ++i) {
    if (run_step(plan.steps[i]) != 0) {
      *failed_step = static_cast<int>(i);
      return errno != 0 ? errno : EIO;
    }
  }
  return 0;
}

std::string describe_step(const MountPlan& plan, int index) {
  if (index < 0 || static_cast<std::size_t>(index) >= plan.steps.size()) return "mount setup";
  const MountStep& s = plan.steps[static_cast<std::size_t>(index)];
  auto text = [](const char* p) { return std::string(p != nullptr ? p : ""); };
  switch (s.op) {
    case MountOp::make_private: return "making mounts private";
    case MountOp::mount_fs: return "mounting " + text(s.fstype) + " on " + text(s.target);
    case MountOp::bind: return "bind mount " + text(s.source) + " -> " + text(s.target);
    case MountOp::set_attr: return "setting mount flags on " + text(s.target);
    case MountOp::make_dir: return "creating mount point " + text(s.target);
    case MountOp::make_file: return "creating mount point " + text(s.target);
    case MountOp::make_symlink: return "creating " + text(s.target);
    case MountOp::change_dir: return "chdir " + text(s.target);
    case MountOp::pivot_old: return "pivot_root into the scratch root";
    case MountOp::pivot_self: return "pivot_root into the step's root";
  }
  return "mount setup";
}

}  // namespace delegate::sandbox::detail
