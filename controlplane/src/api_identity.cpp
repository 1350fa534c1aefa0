// Admin calls for agent identity: enrollment tokens and agent revocation.
#include <tuple>

#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/log.hpp>

#include "api.hpp"
#include "api_internal.hpp"

namespace delegate::controlplane {
using namespace detail;

namespace {

// Ten years: longer-lived tokens should simply not expire.
constexpr std::int64_t kMaxTokenTtlS = 10LL * 365 * 86400;

Json token_json(const EnrollmentToken& t) {
  return Json{{"id", t.id},
              {"description", t.description},
              {"one_time", t.one_time},
              {"expires_ms", t.expires_ms},
              {"tags", t.tags ? *t.tags : Json()},
              {"created_ms", t.created_ms},
              {"uses", t.uses},
              {"last_used_ms", t.last_used_ms},
              {"revoked_ms", t.revoked_ms}};
}

}  // namespace

Response Api::create_enrollment_token(const Request& req) {
  auto body = body_object(req);
  if (!body) return error_response(http::status::bad_request, body.error().message);
  if (auto r = only_members(*body, {"description", "one_time", "expires_in_s", "tags"}); !r) {
    return error_response(http::status::bad_request, r.error().message);
  }
  EnrollmentToken t;
  const auto now = now_ms();
  if (auto it = body->find("description"); it != body->end()) {
    if (!it->is_string() || !is_printable(it->get<std::string>(), 256)) {
      return error_response(http::status::bad_request, "\"description\" must be a printable string of at most 256 bytes");
    }
    t.description = it->get<std::string>();
  }
  if (auto it = body->find("one_time"); it != body->end()) {
    if (!it->is_boolean()) return error_response(http::status::bad_request, "\"one_time\" must be a boolean");
    t.one_time = it->get<bool>();
  }
  if (body->contains("expires_in_s")) {
    auto ttl = json_int(*body, "expires_in_s");
    if (!ttl || *ttl < 1 || *ttl > kMaxTokenTtlS) {
      return error_response(http::status::bad_request, "\"expires_in_s\" must be an integer 1.." + std::to_string(kMaxTokenTtlS));
    }
    t.expires_ms = now + *ttl * 1000;
  }
  if (body->contains("tags")) {
    auto tags = string_array(*body, "tags", 32, 64);
    if (!tags) return error_response(http::status::bad_request, tags.error().message);
    t.tags = *tags;
  }
  // The secret is shown once; the store keeps only its hash.
  const std::string secret = "denr_" + base64url_encode(random_bytes(32));
  auto created = store_.create_enrollment_token(t, sha256_hex(secret), now);
  if (!created) return internal_error(created.error());
  log::info("controlplane", "enrollment token " + created->id + " created");
  Json out = token_json(*created);
  out["token"] = secret;
  return json_response(http::status::created, out);
}

Response Api::list_enrollment_tokens() {
  auto tokens = store_.enrollment_tokens();
  if (!tokens) return internal_error(tokens.error());
  Json out = Json::array();
  for (const auto& t : *tokens) out.push_back(token_json(t));
  return json_response(http::status::ok, Json{{"enrollment_tokens", out}});
}

Response Api::get_enrollment_token(const std::string& id) {
  if (!is_id(id)) return error_response(http::status::not_found, "no such enrollment token");
  auto t = store_.enrollment_token(id);
  if (!t) return internal_error(t.error());
  if (!*t) return error_response(http::status::not_found, "no such enrollment token");
  return json_response(http::status::ok, token_json(**t));
}

Response Api::delete_enrollment_token(const std::string& id) {
  if (!is_id(id)) return error_response(http::status::not_found, "no such enrollment token");
  auto found = store_.revoke_enrollment_token(id, now_ms());
  if (!found) return internal_error(found.error());
  if (!*found) return error_response(http::status::not_found, "no such enrollment token");
  log::info("controlplane", "enrollment token " + id + " revoked");
  return get_enrollment_token(id);
}

Response Api::update_agent(const Request& req, const std::string& agent_id) {
  if (!is_id(agent_id)) return error_response(http::status::not_found, "no such agent");
  auto body = body_object(req);
  if (!body) return error_response(http::status::bad_request, body.error().message);
  if (auto r = only_members(*body, {"name", "hostname", "tags"}); !r) {
    return error_response(http::status::bad_request, r.error().message);
  }
  Store::AgentChange change;
  for (const auto& [key, max, field] : {std::tuple{"name", std::size_t{128}, &change.name},
                                        std::tuple{"hostname", std::size_t{255}, &change.hostname}}) {
    auto it = body->find(key);
    if (it == body->end()) continue;
    if (!it->is_string() || it->get<std::string>().empty() || !is_printable(it->get<std::string>(), max)) {
      return error_response(http::status::bad_request, std::string("\"") + key + "\" must be a non-empty printable string");
    }
    *field = it->get<std::string>();
  }
  if (body->contains("tags")) {
    auto tags = string_array(*body, "tags", 32, 64);
    if (!tags) return error_response(http::status::bad_request, tags.error().message);
    change.tags = *tags;
  }
  auto found = store_.update_agent(agent_id, change);
  if (!found) return internal_error(found.error());
  if (!*found) return error_response(http::status::not_found, "no such agent");
  log::info("controlplane", "agent " + agent_id + " updated by an admin");
  auto agent = store_.agent(agent_id);
  if (!agent) return internal_error(agent.error());
  if (!*agent) return error_response(http::status::not_found, "no such agent");
  return json_response(http::status::ok, agent_json(**agent));
}

Response Api::revoke_agent(const std::string& agent_id) {
  if (!is_id(agent_id)) return error_response(http::status::not_found, "no such agent");
  auto interrupted = store_.revoke_agent(agent_id, now_ms());
  if (!interrupted) return internal_error(interrupted.error());
  if (!*interrupted) return error_response(http::status::not_found, "no such agent");
  log::warn("controlplane", "agent " + agent_id + " revoked; " + std::to_string((*interrupted)->size()) +
                                " running job(s) interrupted");
  auto agent = store_.agent(agent_id);
  if (!agent) return internal_error(agent.error());
  if (!*agent) return internal_error(Error{Errc::internal, "revoked agent vanished"});
  Json out = agent_json(**agent);
  out["interrupted_jobs"] = **interrupted;
  return json_response(http::status::ok, out);
}

}  // namespace delegate::controlplane
