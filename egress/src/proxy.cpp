#include <delegate/egress/proxy.hpp>

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <list>
#include <mutex>
#include <thread>

#include <delegate/egress/connect_request.hpp>
#include <delegate/egress/relay.hpp>

namespace delegate::egress {
namespace {

// More addresses than this from one name are not tried (all are still checked).
constexpr std::size_t kMaxTries = 8;

struct Fd {
  int fd = -1;
  explicit Fd(int f = -1) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(std::exchange(o.fd, -1)) {}
  Fd& operator=(Fd&&) = delete;
  Fd(const Fd&) = delete;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

bool set_nonblocking(int fd) {
  const int flags = ::fcntl(fd, F_GETFL);
  return flags >= 0 && ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0;
}

std::string_view answer(Verdict v) {
  switch (v) {
    case Verdict::allowed: return "HTTP/1.1 200 Connection established\r\n\r\n";
    case Verdict::not_in_allowlist:
    case Verdict::address_not_allowed:
      return "HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    case Verdict::resolve_failed:
    case Verdict::connect_failed:
      return "HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    case Verdict::bad_request:
      return "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
  }
  return "HTTP/1.1 400 Bad Request\r\n\r\n";
}

}  // namespace

std::string_view to_string(Verdict v) {
  switch (v) {
    case Verdict::allowed: return "allowed";
    case Verdict::not_in_allowlist: return "not_in_allowlist";
    case Verdict::address_not_allowed: return "address_not_allowed";
    case Verdict::resolve_failed: return "resolve_failed";
    case Verdict::connect_failed: return "connect_failed";
    case Verdict::bad_request: return "bad_request";
  }
  return "bad_request";
}

bool allowlisted(const std::vector<HostPort>& allow, const HostPort& target) {
  return std::find(allow.begin(), allow.end(), target) != allow.end();
}

Result<std::vector<IpAddress>> system_resolve(const std::string& name) {
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  const int rc = ::getaddrinfo(name.c_str(), nullptr, &hints, &res);
  if (rc != 0) return fail(Errc::unavailable, std::string("cannot resolve: ") + ::gai_strerror(rc));
  std::vector<IpAddress> out;
  for (const addrinfo* ai = res; ai != nullptr; ai = ai->ai_next) {
    auto a = from_sockaddr(ai->ai_addr);
    if (a && std::find(out.begin(), out.end(), *a) == out.end()) out.push_back(*a);
  }
  ::freeaddrinfo(res);
  if (out.empty()) return fail(Errc::unavailable, "cannot resolve: no addresses");
  return out;
}

struct Proxy::Impl {
  ProxyConfig config;
  Fd listener;
  Fd stop;  // eventfd: readable once the proxy stops
  struct Conn {
    std::thread thread;
    std::atomic<bool> done{false};
  };
  std::mutex mu;
  std::list<Conn> conns;
  std::thread acceptor;

  void accept_loop();
  void serve(Fd client);
  // Records, then answers. Returns whether the connection may proceed.
  bool conclude(int client, ConnectEvent ev);
  Result<Fd> connect_checked(const std::vector<IpAddress>& addrs, std::uint16_t port, std::string& tried);
  void reap(bool all);
  [[nodiscard]] bool stopping() const {
    pollfd p{stop.fd, POLLIN, 0};
    return ::poll(&p, 1, 0) == 1;
  }
};

void Proxy::Impl::reap(bool all) {
  std::list<Conn> finished;
  {
    std::lock_guard lock(mu);
    for (auto it = conns.begin(); it != conns.end();) {
      auto next = std::next(it);
      if (all || it->done) finished.splice(finished.end(), conns, it);
      it = next;
    }
  }
  for (auto& c : finished) c.thread.join();
}

void Proxy::Impl::accept_loop() {
  while (true) {
    std::array<pollfd, 2> p{pollfd{listener.fd, POLLIN, 0}, pollfd{stop.fd, POLLIN, 0}};
    const int n = ::poll(p.data(), p.size(), -1);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || p[1].revents != 0) return;
    reap(false);
    Fd client(::accept4(listener.fd, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (client.fd < 0) continue;
    std::lock_guard lock(mu);
    if (conns.size() >= config.max_connections) {
      const int fd = client.fd;
      (void)conclude(fd, ConnectEvent{.verdict = Verdict::bad_request, .detail = "too many concurrent connections"});
      continue;
    }
    auto& c = conns.emplace_back();
    c.thread = std::thread([this, &c, fd = std::move(client)]() mutable {
      serve(std::move(fd));
      c.done = true;
    });
  }
}

bool Proxy::Impl::conclude(int client, ConnectEvent ev) {
  const Verdict v = ev.verdict;
  const bool recorded = config.record(ev);
  const auto deadline = std::chrono::steady_clock::now() + config.head_timeout;
  if (!recorded) {
    // Fail closed: nothing passes that is not in the job's log.
    (void)write_all(client, answer(Verdict::not_in_allowlist), deadline, stop.fd);
    return false;
  }
  if (!write_all(client, answer(v), deadline, stop.fd)) return false;
  return v == Verdict::allowed;
}

Result<Fd> Proxy::Impl::connect_checked(const std::vector<IpAddress>& addrs, std::uint16_t port, std::string& tried) {
  const auto deadline = std::chrono::steady_clock::now() + config.connect_timeout;
  Error last{Errc::unavailable, "no address to connect to"};
  for (std::size_t i = 0; i < addrs.size() && i < kMaxTries; ++i) {
    const auto& a = addrs[i];
    tried = to_string(a);
    sockaddr_storage ss{};
    socklen_t len = 0;
    if (a.family == AF_INET) {
      auto* sin = reinterpret_cast<sockaddr_in*>(&ss);
      sin->sin_family = AF_INET;
      sin->sin_port = htons(port);
      std::memcpy(&sin->sin_addr, a.bytes.data(), 4);
      len = sizeof *sin;
    } else {
      auto* sin6 = reinterpret_cast<sockaddr_in6*>(&ss);
      sin6->sin6_family = AF_INET6;
      sin6->sin6_port = htons(port);
      std::memcpy(&sin6->sin6_addr, a.bytes.data(), 16);
      len = sizeof *sin6;
    }
    Fd s(::socket(a.family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    if (s.fd < 0) {
      last = Error{Errc::io, std::string("socket: ") + std::strerror(errno)};
      continue;
    }
    auto c = connect_by(s.fd, &ss, len, deadline, stop.fd);
    if (c) return s;
    last = c.error();
    if (c.error().code == Errc::timeout) break;
  }
  return std::unexpected(last);
}

void Proxy::Impl::serve(Fd client) {
  const auto head_deadline = std::chrono::steady_clock::now() + config.head_timeout;
  std::string buf;
  if (auto r = read_head(client.fd, buf, kMaxConnectHead, head_deadline, stop.fd); !r) {
    if (stopping()) return;  // the step ended
    (void)conclude(client.fd, ConnectEvent{.verdict = Verdict::bad_request, .detail = r.error().message});
    return;
  }
  auto target = parse_connect(buf);
  if (!target) {
    (void)conclude(client.fd, ConnectEvent{.verdict = Verdict::bad_request, .detail = target.error().message});
    return;
  }
  ConnectEvent ev{.target = *target};
  if (!allowlisted(config.allow, *target)) {
    ev.verdict = Verdict::not_in_allowlist;
    (void)conclude(client.fd, std::move(ev));
    return;
  }
  // An IP literal is its own resolution; a name is resolved exactly once, here.
  std::vector<IpAddress> addrs;
  if (auto literal = parse_ip(bare_host(*target))) {
    addrs.push_back(*literal);
  } else {
    auto resolved = config.resolve(target->host);
    if (!resolved || resolved->empty()) {
      ev.verdict = Verdict::resolve_failed;
      ev.detail = resolved ? "no addresses" : resolved.error().message;
      (void)conclude(client.fd, std::move(ev));
      return;
    }
    addrs = std::move(*resolved);
  }
  // Every address must pass: a name that resolves to a public and an internal address
  // is refused outright, whichever one a connect would have picked.
  for (const auto& a : addrs) {
    if (auto why = config.policy.refusal(a)) {
      ev.verdict = Verdict::address_not_allowed;
      ev.address = to_string(a);
      ev.detail = std::string(*why) + " address";
      (void)conclude(client.fd, std::move(ev));
      return;
    }
  }
  std::string tried;
  auto upstream = connect_checked(addrs, target->port, tried);
  ev.address = tried;
  if (!upstream) {
    if (stopping()) return;  // the step ended while connecting: nothing to answer
    ev.verdict = Verdict::connect_failed;
    ev.detail = upstream.error().message;
    (void)conclude(client.fd, std::move(ev));
    return;
  }
  ev.verdict = Verdict::allowed;
  if (!conclude(client.fd, std::move(ev))) return;
  relay(client.fd, upstream->fd, stop.fd);
}

Proxy::Proxy(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Result<std::unique_ptr<Proxy>> Proxy::start(int listener, ProxyConfig config) {
  auto impl = std::make_unique<Impl>();
  impl->listener.fd = listener;
  if (!config.record) return fail(Errc::internal, "egress proxy without a recorder");
  impl->config = std::move(config);
  impl->stop.fd = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (impl->stop.fd < 0) return fail(Errc::io, std::string("eventfd: ") + std::strerror(errno));
  if (!set_nonblocking(listener)) return fail(Errc::io, std::string("fcntl: ") + std::strerror(errno));
  Impl* raw = impl.get();
  impl->acceptor = std::thread([raw] { raw->accept_loop(); });
  return std::unique_ptr<Proxy>(new Proxy(std::move(impl)));
}

Proxy::~Proxy() {
  const std::uint64_t one = 1;
  while (::write(impl_->stop.fd, &one, sizeof one) < 0 && errno == EINTR) {
  }
  if (impl_->acceptor.joinable()) impl_->acceptor.join();
  impl_->reap(true);
}

}  // namespace delegate::egress
