#pragma once
// How the agent reaches the control plane and the OAuth issuers' JWKS URIs: directly, or
// through an HTTP proxy with a CONNECT tunnel (docs/configuration.md, "Proxies"). TLS 1.3
// runs inside the tunnel from the agent to the server, so the proxy sees only the
// `CONNECT host:port` line and opaque bytes; the server's certificate is checked
// against the server's host name, never the proxy's.
//
// Where the proxy comes from, first match wins:
//   control_plane.proxy: http://[user:pass@]host:port   that proxy; proxy variables ignored
//   control_plane.proxy: none                           direct; proxy variables ignored
//   https_proxy, then HTTPS_PROXY                        that proxy
//   otherwise                                            direct
// and which hosts bypass it: control_plane.no_proxy if set, otherwise (only when the
// proxy came from the environment) no_proxy, then NO_PROXY.
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/egress/address_policy.hpp>
#include <delegate/egress/host_port.hpp>

typedef void CURL;
struct curl_slist;

namespace delegate::agent {

struct ProxyUrl {
  egress::HostPort address;  // canonical host and port of the proxy
  std::string user;          // percent-decoded; empty with no credentials
  std::string password;
  bool has_credentials = false;
  std::string source;  // where it was configured: "control_plane.proxy", "HTTPS_PROXY", ...
  // "http://host:port": what messages name. Never the credentials.
  [[nodiscard]] std::string display() const;
};

// `http://host:port`, `http://user:pass@host:port` (user and password percent-encoded
// where needed), an optional trailing "/". Any other scheme, a missing port, a path,
// query or fragment is Errc::invalid_argument naming `where`; the message never repeats
// the value (it may hold a password).
[[nodiscard]] Result<ProxyUrl> parse_proxy_url(std::string_view text, std::string_view where);

struct NoProxyEntry {
  enum class Kind { any, domain, address };
  Kind kind = Kind::any;
  std::string domain;   // Kind::domain: lower case, no leading or trailing dot
  egress::Cidr range;   // Kind::address: a literal is a full-length prefix
  std::uint16_t port = 0;  // 0: every port
};

// A NO_PROXY list: entries separated by commas and/or white space. `*`; a host name,
// `.name` or `*.name` (that name and every name under it); an IPv4 or IPv6 literal
// (IPv6 optionally in brackets); a CIDR range; host names and literals may carry
// `:port`. Case and trailing dots do not matter. An entry that is none of these is an
// error naming `where` and the entry.
[[nodiscard]] Result<std::vector<NoProxyEntry>> parse_no_proxy(std::string_view list, std::string_view where);

// Whether `target` bypasses the proxy. Names are compared as text: a name is never
// resolved to match an address or a range, and a range matches only address literals.
[[nodiscard]] bool no_proxy_matches(const std::vector<NoProxyEntry>& entries, const egress::HostPort& target);

struct ProxySettings {
  std::optional<ProxyUrl> proxy;  // none: direct
  std::vector<NoProxyEntry> no_proxy;
  // The proxy for `target`, or nullopt to connect directly.
  [[nodiscard]] const ProxyUrl* route(const egress::HostPort& target) const;
};

// From control_plane.proxy (empty: not set), control_plane.no_proxy (nullopt: not set)
// and the environment (https_proxy, HTTPS_PROXY, no_proxy, NO_PROXY; other proxy
// variables are deliberately ignored: the control plane speaks https only).
[[nodiscard]] Result<ProxySettings> resolve_proxy_settings(const std::string& proxy_key,
                                                           const std::optional<std::vector<std::string>>& no_proxy_key,
                                                           const std::map<std::string, std::string>& env);

// The host and port an https:// URL connects to (443 when it names none).
[[nodiscard]] Result<egress::HostPort> https_target(std::string_view url);

// --- The CONNECT tunnel (proxy_tunnel.cpp) ---

// A proxy's answer to CONNECT is at most this long, status line and headers.
inline constexpr std::size_t kMaxConnectReply = 8192;

// `head` is the proxy's answer through the first CRLF CRLF, exactly. Strict: an
// `HTTP/1.0` or `HTTP/1.1` status line with a three-digit status, header lines of a
// token, a colon and visible characters, CRLF line ends only, no folded lines.
// Errc::too_large beyond kMaxConnectReply, Errc::parse for anything malformed; otherwise
// the status (the caller accepts 200 only).
[[nodiscard]] Result<int> parse_connect_reply(std::string_view head);

// The request the agent sends: CONNECT, Host, and Proxy-Authorization (Basic) when the
// proxy URL has credentials.
[[nodiscard]] std::string connect_request(const ProxyUrl& proxy, const egress::HostPort& target);

// Connects to the proxy and asks it for a tunnel to `target`, within `timeout` for the
// whole exchange (connect, request, reply). Returns the connected socket (non-blocking)
// ready for the TLS handshake. Every error names the proxy (display form) and, for an
// answer other than 200, its status.
[[nodiscard]] Result<int> open_tunnel(const ProxyUrl& proxy, const egress::HostPort& target,
                                      std::chrono::milliseconds timeout, const std::atomic<bool>* abort);

// Routes libcurl transfers to one https URL as ProxySettings say. apply() (after each
// curl_easy_reset) always switches libcurl's own proxy handling off (it reads the same
// variables with other rules); when a proxy applies, it makes libcurl use a socket
// tunnelled by open_tunnel instead of connecting itself, while TLS (SNI and certificate
// check) still uses the URL's host name.
class CurlRoute {
 public:
  CurlRoute(const ProxySettings& settings, std::string_view url, std::chrono::seconds connect_timeout,
            const std::atomic<bool>* abort);
  CurlRoute(const CurlRoute&) = delete;  // libcurl holds a pointer to it
  CurlRoute& operator=(const CurlRoute&) = delete;
  void apply(CURL* curl);
  // Why the last tunnel failed, "" if it did not.
  [[nodiscard]] const std::string& tunnel_error() const { return tunnel_error_; }
  [[nodiscard]] const ProxyUrl* proxy() const { return proxy_ ? &*proxy_ : nullptr; }
  // "direct" or "via proxy http://host:port (from SOURCE)".
  [[nodiscard]] std::string describe() const;
  // For libcurl's open-socket callback: the tunnelled socket, or -1 (tunnel_error set).
  [[nodiscard]] int open_socket();

 private:
  std::optional<ProxyUrl> proxy_;
  egress::HostPort target_;
  std::string url_error_;
  std::chrono::seconds timeout_;
  const std::atomic<bool>* abort_;
  std::string tunnel_error_;
  struct SlistFree {
    void operator()(curl_slist* l) const noexcept;
  };
  std::unique_ptr<curl_slist, SlistFree> connect_to_;
};

}  // namespace delegate::agent
