#pragma once
// The step's file-system view, as a list of operations computed in the parent (paths
// canonicalised, strings allocated) and replayed in the child without allocating.
//
// The view: the host root, recursively read-only, nosuid and nodev; a private tmpfs
// /tmp; an empty read-only /run (the host's service sockets live there); a minimal /dev (null, zero, full, random, urandom, tty, shm); a fresh /proc of
// the step's pid namespace with its kernel knobs read-only; the step's working
// directory and any --rw paths writable; hidden paths covered. Built on a scratch
// tmpfs with the host reachable under /oldroot, then pivoted into, so the host root is
// not reachable from the step at all.
#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/sandbox/isolation.hpp>
#include <delegate/sandbox/launcher.hpp>

#include "unique_fd.hpp"

namespace delegate::sandbox::detail {

enum class MountOp {
  make_private,  // stop mount events propagating back to the host
  mount_fs,      // mount(source, target, fstype, flags, data)
  bind,          // bind mount source → target (recursive when `recursive`)
  set_attr,      // mount_setattr(target, attr_set) — adds flags without clearing locked ones
  make_dir,      // mkdir target unless it exists
  make_file,     // create an empty file target unless it exists (a bind-mount point)
  make_symlink,  // symlink source at target
  change_dir,    // chdir target
  pivot_old,     // pivot_root(".", "oldroot"): scratch tmpfs becomes /, host at /oldroot
  pivot_self,    // pivot_root(".", ".") then detach the old root: only the new view remains
  // Bind `source` (a path under the host root) at `target`, opened without following any
  // symlink and only if it is still the object the parent checked (src_dev/src_ino);
  // the clone of exactly that object is attached, so no later rename or symlink swap
  // can change what ends up in the view. With check_target, the same for the target.
  bind_checked,
  // A small tmpfs at `target` (nosuid, nodev, noexec), covering a hidden directory;
  // with check_target only if the target is still the object the parent checked.
  tmpfs_checked,
  // /dev/null over `target` when a socket is found there (opened without following
  // symlinks); nothing when the path is absent or not a socket in the view.
  cover_socket,
  // Write `length` bytes at `source` into a new file `target` (O_EXCL, no symlink),
  // mode 0400, owned by owner_uid/owner_gid: a secret file in the step's tmpfs.
  write_file,
};

struct MountStep {
  MountOp op = MountOp::make_dir;
  const char* source = nullptr;
  const char* target = nullptr;
  const char* fstype = nullptr;
  unsigned long flags = 0;
  const char* data = nullptr;
  std::uint64_t attr_set = 0;
  bool recursive = false;
  bool optional = false;  // skip when the target does not exist (kernel-dependent /proc entries)
  dev_t src_dev = 0;      // bind_checked: identity of the source the parent resolved
  ino_t src_ino = 0;
  bool check_target = false;  // bind_checked / tmpfs_checked: the target must be tgt_dev/tgt_ino
  dev_t tgt_dev = 0;
  ino_t tgt_ino = 0;
  std::size_t length = 0;  // write_file
  uid_t owner_uid = 0;     // write_file
  gid_t owner_gid = 0;
};

// Secret contents the plan points into: wiped when the plan goes away.
struct WipedStrings {
  std::deque<std::string> items;
  WipedStrings() = default;
  WipedStrings(WipedStrings&&) = default;
  WipedStrings& operator=(WipedStrings&&) = default;
  ~WipedStrings();
};

struct MountPlan {
  std::deque<std::string> strings;  // storage the steps point into; a deque never moves them
  WipedStrings secret_data;
  std::vector<MountStep> steps;
  // The parent's O_PATH descriptors of every checked source and target, held until the
  // launch is over: a pinned inode cannot be freed and its number reused by another
  // file, so a matching dev/ino in the child really is the object that was checked.
  std::vector<UniqueFd> pins;
};

struct MountRequest {
  std::string workdir;  // host path, canonical
  std::vector<BindMount> binds;
  std::uint64_t tmp_bytes = 0;  // size of the private /tmp
  // The step has its own network namespace: the host's sysfs (bound read-only with the
  // rest of the host) would still describe the host's interfaces and cgroups.
  bool private_network = false;
  // The step shares the host's network: keep name resolution working when
  // /etc/resolv.conf is a symlink into the covered /run.
  bool host_network = false;
  std::string resolv_conf = "/etc/resolv.conf";  // the host's resolver configuration (a test may point elsewhere)
  // Canonical paths of the granted host sockets (IsolationPlan::sockets). When there
  // are any, every other named socket the host lists in /proc/net/unix is covered.
  std::vector<std::string> sockets;
  // Secret files for a fresh tmpfs at /run/secrets, owned by the step's uid/gid.
  const std::vector<SecretFile>* secret_files = nullptr;
  uid_t secret_uid = 0;
  gid_t secret_gid = 0;
};

[[nodiscard]] Result<MountPlan> build_mount_plan(const MountRequest& request);

// Child side: runs the steps in order. Returns 0, or the errno of the failing step
// with its index in *failed_step. Async-signal-safe.
[[nodiscard]] int apply_mounts(const MountPlan& plan, int* failed_step) noexcept;

// One line for an error message ("bind /oldroot/srv → /newroot/srv").
[[nodiscard]] std::string describe_step(const MountPlan& plan, int index);

}  // namespace delegate::sandbox::detail
