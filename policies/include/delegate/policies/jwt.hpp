#pragma once
// JWS-signed JWT access tokens (RFC 7515/7519, RFC 9068 profile). Parsing is strict and
// complete before any cryptography; every failure is one JwtStatus that maps to exactly
// one reason code of docs/authorization.md. Time is passed in.
#include <chrono>
#include <cstdint>
#include <sys/types.h>
#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/time.hpp>
#include <delegate/policies/authorizer.hpp>
#include <delegate/policies/job.hpp>
#include <delegate/policies/jwks.hpp>
#include <delegate/policies/reason.hpp>
#include <expected>
#include <filesystem>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace delegate::policies {

inline constexpr std::size_t kMaxTokenBytes = 8 * 1024;
inline constexpr std::size_t kMaxJoseDepth = 16;
// Largest accepted NumericDate (2^40 s ≈ year 36812): bigger values are nonsense that
// would only serve to overflow arithmetic.
inline constexpr std::int64_t kMaxNumericDate = std::int64_t{1} << 40;

enum class JwtStatus {
  ok,
  too_large,      // token longer than kMaxTokenBytes (checked before decoding)
  bad_structure,  // not exactly three non-empty dot-separated segments
  bad_base64,     // a segment is not unpadded, canonical base64url
  bad_json,       // header/payload not a UTF-8 JSON object (duplicates, depth…)
  bad_header,     // forbidden or ill-typed header: crit, jku, x5u, x5c, jwk, b64, zip, cty JWT, kid
  alg_not_allowed,    // alg is none/HMAC/unknown, or not in the issuer's allowlist
  key_alg_mismatch,   // the kid names a key bound to another algorithm
  unknown_key,        // no key with that kid (after an allowed refresh), or key set unavailable
  bad_signature,      // signature of wrong shape or that does not verify
  wrong_type,         // typ is missing or not at+jwt (or JWT when allowed)
  wrong_issuer,       // iss missing or not exactly the issuer
  wrong_audience,     // aud missing or without the configured audience
  expired,            // now ≥ exp + skew
  not_yet_valid,      // nbf or iat later than now + skew
  bad_claim,          // ill-typed claim: dates, aud, scope, roles, sub, jti
  lifetime_exceeded,  // exp − iat (or exp − now) above the issuer's max lifetime
  replayed,           // jti already seen (or the replay cache failed: fail closed)
  binding_mismatch,   // RFC 9396 authorization_details do not authorise this job
};

[[nodiscard]] std::string_view to_string(JwtStatus s);
// Lifetime violations and bad dates are token_malformed: the token is not a valid
// access token of this issuer at any time, which neither expired nor not_yet_valid says.
[[nodiscard]] Reason to_reason(JwtStatus s);

struct JwtFailure {
  JwtStatus status;
  std::string detail;
};

// A token that passed structural checks; nothing in it is authenticated yet.
struct ParsedJwt {
  std::string_view signing_input;  // "header.payload", a view into the caller's token
  std::string signature;           // decoded bytes
  Json header;
  Json payload;
  std::string alg_name;       // as written, for messages
  std::optional<JwsAlg> alg;  // nullopt: none/HMAC/unknown (rejected later)
  std::string kid;            // empty when absent
};

// Structural parsing (size, segments, base64url, JSON, forbidden headers, kid shape).
// Header policy: crit, jku, x5u, x5c, jwk, zip, enc, b64:false and cty JWT are refused
// (bad_header) rather than ignored, so no later change can start honouring them; x5t is
// tolerated (some IdPs always send it) but never used. A token without kid selects only a
// JWKS key without kid. An unknown alg is not an error here: verification reports it as
// alg_not_allowed.
[[nodiscard]] std::expected<ParsedJwt, JwtFailure> parse_jwt(std::string_view token);

// Verifies `signature` over `input` with `key` used as `alg`. Enforces the exact
// signature shapes (RSA length = modulus length, ECDSA 64/96-byte r‖s with 0 < r,s < n,
// Ed25519 64 bytes) before OpenSSL sees anything.
[[nodiscard]] bool verify_jws_signature(JwsAlg alg, EVP_PKEY* key, std::string_view input,
                                        std::string_view signature);

// Replay protection: remembers (iss, jti) until the token's exp.
class ReplayCache {
 public:
  virtual ~ReplayCache() = default;
  // True if (iss, jti) was seen before (or cannot be recorded: fail closed); otherwise
  // records it until `exp` and returns false.
  [[nodiscard]] virtual bool seen_or_insert(std::string_view iss, std::string_view jti,
                                            TimePoint exp) = 0;
};

// Append-only file "<dir>/jti-replay" of "<exp-seconds> <sha256-hex(iss NUL jti)>" lines,
// fsync'd on every insert so a restart does not reopen the replay window; compacted
// (expired entries dropped) when opened. A write that fails half-way is cut back
// before the next append, and a line that still starts with torn bytes keeps its
// entry on reload, so a torn write never hides a later jti. Thread-safe.
class FileReplayCache final : public ReplayCache {
 public:
  // `clock` must outlive the cache. `retention` keeps entries past exp to cover skew.
  [[nodiscard]] static Result<std::unique_ptr<FileReplayCache>> open(
      const std::filesystem::path& dir, const Clock& clock,
      std::chrono::seconds retention = std::chrono::seconds(300),
      std::size_t max_entries = 100'000);
  ~FileReplayCache() override;
  FileReplayCache(const FileReplayCache&) = delete;
  FileReplayCache& operator=(const FileReplayCache&) = delete;

  [[nodiscard]] bool seen_or_insert(std::string_view iss, std::string_view jti,
                                    TimePoint exp) override;
  [[nodiscard]] std::size_t size() const;

 private:
  FileReplayCache(int fd, const Clock& clock, std::chrono::seconds retention,
                  std::size_t max_entries, std::unordered_map<std::string, std::int64_t> entries);
  void prune_locked(std::int64_t now_s);

  int fd_;
  const Clock& clock_;
  std::chrono::seconds retention_;
  std::size_t max_entries_;
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::int64_t> entries_;  // key hash → keep-until seconds
  std::size_t inserts_since_prune_ = 0;
  off_t file_size_ = 0;  // bytes of whole lines in the file
  bool torn_ = false;    // a failed write left a partial line past file_size_
};

// One trusted issuer (agent.yaml auth.oauth[]).
struct IssuerPolicy {
  std::string issuer;    // exact `iss`
  std::string audience;  // must appear in `aud`
  std::vector<JwsAlg> algorithms{JwsAlg::rs256, JwsAlg::ps256, JwsAlg::es256, JwsAlg::es384,
                                 JwsAlg::eddsa};
  std::string scope_claim = "scope";
  std::string roles_claim = "roles";
  std::chrono::seconds max_lifetime{3600};
  std::chrono::seconds skew{60};
  bool accept_jwt_typ = false;  // also accept typ "JWT" (IdPs that do not set at+jwt)
  // A token with authorization_details is always held to them (runbook, params,
  // locations). This flag makes a token *without* them unacceptable.
  bool require_authorization_details = false;
  // Binds every token to one agent: its authorization_details must carry `locations`
  // naming agent_name (a tag does not count: it names a group). Without it, a token
  // that names no location runs once on every agent that trusts the issuer, since each
  // agent's jti replay cache is its own.
  bool require_locations = false;
  std::string authorization_details_type = "delegate_runbook";
  std::string agent_name;               // matched against authorization_details locations
  std::vector<std::string> agent_tags;  // ditto
};

struct JwtVerified {
  std::string issuer;
  std::string subject;  // sub, else client_id
  std::string jti;
  std::vector<std::string> scopes;
  std::vector<std::string> roles;
};

using JwtResult = std::expected<JwtVerified, JwtFailure>;

// What claims checking needs besides the token. `job` is required when the issuer
// requires authorization_details; `replay` may be null (then jti is optional).
struct VerifyContext {
  TimePoint now;
  const Job* job = nullptr;
  ReplayCache* replay = nullptr;
};

// Everything after parsing for an already-selected key: alg allowlist, key/alg binding,
// signature, then claims (typ, iss, aud, dates, lifetime, subject, scopes, roles,
// binding) and finally replay (so a rejected token never consumes its jti).
[[nodiscard]] JwtResult verify_parsed(const ParsedJwt& jwt, const Jwk& key,
                                      const IssuerPolicy& policy, const VerifyContext& ctx);

// One-shot verification against a fixed key set.
[[nodiscard]] JwtResult verify_jwt(std::string_view token, const JwkSet& jwks,
                                   const IssuerPolicy& policy, const VerifyContext& ctx);

[[nodiscard]] TokenCheck to_token_check(const JwtResult& r);

}  // namespace delegate::policies
