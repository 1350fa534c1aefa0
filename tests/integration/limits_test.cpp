// Connection slots of the control plane against peers that hold connections open
// without ever authenticating.
#include <gtest/gtest.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <stdexcept>
#include <vector>

#include "harness.hpp"

namespace delegate::testing {
namespace {

// A TCP connection to the control plane from a chosen loopback source address.
int connect_from(const char* source, std::uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in src{};
  src.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &src.sin_addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) throw std::runtime_error("bind failed");
  sockaddr_in dst{};
  dst.sin_family = AF_INET;
  dst.sin_port = htons(port);
  dst.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&dst), sizeof dst) != 0) throw std::runtime_error("connect failed");
  return fd;
}

struct Fds {
  std::vector<int> fds;
  ~Fds() {
    for (int fd : fds) ::close(fd);
  }
};

bool healthy(ControlPlane& cp) {
  agent::CpClient c(agent::ClientOptions{.base_url = cp.url(), .ca_file = cp.dir() / "ca.pem"});
  auto r = c.get("/healthz", "", std::chrono::seconds(10));
  return r && r->status == 200;
}

TEST(ConnectionLimits, OnePeerHoldingIdleConnectionsDoesNotStarveAnother) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  // More idle, never-handshaking connections than the server has slots (512 by
  // default), all from one address.
  Fds idle;
  for (int i = 0; i < 600; ++i) idle.fds.push_back(connect_from("127.0.0.2", cp.port()));
  // The server accepts in order: by the time it reaches this connection it has dealt
  // with all of the above.
  EXPECT_TRUE(healthy(cp)) << cp.process().log_text();
  EXPECT_NE(cp.process().log_text().find("per-peer connection limit reached for 127.0.0.2"), std::string::npos);
}

TEST(ConnectionLimits, ConnectionThatNeverSendsAHeaderIsClosed) {
  TempDir tmp;
  ControlPlane cp(tmp.path / "cp");
  cp.kill();
  auto cfg = Json::parse(read_text(cp.dir() / "controlplane.json"));
  cfg["header_timeout_ms"] = 300;
  write_text(cp.dir() / "controlplane.json", cfg.dump(2), 0600);
  cp.start();
  // Handshake done, then half a request line and silence.
  int fd = connect_from("127.0.0.3", cp.port());
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_load_verify_locations(ctx, (cp.dir() / "ca.pem").c_str(), nullptr);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL* ssl = SSL_new(ctx);
  SSL_set_fd(ssl, fd);
  SSL_set_tlsext_host_name(ssl, "localhost");
  ASSERT_EQ(SSL_connect(ssl), 1);
  const std::string partial = "GET /healthz HT";
  ASSERT_EQ(SSL_write(ssl, partial.data(), static_cast<int>(partial.size())), static_cast<int>(partial.size()));
  // The server closes it; the poll bound only keeps a broken build from hanging (the
  // previous fixed bound was 120 s).
  pollfd p{fd, POLLIN, 0};
  ASSERT_EQ(::poll(&p, 1, 60000), 1);
  char buf[256];
  EXPECT_LE(SSL_read(ssl, buf, sizeof buf), 0);
  SSL_free(ssl);
  SSL_CTX_free(ctx);
  ::close(fd);
  EXPECT_TRUE(healthy(cp));
}

}  // namespace
}  // namespace delegate::testing
