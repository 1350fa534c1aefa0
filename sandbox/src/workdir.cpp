#include "workdir.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include "unique_fd.hpp"

namespace delegate::sandbox::detail {
namespace {

// Bounds both recursion and the number of directory fds held open at once. A step
// that nests deeper leaves its tree behind (reported), rather than exhausting the
// agent's descriptors or stack.
constexpr int kMaxDepth = 200;

std::string errno_message(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

Result<std::vector<std::string>> list_entries(int dirfd) {
  // fdopendir takes ownership, so it gets its own descriptor.
  const int copy = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 3);
  if (copy < 0) return fail(Errc::io, errno_message("dup", errno));
  DIR* d = ::fdopendir(copy);
  if (d == nullptr) {
    const int err = errno;
    ::close(copy);
    return fail(Errc::io, errno_message("fdopendir", err));
  }
  ::rewinddir(d);
  std::vector<std::string> names;
  errno = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string_view name(e->d_name);
    if (name != "." && name != "..") names.emplace_back(name);
  }
  const int err = errno;
  ::closedir(d);
  if (err != 0) return fail(Errc::io, errno_message("readdir", err));
  return names;
}

Result<void> remove_contents(int dirfd, int depth) {
  if (depth > kMaxDepth) return fail(Errc::too_large, "directory tree nested too deeply");
  // Re-list until empty: entries created while we delete (a process that escaped the
  // group kill) get another chance, up to a bound.
  for (int pass = 0; pass < 4; ++pass) {
    auto names = list_entries(dirfd);
    if (!names) return std::unexpected(names.error());
    if (names->empty()) return ok();
    for (const std::string& name : *names) {
      if (::unlinkat(dirfd, name.c_str(), 0) == 0 || errno == ENOENT) continue;
      if (errno != EISDIR && errno != EPERM) return fail(Errc::io, errno_message("unlinkat", errno));
      // O_NOFOLLOW: if the entry was swapped for a symlink, this fails instead of
      // descending into whatever it points to.
      UniqueFd sub(::openat(dirfd, name.c_str(),
                            O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub) {
        if (errno == ENOENT) continue;
        return fail(Errc::io, errno_message("openat", errno));
      }
      // A step may have left directories without write/search permission for us.
      (void)::fchmod(sub.get(), 0700);
      if (auto r = remove_contents(sub.get(), depth + 1); !r) return r;
      sub.reset();
      if (::unlinkat(dirfd, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
        return fail(Errc::io, errno_message("rmdir", errno));
      }
    }
  }
  return fail(Errc::io, "directory kept being refilled during removal");
}

}  // namespace

Result<std::filesystem::path> make_workdir(const std::filesystem::path& parent) {
  std::string tmpl = (parent / "delegate-step-XXXXXX").string();
  if (::mkdtemp(tmpl.data()) == nullptr) {
    return fail(Errc::io, "cannot create a working directory under " + parent.string() + ": " +
                              std::strerror(errno));
  }
  return std::filesystem::path(tmpl);
}

Result<void> remove_tree(const std::filesystem::path& dir) {
  const std::filesystem::path parent = dir.parent_path();
  const std::string name = dir.filename().string();
  if (name.empty() || name == "." || name == "..") {
    return fail(Errc::invalid_argument, "refusing to remove " + dir.string());
  }
  UniqueFd parent_fd(::open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!parent_fd) return fail(Errc::io, errno_message(parent.c_str(), errno));
  UniqueFd fd(::openat(parent_fd.get(), name.c_str(),
                       O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd) {
    if (errno == ENOENT) return ok();
    // Not a directory (any more): remove the entry itself, never its target.
    if (errno == ENOTDIR || errno == ELOOP) {
      if (::unlinkat(parent_fd.get(), name.c_str(), 0) == 0) return ok();
    }
    return fail(Errc::io, "cannot open " + dir.string() + ": " + std::strerror(errno));
  }
  (void)::fchmod(fd.get(), 0700);
  if (auto r = remove_contents(fd.get(), 0); !r) {
    return fail(r.error().code, "cannot remove " + dir.string() + ": " + r.error().message);
  }
  fd.reset();
  if (::unlinkat(parent_fd.get(), name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT) {
    return fail(Errc::io, "cannot remove " + dir.string() + ": " + std::strerror(errno));
  }
  return ok();
}

}  // namespace delegate::sandbox::detail
