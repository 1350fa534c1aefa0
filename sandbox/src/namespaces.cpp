#include "namespaces.hpp"

#include <fcntl.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "unique_fd.hpp"

namespace delegate::sandbox::detail {
namespace {

Result<void> write_proc(pid_t pid, const char* file, const std::string& text) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  // The map files accept exactly one write.
  if (!fd || ::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return fail(Errc::io, "cannot write " + path + ": " + std::strerror(errno));
  }
  return ok();
}

}  // namespace

unsigned long clone_flags(const IsolationPlan& plan) {
  unsigned long flags = 0;
  if (plan.user_ns) flags |= CLONE_NEWUSER;
  if (plan.pid_ns) flags |= CLONE_NEWPID;
  if (plan.mount_ns) flags |= CLONE_NEWNS;
  if (plan.net_ns) flags |= CLONE_NEWNET;
  if (plan.ipc_ns) flags |= CLONE_NEWIPC;
  if (plan.uts_ns) flags |= CLONE_NEWUTS;
  return flags;
}

Result<void> write_id_maps(pid_t child, const IsolationPlan& plan, bool agent_is_root) {
  if (!plan.user_ns) return ok();
  std::string uid_map, gid_map;
  if (agent_is_root) {
    uid_map = "0 0 1\n";
    gid_map = "0 0 1\n";
    if (plan.uid != 0) uid_map += std::to_string(plan.uid) + " " + std::to_string(plan.uid) + " 1\n";
    if (plan.gid != 0) gid_map += std::to_string(plan.gid) + " " + std::to_string(plan.gid) + " 1\n";
  } else {
    if (auto r = write_proc(child, "setgroups", "deny"); !r) return r;
    uid_map = std::to_string(plan.uid) + " " + std::to_string(plan.uid) + " 1\n";
    gid_map = std::to_string(plan.gid) + " " + std::to_string(plan.gid) + " 1\n";
  }
  if (auto r = write_proc(child, "uid_map", uid_map); !r) return r;
  return write_proc(child, "gid_map", gid_map);
}

int bring_loopback_up() noexcept {
  const int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return errno;
  ifreq req{};
  std::memcpy(req.ifr_name, "lo", 3);
  int rc = ::ioctl(fd, SIOCGIFFLAGS, &req);
  if (rc == 0) {
    req.ifr_flags = static_cast<short>(req.ifr_flags | IFF_UP | IFF_RUNNING);
    rc = ::ioctl(fd, SIOCSIFFLAGS, &req);
  }
  const int err = rc == 0 ? 0 : errno;
  ::close(fd);
  return err;
}

}  // namespace delegate::sandbox::detail
