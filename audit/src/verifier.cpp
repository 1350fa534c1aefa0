#include <delegate/audit/verifier.hpp>

#include <string>

#include <delegate/common/time.hpp>

#include "record_time.hpp"

namespace delegate::audit {
namespace {

RecordFault make_fault(Fault f, std::uint64_t seq, std::string detail) {
  return RecordFault{f, seq, std::move(detail)};
}

bool is_agent_stream_kind(Kind k) {
  switch (k) {
    case Kind::checkpoint:
    case Kind::agent_start:
    case Kind::agent_stop:
      return true;
    case Kind::job_received:
    case Kind::authz_decision:
    case Kind::step_start:
    case Kind::output:
    case Kind::step_end:
    case Kind::net_connect:
    case Kind::job_end:
      return false;
  }
  return false;
}

}  // namespace

std::string_view to_string(Fault f) {
  switch (f) {
    case Fault::malformed: return "malformed";
    case Fault::bad_version: return "bad_version";
    case Fault::bad_hash: return "bad_hash";
    case Fault::bad_signature: return "bad_signature";
    case Fault::broken_chain: return "broken_chain";
    case Fault::gap: return "gap";
    case Fault::duplicate: return "duplicate";
    case Fault::reordered: return "reordered";
    case Fault::foreign_record: return "foreign_record";
    case Fault::time_backwards: return "time_backwards";
    case Fault::truncated: return "truncated";
    case Fault::count_mismatch: return "count_mismatch";
    case Fault::after_end: return "after_end";
    case Fault::misplaced_kind: return "misplaced_kind";
    case Fault::checkpoint_chain_broken: return "checkpoint_chain_broken";
    case Fault::job_missing: return "job_missing";
    case Fault::job_mismatch: return "job_mismatch";
    case Fault::key_mismatch: return "key_mismatch";
  }
  return "unknown";
}

std::optional<RecordFault> check_record(const Record& r, const Ed25519PublicKey& key,
                                        std::uint64_t expected_seq, const std::string& expected_prev) {
  if (r.v != kRecordVersion) {
    return make_fault(Fault::bad_version, r.seq, "record version " + std::to_string(r.v) + ", expected 1");
  }
  if (r.seq != expected_seq) {
    const std::string where = "seq " + std::to_string(r.seq) + ", expected " + std::to_string(expected_seq);
    if (r.seq > expected_seq) return make_fault(Fault::gap, r.seq, where);
    // The immediately preceding seq again is a repeat; anything older is out of order.
    if (r.seq + 1 == expected_seq) return make_fault(Fault::duplicate, r.seq, where);
    return make_fault(Fault::reordered, r.seq, where);
  }
  if (r.prev != expected_prev) {
    return make_fault(Fault::broken_chain, r.seq,
                      r.seq == 0 ? "prev is not the genesis value for this agent and job"
                                 : "prev does not match the hash of seq " + std::to_string(r.seq - 1));
  }
  auto h = compute_hash(r);
  if (!h) return make_fault(Fault::malformed, r.seq, h.error().message);
  if (hex_encode(*h) != r.hash) return make_fault(Fault::bad_hash, r.seq, "hash does not match the record content");
  auto sig = base64url_decode(r.sig);
  if (!sig || sig->size() != 64) return make_fault(Fault::bad_signature, r.seq, "signature is not 64 bytes of base64url");
  if (!ed25519_verify(key, *h, *sig)) {
    return make_fault(Fault::bad_signature, r.seq, "signature does not verify under the pinned key");
  }
  return std::nullopt;
}

std::optional<RecordFault> ChainVerifier::push(const Record& r) {
  try {
    if (count_ == 0) {
      agent_ = r.agent;
      job_ = r.job;
      prev_ = genesis_prev(agent_, job_);
    } else if (r.agent != agent_) {
      return make_fault(Fault::foreign_record, r.seq, "record of agent \"" + r.agent.substr(0, 64) + "\" in a stream of agent \"" + agent_ + "\"");
    } else if (r.job != job_) {
      return make_fault(Fault::foreign_record, r.seq, "record of job \"" + r.job.substr(0, 64) + "\" in the stream of job \"" + job_ + "\"");
    }
    // Only the next seq is "after the end"; an older seq is a repeat, which the seq
    // checks below name more precisely (duplicate or reordered).
    if (ended_ && r.seq == count_) {
      return make_fault(Fault::after_end, r.seq, "record after job.end at seq " + std::to_string(count_ - 1));
    }
    if (auto f = check_record(r, key_, count_, prev_)) return f;

    // Only a correctly signed record gets here, so the remaining faults are the
    // signer's own: a wrong clock, a wrong count, a kind in the wrong stream.
    const bool agent_stream = job_ == kAgentStreamJob;
    if (is_agent_stream_kind(r.kind) != agent_stream) {
      return make_fault(Fault::misplaced_kind, r.seq,
                        "kind " + std::string(to_string(r.kind)) + " does not belong in " +
                            (agent_stream ? "the agent stream" : "a job stream"));
    }
    auto ts = detail::parse_record_ts(r.ts);
    if (!ts) return make_fault(Fault::malformed, r.seq, "ts is not an RFC 3339 date-time between 1970 and 2200");
    if (count_ > 0) {
      auto last = detail::parse_record_ts(last_ts_);
      if (last && *ts < *last) {
        return make_fault(Fault::time_backwards, r.seq, "ts " + r.ts + " is before " + last_ts_);
      }
    }
    if (r.kind == Kind::job_end) {
      const std::uint64_t total = count_ + 1;
      auto it = r.data.find("records");
      if (it == r.data.end() || !it->is_number_integer() || *it != Json(total)) {
        return make_fault(Fault::count_mismatch, r.seq,
                          "job.end records " + (it == r.data.end() ? std::string("missing") : it->dump()) +
                              ", stream has " + std::to_string(total));
      }
      ended_ = true;
      if (auto st = r.data.find("status"); st != r.data.end() && st->is_string()) status_ = st->get<std::string>();
    }
    ++count_;
    prev_ = r.hash;
    last_ts_ = r.ts;
    return std::nullopt;
  } catch (const std::exception& e) {
    return make_fault(Fault::malformed, r.seq, std::string("record rejected: ") + e.what());
  }
}

std::optional<RecordFault> ChainVerifier::finish(bool allow_incomplete) const {
  if (allow_incomplete || ended_) return std::nullopt;
  if (count_ == 0) return make_fault(Fault::truncated, 0, "no records");
  // The agent stream never ends, so it may stop anywhere; a cut tail of it is the one
  // truncation an export cannot show (docs/audit.md, "What verification cannot detect").
  if (job_ == kAgentStreamJob) return std::nullopt;
  return make_fault(Fault::truncated, count_ - 1,
                    "stream ends at seq " + std::to_string(count_ - 1) + " without job.end");
}

}  // namespace delegate::audit
