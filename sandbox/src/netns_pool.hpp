#pragma once
// Network namespaces made ahead of time. Creating one is the costliest part of a launch
// (its setup, and its teardown in the clone path); a background thread keeps a few
// ready, each with loopback up, and every launch takes a fresh one. A namespace is
// handed out once and never returned, so concurrent or successive steps never share
// one: it dies with the step that used it.
//
// Only for a root agent: namespaces made here belong to the agent's user namespace,
// which a step's init could not configure, but it need not (loopback is already up).
#include <condition_variable>
#include <deque>
#include <mutex>
#include <optional>
#include <thread>

#include <delegate/common/error.hpp>

#include "unique_fd.hpp"

namespace delegate::sandbox::detail {

class NetnsPool {
 public:
  // The process-wide pool; started on first use.
  static NetnsPool& instance();
  ~NetnsPool();
  NetnsPool(const NetnsPool&) = delete;
  NetnsPool& operator=(const NetnsPool&) = delete;

  // A ready namespace, or nullopt when none is ready yet (the caller then creates one
  // with clone) or the pool cannot work on this host.
  [[nodiscard]] std::optional<UniqueFd> take();

  // The agent's own network namespace, to return the launching thread to.
  [[nodiscard]] int home() const { return home_.get(); }

  // Creates one on the calling thread, which ends up back in `home`.
  [[nodiscard]] static Result<UniqueFd> make_one(int home);

 private:
  NetnsPool();
  void refill(std::stop_token stop);

  static constexpr std::size_t kReady = 4;
  UniqueFd home_;
  std::mutex mu_;
  std::condition_variable_any cv_;
  std::deque<UniqueFd> ready_;
  bool broken_ = false;
  std::jthread worker_;
};

// Moves the calling thread into `netns` for its lifetime and back afterwards.
class ThreadNetns {
 public:
  ThreadNetns(int target, int home);
  ~ThreadNetns();
  ThreadNetns(const ThreadNetns&) = delete;
  ThreadNetns& operator=(const ThreadNetns&) = delete;
  [[nodiscard]] bool entered() const { return entered_; }
  [[nodiscard]] int error() const { return error_; }

 private:
  int home_;
  bool entered_ = false;
  int error_ = 0;
};

}  // namespace delegate::sandbox::detail
