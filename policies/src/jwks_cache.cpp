#include <delegate/policies/jwks.hpp>

#include <delegate/common/log.hpp>
#include <exception>

namespace delegate::policies {

JwksCache::JwksCache(Fetch fetch, const Clock& clock, std::vector<JwsAlg> issuer_algs,
                     JwksCacheOptions options)
    : fetch_(std::move(fetch)), clock_(clock), algs_(std::move(issuer_algs)), options_(options) {}

JwksCache::JwksCache(JwksSource& source, const Clock& clock, std::vector<JwsAlg> issuer_algs,
                     JwksCacheOptions options)
    : JwksCache([&source] { return source.fetch(); }, clock, std::move(issuer_algs), options) {}

bool JwksCache::may_fetch_locked(TimePoint now) const {
  // The interval also bounds retries after failures and after a clock step backwards
  // (now < last attempt), so no input can make the agent fetch in a loop.
  if (!last_attempt_) return true;
  return now >= *last_attempt_ + options_.min_refresh_interval;
}

void JwksCache::refresh_locked(TimePoint now) {
  last_attempt_ = now;
  ++fetches_;
  Result<std::string> doc = [&]() -> Result<std::string> {
    if (!fetch_) return fail(Errc::internal, "no JWKS fetch function");
    try {
      return fetch_();
    } catch (const std::exception& e) {
      return fail(Errc::internal, std::string("JWKS fetch threw: ") + e.what());
    }
  }();
  if (!doc) {
    last_error_ = "JWKS fetch failed: " + doc.error().message;
    log::error("oauth", last_error_);
    return;
  }
  auto set = parse_jwks(*doc, algs_);
  if (!set) {
    // Keep the last good set: a broken publication must not lock everyone out at once.
    last_error_ = "JWKS rejected: " + set.error().message;
    log::error("oauth", last_error_);
    return;
  }
  last_error_.clear();
  // Operators need to know why a published key is not used (weak, wrong use, …).
  for (const auto& why : set->ignored) log::warn("oauth", "JWKS key ignored: " + why);
  set_ = std::make_shared<const JwkSet>(std::move(*set));
  fetched_at_ = now;
}

KeyLookup JwksCache::lookup(std::string_view kid) {
  const TimePoint now = clock_.now();
  // The lock is held across the fetch on purpose: concurrent lookups for a new kid wait
  // for the one refresh instead of each starting their own.
  std::lock_guard lock(mu_);
  const bool too_old = !fetched_at_ || now >= *fetched_at_ + options_.max_age || now < *fetched_at_;
  if (too_old && may_fetch_locked(now)) refresh_locked(now);

  KeyLookup out;
  if (!set_ || !fetched_at_) {
    out.status = KeyLookupStatus::unavailable;
    out.detail =
        "no key set available" + (last_error_.empty() ? std::string() : " (" + last_error_ + ")");
    return out;
  }
  const Jwk* k = set_->find(kid);
  // Unknown kid: maybe the issuer rotated. One refresh per interval, whatever the kid.
  if (k == nullptr && may_fetch_locked(now)) {
    refresh_locked(now);
    k = set_->find(kid);
  }
  if (now > *fetched_at_ + options_.max_staleness) {
    // Fail closed: an issuer that cannot be reached for this long may have revoked keys.
    out.status = KeyLookupStatus::unavailable;
    out.detail = "key set older than the maximum staleness" +
                 (last_error_.empty() ? std::string() : " (" + last_error_ + ")");
    return out;
  }
  if (k == nullptr) {
    out.status = KeyLookupStatus::unknown_kid;
    out.detail = "no key with this kid in the issuer's key set";
    return out;
  }
  out.status = KeyLookupStatus::found;
  out.key = *k;
  return out;
}

std::size_t JwksCache::fetch_count() const {
  std::lock_guard lock(mu_);
  return fetches_;
}

std::vector<std::string> JwksCache::diagnostics() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  if (set_) out = set_->ignored;
  if (!last_error_.empty()) out.push_back(last_error_);
  return out;
}

}  // namespace delegate::policies
