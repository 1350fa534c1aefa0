#include <delegate/policies/authorizer.hpp>

#include <algorithm>

#include <delegate/common/crypto.hpp>

namespace delegate::policies {
namespace {

Decision deny(Decision d, Reason r, std::string detail) {
  d.allow = false;
  d.reason = r;
  d.detail = std::move(detail);
  d.runbook = nullptr;
  d.params = Json();
  return d;
}

bool holds(const std::vector<std::string>& have, const std::string& want) {
  return std::find(have.begin(), have.end(), want) != have.end();
}

std::string_view method_of(CredentialType t) {
  switch (t) {
    case CredentialType::none: return "none";
    case CredentialType::oauth: return "oauth";
    case CredentialType::api_key: return "api_key";
  }
  return "none";
}

}  // namespace

Json to_json(const Decision& d) {
  Json j = Json::object();
  j["decision"] = d.allow ? "allow" : "deny";
  if (d.reason) j["reason"] = std::string(to_string(*d.reason));
  if (!d.detail.empty()) j["detail"] = d.detail;
  j["method"] = d.method;
  j["subject"] = d.subject;
  if (!d.issuer.empty()) j["issuer"] = d.issuer;
  j["scopes"] = d.scopes;
  j["roles"] = d.roles;
  j["credential_sha256"] = d.credential_fingerprint;
  // What the job will hand out, by name only (values never reach a decision; step.start
  // adds the keyed fingerprint of what each step actually received).
  if (d.allow && d.runbook != nullptr) {
    Json received = Json::array();
    for (std::size_t i = 0; i < d.runbook->steps.size(); ++i) {
      const auto& st = d.runbook->steps[i];
      if (!st.secrets.empty()) received.push_back(Json{{"step", st.name}, {"index", i}, {"secrets", st.secrets}});
    }
    if (!received.empty()) j["step_secrets"] = std::move(received);
  }
  return j;
}

Authorizer::Authorizer(const Catalog& catalog, const ApiKeyStore& keys, AuthorizerOptions options)
    : catalog_(catalog), keys_(keys), options_(options) {}

Decision Authorizer::decide(const Job& job, TimePoint now) const {
  Decision d;
  d.method = std::string(method_of(job.credential.type));
  // The fingerprint lets auditors correlate jobs by credential without the secret.
  if (!job.credential.secret.empty()) d.credential_fingerprint = sha256_hex(job.credential.secret);

  if (!job.malformed.empty()) {
    return deny(std::move(d), job.malformed_authorization ? Reason::token_malformed : Reason::invalid_params,
                job.malformed);
  }
  if (job.credential.type == CredentialType::none) {
    return deny(std::move(d), Reason::no_authorization, "the job carries no credential");
  }
  // This agent runs catalog runbooks only. A job that sends steps of its own is refused
  // rather than having them silently replaced by the catalog runbook of the same name.
  if (job.has_inline_steps) {
    return deny(std::move(d), Reason::inline_not_allowed, "inline steps are not allowed by local policy");
  }

  switch (job.credential.type) {
    case CredentialType::none:
      return deny(std::move(d), Reason::no_authorization, "the job carries no credential");
    case CredentialType::api_key: {
      ApiKeyCheck c = keys_.check(job.credential.secret, now);
      if (c.entry != nullptr) d.subject = c.entry->id;
      if (c.deny) {
        // Unknown id and wrong secret share one message so the detail reveals nothing.
        std::string detail = "no API key matches";
        if (*c.deny == Reason::token_malformed) {
          detail = "the API key is not of the form dlg.<id>.<secret>";
        } else if (*c.deny == Reason::api_key_revoked) {
          detail = "API key " + d.subject + " is revoked";
        } else if (*c.deny == Reason::api_key_expired && c.entry->expires) {
          detail = "API key " + d.subject + " expired at " + format_rfc3339_ms(*c.entry->expires);
        }
        return deny(std::move(d), *c.deny, std::move(detail));
      }
      d.scopes = c.entry->scopes;
      d.roles = c.entry->roles;
      break;
    }
    case CredentialType::oauth: {
      if (options_.oauth == nullptr) {
        return deny(std::move(d), Reason::wrong_issuer, "no OAuth issuer is configured on this agent");
      }
      TokenCheck t = options_.oauth->verify(job.credential.secret, job, now);
      d.subject = t.principal.subject;
      d.issuer = t.principal.issuer;
      if (t.deny) return deny(std::move(d), *t.deny, std::move(t.detail));
      d.scopes = std::move(t.principal.scopes);
      d.roles = std::move(t.principal.roles);
      break;
    }
  }

  const Runbook* rb = catalog_.find(job.runbook);
  if (rb == nullptr) return deny(std::move(d), Reason::unknown_runbook, "runbook is not in the local catalog");
  // Least privilege: a runbook nobody wrote a rule for is not runnable by anyone.
  if (!rb->authorize) return deny(std::move(d), Reason::unknown_runbook, "runbook has no authorize rule (not runnable)");
  for (const auto& s : rb->authorize->scopes) {
    if (!holds(d.scopes, s)) return deny(std::move(d), Reason::missing_scope, "missing scope " + s);
  }
  if (!rb->authorize->roles.empty()) {
    bool any = std::any_of(rb->authorize->roles.begin(), rb->authorize->roles.end(),
                           [&](const std::string& r) { return holds(d.roles, r); });
    if (!any) return deny(std::move(d), Reason::role_not_allowed, "none of the runbook's roles is held");
  }
  auto params = validate_params(*rb, job.params);
  if (!params) return deny(std::move(d), Reason::invalid_params, params.error().message);

  d.allow = true;
  d.reason.reset();
  d.runbook = rb;
  d.params = std::move(*params);
  return d;
}

}  // namespace delegate::policies
