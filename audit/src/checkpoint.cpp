#include <delegate/audit/checkpoint.hpp>

#include <algorithm>
#include <array>
#include <set>

#include <delegate/audit/record.hpp>
#include <delegate/common/strict.hpp>

namespace delegate::audit {
namespace {

// seq and counts are JSON numbers in the hashed form; JCS stops at 2^53.
constexpr std::uint64_t kMaxCount = std::uint64_t{1} << 53;
// Generous for a version string or a hostname (a DNS name is at most 253 bytes).
constexpr std::size_t kMaxVersionBytes = 128;
constexpr std::size_t kMaxHostnameBytes = 255;

constexpr std::array<std::string_view, 6> kFinalStatuses = {"succeeded", "failed",    "denied",
                                                            "timed_out", "cancelled", "interrupted"};

bool is_lower_hex(std::string_view s, std::size_t len) {
  return s.size() == len && std::all_of(s.begin(), s.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
         });
}

std::unexpected<Error> bad(std::string_view what, std::string_view member, std::string_view why) {
  return fail(Errc::parse, std::string(what) + " member \"" + std::string(member) + "\" " + std::string(why));
}

// Exactly `members`, no more and no fewer: an extra member would be signed data that no
// verifier looks at, which is where ambiguity between agent and auditor starts.
Result<void> exact_members(const Json& obj, std::string_view what,
                           std::initializer_list<std::string_view> members) {
  if (!obj.is_object()) return fail(Errc::parse, std::string(what) + " must be a JSON object");
  if (auto r = json_only_members(obj, what, members); !r) return std::unexpected(r.error());
  for (auto m : members) {
    if (!obj.contains(std::string(m))) {
      return fail(Errc::parse, std::string(what) + " lacks member \"" + std::string(m) + "\"");
    }
  }
  return ok();
}

Result<std::string> string_of(const Json& obj, std::string_view what, const char* member) {
  const auto& v = obj.at(member);
  if (!v.is_string()) return bad(what, member, "must be a string");
  return v.get<std::string>();
}

Result<std::string> boot_id_of(const Json& obj, std::string_view what) {
  auto id = string_of(obj, what, "boot_id");
  if (!id) return id;
  if (!is_lower_hex(*id, 32)) return bad(what, "boot_id", "must be 32 lowercase hex digits");
  return id;
}

Result<FinishedJob> parse_finished_job(const Json& entry) {
  constexpr std::string_view what = "checkpoint job entry";
  if (auto m = exact_members(entry, what, {"job", "records", "last_hash", "status"}); !m) {
    return std::unexpected(m.error());
  }
  FinishedJob f;
  auto job = string_of(entry, what, "job");
  if (!job) return std::unexpected(job.error());
  if (job->empty()) return bad(what, "job", "must not be empty");
  if (*job == kAgentStreamJob) return bad(what, "job", "must not name the agent stream");
  f.job = std::move(*job);

  const auto& records = entry.at("records");
  if (!records.is_number_integer()) return bad(what, "records", "must be an integer");
  if (!records.is_number_unsigned() && records.get<std::int64_t>() < 1) return bad(what, "records", "must be at least 1");
  const auto n = records.get<std::uint64_t>();
  if (n < 1 || n > kMaxCount) return bad(what, "records", "must be between 1 and 2^53");
  f.records = n;

  auto last = string_of(entry, what, "last_hash");
  if (!last) return std::unexpected(last.error());
  if (!is_lower_hex(*last, 64)) return bad(what, "last_hash", "must be 64 lowercase hex digits");
  f.last_hash = std::move(*last);

  auto status = string_of(entry, what, "status");
  if (!status) return std::unexpected(status.error());
  if (!is_final_status(*status)) return bad(what, "status", "is not a final job status");
  f.status = std::move(*status);
  return f;
}

}  // namespace

bool is_final_status(std::string_view status) {
  return std::find(kFinalStatuses.begin(), kFinalStatuses.end(), status) != kFinalStatuses.end();
}

std::string new_boot_id() { return hex_encode(random_bytes(16)); }

Json make_agent_start_data(std::string_view boot_id, std::string_view public_key_b64,
                           std::string_view version, std::string_view hostname) {
  return Json{{"boot_id", std::string(boot_id)},
              {"public_key", std::string(public_key_b64)},
              {"version", std::string(version)},
              {"hostname", std::string(hostname)}};
}

Json make_agent_stop_data(std::string_view boot_id) {
  return Json{{"boot_id", std::string(boot_id)}, {"reason", std::string(kStopReasonShutdown)}};
}

Json make_checkpoint_data(std::string_view boot_id, const std::vector<FinishedJob>& jobs) {
  Json list = Json::array();
  for (const auto& j : jobs) {
    list.push_back(Json{{"job", j.job}, {"records", j.records}, {"last_hash", j.last_hash}, {"status", j.status}});
  }
  return Json{{"boot_id", std::string(boot_id)}, {"jobs", std::move(list)}};
}

Result<AgentStart> parse_agent_start_data(const Json& data) {
  constexpr std::string_view what = "agent.start data";
  try {
    if (auto m = exact_members(data, what, {"boot_id", "public_key", "version", "hostname"}); !m) {
      return std::unexpected(m.error());
    }
    AgentStart s;
    auto boot = boot_id_of(data, what);
    if (!boot) return std::unexpected(boot.error());
    s.boot_id = std::move(*boot);

    auto key = string_of(data, what, "public_key");
    if (!key) return std::unexpected(key.error());
    // Standard alphabet with padding only (the strict decoder refuses other spellings),
    // so that one key has one spelling in the signed record.
    auto raw = base64_decode(*key);
    if (!raw || raw->size() != 32) return bad(what, "public_key", "must be standard base64 of 32 bytes");
    std::copy(raw->begin(), raw->end(), s.public_key.begin());

    auto version = string_of(data, what, "version");
    if (!version) return std::unexpected(version.error());
    if (version->empty() || version->size() > kMaxVersionBytes) {
      return bad(what, "version", "must be 1 to 128 bytes");
    }
    s.version = std::move(*version);

    auto host = string_of(data, what, "hostname");
    if (!host) return std::unexpected(host.error());
    // May be empty: an agent whose gethostname() fails still has to start.
    if (host->size() > kMaxHostnameBytes) return bad(what, "hostname", "must be at most 255 bytes");
    s.hostname = std::move(*host);
    return s;
  } catch (const std::exception& e) {
    return fail(Errc::parse, std::string(what) + " rejected: " + e.what());
  }
}

Result<AgentStop> parse_agent_stop_data(const Json& data) {
  constexpr std::string_view what = "agent.stop data";
  try {
    if (auto m = exact_members(data, what, {"boot_id", "reason"}); !m) return std::unexpected(m.error());
    AgentStop s;
    auto boot = boot_id_of(data, what);
    if (!boot) return std::unexpected(boot.error());
    s.boot_id = std::move(*boot);
    auto reason = string_of(data, what, "reason");
    if (!reason) return std::unexpected(reason.error());
    if (*reason != kStopReasonShutdown) return bad(what, "reason", "must be \"shutdown\"");
    s.reason = std::move(*reason);
    return s;
  } catch (const std::exception& e) {
    return fail(Errc::parse, std::string(what) + " rejected: " + e.what());
  }
}

Result<Checkpoint> parse_checkpoint_data(const Json& data) {
  constexpr std::string_view what = "checkpoint data";
  try {
    if (auto m = exact_members(data, what, {"boot_id", "jobs"}); !m) return std::unexpected(m.error());
    Checkpoint c;
    auto boot = boot_id_of(data, what);
    if (!boot) return std::unexpected(boot.error());
    c.boot_id = std::move(*boot);
    const auto& jobs = data.at("jobs");
    if (!jobs.is_array()) return bad(what, "jobs", "must be an array");
    // An empty list is allowed: a periodic checkpoint with nothing finished still
    // extends the agent chain.
    std::set<std::string> seen;
    for (const auto& entry : jobs) {
      auto f = parse_finished_job(entry);
      if (!f) return std::unexpected(f.error());
      // A job finishes once; listing it twice would let the two entries disagree.
      if (!seen.insert(f->job).second) {
        return bad(what, "jobs", "lists job \"" + f->job.substr(0, 64) + "\" twice");
      }
      c.jobs.push_back(std::move(*f));
    }
    return c;
  } catch (const std::exception& e) {
    return fail(Errc::parse, std::string(what) + " rejected: " + e.what());
  }
}

}  // namespace delegate::audit
