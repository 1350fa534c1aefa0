#include "fake_cp.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

namespace delegate::testing {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  return s;
}

const char* reason(int status) {
  switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    default: return "Status";
  }
}

bool write_all(SSL* ssl, const std::string& s) {
  std::size_t done = 0;
  while (done < s.size()) {
    const int n = SSL_write(ssl, s.data() + done, static_cast<int>(s.size() - done));
    if (n <= 0) return false;
    done += static_cast<std::size_t>(n);
  }
  return true;
}

}  // namespace

FakeControlPlane::FakeControlPlane(Tls tls, Handler handler) : handler_(std::move(handler)) {
  // An agent that hangs up mid-answer must not kill the test process.
  ::signal(SIGPIPE, SIG_IGN);
  ctx_ = SSL_CTX_new(TLS_server_method());
  if (ctx_ == nullptr || SSL_CTX_set_min_proto_version(ctx_, tls.min_version) != 1 ||
      SSL_CTX_set_max_proto_version(ctx_, tls.max_version) != 1 ||
      SSL_CTX_use_certificate_chain_file(ctx_, tls.cert.c_str()) != 1 ||
      SSL_CTX_use_PrivateKey_file(ctx_, tls.key.c_str(), SSL_FILETYPE_PEM) != 1) {
    throw std::runtime_error("fake control plane: TLS setup failed");
  }
  listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  // Port 0: the kernel picks a free port and nobody can take it between bind and use.
  if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::listen(listen_fd_, 64) != 0 || ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    throw std::runtime_error(std::string("fake control plane: listen: ") + std::strerror(errno));
  }
  port_ = ntohs(a.sin_port);
  accept_thread_ = std::thread([this] { accept_loop(); });
}

FakeControlPlane::~FakeControlPlane() {
  stop_ = true;
  ::shutdown(listen_fd_, SHUT_RDWR);
  accept_thread_.join();
  {
    std::lock_guard lock(mu_);
    for (int fd : open_fds_) ::shutdown(fd, SHUT_RDWR);
  }
  for (auto& t : conns_) t.join();
  ::close(listen_fd_);
  SSL_CTX_free(ctx_);
}

std::vector<FakeRequest> FakeControlPlane::requests() const {
  std::lock_guard lock(mu_);
  return requests_;
}

std::size_t FakeControlPlane::count(const std::string& suffix) const {
  std::lock_guard lock(mu_);
  return static_cast<std::size_t>(std::count_if(requests_.begin(), requests_.end(), [&](const FakeRequest& r) {
    return r.target.ends_with(suffix);
  }));
}

void FakeControlPlane::accept_loop() {
  while (!stop_) {
    pollfd p{listen_fd_, POLLIN, 0};
    if (::poll(&p, 1, 100) <= 0) continue;
    const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lock(mu_);
    open_fds_.push_back(fd);
    conns_.emplace_back([this, fd] { serve(fd); });
  }
}

void FakeControlPlane::serve(int fd) {
  SSL* ssl = SSL_new(ctx_);
  SSL_set_fd(ssl, fd);
  if (SSL_accept(ssl) == 1) {
    ++handshakes_;
    std::string buf;
    char chunk[16384];
    while (!stop_) {
      // Headers.
      std::size_t end = std::string::npos;
      while ((end = buf.find("\r\n\r\n")) == std::string::npos) {
        const int n = SSL_read(ssl, chunk, sizeof chunk);
        if (n <= 0) goto done;
        buf.append(chunk, static_cast<std::size_t>(n));
      }
      FakeRequest req;
      std::size_t length = 0;
      {
        const std::string head = buf.substr(0, end);
        std::size_t pos = head.find("\r\n");
        const std::string line = head.substr(0, pos);
        req.method = line.substr(0, line.find(' '));
        const auto t0 = line.find(' ') + 1;
        req.target = line.substr(t0, line.find(' ', t0) - t0);
        while (pos != std::string::npos && pos < head.size()) {
          const auto next = head.find("\r\n", pos + 2);
          const std::string h = head.substr(pos + 2, next == std::string::npos ? std::string::npos : next - pos - 2);
          const auto colon = h.find(':');
          if (colon != std::string::npos) {
            const std::string name = lower(h.substr(0, colon));
            std::string value = h.substr(colon + 1);
            value.erase(0, value.find_first_not_of(' '));
            if (name == "content-length") length = std::stoul(value);
            if (name == "authorization") req.authorization = value;
            req.headers[name] = value;
          }
          pos = next;
        }
      }
      buf.erase(0, end + 4);
      while (buf.size() < length) {
        const int n = SSL_read(ssl, chunk, sizeof chunk);
        if (n <= 0) goto done;
        buf.append(chunk, static_cast<std::size_t>(n));
      }
      req.body = buf.substr(0, length);
      buf.erase(0, length);
      {
        std::lock_guard lock(mu_);
        requests_.push_back(req);
      }
      const FakeAnswer a = handler_(req);
      std::string out = "HTTP/1.1 " + std::to_string(a.status) + " " + reason(a.status) +
                        "\r\nContent-Type: " + a.content_type + "\r\n";
      for (const auto& [name, value] : a.headers) out += name + ": " + value + "\r\n";
      out += "Content-Length: " + std::to_string(a.body.size()) + "\r\n\r\n" + a.body;
      if (!write_all(ssl, out)) break;
    }
  }
done:
  SSL_shutdown(ssl);
  SSL_free(ssl);
  std::lock_guard lock(mu_);
  open_fds_.erase(std::remove(open_fds_.begin(), open_fds_.end(), fd), open_fds_.end());
  ::close(fd);
}

std::vector<Json> records_in(const FakeRequest& r) {
  auto j = Json::parse(r.body, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("records") || !j["records"].is_array()) return {};
  return j["records"].get<std::vector<Json>>();
}

std::string job_of(const std::string& target) {
  const std::string prefix = "/v1/jobs/";
  if (!target.starts_with(prefix)) return "";
  auto rest = target.substr(prefix.size());
  return rest.substr(0, rest.find('/'));
}

std::string agent_config_for(const fs::path& cp_dir, std::uint16_t port, const std::string& extra_agent_keys) {
  auto cfg = read_text(cp_dir / "agent.yaml");
  const auto url = cfg.find("https://127.0.0.1:");
  const auto eol = cfg.find('\n', url);
  cfg.replace(url, eol - url, "https://127.0.0.1:" + std::to_string(port));
  if (!extra_agent_keys.empty()) cfg.replace(cfg.find("agent:\n"), 7, "agent:\n" + extra_agent_keys);
  return cfg;
}

}  // namespace delegate::testing
