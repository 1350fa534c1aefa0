#pragma once
// One error vocabulary for every component: functions that can fail return
// Result<T>; the Errc says which class of failure it was (callers map it to an
// exit code or HTTP status), the message is one human-readable line.
#include <expected>
#include <string>
#include <utility>

namespace delegate {

enum class Errc {
  invalid_argument,   // caller passed something malformed (bad flag, bad file content)
  not_found,          // a named file, key, job or agent does not exist
  io,                 // the OS refused a read, write, fsync, socket or process operation
  crypto,             // OpenSSL failed or a signature/hash did not verify
  parse,              // untrusted input did not parse (JSON, YAML, base64, record)
  too_large,          // input exceeded a hard size cap
  permission,         // an authorisation, TLS trust or file-mode check failed
  conflict,           // state does not allow the operation (gap, duplicate, stale lease)
  unavailable,        // a peer is unreachable or answered with a transient failure
  timeout,            // a deadline passed
  internal,           // an invariant broke; a bug, reported rather than crashing
};

[[nodiscard]] constexpr const char* to_string(Errc e) noexcept {
  switch (e) {
    case Errc::invalid_argument: return "invalid_argument";
    case Errc::not_found: return "not_found";
    case Errc::io: return "io";
    case Errc::crypto: return "crypto";
    case Errc::parse: return "parse";
    case Errc::too_large: return "too_large";
    case Errc::permission: return "permission";
    case Errc::conflict: return "conflict";
    case Errc::unavailable: return "unavailable";
    case Errc::timeout: return "timeout";
    case Errc::internal: return "internal";
  }
  return "unknown";
}

struct Error {
  Errc code;
  std::string message;
};

template <class T>
using Result = std::expected<T, Error>;

// Shorthand for `return fail(Errc::parse, "...")` in functions returning Result<T>.
[[nodiscard]] inline std::unexpected<Error> fail(Errc code, std::string message) {
  return std::unexpected(Error{code, std::move(message)});
}

// Result<void> success value.
[[nodiscard]] inline Result<void> ok() { return {}; }

}  // namespace delegate
