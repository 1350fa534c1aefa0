#include "group_commit.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <delegate/common/log.hpp>

namespace delegate::controlplane {
namespace asio = boost::asio;

namespace {
// The latest a batch is committed when the I/O thread never runs out of ready work: after
// this many turns of its queue. A job submitted to a parked long poll wakes that poll
// through the queue, so the lease joins the submission's transaction (one fsync for
// both). A turn costs microseconds, an fsync milliseconds.
constexpr int kTurns = 64;
}  // namespace

struct GroupCommit::Batch {
  explicit Batch(asio::io_context& ioc) : timer(ioc) { timer.expires_at(asio::steady_timer::time_point::max()); }
  asio::steady_timer timer;  // waiters wait on it; the commit cancels it to wake them
  int turns = 0;
  bool done = false;
  bool ok = false;
};

void GroupCommit::join(Ticket& ticket) {
  if (!open_) {
    auto batch = std::make_shared<Batch>(ioc_);
    if (auto r = store_.begin_batch(); !r) {
      // Writes then run in SQLite's autocommit mode, each durable before it returns.
      log::error("controlplane", "cannot begin a group commit: " + r.error().message);
      return;
    }
    open_ = batch;
    asio::post(ioc_, [this, batch] { step(batch); });
  }
  if (ticket.joined_.empty() || ticket.joined_.back() != open_) ticket.joined_.push_back(open_);
}

void GroupCommit::step(const std::shared_ptr<Batch>& batch) {
  if (batch->done) return;  // committed by commit_now()
  if (batch->turns < kTurns) {
    ++batch->turns;
    asio::post(ioc_, [this, batch] { step(batch); });
    return;
  }
  commit(batch);
}

void GroupCommit::commit_now() {
  if (open_) commit(open_);
}

void GroupCommit::commit(std::shared_ptr<Batch> batch) {  // a copy: open_ is reset below
  open_.reset();
  auto r = store_.commit_batch();
  if (!r) log::error("controlplane", "group commit failed, its requests are answered 500: " + r.error().message);
  ++commits_;
  batch->ok = r.has_value();
  batch->done = true;
  batch->timer.cancel();
}

bool GroupCommit::failed(const Ticket& ticket) const {
  for (const auto& batch : ticket.joined_) {
    if (batch->done && !batch->ok) return true;
  }
  return false;
}

asio::awaitable<bool> GroupCommit::durable(Ticket& ticket) {
  bool ok = true;
  for (auto& batch : ticket.joined_) {
    if (!batch->done) co_await batch->timer.async_wait(asio::as_tuple(asio::use_awaitable));
    ok = ok && batch->ok;
  }
  ticket.joined_.clear();
  co_return ok;
}

}  // namespace delegate::controlplane
