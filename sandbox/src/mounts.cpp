#include "mounts.hpp"

#include <fcntl.h>
#include <linux/mount.h>
#include <linux/openat2.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <openssl/crypto.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
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
  const std::string& secret(const std::string& s) { return plan_.secret_data.items.emplace_back(s); }
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

long open_no_symlinks(int dirfd, const char* path, int flags) noexcept {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags) | O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  return ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
}

// The host object at a canonical path, opened once without following symlinks: the
// one resolution every later check and the child's bind refer to.
struct Resolved {
  std::string path;  // canonical
  struct stat st {};
};

Result<Resolved> resolve_pinned(const fs::path& requested, std::vector<UniqueFd>& pins, const char* what) {
  std::error_code ec;
  if (!requested.is_absolute()) {
    return fail(Errc::invalid_argument, std::string(what) + " must be absolute: " + requested.string());
  }
  const fs::path canon = fs::canonical(requested, ec);
  if (ec) return fail(Errc::not_found, std::string(what) + " " + requested.string() + ": " + ec.message());
  UniqueFd fd(static_cast<int>(open_no_symlinks(AT_FDCWD, canon.c_str(), 0)));
  Resolved r;
  if (!fd || ::fstat(fd.get(), &r.st) != 0) {
    // A symlink appeared in a path that had none a moment ago.
    return fail(Errc::permission, std::string(what) + " " + requested.string() + " changed while it was resolved: " +
                                      std::strerror(errno));
  }
  r.path = canon.string();
  pins.push_back(std::move(fd));
  return r;
}

// Named sockets of the host (of the agent's network namespace) from /proc/net/unix,
// canonical and still sockets; abstract ones ("@…") have no path to cover.
std::vector<std::string> host_named_sockets() {
  std::vector<std::string> out;
  std::ifstream in("/proc/net/unix");
  std::string line;
  std::getline(in, line);  // header
  while (std::getline(in, line)) {
    // "Num RefCount Protocol Flags Type St Inode Path": the path follows the 7th field.
    std::size_t pos = 0;
    for (int field = 0; field < 7 && pos != std::string::npos; ++field) {
      pos = line.find_first_not_of(' ', pos);
      if (pos != std::string::npos) pos = line.find(' ', pos);
    }
    if (pos == std::string::npos || pos + 1 >= line.size() || line[pos + 1] != '/') continue;
    std::error_code ec;
    const fs::path canon = fs::canonical(line.substr(pos + 1), ec);
    struct stat st {};
    if (ec || ::lstat(canon.c_str(), &st) != 0 || !S_ISSOCK(st.st_mode)) continue;
    out.push_back(canon.string());
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

}  // namespace

Result<MountPlan> build_mount_plan(const MountRequest& request) {
  Builder b;
  const std::string neu = kNew;
  const std::string old = kOld;
  std::vector<UniqueFd> plan_pins;
  struct stat null_st {};
  if (::stat("/dev/null", &null_st) != 0 || !S_ISCHR(null_st.st_mode)) {
    return fail(Errc::unavailable, "/dev/null is not a character device on this host");
  }

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

  // The host's runtime directory holds its service sockets (D-Bus, systemd, container
  // runtimes): the step gets an empty one, read-only once the view is built. The
  // seccomp filter is what keeps every other path socket out of reach (docs/sandbox.md).
  std::vector<std::string> hidden_dirs;
  std::vector<fs::path> fresh = {"/tmp", "/run"};  // mount points made by us, not host objects
  if (::access("/run", F_OK) == 0) {
    b.fs_mount("tmpfs", neu + "/run", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m");
    hidden_dirs.push_back(neu + "/run");
  }
  {
    struct stat st {};
    // Usually a symlink to /run, and then already covered.
    if (::lstat("/var/run", &st) == 0 && S_ISDIR(st.st_mode)) {
      b.fs_mount("tmpfs", neu + "/var/run", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=1m");
      hidden_dirs.push_back(neu + "/var/run");
      fresh.emplace_back("/var/run");
    }
  }
  // Secret files: a tmpfs of their own, written here in the child and then read-only.
  // Its contents live only in memory of this mount namespace, gone with the step.
  if (request.secret_files != nullptr && !request.secret_files->empty()) {
    if (::access("/run", F_OK) != 0) return fail(Errc::unavailable, "secret files need /run, which this host lacks");
    for (const BindMount& m : request.binds) {
      if (under(m.path.lexically_normal(), kSecretsDir)) {
        return fail(Errc::invalid_argument, "mount path " + m.path.string() + " would cover the step's secret files");
      }
    }
    std::uint64_t size = 4096;
    for (const auto& f : *request.secret_files) size += (f.content.size() + 4095) / 4096 * 4096 + 4096;
    const std::string dir = neu + kSecretsDir;
    b.mkdir(dir);
    b.fs_mount("tmpfs", dir, MS_NOSUID | MS_NODEV | MS_NOEXEC,
               "mode=0500,size=" + std::to_string(size) + ",nr_inodes=" +
                   std::to_string(request.secret_files->size() + 4) + ",uid=" + std::to_string(request.secret_uid) +
                   ",gid=" + std::to_string(request.secret_gid));
    for (const auto& f : *request.secret_files) {
      const std::string& data = b.secret(f.content);
      b.add({.op = MountOp::write_file,
             .source = data.data(),
             .target = b.str(dir + "/" + f.name),
             .length = data.size(),
             .owner_uid = request.secret_uid,
             .owner_gid = request.secret_gid});
    }
    b.attr(dir, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, false);
  }
  auto in_fresh = [&](const fs::path& p) {
    return std::any_of(fresh.begin(), fresh.end(), [&](const fs::path& f) { return under(p, f); });
  };
  auto bind_checked = [&](const Resolved& r, bool recursive, std::uint64_t attrs) {
    const bool dir = S_ISDIR(r.st.st_mode);
    b.parents(r.path);
    dir ? b.mkdir(neu + r.path) : b.mkfile(neu + r.path);
    b.add({.op = MountOp::bind_checked,
           .source = b.str(old + r.path),
           .target = b.str(neu + r.path),
           .recursive = recursive,
           .src_dev = r.st.st_dev,
           .src_ino = r.st.st_ino});
    b.attr(neu + r.path, attrs, recursive);
  };
  // A name-resolution configuration that lives in /run (systemd-resolved's stub file):
  // only that file comes back, read-only.
  if (request.host_network) {
    struct stat st {};
    std::error_code ec;
    const fs::path target = fs::canonical(request.resolv_conf, ec);
    if (::lstat(request.resolv_conf.c_str(), &st) == 0 && S_ISLNK(st.st_mode) && !ec && in_fresh(target) &&
        !under(target, "/tmp")) {
      auto r = resolve_pinned(target, plan_pins, "resolv.conf target");
      if (!r) return std::unexpected(r.error());
      if (S_ISREG(r->st.st_mode)) {
        bind_checked(*r, false, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
      }
    }
  }

  // Binds and hidden paths first, the working directory last: it must stay visible even
  // when it lies below a hidden path. Each path is resolved once, here; the checks and
  // the child's bind all refer to that one resolution.
  const fs::path work(request.workdir);
  if (!work.is_absolute()) return fail(Errc::invalid_argument, "working directory must be absolute");
  std::vector<fs::path> hidden_so_far;
  for (const BindMount& m : request.binds) {
    auto r = resolve_pinned(m.path, plan_pins, "mount path");
    if (!r) return std::unexpected(r.error());
    const fs::path canon = r->path;
    for (const char* reserved : {"/proc", "/dev"}) {
      if (under(canon, reserved)) {
        return fail(Errc::invalid_argument, "mount path " + canon.string() + " is inside " + reserved +
                                                ", which the sandbox provides itself");
      }
    }
    const bool dir = S_ISDIR(r->st.st_mode);
    const std::string inner = canon.string() == "/" ? "" : canon.string();
    if (m.kind != BindMount::Kind::hidden) {
      // A bind on top of an earlier hidden path re-exposes it, from below (part of it)
      // or from above (all of it, the host's tree covering the hidden mount).
      for (const auto& h : hidden_so_far) {
        if (under(canon, h) || under(h, canon)) {
          return fail(Errc::permission, "mount path " + m.path.string() + " resolves to " + canon.string() +
                                            ", which overlaps the hidden path " + h.string());
        }
      }
    }
    switch (m.kind) {
      case BindMount::Kind::read_write:
        if (inner.empty()) return fail(Errc::invalid_argument, "refusing to make the whole host root writable");
        bind_checked(*r, true, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        break;
      case BindMount::Kind::read_only:
        if (inner.empty()) {
          b.add({.op = MountOp::bind_checked,
                 .source = b.str(old),
                 .target = b.str(neu),
                 .recursive = true,
                 .src_dev = r->st.st_dev,
                 .src_ino = r->st.st_ino});
          b.attr(neu, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true);
          break;
        }
        bind_checked(*r, true, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV);
        break;
      case BindMount::Kind::hidden: {
        if (inner.empty()) return fail(Errc::invalid_argument, "cannot hide the root");
        hidden_so_far.push_back(canon);
        // The mount point may be missing from the step's view (below its private /tmp
        // or /run); where it is the host's object, it must still be the one resolved.
        const bool host_object = !in_fresh(canon);
        b.parents(canon);
        dir ? b.mkdir(neu + inner) : b.mkfile(neu + inner);
        if (dir) {
          // Writable until the working directory's mount point is made (it may lie
          // below, e.g. in the agent's hidden state_dir); read-only right after.
          b.add({.op = MountOp::tmpfs_checked,
                 .target = b.str(neu + inner),
                 .check_target = host_object,
                 .tgt_dev = r->st.st_dev,
                 .tgt_ino = r->st.st_ino});
          hidden_dirs.push_back(neu + inner);
          fresh.push_back(canon);
        } else {
          b.add({.op = MountOp::bind_checked,
                 .source = b.str(old + "/dev/null"),
                 .target = b.str(neu + inner),
                 .src_dev = null_st.st_dev,
                 .src_ino = null_st.st_ino,
                 .check_target = host_object,
                 .tgt_dev = r->st.st_dev,
                 .tgt_ino = r->st.st_ino});
          b.attr(neu + inner, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false);
        }
        break;
      }
    }
  }

  // Granted host sockets, at their canonical paths; then every other named socket the
  // host lists is covered wherever the view (the host's tree and the binds above) still
  // shows one: with AF_UNIX allowed, the step could otherwise connect to any of them.
  for (const auto& path : request.sockets) {
    auto r = resolve_pinned(path, plan_pins, "host socket");
    if (!r) return std::unexpected(r.error());
    if (!S_ISSOCK(r->st.st_mode)) return fail(Errc::invalid_argument, "host socket " + path + " is not a socket");
    bind_checked(*r, false, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  }
  if (!request.sockets.empty()) {
    for (const auto& path : host_named_sockets()) {
      if (std::find(request.sockets.begin(), request.sockets.end(), path) != request.sockets.end()) continue;
      b.add({.op = MountOp::cover_socket, .source = b.str(old + "/dev/null"), .target = b.str(neu + path)});
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
  // Made by the launcher a moment ago, in a directory only the agent writes.
  b.bind(old + request.workdir, neu + request.workdir, false);
  b.attr(neu + request.workdir, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, false);

  for (const auto& h : hidden_dirs) b.attr(h, MOUNT_ATTR_RDONLY, false);

  b.add({.op = MountOp::change_dir, .target = kNew});
  b.add({.op = MountOp::pivot_self});
  b.add({.op = MountOp::change_dir, .target = "/"});
  MountPlan plan = b.take();
  plan.pins = std::move(plan_pins);
  return plan;
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

// close() that keeps the errno of the failure being reported.
void close_keep_errno(int fd) noexcept {
  const int saved = errno;
  ::close(fd);
  errno = saved;
}

// Opens `path` without following any symlink and checks it is the object the parent
// resolved. Returns the O_PATH descriptor, or -1 with errno (ESTALE: another object).
int open_identified(const char* path, dev_t dev, ino_t ino) noexcept {
  const int fd = static_cast<int>(open_no_symlinks(AT_FDCWD, path, 0));
  if (fd < 0) return -1;
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    close_keep_errno(fd);
    return -1;
  }
  if (st.st_dev != dev || st.st_ino != ino) {
    ::close(fd);
    errno = ESTALE;
    return -1;
  }
  return fd;
}

// Attaches a detached mount (open_tree/fsmount) at the step's target. Consumes `tree`.
int attach(int tree, const MountStep& s) noexcept {
  int rc = 0;
  if (s.check_target) {
    const int to = open_identified(s.target, s.tgt_dev, s.tgt_ino);
    if (to < 0) {
      close_keep_errno(tree);
      return -1;
    }
    rc = ::move_mount(tree, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    close_keep_errno(to);
  } else {
    rc = ::move_mount(tree, "", AT_FDCWD, s.target, MOVE_MOUNT_F_EMPTY_PATH);
  }
  close_keep_errno(tree);
  return rc;
}

int bind_checked(const MountStep& s) noexcept {
  const int from = open_identified(s.source, s.src_dev, s.src_ino);
  if (from < 0) return -1;
  // A clone of exactly the opened object; never a second lookup of the name.
  const int tree = ::open_tree(from, "", OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | AT_EMPTY_PATH |
                                             (s.recursive ? AT_RECURSIVE : 0u));
  close_keep_errno(from);
  if (tree < 0) return -1;
  return attach(tree, s);
}

int tmpfs_checked(const MountStep& s) noexcept {
  const int fsfd = ::fsopen("tmpfs", FSOPEN_CLOEXEC);
  if (fsfd < 0) return -1;
  if (::fsconfig(fsfd, FSCONFIG_SET_STRING, "mode", "0755", 0) != 0 ||
      ::fsconfig(fsfd, FSCONFIG_SET_STRING, "size", "4k", 0) != 0 ||
      ::fsconfig(fsfd, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    close_keep_errno(fsfd);
    return -1;
  }
  const int mnt = ::fsmount(fsfd, FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
  close_keep_errno(fsfd);
  if (mnt < 0) return -1;
  return attach(mnt, s);
}

int cover_socket(const MountStep& s) noexcept {
  // Absent, behind a symlink of the view, or not a socket here: nothing to cover (a
  // symlink leads to some other path, which is covered if it holds a listed socket).
  const int to = static_cast<int>(open_no_symlinks(AT_FDCWD, s.target, 0));
  if (to < 0) return 0;
  struct stat st {};
  if (::fstat(to, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    ::close(to);
    return 0;
  }
  const int tree = ::open_tree(AT_FDCWD, s.source, OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC);
  int rc = -1;
  if (tree >= 0) {
    rc = ::move_mount(tree, "", to, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH);
    close_keep_errno(tree);
  }
  close_keep_errno(to);
  return rc;
}

int write_file(const MountStep& s) noexcept {
  const int fd = ::open(s.target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0400);
  if (fd < 0) return -1;
  std::size_t done = 0;
  while (done < s.length) {
    const ssize_t n = ::write(fd, s.source + done, s.length - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EIO;
      close_keep_errno(fd);
      return -1;
    }
    done += static_cast<std::size_t>(n);
  }
  if (::fchown(fd, s.owner_uid, s.owner_gid) != 0 || ::fchmod(fd, 0400) != 0) {
    close_keep_errno(fd);
    return -1;
  }
  return ::close(fd);
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
    case MountOp::bind_checked:
      return bind_checked(s);
    case MountOp::tmpfs_checked:
      return tmpfs_checked(s);
    case MountOp::cover_socket:
      return cover_socket(s);
    case MountOp::write_file:
      return write_file(s);
  }
  errno = EINVAL;
  return -1;
}

}  // namespace

WipedStrings::~WipedStrings() {
  for (auto& s : items) OPENSSL_cleanse(s.data(), s.size());
}

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
    case MountOp::bind_checked:
      return "bind mount " + text(s.source) + " -> " + text(s.target) +
             " (the path must still be the object the agent checked)";
    case MountOp::tmpfs_checked: return "covering hidden " + text(s.target);
    case MountOp::cover_socket: return "covering host socket " + text(s.target);
    case MountOp::write_file: return "writing secret file " + text(s.target);
  }
  return "mount setup";
}

}  // namespace delegate::sandbox::detail
