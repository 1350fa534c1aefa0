#include <delegate/common/fs.hpp>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace delegate {
namespace {

std::string errno_text(const std::string& what, const std::filesystem::path& p) {
  return what + " " + p.string() + ": " + std::strerror(errno);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  [[nodiscard]] int get() const { return fd_; }
  int release() { int f = fd_; fd_ = -1; return f; }

 private:
  int fd_;
};

}  // namespace

Result<std::string> read_file(const std::filesystem::path& path, std::size_t max_bytes) {
  Fd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (fd.get() < 0) {
    return fail(errno == ENOENT ? Errc::not_found : Errc::io, errno_text("cannot open", path));
  }
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(Errc::io, errno_text("cannot read", path));
    }
    if (n == 0) break;
    if (out.size() + static_cast<std::size_t>(n) > max_bytes) {
      return fail(Errc::too_large, path.string() + " is larger than " + std::to_string(max_bytes) + " bytes");
    }
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

Result<void> write_file_atomic(const std::filesystem::path& path, std::string_view data, unsigned mode) {
  auto dir = path.parent_path().empty() ? std::filesystem::path(".") : path.parent_path();
  std::string name = ".";
  name += path.filename().string();
  name += ".XXXXXX";
  std::string tmpl = (dir / name).string();
  int raw = ::mkstemp(tmpl.data());
  if (raw < 0) return fail(Errc::io, errno_text("cannot create temporary file in", dir));
  Fd fd(raw);
  auto cleanup_fail = [&](const std::string& what) {
    std::string msg = errno_text(what, path);
    ::unlink(tmpl.c_str());
    return fail(Errc::io, msg);
  };
  if (::fchmod(fd.get(), mode) != 0) return cleanup_fail("cannot chmod");
  std::size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::write(fd.get(), data.data() + off, data.size() - off);
    if (n < 0) {
      if (errno == EINTR) continue;
      return cleanup_fail("cannot write");
    }
    off += static_cast<std::size_t>(n);
  }
  if (::fsync(fd.get()) != 0) return cleanup_fail("cannot fsync");
  if (::close(fd.release()) != 0) return cleanup_fail("cannot close");
  if (::rename(tmpl.c_str(), path.c_str()) != 0) return cleanup_fail("cannot rename onto");
  Fd dfd(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (dfd.get() >= 0) ::fsync(dfd.get());
  return ok();
}

Result<void> ensure_dir(const std::filesystem::path& path, unsigned mode) {
  std::error_code ec;
  if (std::filesystem::is_directory(path, ec)) return ok();
  std::filesystem::create_directories(path, ec);
  if (ec) return fail(Errc::io, "cannot create directory " + path.string() + ": " + ec.message());
  if (::chmod(path.c_str(), mode) != 0) return fail(Errc::io, errno_text("cannot chmod", path));
  return ok();
}

Result<std::string> read_secret_file(const std::filesystem::path& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return fail(Errc::not_found, errno_text("cannot stat", path));
  if (st.st_mode & 077) {
    return fail(Errc::permission, "secret file " + path.string() + " is accessible by group/others (mode must be 0600 or stricter)");
  }
  auto data = read_file(path, 64 * 1024);
  if (!data) return data;
  std::string& s = *data;
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  if (s.empty()) return fail(Errc::invalid_argument, "secret file " + path.string() + " is empty");
  return data;
}

}  // namespace delegate
