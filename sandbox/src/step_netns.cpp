#include <delegate/sandbox/step_netns.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <thread>
#include <utility>

#include <delegate/sandbox/isolation.hpp>

#include "netns_pool.hpp"
#include "prepare.hpp"

namespace delegate::sandbox {

using detail::NetnsPool;
using detail::ThreadNetns;
using detail::UniqueFd;
using detail::errno_message;

Result<StepNetns> StepNetns::create() {
  if (!host_support().is_root) {
    return fail(Errc::unavailable, "a step with egress needs a root agent (it gets a network namespace the agent "
                                   "prepares); this agent is not root");
  }
  auto& pool = NetnsPool::instance();
  if (auto ready = pool.take()) return StepNetns(ready->release());
  // None ready: make one on a helper thread, so this thread never leaves the agent's
  // namespace even briefly.
  Result<UniqueFd> made = fail(Errc::internal, "netns helper did not run");
  std::thread([&] { made = NetnsPool::make_one(pool.home()); }).join();
  if (!made) return fail(made.error().code, "network namespace for egress: " + made.error().message);
  return StepNetns(made->release());
}

StepNetns::StepNetns(StepNetns&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}

StepNetns::~StepNetns() {
  if (fd_ >= 0) ::close(fd_);
}

Result<int> StepNetns::listen_loopback(std::uint16_t* port) const {
  // A socket belongs to the namespace of the thread that creates it, for good: a helper
  // thread enters the step's namespace, creates the listener and leaves.
  Result<int> out = fail(Errc::internal, "netns helper did not run");
  std::thread([&] {
    ThreadNetns in(fd_, NetnsPool::instance().home());
    if (!in.entered()) {
      out = fail(Errc::io, errno_message("setns into the step's network namespace", in.error()));
      return;
    }
    UniqueFd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (!s || ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 || ::listen(s.get(), 64) != 0 ||
        ::getsockname(s.get(), reinterpret_cast<sockaddr*>(&a), &len) != 0) {
      out = fail(Errc::io, errno_message("egress listener in the step's network namespace", errno));
      return;
    }
    *port = ntohs(a.sin_port);
    out = s.release();
  }).join();
  return out;
}

}  // namespace delegate::sandbox
