#include <delegate/common/metrics_http.hpp>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <thread>

#include <delegate/common/log.hpp>

namespace delegate::metrics {
namespace {

std::string response(int code, std::string_view reason, std::string_view type, const std::string& body, bool head,
                     std::string_view extra = {}) {
  std::string out = "HTTP/1.1 " + std::to_string(code) + " " + std::string(reason) + "\r\n";
  out += "Content-Type: " + std::string(type) + "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  out += extra;
  out += "Cache-Control: no-store\r\nConnection: close\r\n\r\n";
  if (!head) out += body;
  return out;
}

std::string text(int code, std::string_view reason, const std::string& body, bool head = false,
                 std::string_view extra = {}) {
  return response(code, reason, "text/plain; charset=utf-8", body, head, extra);
}

// Remaining milliseconds until `deadline`, at least 0.
int left_ms(std::chrono::steady_clock::time_point deadline) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now()).count();
  return d > 0 ? static_cast<int>(d) : 0;
}

void serve(int fd, const Endpoints& endpoints) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(kRequestTimeoutMs);
  std::string req;
  std::string answer;
  char buf[2048];
  while (answer.empty()) {
    pollfd p{fd, POLLIN, 0};
    const int ms = left_ms(deadline);
    if (ms == 0 || ::poll(&p, 1, ms) <= 0) return;  // too slow: dropped without an answer
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    const bool eof = n <= 0;
    if (!eof) req.append(buf, static_cast<std::size_t>(n));
    answer = answer_request(req, endpoints, eof);
    if (eof && answer.empty()) return;
  }
  std::size_t off = 0;
  while (off < answer.size()) {
    pollfd p{fd, POLLOUT, 0};
    const int ms = left_ms(deadline);
    if (ms == 0 || ::poll(&p, 1, ms) <= 0) return;
    const ssize_t n = ::send(fd, answer.data() + off, answer.size() - off, MSG_NOSIGNAL);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) return;
    off += static_cast<std::size_t>(n);
  }
}

}  // namespace

Result<ListenAddress> parse_listen_address(std::string_view text) {
  ListenAddress a;
  if (text.rfind("unix:", 0) == 0) {
    a.kind = ListenAddress::Kind::unix_socket;
    a.path = std::string(text.substr(5));
    if (!a.path.is_absolute()) return fail(Errc::invalid_argument, "a Unix socket path must be absolute");
    if (a.path.string().size() >= sizeof(sockaddr_un{}.sun_path)) {
      return fail(Errc::invalid_argument, "the Unix socket path is too long");
    }
    return a;
  }
  const auto colon = text.rfind(':');
  if (colon == std::string_view::npos) return fail(Errc::invalid_argument, "must be HOST:PORT or unix:/PATH");
  std::string host(text.substr(0, colon));
  const std::string port(text.substr(colon + 1));
  if (port.empty() || port.size() > 5 || port.find_first_not_of("0123456789") != std::string::npos ||
      std::stoul(port) > 65535) {
    return fail(Errc::invalid_argument, "port must be 0..65535");
  }
  a.port = static_cast<std::uint16_t>(std::stoul(port));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    in6_addr v6{};
    if (::inet_pton(AF_INET6, host.c_str(), &v6) != 1 || !IN6_IS_ADDR_LOOPBACK(&v6)) {
      return fail(Errc::invalid_argument, "only a loopback address (127.0.0.0/8, [::1]) or a Unix socket may be used; " +
                                              host + " is not one (the listener has no authentication)");
    }
  } else {
    in_addr v4{};
    if (::inet_pton(AF_INET, host.c_str(), &v4) != 1 || (ntohl(v4.s_addr) >> 24) != 127) {
      return fail(Errc::invalid_argument, "only a loopback address (127.0.0.0/8, [::1]) or a Unix socket may be used; \"" +
                                              host + "\" is not one (the listener has no authentication)");
    }
  }
  a.host = host;
  return a;
}

std::string answer_request(std::string_view req, const Endpoints& endpoints, bool complete) {
  const auto end = req.find("\r\n\r\n");
  if (end == std::string_view::npos) {
    if (req.size() >= kMaxRequestBytes) return text(431, "Request Header Fields Too Large", "request too large\n");
    return complete ? text(400, "Bad Request", "malformed request\n") : std::string();
  }
  if (end + 4 > kMaxRequestBytes) return text(431, "Request Header Fields Too Large", "request too large\n");
  const auto line = req.substr(0, req.find("\r\n"));
  const auto sp1 = line.find(' ');
  const auto sp2 = sp1 == std::string_view::npos ? sp1 : line.find(' ', sp1 + 1);
  if (sp2 == std::string_view::npos || line.substr(sp2 + 1).rfind("HTTP/1.", 0) != 0) {
    return text(400, "Bad Request", "malformed request\n");
  }
  const auto method = line.substr(0, sp1);
  auto path = line.substr(sp1 + 1, sp2 - sp1 - 1);
  path = path.substr(0, path.find('?'));
  const bool known = path == "/healthz" || path == "/readyz" || path == "/metrics";
  if (!known) return text(404, "Not Found", "not found\n");
  const bool head = method == "HEAD";
  if (method != "GET" && !head) return text(405, "Method Not Allowed", "use GET\n", false, "Allow: GET, HEAD\r\n");
  if (path == "/healthz") return text(200, "OK", "ok\n", head);
  if (path == "/readyz") {
    const bool ready = !endpoints.ready || endpoints.ready();
    return ready ? text(200, "OK", "ready\n", head) : text(503, "Service Unavailable", "not ready\n", head);
  }
  const std::string body = endpoints.registry != nullptr ? endpoints.registry->render() : std::string();
  return response(200, "OK", "text/plain; version=0.0.4; charset=utf-8", body, head);
}

struct HttpListener::Impl {
  ListenAddress address;
  Endpoints endpoints;
  int fd = -1;
  int stop_fd = -1;
  std::uint16_t port = 0;
  bool owns_socket_file = false;  // bound a Unix socket: removed when the listener stops
  std::jthread thread;

  ~Impl() {
    if (thread.joinable()) {
      const std::uint64_t one = 1;
      (void)!::write(stop_fd, &one, sizeof one);
      thread.join();
    }
    if (fd >= 0) ::close(fd);
    if (stop_fd >= 0) ::close(stop_fd);
    if (owns_socket_file) ::unlink(address.path.c_str());
  }

  void loop() {
    for (;;) {
      pollfd p[2] = {{fd, POLLIN, 0}, {stop_fd, POLLIN, 0}};
      if (::poll(p, 2, -1) < 0) {
        if (errno == EINTR) continue;
        log::error("metrics", std::string("listener poll failed: ") + std::strerror(errno));
        return;
      }
      if (p[1].revents != 0) return;
      const int c = ::accept4(fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (c < 0) {
        // Out of descriptors: the connection stays queued and poll() would report it
        // at once again; wait a little (or for stop) instead of spinning on a core.
        if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM) {
          pollfd s{stop_fd, POLLIN, 0};
          if (::poll(&s, 1, 100) > 0) return;
        }
        continue;
      }
      serve(c, endpoints);
      ::close(c);
    }
  }
};

HttpListener::HttpListener(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
HttpListener::~HttpListener() = default;
std::uint16_t HttpListener::port() const { return impl_->port; }

std::string HttpListener::describe() const {
  const auto& a = impl_->address;
  if (a.kind == ListenAddress::Kind::unix_socket) return "unix:" + a.path.string();
  const bool v6 = a.host.find(':') != std::string::npos;
  return (v6 ? "[" + a.host + "]" : a.host) + ":" + std::to_string(impl_->port);
}

Result<std::unique_ptr<HttpListener>> HttpListener::start(const ListenAddress& address, Endpoints endpoints) {
  auto impl = std::make_unique<Impl>();
  impl->address = address;
  impl->endpoints = std::move(endpoints);
  auto sys = [&](const std::string& what) { return fail(Errc::io, "metrics listener: " + what + ": " + std::strerror(errno)); };
  switch (address.kind) {
    case ListenAddress::Kind::unix_socket: {
      impl->fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (impl->fd < 0) return sys("socket");
      // Whoever can write the socket's directory can swap the socket for a symlink
      // between bind() and chmod() below, or put a socket of their own there: only a
      // directory that root or this process owns and nobody else may write will do.
      struct stat dir {};
      const auto parent = address.path.parent_path();
      if (::stat(parent.c_str(), &dir) != 0) return sys("stat " + parent.string());
      if (!S_ISDIR(dir.st_mode) || (dir.st_uid != 0 && dir.st_uid != ::geteuid()) || (dir.st_mode & 022) != 0) {
        return fail(Errc::permission, "metrics listener: " + parent.string() +
                                          " must be a directory owned by root or this user that group and others "
                                          "cannot write (e.g. a RuntimeDirectory=)");
      }
      struct stat st {};
      if (::lstat(address.path.c_str(), &st) == 0) {
        // A socket left by an earlier run is replaced; anything else is not ours to remove.
        if (!S_ISSOCK(st.st_mode)) return fail(Errc::conflict, "metrics listener: " + address.path.string() + " exists and is not a socket");
        ::unlink(address.path.c_str());
      }
      sockaddr_un sa{};
      sa.sun_family = AF_UNIX;
      std::strncpy(sa.sun_path, address.path.c_str(), sizeof sa.sun_path - 1);
      if (::bind(impl->fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) return sys("bind " + address.path.string());
      impl->owns_socket_file = true;
      // Owner and group only; nobody can connect before listen() below.
      if (::chmod(address.path.c_str(), 0660) != 0) return sys("chmod " + address.path.string());
      break;
    }
    case ListenAddress::Kind::tcp: {
      const bool v6 = address.host.find(':') != std::string::npos;
      impl->fd = ::socket(v6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
      if (impl->fd < 0) return sys("socket");
      const int on = 1;
      ::setsockopt(impl->fd, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
      sockaddr_storage ss{};
      socklen_t len = 0;
      if (v6) {
        auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
        s6->sin6_family = AF_INET6;
        s6->sin6_port = htons(address.port);
        ::inet_pton(AF_INET6, address.host.c_str(), &s6->sin6_addr);
        len = sizeof *s6;
      } else {
        auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
        s4->sin_family = AF_INET;
        s4->sin_port = htons(address.port);
        ::inet_pton(AF_INET, address.host.c_str(), &s4->sin_addr);
        len = sizeof *s4;
      }
      if (::bind(impl->fd, reinterpret_cast<sockaddr*>(&ss), len) != 0) {
        return sys("bind " + address.host + ":" + std::to_string(address.port));
      }
      len = sizeof ss;
      if (::getsockname(impl->fd, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return sys("getsockname");
      impl->port = ntohs(v6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
      break;
    }
  }
  if (::listen(impl->fd, 16) != 0) return sys("listen");
  impl->stop_fd = ::eventfd(0, EFD_CLOEXEC);
  if (impl->stop_fd < 0) return sys("eventfd");
  Impl* raw = impl.get();
  impl->thread = std::jthread([raw] { raw->loop(); });
  return std::unique_ptr<HttpListener>(new HttpListener(std::move(impl)));
}

}  // namespace delegate::metrics
