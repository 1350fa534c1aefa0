#pragma once
// Byte relay between two connected sockets for the egress proxy, and the small
// deadline-bounded I/O it needs around it. Every wait also watches `stop_fd` (an
// eventfd that becomes readable when the step ends), so nothing outlives the step.
#include <chrono>
#include <string>
#include <string_view>

#include <delegate/common/error.hpp>

namespace delegate::egress {

using Deadline = std::chrono::steady_clock::time_point;

// Reads into `buf` until it holds a complete request head (CRLF CRLF), more than
// `limit` bytes, EOF, the deadline or stop. Errc::timeout / too_large / io.
[[nodiscard]] Result<void> read_head(int fd, std::string& buf, std::size_t limit, Deadline deadline, int stop_fd);

// Writes all of `data` before the deadline (fd is non-blocking).
[[nodiscard]] Result<void> write_all(int fd, std::string_view data, Deadline deadline, int stop_fd);

// Non-blocking connect of `fd` to `sa`, finished before the deadline.
[[nodiscard]] Result<void> connect_by(int fd, const void* sa, unsigned len, Deadline deadline, int stop_fd);

// Copies both ways until both directions have ended (EOF is passed on as a half
// close), either side fails, or stop. Both fds must be non-blocking.
void relay(int a, int b, int stop_fd);

}  // namespace delegate::egress
