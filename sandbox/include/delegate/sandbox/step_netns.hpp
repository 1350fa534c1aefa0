#pragma once
// A network namespace prepared by the agent for one step (Spec::netns_fd), so the agent
// can open sockets inside it before the step starts: the egress proxy's listener on the
// namespace's own loopback. The namespace has only loopback, so nothing but what the
// agent serves there is reachable from it. Root agents only (an unprivileged agent's
// steps create their namespace inside their own user namespace, where the agent cannot
// follow them); create() fails with Errc::unavailable otherwise.
#include <cstdint>

#include <delegate/common/error.hpp>

namespace delegate::sandbox {

class StepNetns {
 public:
  [[nodiscard]] static Result<StepNetns> create();
  StepNetns(StepNetns&& o) noexcept;
  StepNetns& operator=(StepNetns&&) = delete;
  StepNetns(const StepNetns&) = delete;
  ~StepNetns();

  [[nodiscard]] int fd() const { return fd_; }
  // A listening TCP socket on 127.0.0.1 inside the namespace (the kernel picks the
  // port); the caller owns the returned fd. The calling thread never changes namespace.
  [[nodiscard]] Result<int> listen_loopback(std::uint16_t* port) const;

 private:
  explicit StepNetns(int fd) : fd_(fd) {}
  int fd_ = -1;
};

}  // namespace delegate::sandbox
