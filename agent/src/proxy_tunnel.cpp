// The client side of an HTTP CONNECT tunnel: connect to the proxy, ask for host:port,
// read the proxy's answer within a size and time bound, accept 200 only. The answer
// comes from a machine the agent does not control, so its parser is strict and fuzzed
// (tests/fuzz/connect_reply_fuzz.cpp).
#include <delegate/agent/proxy.hpp>

#include <curl/curl.h>
#include <fcntl.h>
#include <netdb.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <span>
#include <utility>

#include <delegate/common/encoding.hpp>
#include <delegate/egress/connect_request.hpp>

namespace delegate::agent {
namespace {

using Clock = std::chrono::steady_clock;

bool tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

// Field values and reason phrases: HTAB, SP, visible ASCII and obs-text.
bool field_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u == '\t' || u == ' ' || (u >= 0x21 && u != 0x7f);
}

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&&) = delete;
  [[nodiscard]] int get() const { return fd_; }
  int release() { return std::exchange(fd_, -1); }

 private:
  int fd_;
};

// Waits for `events` on fd until the deadline, in short slices so that `abort` is seen.
Result<void> wait_for(int fd, short events, Clock::time_point deadline, const std::atomic<bool>* abort,
                      const std::string& what) {
  while (true) {
    if (abort && abort->load()) return fail(Errc::unavailable, "request aborted (shutting down)");
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return fail(Errc::timeout, what + ": timed out");
    pollfd p{fd, events, 0};
    const int rc = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 200)));
    if (rc < 0 && errno != EINTR) return fail(Errc::io, what + ": poll: " + std::strerror(errno));
    if (rc > 0) return ok();
  }
}

Result<Fd> connect_proxy(const ProxyUrl& proxy, Clock::time_point deadline, const std::atomic<bool>* abort) {
  const std::string name = "proxy " + proxy.display() + " (" + proxy.source + ")";
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* list = nullptr;
  const std::string host = egress::bare_host(proxy.address);
  const std::string port = std::to_string(proxy.address.port);
  if (const int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &list); rc != 0) {
    return fail(Errc::unavailable, "cannot resolve " + name + ": " + ::gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> owned(list, ::freeaddrinfo);
  std::string last = "no address";
  for (const addrinfo* a = list; a; a = a->ai_next) {
    Fd fd(::socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (fd.get() < 0) {
      last = std::strerror(errno);
      continue;
    }
    if (::connect(fd.get(), a->ai_addr, a->ai_addrlen) != 0 && errno != EINPROGRESS) {
      last = std::strerror(errno);
      continue;
    }
    if (auto w = wait_for(fd.get(), POLLOUT, deadline, abort, "connecting to " + name); !w) return std::unexpected(w.error());
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == 0) return fd;
    last = std::strerror(err);
  }
  return fail(Errc::unavailable, "cannot connect to " + name + ": " + last);
}

std::string status_hint(int status) {
  switch (status) {
    case 407:
      return " (proxy authentication required: check the user and password in the proxy URL)";
    case 403:
      return " (the proxy forbids this destination: ask its administrator to allow it)";
    case 502:
    case 503:
    case 504:
      return " (the proxy could not reach the server)";
    default:
      return "";
  }
}

}  // namespace

Result<int> parse_connect_reply(std::string_view head) {
  if (head.size() > kMaxConnectReply) {
    return fail(Errc::too_large, "answer to CONNECT longer than " + std::to_string(kMaxConnectReply) + " bytes");
  }
  if (egress::head_length(head) != head.size()) return fail(Errc::parse, "answer to CONNECT is not one complete head");
  // Status line.
  if (head.size() < 14 || (head.substr(0, 9) != "HTTP/1.1 " && head.substr(0, 9) != "HTTP/1.0 ")) {
    return fail(Errc::parse, "answer to CONNECT has no HTTP/1.x status line");
  }
  int status = 0;
  for (std::size_t i = 9; i < 12; ++i) {
    if (head[i] < '0' || head[i] > '9') return fail(Errc::parse, "answer to CONNECT has a malformed status code");
    status = status * 10 + (head[i] - '0');
  }
  if (status < 100) return fail(Errc::parse, "answer to CONNECT has a malformed status code");
  std::size_t pos = 12;
  if (head[pos] == ' ') {
    ++pos;
    while (pos < head.size() && head[pos] != '\r') {
      if (!field_char(head[pos])) return fail(Errc::parse, "answer to CONNECT has control bytes in its status line");
      ++pos;
    }
  }
  if (head.substr(pos, 2) != "\r\n") return fail(Errc::parse, "answer to CONNECT has a malformed status line");
  pos += 2;
  // Header lines, then the empty line.
  while (head.substr(pos, 2) != "\r\n") {
    const std::size_t name_start = pos;
    while (pos < head.size() && tchar(head[pos])) ++pos;
    if (pos == name_start || pos >= head.size() || head[pos] != ':') {
      return fail(Errc::parse, "answer to CONNECT has a malformed header line");
    }
    ++pos;
    while (pos < head.size() && head[pos] != '\r') {
      if (!field_char(head[pos])) return fail(Errc::parse, "answer to CONNECT has control bytes in a header");
      ++pos;
    }
    if (head.substr(pos, 2) != "\r\n") return fail(Errc::parse, "answer to CONNECT has a malformed line end");
    pos += 2;
  }
  if (pos + 2 != head.size()) return fail(Errc::parse, "answer to CONNECT has bytes after its head");
  return status;
}

std::string connect_request(const ProxyUrl& proxy, const egress::HostPort& target) {
  const std::string hp = egress::to_string(target);
  std::string req;
  std::string pair, encoded;
  if (proxy.has_credentials) {
    pair.reserve(proxy.user.size() + 1 + proxy.password.size());
    pair.append(proxy.user).append(":").append(proxy.password);
    encoded = base64_encode(std::span(reinterpret_cast<const std::uint8_t*>(pair.data()), pair.size()));
  }
  // Sized once, so that no append moves the credentials and leaves a copy in freed heap.
  req.reserve(2 * hp.size() + encoded.size() + 128);
  req.append("CONNECT ").append(hp).append(" HTTP/1.1\r\nHost: ").append(hp).append("\r\n");
  if (proxy.has_credentials) req.append("Proxy-Authorization: Basic ").append(encoded).append("\r\n");
  req.append("User-Agent: delegate-agent/" DELEGATE_VERSION "\r\n\r\n");
  OPENSSL_cleanse(pair.data(), pair.size());
  OPENSSL_cleanse(encoded.data(), encoded.size());
  return req;
}

Result<int> open_tunnel(const ProxyUrl& proxy, const egress::HostPort& target, std::chrono::milliseconds timeout,
                        const std::atomic<bool>* abort) {
  const auto deadline = Clock::now() + timeout;
  const std::string name = "proxy " + proxy.display() + " (" + proxy.source + ")";
  const std::string what = name + ", CONNECT " + egress::to_string(target);
  auto fd = connect_proxy(proxy, deadline, abort);
  if (!fd) return std::unexpected(fd.error());
  std::string request = connect_request(proxy, target);
  std::size_t sent = 0;
  Result<void> outcome = ok();
  while (sent < request.size()) {
    const ssize_t n = ::send(fd->get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      if (outcome = wait_for(fd->get(), POLLOUT, deadline, abort, what); !outcome) break;
    } else {
      outcome = fail(Errc::unavailable, what + ": send: " + std::strerror(errno));
      break;
    }
  }
  // The request held the credentials: do not leave them in freed heap.
  OPENSSL_cleanse(request.data(), request.size());
  if (!outcome) return std::unexpected(outcome.error());
  // One byte at a time: nothing after the head may be consumed, it belongs to TLS.
  std::string head;
  while (!egress::head_length(head)) {
    if (head.size() >= kMaxConnectReply) {
      return fail(Errc::too_large, what + ": answer longer than " + std::to_string(kMaxConnectReply) + " bytes");
    }
    char c = 0;
    const ssize_t n = ::recv(fd->get(), &c, 1, 0);
    if (n == 1) {
      head.push_back(c);
    } else if (n == 0) {
      return fail(Errc::unavailable, what + ": the proxy closed the connection before answering");
    } else if (errno == EAGAIN || errno == EINTR) {
      if (auto w = wait_for(fd->get(), POLLIN, deadline, abort, what); !w) return std::unexpected(w.error());
    } else {
      return fail(Errc::unavailable, what + ": recv: " + std::strerror(errno));
    }
  }
  auto status = parse_connect_reply(head);
  if (!status) return fail(Errc::unavailable, what + ": " + status.error().message);
  if (*status != 200) {
    return fail(Errc::unavailable, what + ": the proxy answered HTTP " + std::to_string(*status) + status_hint(*status));
  }
  return fd->release();
}

CurlRoute::CurlRoute(const ProxySettings& settings, std::string_view url, std::chrono::seconds connect_timeout,
                     const std::atomic<bool>* abort)
    : timeout_(connect_timeout), abort_(abort) {
  auto target = https_target(url);
  if (!target) {
    // Only reachable with a URL the configuration did not validate; no tunnel then,
    // and libcurl reports the URL itself.
    url_error_ = target.error().message;
    return;
  }
  target_ = *target;
  if (const ProxyUrl* p = settings.route(target_)) proxy_ = *p;
}

std::string CurlRoute::describe() const {
  if (!proxy_) return "direct";
  return "via proxy " + proxy_->display() + " (" + proxy_->source + ")";
}

int CurlRoute::open_socket() {
  tunnel_error_.clear();
  auto fd = open_tunnel(*proxy_, target_, timeout_, abort_);
  if (!fd) {
    tunnel_error_ = fd.error().message;
    return -1;
  }
  return *fd;
}

namespace {

curl_socket_t curl_open(void* user, curlsocktype purpose, curl_sockaddr*) {
  if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKET_BAD;
  const int fd = static_cast<CurlRoute*>(user)->open_socket();
  return fd < 0 ? CURL_SOCKET_BAD : fd;
}

int curl_already_connected(void*, curl_socket_t, curlsocktype) { return CURL_SOCKOPT_ALREADY_CONNECTED; }

}  // namespace

void CurlRoute::SlistFree::operator()(curl_slist* l) const noexcept { curl_slist_free_all(l); }

void CurlRoute::apply(CURL* c) {
  tunnel_error_.clear();
  // "" switches off every proxy, including the ones libcurl would take from the
  // environment on its own.
  curl_easy_setopt(c, CURLOPT_PROXY, "");
  if (!proxy_) return;
  // libcurl must not resolve the server's name (behind a proxy it often cannot): it is
  // told to "connect" to a placeholder literal, and the open-socket callback hands it
  // the tunnel instead. TLS still takes SNI and the name to verify from the URL.
  curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, curl_open);
  curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, this);
  curl_easy_setopt(c, CURLOPT_SOCKOPTFUNCTION, curl_already_connected);
  curl_easy_setopt(c, CURLOPT_SOCKOPTDATA, nullptr);
  connect_to_.reset(curl_slist_append(nullptr, "::127.0.0.1:"));
  curl_easy_setopt(c, CURLOPT_CONNECT_TO, connect_to_.get());
}

}  // namespace delegate::agent
