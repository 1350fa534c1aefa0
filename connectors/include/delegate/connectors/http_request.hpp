#pragma once
// The child half of an http step (docs/connectors.md): `delegate-agent http-request`
// runs inside the step's sandbox, reads one request spec (JSON) from stdin, performs it
// with libcurl and prints ONE JSON result line on stdout. The response is untrusted
// (a hostile or compromised API): it is read, capped and parsed only here, never in the
// agent. The spec carries resolved header values and secrets, which is why it travels
// on stdin and never on argv.
//
// Request spec members:
//   method, url                 the request line (https only)
//   headers: [[name, value]]    sent as given
//   body: string (optional)     the request body, sent as given
//   timeout_ms                  the whole step, retries and redirects included
//   ca_pem                      extra trust anchors (PEM) on top of the system bundle
//   allow: ["host:port"]        where a redirect may lead (followed at most 5 times)
//   retry: {attempts, on_status: [..]}
//   outputs: {NAME: JSON Pointer} values to take from a JSON response body
//   preview_bytes               how much of the body to return for the record
//   raw_body_max                if > 0: return the whole body (at most this much) as
//                               body_raw, for the agent's own strict parser (tokens)
// Result: {status, headers: {content-type, location, retry-after, x-request-id},
//          body_bytes, body_json, body_preview, outputs, output_errors, attempts,
//          redirects: [url..], url} or {error}.
#include <string>
#include <string_view>

#include <delegate/common/json.hpp>

namespace delegate::connectors {

// No response body is read beyond this; a longer one fails the request.
inline constexpr std::size_t kMaxResponseBody = 1u << 20;
inline constexpr int kMaxRedirects = 5;
inline constexpr int kMaxAttempts = 5;

// Performs the request described by `spec` and returns the result object. Never throws.
[[nodiscard]] Json perform_http_request(const Json& spec);

// The subcommand: stdin -> perform_http_request -> one line on stdout. Exit 0 when a
// result line was printed (the agent judges the status), 2 for an unreadable spec.
int http_request_main();

// "host:port" of an https URL (port 443 when absent; host lower-cased, IPv6 in
// brackets), or "" when the URL is not https or cannot be parsed.
[[nodiscard]] std::string https_authority(std::string_view url);

}  // namespace delegate::connectors
