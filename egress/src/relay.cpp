#include <delegate/egress/relay.hpp>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include <delegate/egress/connect_request.hpp>

namespace delegate::egress {
namespace {

// Waits for `events` on fd until the deadline; false on timeout or stop.
Result<void> wait_for(int fd, short events, Deadline deadline, int stop_fd) {
  while (true) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return fail(Errc::timeout, "timed out");
    std::array<pollfd, 2> p{pollfd{fd, events, 0}, pollfd{stop_fd, POLLIN, 0}};
    const int n = ::poll(p.data(), p.size(), static_cast<int>(std::min<long long>(left.count(), 60'000)));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return fail(Errc::io, std::string("poll: ") + std::strerror(errno));
    if (p[1].revents != 0) return fail(Errc::unavailable, "the step ended");
    if (p[0].revents != 0) return ok();
  }
}

}  // namespace

Result<void> read_head(int fd, std::string& buf, std::size_t limit, Deadline deadline, int stop_fd) {
  char chunk[2048];
  while (!head_length(buf)) {
    if (buf.size() > limit) return fail(Errc::too_large, "request head larger than 8 KiB");
    if (auto w = wait_for(fd, POLLIN, deadline, stop_fd); !w) return w;
    const ssize_t n = ::recv(fd, chunk, sizeof chunk, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) return fail(Errc::io, std::string("recv: ") + std::strerror(errno));
    if (n == 0) return fail(Errc::io, "connection closed before the request head ended");
    buf.append(chunk, static_cast<std::size_t>(n));
  }
  return ok();
}

Result<void> write_all(int fd, std::string_view data, Deadline deadline, int stop_fd) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return fail(Errc::io, std::string("send: ") + std::strerror(errno));
    if (auto w = wait_for(fd, POLLOUT, deadline, stop_fd); !w) return w;
  }
  return ok();
}

Result<void> connect_by(int fd, const void* sa, unsigned len, Deadline deadline, int stop_fd) {
  if (::connect(fd, static_cast<const sockaddr*>(sa), len) == 0) return ok();
  if (errno != EINPROGRESS && errno != EINTR) return fail(Errc::unavailable, std::strerror(errno));
  if (auto w = wait_for(fd, POLLOUT, deadline, stop_fd); !w) return w;
  int err = 0;
  socklen_t elen = sizeof err;
  if (::getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) != 0) return fail(Errc::io, std::strerror(errno));
  if (err != 0) return fail(Errc::unavailable, std::strerror(err));
  return ok();
}

void relay(int a, int b, int stop_fd) {
  struct Direction {
    int from, to;
    std::array<char, 16384> buf{};
    std::size_t off = 0, len = 0;
    bool eof = false;   // `from` has ended
    bool done = false;  // ... and everything was passed on, `to` half-closed
  };
  Direction dirs[2] = {{a, b}, {b, a}};
  while (!(dirs[0].done && dirs[1].done)) {
    std::array<pollfd, 5> p{};
    std::size_t n = 0;
    int slot[2][2] = {{-1, -1}, {-1, -1}};  // per direction: read slot, write slot
    for (int d = 0; d < 2; ++d) {
      auto& dir = dirs[d];
      if (dir.done) continue;
      if (dir.len == 0 && !dir.eof) {
        slot[d][0] = static_cast<int>(n);
        p[n++] = pollfd{dir.from, POLLIN, 0};
      } else if (dir.len > 0) {
        slot[d][1] = static_cast<int>(n);
        p[n++] = pollfd{dir.to, POLLOUT, 0};
      }
    }
    p[n++] = pollfd{stop_fd, POLLIN, 0};
    const int rc = ::poll(p.data(), n, -1);
    if (rc < 0 && errno == EINTR) continue;
    if (rc < 0 || p[n - 1].revents != 0) return;
    for (int d = 0; d < 2; ++d) {
      auto& dir = dirs[d];
      if (slot[d][0] >= 0 && p[static_cast<std::size_t>(slot[d][0])].revents != 0) {
        const ssize_t r = ::recv(dir.from, dir.buf.data(), dir.buf.size(), 0);
        if (r < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (r < 0) return;  // a reset: the whole tunnel ends
        if (r == 0) {
          dir.eof = true;
        } else {
          dir.off = 0;
          dir.len = static_cast<std::size_t>(r);
        }
      } else if (slot[d][1] >= 0 && p[static_cast<std::size_t>(slot[d][1])].revents != 0) {
        const ssize_t w = ::send(dir.to, dir.buf.data() + dir.off, dir.len, MSG_NOSIGNAL);
        if (w < 0 && (errno == EAGAIN || errno == EINTR)) continue;
        if (w < 0) return;
        dir.off += static_cast<std::size_t>(w);
        dir.len -= static_cast<std::size_t>(w);
      }
      if (dir.eof && dir.len == 0 && !dir.done) {
        ::shutdown(dir.to, SHUT_WR);
        dir.done = true;
      }
    }
  }
}

}  // namespace delegate::egress
