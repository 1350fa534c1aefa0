#include <delegate/audit/chain.hpp>

#include <utility>

#include "record_time.hpp"

namespace delegate::audit {
namespace {

constexpr std::uint64_t kMaxSeq = std::uint64_t{1} << 53;

}  // namespace

ChainWriter::ChainWriter(const Ed25519PrivateKey& key, const Clock& clock, std::string agent,
                         std::string job)
    : key_(key), clock_(clock), agent_(std::move(agent)), job_(std::move(job)) {
  prev_ = genesis_prev(agent_, job_);
}

ChainWriter::ChainWriter(const Ed25519PrivateKey& key, const Clock& clock, std::string agent,
                         std::string job, std::uint64_t next_seq, std::string last_hash,
                         std::string last_ts)
    : key_(key),
      clock_(clock),
      agent_(std::move(agent)),
      job_(std::move(job)),
      next_seq_(next_seq),
      prev_(std::move(last_hash)),
      last_ts_(std::move(last_ts)) {
  // Resuming at seq 0 means nothing was written yet: the chain starts at genesis.
  if (next_seq_ == 0) {
    prev_ = genesis_prev(agent_, job_);
    last_ts_.clear();
  }
}

Result<Record> ChainWriter::append(Kind kind, Json data) {
  if (!data.is_object()) return fail(Errc::invalid_argument, "audit record data must be a JSON object");
  if (next_seq_ > kMaxSeq) return fail(Errc::conflict, "audit chain exhausted its sequence numbers");

  if (kind == Kind::job_end) {
    // job.end carries the total record count; fill it in or refuse a wrong one, because
    // a wrong count makes the whole job fail verification later.
    const std::uint64_t total = next_seq_ + 1;
    auto it = data.find("records");
    if (it == data.end()) {
      data["records"] = total;
    } else if (!it->is_number_integer() || *it != Json(total)) {
      return fail(Errc::invalid_argument, "job.end \"records\" must equal the record count " + std::to_string(total));
    }
  }

  Record r;
  r.agent = agent_;
  r.job = job_;
  r.seq = next_seq_;
  r.ts = format_rfc3339_ms(clock_.now());
  if (!last_ts_.empty()) {
    auto last = detail::parse_record_ts(last_ts_);
    auto now = detail::parse_record_ts(r.ts);
    if (!last) return fail(Errc::invalid_argument, "resumed chain has an unreadable last timestamp");
    // Verifiers reject a chain whose time goes backwards; a wall clock stepped back
    // (NTP, manual change) must not make our own log look tampered.
    if (now && *now < *last) r.ts = last_ts_;
  }
  r.kind = kind;
  r.data = std::move(data);
  r.prev = prev_;
  auto sealed = seal_sized(r, key_);
  if (!sealed) return std::unexpected(sealed.error());
  const std::size_t size = *sealed;
  if (size > kMaxRecordBytes) {
    // Verifiers refuse such records; better to fail the write than emit an unverifiable log.
    return fail(Errc::too_large, "audit record of " + std::to_string(size) + " bytes exceeds " +
                                     std::to_string(kMaxRecordBytes));
  }

  ++next_seq_;
  prev_ = r.hash;
  last_ts_ = r.ts;
  return r;
}

}  // namespace delegate::audit
