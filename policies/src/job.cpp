#include <delegate/policies/job.hpp>

#include <algorithm>

#include <delegate/common/strict.hpp>

#include <delegate/audit/jcs.hpp>
#include <delegate/common/crypto.hpp>

namespace delegate::policies {
namespace {

constexpr std::size_t kMaxIncident = 256;
constexpr std::size_t kMaxRunbookName = 256;
constexpr std::size_t kMaxSecret = 64 * 1024;
constexpr std::int64_t kMaxTimeout = 86400;

bool valid_job_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
           c == '_' || c == '.' || c == '-';
  });
}


// Returns an error message, or empty when the authorization member is well-formed.
std::string parse_credential(const Json& a, Credential& out) {
  if (!a.is_object()) return "authorization must be an object";
  auto type = a.find("type");
  if (type == a.end() || !type->is_string()) return "authorization.type must be a string";
  const auto& t = type->get_ref<const std::string&>();
  const char* secret_member = nullptr;
  if (t == "oauth") {
    out.type = CredentialType::oauth;
    secret_member = "token";
  } else if (t == "api_key") {
    out.type = CredentialType::api_key;
    secret_member = "key";
  } else {
    out.type = CredentialType::none;
    return "authorization.type must be \"oauth\" or \"api_key\"";
  }
  if (auto r = json_only_members(a, "authorization", {"type", secret_member}); !r) return r.error().message;
  auto secret = a.find(secret_member);
  if (secret == a.end() || !secret->is_string() || secret->get_ref<const std::string&>().empty()) {
    return std::string("authorization.") + secret_member + " must be a non-empty string";
  }
  if (secret->get_ref<const std::string&>().size() > kMaxSecret) {
    return std::string("authorization.") + secret_member + " is too long";
  }
  out.secret = secret->get<std::string>();
  return {};
}

}  // namespace

Result<Job> parse_job(const Json& j) {
  if (!j.is_object()) return fail(Errc::parse, "job must be a JSON object");
  auto id = j.find("id");
  if (id == j.end() || !id->is_string()) return fail(Errc::parse, "job.id must be a string");
  if (!valid_job_id(id->get_ref<const std::string&>())) {
    return fail(Errc::parse, "job.id must match [A-Za-z0-9_.-]{1,128}");
  }
  Job job;
  job.id = id->get<std::string>();

  // The first defect wins. The credential is examined first so that a job that is broken
  // in several ways is denied for its credential, the check that would come first.
  auto defect = [&](std::string msg) {
    if (job.malformed.empty()) job.malformed = std::move(msg);
  };

  if (auto a = j.find("authorization"); a != j.end() && !a->is_null()) {
    std::string err = parse_credential(*a, job.credential);
    if (!err.empty()) {
      job.malformed = std::move(err);
      job.malformed_authorization = true;
      job.credential.secret.clear();
    }
  }

  // Unknown members are refused rather than ignored: a field this agent does not
  // understand might carry meaning (a constraint, a binding) it would otherwise drop.
  if (auto r = json_only_members(j, "job", {"id", "runbook", "params", "incident", "timeout_s", "authorization", "steps"});
      !r) {
    defect(r.error().message);
  }

  if (auto rb = j.find("runbook"); rb == j.end() || !rb->is_string()) {
    defect("job.runbook must be a string");
  } else if (rb->get_ref<const std::string&>().empty() || rb->get_ref<const std::string&>().size() > kMaxRunbookName) {
    defect("job.runbook must be 1..256 bytes");
  } else {
    job.runbook = rb->get<std::string>();
  }

  if (auto p = j.find("params"); p != j.end()) {
    if (p->is_object()) {
      job.params = *p;
    } else {
      defect("job.params must be an object");
    }
  }

  if (auto inc = j.find("incident"); inc != j.end() && !inc->is_null()) {
    if (!inc->is_string()) {
      defect("job.incident must be a string");
    } else if (inc->get_ref<const std::string&>().size() > kMaxIncident) {
      defect("job.incident is longer than 256 bytes");
    } else {
      job.incident = inc->get<std::string>();
    }
  }

  if (auto t = j.find("timeout_s"); t != j.end() && !t->is_null()) {
    // is_number_integer() is also true for unsigned values; floats and bools are not.
    if (!t->is_number_integer()) {
      defect("job.timeout_s must be an integer");
    } else if (t->is_number_unsigned() ? t->get<std::uint64_t>() > static_cast<std::uint64_t>(kMaxTimeout)
                                        : (t->get<std::int64_t>() < 0 || t->get<std::int64_t>() > kMaxTimeout)) {
      defect("job.timeout_s must be between 0 and 86400");
    } else {
      job.timeout_s = static_cast<std::uint32_t>(t->get<std::int64_t>());
    }
  }

  job.has_inline_steps = j.contains("steps");
  return job;
}

std::string job_digest(const Json& raw_job) {
  Json j = raw_job;
  // The digest must identify the job without putting a bearer secret into the audit
  // trail: the secret is replaced by its fingerprint, which still binds the digest to
  // the exact credential presented.
  if (j.is_object()) {
    auto a = j.find("authorization");
    if (a != j.end() && a->is_object()) {
      for (const char* member : {"token", "key"}) {
        auto s = a->find(member);
        if (s != a->end() && s->is_string()) *s = "sha256:" + sha256_hex(s->get_ref<const std::string&>());
      }
    }
  }
  auto canonical = audit::canonicalize(j);
  if (canonical) return sha256_hex(*canonical);
  // JCS refuses values it cannot represent exactly (integers beyond 2^53, NaN). Such a
  // job is still received and audited, so fall back to nlohmann's serialisation, which
  // is deterministic (members sorted, no whitespace) though not JCS. A distinct prefix
  // keeps the two digest spaces from colliding.
  return sha256_hex("delegate/v1/non-jcs\n" + j.dump(-1, ' ', false, Json::error_handler_t::replace));
}

}  // namespace delegate::policies
