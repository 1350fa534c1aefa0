#pragma once
// JSON Web Key Sets (RFC 7517) for access-token verification. Every usable key is bound
// to exactly ONE JWS algorithm when the set is parsed, so a token can never choose how
// a key is used (the classic RS256→HS256 and RS256↔PS256 confusions).
#include <chrono>
#include <cstddef>
#include <delegate/common/error.hpp>
#include <delegate/common/time.hpp>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

typedef struct evp_pkey_st EVP_PKEY;

namespace delegate::policies {

// The only JWS algorithms the agent implements. No HMAC and no `none` exist here, so
// they cannot be enabled by configuration either.
enum class JwsAlg {
  rs256,  // RSASSA-PKCS1-v1_5 with SHA-256
  ps256,  // RSASSA-PSS, SHA-256, MGF1(SHA-256), salt length 32
  es256,  // ECDSA P-256, SHA-256, r‖s
  es384,  // ECDSA P-384, SHA-384, r‖s
  eddsa,  // Ed25519
};

[[nodiscard]] std::string_view to_string(JwsAlg a);
// Exact, case-sensitive JOSE names ("RS256", ..., "EdDSA"); anything else is nullopt.
[[nodiscard]] std::optional<JwsAlg> parse_jws_alg(std::string_view name);

// A verification key and the one algorithm it may be used with.
struct Jwk {
  std::string kid;  // may be empty: then only a token without `kid` selects it
  JwsAlg alg = JwsAlg::rs256;
  std::shared_ptr<EVP_PKEY> key;  // public key only
};

struct JwkSet {
  std::vector<Jwk> keys;
  // One line per ignored key ("kid \"x\": RSA key of 1024 bits is below 2048"), for the
  // operator log; a weak key is not an error because IdPs publish mixed sets.
  std::vector<std::string> ignored;

  [[nodiscard]] const Jwk* find(std::string_view kid) const;
};

inline constexpr std::size_t kMaxJwksBytes = 256u * 1024;
inline constexpr std::size_t kMaxJwksKeys = 64;
inline constexpr std::size_t kMaxKidBytes = 256;

// Parses a JWKS document. `issuer_algs` is the issuer's allowlist: keys bound to an
// algorithm outside it are ignored, and an RSA key without `alg` is usable only when the
// allowlist names exactly one RSA algorithm (otherwise its use would be ambiguous).
// Errors (Errc::parse / too_large) only when the document as a whole is unusable.
[[nodiscard]] Result<JwkSet> parse_jwks(std::string_view text, std::span<const JwsAlg> issuer_algs);

// Where a JWKS document comes from. The file implementation is here; an HTTPS fetcher
// (TLS 1.3, CA-checked) implements the same interface.
class JwksSource {
 public:
  virtual ~JwksSource() = default;
  // Returns the raw document; called only by JwksCache, never because of token content.
  [[nodiscard]] virtual Result<std::string> fetch() = 0;
};

class FileJwksSource final : public JwksSource {
 public:
  explicit FileJwksSource(std::filesystem::path path) : path_(std::move(path)) {}
  [[nodiscard]] Result<std::string> fetch() override;

 private:
  std::filesystem::path path_;
};

struct JwksCacheOptions {
  std::chrono::seconds max_age{300};              // refetch a good set after this long
  std::chrono::seconds min_refresh_interval{30};  // at most one fetch per interval
  std::chrono::seconds max_staleness{24 * 3600};  // past this, fail closed
};

// Outcome of a key lookup.
enum class KeyLookupStatus {
  found,        // `key` is set
  unknown_kid,  // the (fresh enough) set has no such kid, even after an allowed refresh
  unavailable,  // no set was ever fetched, or the last good one is older than max_staleness
};

struct KeyLookup {
  KeyLookupStatus status = KeyLookupStatus::unavailable;
  std::optional<Jwk> key;
  std::string detail;  // for operators; never token content beyond a bounded kid
};

// Caches the parsed set of one issuer. Refreshes when the set is older than max_age or
// a kid is unknown, but never more than once per min_refresh_interval (so a burst of
// random kids cannot turn the agent into a request amplifier); a failed refresh keeps
// the last good set until it is max_staleness old. Thread-safe.
class JwksCache {
 public:
  using Fetch = std::function<Result<std::string>()>;

  // `clock` must outlive the cache.
  JwksCache(Fetch fetch, const Clock& clock, std::vector<JwsAlg> issuer_algs,
            JwksCacheOptions options = {});
  // Convenience: `source` must outlive the cache.
  JwksCache(JwksSource& source, const Clock& clock, std::vector<JwsAlg> issuer_algs,
            JwksCacheOptions options = {});

  [[nodiscard]] KeyLookup lookup(std::string_view kid);

  // Number of fetch attempts so far (for tests and metrics).
  [[nodiscard]] std::size_t fetch_count() const;
  // Lines describing keys ignored in the current set and the last fetch error, if any.
  [[nodiscard]] std::vector<std::string> diagnostics() const;

 private:
  void refresh_locked(TimePoint now);
  [[nodiscard]] bool may_fetch_locked(TimePoint now) const;

  Fetch fetch_;
  const Clock& clock_;
  std::vector<JwsAlg> algs_;
  JwksCacheOptions options_;

  mutable std::mutex mu_;
  std::shared_ptr<const JwkSet> set_;
  std::optional<TimePoint> fetched_at_;    // last successful fetch
  std::optional<TimePoint> last_attempt_;  // last fetch attempt, good or bad
  std::string last_error_;
  std::size_t fetches_ = 0;
};

}  // namespace delegate::policies
