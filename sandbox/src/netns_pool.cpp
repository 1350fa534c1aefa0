#include "netns_pool.hpp"

#include "namespaces.hpp"

#include <fcntl.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include <delegate/common/log.hpp>
#include <delegate/sandbox/one_shot.hpp>

namespace delegate::sandbox {
namespace {
std::atomic<bool> g_pool_disabled{false};
}  // namespace

void disable_netns_pool() { g_pool_disabled.store(true); }

}  // namespace delegate::sandbox

namespace delegate::sandbox::detail {

NetnsPool& NetnsPool::instance() {
  static NetnsPool pool;
  return pool;
}

NetnsPool::NetnsPool() : home_(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC)) {
  if (!home_) {
    broken_ = true;
    return;
  }
  if (g_pool_disabled.load()) {
    broken_ = true;  // take() says "none ready": the launch creates its own
    return;
  }
  worker_ = std::jthread([this](std::stop_token stop) { refill(stop); });
}

NetnsPool::~NetnsPool() {
  worker_.request_stop();
  cv_.notify_all();
}

std::optional<UniqueFd> NetnsPool::take() {
  std::unique_lock lock(mu_);
  if (broken_ || ready_.empty()) {
    cv_.notify_all();
    return std::nullopt;
  }
  UniqueFd fd = std::move(ready_.front());
  ready_.pop_front();
  cv_.notify_all();  // wake the worker to replace it
  return fd;
}

Result<UniqueFd> NetnsPool::make_one(int home) {
  // Entering the namespace we are in checks the same permission as coming back to it
  // later: CAP_SYS_ADMIN over the user namespace that owns it. An agent whose network
  // namespace belongs to another user namespace (a container with its own user
  // namespace sharing the host's network) may create a namespace but never return
  // from it, and would have to abort below. Find that out before leaving.
  if (::setns(home, CLONE_NEWNET) != 0) {
    return fail(Errc::permission, std::string("cannot re-enter the agent's own network namespace (") +
                                      std::strerror(errno) +
                                      "): the agent lacks CAP_SYS_ADMIN over it (not granted, or the namespace belongs to "
                                      "another user namespace, e.g. a container's host network)");
  }
  // unshare(CLONE_NEWNET) moves only this thread; it goes home before returning.
  if (::unshare(CLONE_NEWNET) != 0) return fail(Errc::io, std::string("unshare(CLONE_NEWNET): ") + std::strerror(errno));
  UniqueFd ns(::open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC));
  const int open_errno = errno;
  const int lo_errno = ns ? bring_loopback_up() : 0;
  if (::setns(home, CLONE_NEWNET) != 0) {
    // This thread would stay in a step's namespace: nothing it does afterwards could be
    // trusted to reach the right network. It is the pool's own thread, so stop here.
    log::error("sandbox", std::string("netns pool: cannot return to the agent's network namespace: ") +
                              std::strerror(errno));
    std::abort();
  }
  if (!ns) return fail(Errc::io, std::string("open netns: ") + std::strerror(open_errno));
  if (lo_errno != 0) return fail(Errc::io, std::string("loopback up: ") + std::strerror(lo_errno));
  return ns;
}

void NetnsPool::refill(std::stop_token stop) {
  while (!stop.stop_requested()) {
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, stop, [&] { return ready_.size() < kReady; });
      if (stop.stop_requested()) return;
    }
    auto ns = make_one(home_.get());
    std::lock_guard lock(mu_);
    if (!ns) {
      // Launches fall back to creating the namespace in clone().
      log::warn("sandbox", "netns pool disabled: " + ns.error().message);
      broken_ = true;
      return;
    }
    ready_.push_back(std::move(*ns));
  }
}

ThreadNetns::ThreadNetns(int target, int home) : home_(home) {
  if (::setns(target, CLONE_NEWNET) == 0) {
    entered_ = true;
  } else {
    error_ = errno;
  }
}

ThreadNetns::~ThreadNetns() {
  if (!entered_) return;
  if (::setns(home_, CLONE_NEWNET) != 0) {
    // A job thread left in a step's namespace is not safe to keep running.
    log::error("sandbox", std::string("cannot return to the agent's network namespace: ") + std::strerror(errno));
    std::abort();
  }
}

}  // namespace delegate::sandbox::detail
