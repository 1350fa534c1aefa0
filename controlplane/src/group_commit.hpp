#pragma once
// Group commit for the control plane's one I/O thread (docs/architecture.md, "Group
// commit"). Every write a request makes joins the batch that is open at that moment: one
// SQLite transaction, committed (one fsync, synchronous=FULL) after a bounded number of
// turns of the I/O thread's queue (the batch keeps a handler of its own queued until
// then), or earlier by commit_now() from the server's loop. A request's answer is written only once
// every batch it joined is committed; if a commit fails, everything in that batch was
// rolled back and each of its requests is answered 500, so nothing is acknowledged that
// is not on disk.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>

#include <cstdint>
#include <memory>
#include <vector>

#include <delegate/controlplane/store.hpp>

namespace delegate::controlplane {

class GroupCommit {
  struct Batch;

 public:
  // The batches one request's writes went into (a long poll may write in a later batch
  // than the one its request began in).
  class Ticket {
    friend class GroupCommit;
    std::vector<std::shared_ptr<Batch>> joined_;
  };

  GroupCommit(boost::asio::io_context& ioc, Store& store) : ioc_(ioc), store_(store) {}
  GroupCommit(const GroupCommit&) = delete;
  GroupCommit& operator=(const GroupCommit&) = delete;

  // Opens a batch unless one is open, and records it in the ticket: every write made
  // from now until the caller next suspends is part of it. Call it at the start of each
  // synchronous stretch that may write.
  void join(Ticket& ticket);
  // Suspends until every batch the ticket joined is committed. False if one of them
  // failed to commit (its writes are gone).
  boost::asio::awaitable<bool> durable(Ticket& ticket);
  // Commits the open batch, if any. The server calls it whenever its I/O thread has run
  // out of ready work, so that everything that arrived during the last fsync shares the
  // next one.
  void commit_now();
  // Whether a batch the ticket joined has already failed to commit: a long poll woken
  // after that must not lease (its answer will be a 500, and a job leased durably in a
  // later batch would sit with an agent that was never told about it).
  [[nodiscard]] bool failed(const Ticket& ticket) const;
  // Transactions committed so far (each one fsync).
  [[nodiscard]] std::uint64_t commits() const { return commits_; }

 private:
  void step(const std::shared_ptr<Batch>& batch);
  void commit(std::shared_ptr<Batch> batch);

  boost::asio::io_context& ioc_;
  Store& store_;
  std::shared_ptr<Batch> open_;
  std::uint64_t commits_ = 0;
};

}  // namespace delegate::controlplane
