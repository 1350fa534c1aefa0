#include <delegate/audit/record.hpp>

#include <array>
#include <string>

#include <delegate/audit/jcs.hpp>
#include <delegate/common/time.hpp>
#include <delegate/common/strict.hpp>

#include "record_time.hpp"

namespace delegate::audit {
namespace {

constexpr std::array kAllKinds = {
    Kind::job_received, Kind::authz_decision, Kind::step_start, Kind::output,      Kind::step_end,
    Kind::job_end,      Kind::checkpoint,     Kind::agent_start, Kind::agent_stop,  Kind::net_connect,
};

constexpr std::array<const char*, 10> kMembers = {"v",    "agent", "job",  "seq",  "ts",
                                                  "kind", "data",  "prev", "hash", "sig"};

// seq is a JSON number in the hashed form; beyond 2^53 JCS cannot represent it.
constexpr std::uint64_t kMaxSeq = std::uint64_t{1} << 53;
constexpr std::size_t kSigChars = 86;  // 64 bytes, base64url without padding

bool is_lower_hex64(const std::string& s) {
  if (s.size() != 64) return false;
  for (char c : s) {
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  }
  return true;
}

std::unexpected<Error> bad_member(const char* name, const std::string& why) {
  return fail(Errc::parse, std::string("record member \"") + name + "\" " + why);
}

Result<std::string> string_member(const Json& j, const char* name) {
  const auto& v = j.at(name);
  if (!v.is_string()) return bad_member(name, "must be a string");
  return v.get<std::string>();
}

}  // namespace

std::string_view to_string(Kind k) {
  switch (k) {
    case Kind::job_received: return "job.received";
    case Kind::authz_decision: return "authz.decision";
    case Kind::step_start: return "step.start";
    case Kind::output: return "output";
    case Kind::step_end: return "step.end";
    case Kind::job_end: return "job.end";
    case Kind::checkpoint: return "checkpoint";
    case Kind::agent_start: return "agent.start";
    case Kind::agent_stop: return "agent.stop";
    case Kind::net_connect: return "net.connect";
  }
  return "unknown";  // unreachable for valid enumerators; -Wswitch flags new ones
}

std::optional<Kind> parse_kind(std::string_view s) {
  for (Kind k : kAllKinds) {
    if (to_string(k) == s) return k;
  }
  return std::nullopt;
}

std::string genesis_prev(std::string_view agent, std::string_view job) {
  std::string seed = "delegate/v1/genesis\n";
  seed.append(agent);
  seed.push_back('\n');
  seed.append(job);
  return sha256_hex(seed);
}

Json to_json(const Record& r) {
  Json j = Json::object();
  j["v"] = r.v;
  j["agent"] = r.agent;
  j["job"] = r.job;
  j["seq"] = r.seq;
  j["ts"] = r.ts;
  j["kind"] = std::string(to_string(r.kind));
  j["data"] = r.data;
  j["prev"] = r.prev;
  j["hash"] = r.hash;
  j["sig"] = r.sig;
  return j;
}

std::string serialize(const Record& r) {
  const Json j = to_json(r);
  if (auto text = canonicalize(j)) return std::move(*text);
  // Only a record that could never have been sealed (invalid UTF-8, NaN, seq > 2^53)
  // gets here; emit something parseable that the verifier will then reject.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Result<Record> record_from_json(const Json& j) {
  try {
    if (!j.is_object()) return fail(Errc::parse, "record is not a JSON object");
    if (auto r = json_only_members(j, "record", kMembers); !r) return std::unexpected(r.error());
    for (const char* m : kMembers) {
      if (!j.contains(m)) return fail(Errc::parse, std::string("record lacks member \"") + m + "\"");
    }

    Record r;
    const auto& v = j.at("v");
    if (!v.is_number_integer()) return bad_member("v", "must be an integer");
    if (v.is_number_unsigned() ? v.get<std::uint64_t>() != kRecordVersion
                               : v.get<std::int64_t>() != kRecordVersion) {
      // Worded distinctly so callers can tell a version mismatch from a malformed record.
      return fail(Errc::parse, "unsupported record version " + v.dump() + " (expected 1)");
    }
    r.v = kRecordVersion;

    auto agent = string_member(j, "agent");
    if (!agent) return std::unexpected(agent.error());
    if (agent->empty()) return bad_member("agent", "must not be empty");
    r.agent = std::move(*agent);

    auto job = string_member(j, "job");
    if (!job) return std::unexpected(job.error());
    if (job->empty()) return bad_member("job", "must not be empty");
    r.job = std::move(*job);

    const auto& seq = j.at("seq");
    if (!seq.is_number_integer()) return bad_member("seq", "must be an integer");
    if (!seq.is_number_unsigned() && seq.get<std::int64_t>() < 0) return bad_member("seq", "must not be negative");
    const auto seq_value = seq.is_number_unsigned() ? seq.get<std::uint64_t>()
                                                    : static_cast<std::uint64_t>(seq.get<std::int64_t>());
    if (seq_value > kMaxSeq) return bad_member("seq", "exceeds 2^53");
    r.seq = seq_value;

    auto ts = string_member(j, "ts");
    if (!ts) return std::unexpected(ts.error());
    if (!detail::parse_record_ts(*ts)) return bad_member("ts", "is not an RFC 3339 date-time between 1970 and 2200");
    r.ts = std::move(*ts);

    auto kind = string_member(j, "kind");
    if (!kind) return std::unexpected(kind.error());
    auto k = parse_kind(*kind);
    if (!k) return bad_member("kind", "is not a known record kind");
    r.kind = *k;

    const auto& data = j.at("data");
    if (!data.is_object()) return bad_member("data", "must be an object");
    r.data = data;

    for (auto [name, field] : {std::pair{"prev", &r.prev}, std::pair{"hash", &r.hash}}) {
      auto s = string_member(j, name);
      if (!s) return std::unexpected(s.error());
      if (!is_lower_hex64(*s)) return bad_member(name, "must be 64 lowercase hex digits");
      *field = std::move(*s);
    }

    auto sig = string_member(j, "sig");
    if (!sig) return std::unexpected(sig.error());
    auto raw = base64url_decode(*sig);
    if (sig->size() != kSigChars || !raw || raw->size() != 64) {
      return bad_member("sig", "must be 86 base64url characters (64 bytes, no padding)");
    }
    r.sig = std::move(*sig);
    return r;
  } catch (const std::exception& e) {
    return fail(Errc::parse, std::string("record rejected: ") + e.what());
  }
}

Result<Record> parse_record(std::string_view line) {
  // Cap before parsing: the parser's own cost is then bounded too.
  if (line.size() > kMaxRecordBytes) {
    return fail(Errc::too_large, "record of " + std::to_string(line.size()) + " bytes exceeds " +
                                     std::to_string(kMaxRecordBytes));
  }
  auto j = parse_json_strict(line, JsonLimits{.max_bytes = kMaxRecordBytes, .max_depth = 32});
  if (!j) return std::unexpected(j.error());
  return record_from_json(*j);
}

namespace {

// The canonical form hashed: the record without "hash" and "sig".
Result<std::string> hashed_text(const Record& r) {
  try {
    Json j = to_json(r);
    j.erase("hash");
    j.erase("sig");
    return canonicalize(j);
  } catch (const std::exception& e) {
    return fail(Errc::internal, std::string("hashing record failed: ") + e.what());
  }
}

// `,"hash":"<64 hex>"` and `,"sig":"<86 base64url>"`: what serialize() adds to the
// hashed form (each member with its comma; the form has other members on both sides).
constexpr std::size_t kSealMembersBytes = (1 + 7 + 66) + (1 + 6 + 88);

}  // namespace

Result<Sha256> compute_hash(const Record& r) {
  auto text = hashed_text(r);
  if (!text) return std::unexpected(text.error());
  return sha256(*text);
}

Result<std::size_t> seal_sized(Record& r, const Ed25519PrivateKey& key) {
  auto text = hashed_text(r);
  if (!text) return std::unexpected(text.error());
  const Sha256 h = sha256(*text);
  const auto sig = key.sign(h);
  r.hash = hex_encode(h);
  r.sig = base64url_encode(sig);
  return text->size() + kSealMembersBytes;
}

Result<void> seal(Record& r, const Ed25519PrivateKey& key) {
  auto sized = seal_sized(r, key);
  if (!sized) return std::unexpected(sized.error());
  return ok();
}

}  // namespace delegate::audit
