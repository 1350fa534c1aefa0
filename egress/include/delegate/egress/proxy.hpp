#pragma once
// The agent's allowlisting CONNECT proxy for one step. It serves a listening socket
// the step can reach (in the step's own network namespace) from the agent's threads,
// which live in the agent's network namespace. Per request: the target must be on the
// step's allowlist; the agent resolves the name once, refuses the request if any
// resolved address is forbidden by the address policy (so a name cannot be re-pointed
// at an internal address between check and use), connects to a checked address itself,
// and relays bytes. Every attempt is reported to `record` before the step gets an
// answer; an attempt that cannot be recorded is refused.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/egress/address_policy.hpp>
#include <delegate/egress/host_port.hpp>

namespace delegate::egress {

enum class Verdict { allowed, not_in_allowlist, address_not_allowed, resolve_failed, connect_failed, bad_request };
[[nodiscard]] std::string_view to_string(Verdict v);

struct ConnectEvent {
  std::optional<HostPort> target;      // absent for a request that did not parse
  std::optional<std::string> address;  // the address connected to, or the one refused
  Verdict verdict = Verdict::bad_request;
  std::string detail;                  // one line, for refusals
};

// Returns false when the event could not be recorded: the connection is then refused.
using EventRecorder = std::function<bool(const ConnectEvent&)>;
// Resolves a DNS name once (no caching here); an empty list is a failure.
using Resolver = std::function<Result<std::vector<IpAddress>>(const std::string& name)>;

[[nodiscard]] Result<std::vector<IpAddress>> system_resolve(const std::string& name);

// Exact match on the canonical forms (host names are lower-cased by parsing).
[[nodiscard]] bool allowlisted(const std::vector<HostPort>& allow, const HostPort& target);

struct ProxyConfig {
  std::vector<HostPort> allow;
  AddressPolicy policy;
  EventRecorder record;
  Resolver resolve = system_resolve;
  std::chrono::milliseconds head_timeout{std::chrono::seconds(10)};
  std::chrono::milliseconds connect_timeout{std::chrono::seconds(10)};
  std::size_t max_connections = 32;  // concurrent; more are refused (and recorded)
};

class Proxy {
 public:
  // Takes ownership of `listener` (listening, any network namespace) and serves it
  // until the Proxy is destroyed.
  [[nodiscard]] static Result<std::unique_ptr<Proxy>> start(int listener, ProxyConfig config);
  // Stops accepting, ends every tunnel, closes every socket and joins every thread. A
  // resolution in progress is waited for (the system resolver's own timeouts bound it).
  ~Proxy();
  Proxy(const Proxy&) = delete;
  Proxy& operator=(const Proxy&) = delete;

  struct Impl;

 private:
  explicit Proxy(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace delegate::egress
