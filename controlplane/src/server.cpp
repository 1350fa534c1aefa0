#include <delegate/controlplane/server.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl.hpp>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <array>
#include <atomic>
#include <future>
#include <optional>
#include <string>
#include <tuple>
#include <unordered_map>

#include <delegate/common/crypto.hpp>
#include <delegate/common/log.hpp>

#include "api.hpp"
#include "group_commit.hpp"
#include "metrics.hpp"

namespace delegate::controlplane {
namespace asio = boost::asio;
namespace beast = boost::beast;
using tcp = asio::ip::tcp;
using namespace std::chrono_literals;

struct Server::Impl {
  ServerConfig config;
  asio::io_context ioc{1};
  asio::ssl::context ssl{asio::ssl::context::tls_server};
  tcp::acceptor acceptor{ioc};
  asio::signal_set signals{ioc, SIGINT, SIGTERM};
  std::unique_ptr<Store> store;
  std::unique_ptr<DevIssuer> dev_issuer;
  std::unique_ptr<GroupCommit> group;
  std::unique_ptr<Api> api;
  std::size_t connections = 0;
  std::unordered_map<std::string, std::size_t> per_peer;  // open connections by remote address
  std::size_t refused_since_log = 0;
  std::optional<std::chrono::steady_clock::time_point> last_refusal_log;
  // Scrapes arrive on the listener's thread, without authentication: at most one count
  // of the store is queued on the I/O thread at a time, and at most one a second.
  std::atomic<bool> refreshing{false};
  std::atomic<std::int64_t> last_refresh_ms{-1'000'000};

  asio::awaitable<void> accept_loop();
  asio::awaitable<void> session(tcp::socket socket, std::string address);
  void refused(const char* why);
  asio::awaitable<void> sweeper();
};

namespace {

// Maps a failed read to the answer the client gets before we close.
std::optional<Response> read_error_response(const beast::error_code& ec) {
  if (ec == beast::http::error::body_limit) return error_response(http::status::payload_too_large, "request body too large");
  if (ec == beast::http::error::header_limit) {
    return error_response(http::status::request_header_fields_too_large, "request header too large");
  }
  const beast::error_code eos = beast::http::error::end_of_stream;
  if (ec.category() == eos.category() && ec != eos && ec != beast::http::error::partial_message) {
    return error_response(http::status::bad_request, "malformed HTTP request: " + ec.message());
  }
  return std::nullopt;
}

// The Ed25519 key of the client's certificate, if it presented one. The TLS stack has
// checked its CertificateVerify signature; who the key belongs to is the API's business.
std::optional<Ed25519PublicKey> client_key(SSL* ssl) {
  X509* cert = SSL_get0_peer_certificate(ssl);
  if (!cert) return std::nullopt;
  EVP_PKEY* pkey = X509_get0_pubkey(cert);
  if (!pkey || EVP_PKEY_get_id(pkey) != EVP_PKEY_ED25519) return std::nullopt;
  Ed25519PublicKey key{};
  std::size_t len = key.size();
  if (EVP_PKEY_get_raw_public_key(pkey, key.data(), &len) != 1 || len != key.size()) return std::nullopt;
  return key;
}

// Client certificates are self-signed and pinned by key, not by a CA: let every chain
// through here (the handshake still checks the client's CertificateVerify signature).
int accept_any_chain(X509_STORE_CTX*, void*) { return 1; }

}  // namespace

asio::awaitable<void> Server::Impl::session(tcp::socket socket, std::string address) {
  ++connections;
  ++per_peer[address];
  struct Guard {
    Impl& impl;
    const std::string& address;
    ~Guard() {
      --impl.connections;
      if (auto it = impl.per_peer.find(address); it != impl.per_peer.end() && --it->second == 0) impl.per_peer.erase(it);
    }
  } guard{*this, address};
  beast::ssl_stream<beast::tcp_stream> stream(beast::tcp_stream(std::move(socket)), ssl);
  beast::tcp_stream& tcp = beast::get_lowest_layer(stream);
  // Until a request on it has authenticated, a connection gets short deadlines: it holds
  // a slot, and whoever opens it may be anyone.
  tcp.expires_after(config.header_timeout);
  auto [hs_ec] = co_await stream.async_handshake(asio::ssl::stream_base::server, asio::as_tuple(asio::use_awaitable));
  if (hs_ec) {
    log::debug("controlplane", "TLS handshake failed: " + hs_ec.message());
    co_return;
  }
  Peer peer{tcp.socket().native_handle(), client_key(stream.native_handle())};
  beast::flat_buffer buffer;
  for (;;) {
    // Idle keep-alive plus the request header; slow-loris bound.
    if (peer.authenticated) {
      tcp.expires_after(120s);
    } else {
      tcp.expires_after(config.header_timeout);
    }
    http::request_parser<http::string_body> parser;
    parser.header_limit(16 * 1024);
    parser.body_limit(config.max_body_bytes);
    auto [ec, n] = co_await http::async_read_header(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    if (!ec && !parser.is_done()) {
      tcp.expires_after(60s);  // the body (at most max_body_bytes)
      std::tie(ec, n) = co_await http::async_read(stream, buffer, parser, asio::as_tuple(asio::use_awaitable));
    }
    (void)n;
    if (ec) {
      if (auto res = read_error_response(ec)) {
        res->keep_alive(false);
        tcp.expires_after(10s);
        co_await http::async_write(stream, *res, asio::as_tuple(asio::use_awaitable));
        // Lingering close: the client may still be sending the body we refused. Closing
        // with unread input makes the kernel send a reset, which can destroy our answer
        // before the client reads it; drain (bounded in time and bytes) first.
        tcp.expires_after(2s);
        std::array<char, 16384> scratch;
        for (std::size_t drained = 0; drained < (16u << 20);) {
          auto [rec, rn] = co_await stream.async_read_some(asio::buffer(scratch), asio::as_tuple(asio::use_awaitable));
          if (rec) break;
          drained += rn;
        }
        co_return;
      }
      break;
    }
    Request req = parser.release();
    tcp.expires_never();  // long polls are bounded by the handler's own deadline
    Response res;
    GroupCommit::Ticket ticket;
    peer.ticket = &ticket;
    group->join(ticket);
    try {
      res = co_await api->handle(req, peer);
    } catch (const std::exception& e) {
      log::error("controlplane", std::string("handler failed: ") + e.what());
      res = error_response(http::status::internal_server_error, "internal error");
    }
    // Nothing is answered before what the request wrote (and read) is committed.
    // (A plain statement: g++ 12 miscompiles some co_await inside a condition at -O2.)
    const bool committed = co_await group->durable(ticket);
    if (!committed) res = error_response(http::status::internal_server_error, "commit failed");
    peer.ticket = nullptr;
    cp_metrics().request(std::string_view(req.target().data(), req.target().size()), res.result_int());
    res.version(req.version());
    res.keep_alive(req.keep_alive());
    tcp.expires_after(30s);
    auto [wec, wn] = co_await http::async_write(stream, res, asio::as_tuple(asio::use_awaitable));
    (void)wn;
    if (wec || !res.keep_alive()) break;
  }
  tcp.expires_after(5s);
  co_await stream.async_shutdown(asio::as_tuple(asio::use_awaitable));
}

void Server::Impl::refused(const char* why) {
  // One line per burst: a flood of refused connections must not flood the log too.
  ++refused_since_log;
  const auto now = std::chrono::steady_clock::now();
  if (last_refusal_log && now - *last_refusal_log < 10s) return;
  log::warn("controlplane", std::string(why) + "; refused " + std::to_string(refused_since_log) + " connection(s)");
  last_refusal_log = now;
  refused_since_log = 0;
}

asio::awaitable<void> Server::Impl::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(asio::as_tuple(asio::use_awaitable));
    if (ec) {
      if (ec == asio::error::operation_aborted) co_return;
      log::warn("controlplane", "accept failed: " + ec.message());
      continue;
    }
    beast::error_code rec;
    const auto remote = socket.remote_endpoint(rec);
    if (rec) continue;  // already gone
    std::string address = remote.address().to_string();
    if (connections >= config.max_connections) {
      refused("connection limit reached");
      continue;  // socket closes as it goes out of scope
    }
    if (auto it = per_peer.find(address); it != per_peer.end() && it->second >= config.max_connections_per_peer) {
      refused(("per-peer connection limit reached for " + address).c_str());
      continue;
    }
    asio::co_spawn(ioc, session(std::move(socket), std::move(address)), [](std::exception_ptr e) {
      if (!e) return;
      try {
        std::rethrow_exception(e);
      } catch (const std::exception& ex) {
        log::warn("controlplane", std::string("session ended: ") + ex.what());
      }
    });
  }
}

asio::awaitable<void> Server::Impl::sweeper() {
  asio::steady_timer timer(ioc);
  for (;;) {
    timer.expires_after(1s);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
    GroupCommit::Ticket ticket;  // nobody waits for the sweep's batch; it commits all the same
    group->join(ticket);
    api->sweep();
  }
}

Result<std::unique_ptr<Server>> Server::create(ServerConfig config) {
  auto impl = std::make_unique<Impl>();
  impl->config = std::move(config);
  auto& cfg = impl->config;

  // TLS 1.3 only: a TLS 1.2 client fails the handshake.
  SSL_CTX* ctx = impl->ssl.native_handle();
  if (SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION) != 1) {
    return fail(Errc::crypto, "cannot restrict TLS to version 1.3");
  }
  SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION | SSL_OP_NO_TICKET);
  // Ask every client for a certificate (agents authenticate by their identity key);
  // admin clients and probes may send none.
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_cert_verify_callback(ctx, accept_any_chain, nullptr);
  // No resumption: each connection is authenticated by a full handshake with the key.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_num_tickets(ctx, 0);
  beast::error_code ec;
  impl->ssl.use_certificate_chain_file(cfg.cert_file.string(), ec);
  if (ec) return fail(Errc::crypto, "cannot load certificate " + cfg.cert_file.string() + ": " + ec.message());
  impl->ssl.use_private_key_file(cfg.key_file.string(), asio::ssl::context::pem, ec);
  if (ec) return fail(Errc::crypto, "cannot load private key " + cfg.key_file.string() + ": " + ec.message());
  if (SSL_CTX_check_private_key(ctx) != 1) return fail(Errc::crypto, "server certificate and key do not match");
  if (cfg.admin_token.size() < 16 || cfg.enrollment_token.size() < 16) {
    return fail(Errc::invalid_argument, "admin and enrollment tokens must be at least 16 characters");
  }

  auto store = Store::open(cfg.db_file);
  if (!store) return std::unexpected(store.error());
  impl->store = std::move(*store);
  // The token `init` wrote stays usable as the development default: an enrollment token
  // object like any other (listable, revocable through the admin API).
  const auto seeded_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch()).count();
  if (auto r = impl->store->seed_enrollment_token("enr_default", sha256_hex(cfg.enrollment_token), seeded_ms); !r) {
    return fail(r.error().code, "cannot seed the default enrollment token: " + r.error().message);
  }
  if (!cfg.dev_oauth_issuer.empty()) {
    auto issuer = DevIssuer::load(cfg.dev_oauth_dir, cfg.dev_oauth_issuer);
    if (!issuer) return fail(issuer.error().code, "development OAuth issuer: " + issuer.error().message);
    impl->dev_issuer = std::move(*issuer);
  }
  impl->group = std::make_unique<GroupCommit>(impl->ioc, *impl->store);
  impl->api = std::make_unique<Api>(*impl->store, impl->config, impl->dev_issuer.get(), impl->group.get());

  auto addr = asio::ip::make_address(cfg.listen_host, ec);
  if (ec) return fail(Errc::invalid_argument, "invalid listen address " + cfg.listen_host);
  tcp::endpoint ep(addr, cfg.port);
  impl->acceptor.open(ep.protocol(), ec);
  if (!ec) impl->acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) impl->acceptor.bind(ep, ec);
  if (!ec) impl->acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail(Errc::io, "cannot listen on " + cfg.listen_host + ":" + std::to_string(cfg.port) + ": " + ec.message());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Server::~Server() = default;

std::uint16_t Server::port() const { return impl_->acceptor.local_endpoint().port(); }

void Server::run() {
  impl_->signals.async_wait([this](const beast::error_code& ec, int sig) {
    if (!ec) log::info("controlplane", "signal " + std::to_string(sig) + ": stopping");
    impl_->ioc.stop();
  });
  // Agents could not renew leases while we were down: give every running job one full
  // lease from now before the sweeper may requeue or interrupt it.
  impl_->api->grant_restart_grace();
  asio::co_spawn(impl_->ioc, impl_->accept_loop(), asio::detached);
  asio::co_spawn(impl_->ioc, impl_->sweeper(), asio::detached);
  // Group commit: run what is ready (bounded, so that a busy thread still commits), then
  // commit the batch all of it wrote in, then wait for the next event.
  auto& ioc = impl_->ioc;
  while (ioc.run_one() > 0) {
    for (int i = 0; i < 1024 && ioc.poll_one() > 0; ++i) {
    }
    impl_->group->commit_now();
  }
}

void Server::stop() { impl_->ioc.stop(); }

metrics::Registry& Server::metrics_registry() { return cp_metrics().registry(); }

void Server::refresh_metrics(std::chrono::milliseconds wait) {
  // The store belongs to the I/O thread: the counts are taken there, and a scrape waits
  // for them a bounded time (stale values rather than a stuck scrape). A scraper in a
  // loop gets the last counts instead of queueing scan after scan in front of the API.
  const auto steady_ms = [] {
    return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now().time_since_epoch())
        .count();
  };
  if (steady_ms() - impl_->last_refresh_ms.load() < 1000) return;
  if (impl_->refreshing.exchange(true)) return;
  auto done = std::make_shared<std::promise<void>>();
  auto future = done->get_future();
  asio::post(impl_->ioc, [this, done, steady_ms] {
    struct Release {  // whatever happens in the count, the next scrape may ask again
      std::atomic<bool>& flag;
      ~Release() { flag = false; }
    } release{impl_->refreshing};
    cp_metrics().refresh(*impl_->store, std::chrono::duration_cast<std::chrono::milliseconds>(
                                            std::chrono::system_clock::now().time_since_epoch()).count(),
                         impl_->config.lease.count());
    impl_->last_refresh_ms = steady_ms();
    done->set_value();
  });
  (void)future.wait_for(wait);
}

}  // namespace delegate::controlplane
