#include "api.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <sys/socket.h>

#include <chrono>
#include <ctime>
#include <regex>
#include <vector>

#include <delegate/audit/record.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/log.hpp>

#include "api_internal.hpp"
#include "metrics.hpp"

namespace delegate::controlplane {
namespace asio = boost::asio;

// Also used by the other handler files (api_internal.hpp).
namespace detail {

constexpr std::size_t kMaxRecordsPerBatch = 1000;

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::vector<std::string> split_path(std::string_view target) {
  auto q = target.find('?');
  if (q != std::string_view::npos) target = target.substr(0, q);
  std::vector<std::string> parts;
  std::size_t i = 0;
  while (i < target.size()) {
    if (target[i] == '/') {
      ++i;
      continue;
    }
    auto j = target.find('/', i);
    if (j == std::string_view::npos) j = target.size();
    parts.emplace_back(target.substr(i, j - i));
    i = j;
  }
  return parts;
}

std::string_view bearer(const Request& req) {
  auto it = req.find(http::field::authorization);
  if (it == req.end()) return {};
  std::string_view v(it->value().data(), it->value().size());
  constexpr std::string_view kPrefix = "Bearer ";
  if (v.size() <= kPrefix.size() || v.substr(0, kPrefix.size()) != kPrefix) return {};
  return v.substr(kPrefix.size());
}

bool secret_equal(std::string_view presented, const std::string& expected) {
  // Compare digests so that neither length nor content leaks through timing.
  auto a = sha256(presented);
  auto b = sha256(expected);
  return !presented.empty() && constant_time_equal(a, b);
}

Result<Json> body_object(const Request& req) {
  auto j = parse_json_strict(req.body(), JsonLimits{.max_bytes = 8u << 20, .max_depth = 32});
  if (!j) return j;
  if (!j->is_object()) return fail(Errc::parse, "request body must be a JSON object");
  return j;
}

bool is_id(const std::string& s) {
  if (s.empty() || s.size() > 128) return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  }
  return true;
}

bool is_printable(const std::string& s, std::size_t max) {
  if (s.size() > max) return false;
  for (unsigned char c : s) {
    if (c < 0x20 || c == 0x7f) return false;
  }
  return true;
}

Result<Json> string_array(const Json& obj, const char* key, std::size_t max_items, std::size_t max_len) {
  auto it = obj.find(key);
  if (it == obj.end()) return Json::array();
  if (!it->is_array() || it->size() > max_items) {
    return fail(Errc::parse, std::string("\"") + key + "\" must be an array of at most " + std::to_string(max_items) + " strings");
  }
  for (const auto& v : *it) {
    if (!v.is_string() || v.get<std::string>().empty() || !is_printable(v.get<std::string>(), max_len)) {
      return fail(Errc::parse, std::string("\"") + key + "\" entries must be non-empty printable strings");
    }
  }
  return *it;
}

Result<void> only_members(const Json& obj, std::initializer_list<const char*> allowed) {
  for (auto it = obj.begin(); it != obj.end(); ++it) {
    bool known = false;
    for (const char* a : allowed) known = known || it.key() == a;
    if (!known) return fail(Errc::parse, "unknown member \"" + it.key().substr(0, 64) + "\"");
  }
  return ok();
}

bool is_final_status(const std::string& s) {
  return s == "succeeded" || s == "failed" || s == "denied" || s == "timed_out" || s == "cancelled" ||
         s == "interrupted";
}

Json agent_json(const AgentRow& a) {
  return Json{{"id", a.id},           {"name", a.name},
              {"hostname", a.hostname}, {"tags", a.tags},
              {"version", a.version},   {"public_key", a.public_key},
              {"created_ms", a.created_ms}, {"last_seen_ms", a.last_seen_ms},
              {"revoked_ms", a.revoked_ms}, {"enrollment_token", a.enrollment_token}};
}

Json job_for_agent(const JobRow& j) {
  Json job{{"id", j.id}, {"runbook", j.runbook}, {"params", j.params}, {"incident", j.incident}, {"timeout_s", j.timeout_s}};
  // A job submitted without a credential reaches the agent without one (no_authorization).
  if (j.authorization.is_object()) job["authorization"] = j.authorization;
  return job;
}

Json job_for_admin(const JobRow& j) {
  // The credential is the caller's; the admin API never hands it back out.
  Json auth_summary = Json::object();
  if (j.authorization.is_object() && j.authorization.contains("type")) auth_summary["type"] = j.authorization["type"];
  return Json{{"id", j.id},
              {"runbook", j.runbook},
              {"params", j.params},
              {"incident", j.incident},
              {"timeout_s", j.timeout_s},
              {"selector", Json{{"tags", j.selector_tags}}},
              {"authorization", auth_summary},
              {"status", j.status},
              {"agent_id", j.agent_id},
              {"attempts", j.attempts},
              {"records", j.next_seq},
              {"last_hash", j.last_hash},
              {"cancel_requested", j.cancel_requested},
              {"created_ms", j.created_ms},
              {"updated_ms", j.updated_ms}};
}

Result<Ed25519PublicKey> agent_key(const AgentRow& agent) {
  auto raw = base64_decode(agent.public_key);
  if (!raw || raw->size() != 32) return fail(Errc::internal, "stored agent key is invalid");
  Ed25519PublicKey key{};
  std::copy(raw->begin(), raw->end(), key.begin());
  return key;
}

Response internal_error(const Error& e) {
  log::error("controlplane", e.message);
  return error_response(http::status::internal_server_error, "internal error");
}

}  // namespace detail

using namespace detail;

namespace {

// IMF-fixdate (RFC 9110 section 5.6.7), always in GMT.
std::string http_date_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  ::gmtime_r(&t, &tm);
  char buf[64];
  std::strftime(buf, sizeof buf, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return buf;
}

}  // namespace

Response json_response(http::status status, const Json& body, unsigned version) {
  Response res{status, version};
  res.set(http::field::content_type, "application/json");
  res.set(http::field::cache_control, "no-store");
  // Agents compare their clocks with it (delegate-agent doctor, "clock skew").
  res.set(http::field::date, http_date_now());
  // Error messages may quote client bytes; never let invalid UTF-8 turn into a 500.
  res.body() = body.dump(-1, ' ', false, Json::error_handler_t::replace);
  res.prepare_payload();
  return res;
}

Response error_response(http::status status, const std::string& message, unsigned version) {
  return json_response(status, Json{{"error", message}}, version);
}

bool Api::is_admin(const Request& req) const { return secret_equal(bearer(req), config_.admin_token); }

Result<std::optional<AgentRow>> Api::authenticate_agent(const Request& req) {
  auto token = bearer(req);
  if (token.empty()) return std::optional<AgentRow>();
  return store_.agent_by_token_hash(sha256_hex(token));
}

void Api::notify_jobs() {
  for (auto* t : waiters_) t->cancel();
}

void Api::sweep() {
  auto n = store_.expire_leases(now_ms());
  if (!n) {
    log::error("controlplane", "lease sweep failed: " + n.error().message);
  } else if (*n > 0) {
    log::info("controlplane", "requeued " + std::to_string(*n) + " job(s) whose lease expired");
    notify_jobs();
  }
}

void Api::grant_restart_grace() {
  if (auto r = store_.extend_running_leases(now_ms() + config_.lease.count()); !r) {
    log::error("controlplane", "cannot extend leases at start: " + r.error().message);
  }
}

asio::awaitable<Response> Api::handle(const Request& req, Peer& peer) {
  const auto parts = split_path(std::string_view(req.target().data(), req.target().size()));
  const auto method = req.method();
  const auto n = parts.size();
  const bool post = method == http::verb::post;
  const bool get = method == http::verb::get;

  if (n == 1 && parts[0] == "healthz" && get) co_return json_response(http::status::ok, Json{{"status", "ok"}});
  if (dev_issuer_ && n == 2 && parts[0] == ".well-known" && parts[1] == "jwks.json" && get) {
    co_return json_response(http::status::ok, dev_issuer_->jwks());
  }
  if (dev_issuer_ && n == 2 && parts[0] == "oauth" && parts[1] == "token") {
    if (!post) co_return error_response(http::status::method_not_allowed, "use POST");
    auto it = req.find(http::field::authorization);
    std::string_view auth = it == req.end() ? std::string_view() : std::string_view(it->value().data(), it->value().size());
    auto answer = dev_issuer_->token(auth, req.body(), std::chrono::system_clock::now());
    co_return json_response(static_cast<http::status>(answer.status), answer.body);
  }
  if (n < 2 || parts[0] != "v1") co_return error_response(http::status::not_found, "no such endpoint");

  if (n == 3 && parts[1] == "agents" && parts[2] == "register") {
    if (!post) co_return error_response(http::status::method_not_allowed, "use POST");
    auto res = register_agent(req, peer);
    peer.authenticated = peer.authenticated || res.result() == http::status::created;
    co_return res;
  }

  // Agent endpoints.
  const bool agent_call = (n == 4 && parts[1] == "agents" && parts[3] == "heartbeat") ||
                          (n == 4 && parts[1] == "agents" && parts[3] == "records" && post) ||
                          (n == 5 && parts[1] == "agents" && parts[3] == "jobs" && parts[4] == "acquire") ||
                          (n == 4 && parts[1] == "jobs" && parts[3] == "records" && post) ||
                          (n == 4 && parts[1] == "jobs" && parts[3] == "complete");
  if (agent_call) {
    if (!post) co_return error_response(http::status::method_not_allowed, "use POST");
    auto agent = authenticate_agent(req);
    if (!agent) co_return internal_error(agent.error());
    if (!*agent) co_return error_response(http::status::unauthorized, "invalid agent token");
    // 403, not 401: a 401 sends an agent to register again, which a revoked one may not.
    if ((*agent)->revoked_ms != 0) co_return error_response(http::status::forbidden, "agent revoked");
    // The token alone is not enough: the connection must be authenticated by the agent's
    // own key (TLS client certificate pinned to the registered key).
    auto key = agent_key(**agent);
    if (!key) co_return internal_error(key.error());
    if (!peer.client_key || !constant_time_equal(*peer.client_key, *key)) {
      co_return error_response(http::status::unauthorized,
                               "agent calls need a TLS client certificate for the agent's registered key");
    }
    peer.authenticated = true;
    (void)store_.touch_agent((*agent)->id, now_ms());
    if (parts[1] == "agents") {
      if (parts[2] != (*agent)->id) co_return error_response(http::status::forbidden, "token belongs to another agent");
      if (n == 4 && parts[3] == "records") co_return agent_stream_records(req, **agent);
      if (n == 4) co_return heartbeat(req, **agent);
      co_return co_await acquire(req, **agent, peer);
    }
    if (parts[3] == "records") co_return records(req, **agent, parts[2]);
    co_return complete(req, **agent, parts[2]);
  }

  // Admin endpoints.
  const bool tokens_call = (n == 2 || n == 3) && parts[1] == "enrollment-tokens";
  const bool admin_call = tokens_call || (n == 2 && (parts[1] == "jobs" || parts[1] == "agents")) ||
                          (n == 3 && (parts[1] == "jobs" || parts[1] == "agents")) ||
                          (n == 4 && parts[1] == "jobs" && (parts[3] == "records" || parts[3] == "cancel")) ||
                          (n == 4 && parts[1] == "agents" && (parts[3] == "records" || parts[3] == "revoke"));
  if (!admin_call) co_return error_response(http::status::not_found, "no such endpoint");
  if (!is_admin(req)) co_return error_response(http::status::unauthorized, "admin token required");
  peer.authenticated = true;
  if (tokens_call && n == 2) {
    if (post) co_return create_enrollment_token(req);
    if (get) co_return list_enrollment_tokens();
    co_return error_response(http::status::method_not_allowed, "use GET or POST");
  }
  if (tokens_call) {
    if (get) co_return get_enrollment_token(parts[2]);
    if (method == http::verb::delete_) co_return delete_enrollment_token(parts[2]);
    co_return error_response(http::status::method_not_allowed, "use GET or DELETE");
  }
  if (n == 4 && parts[1] == "agents" && parts[3] == "revoke") {
    if (!post) co_return error_response(http::status::method_not_allowed, "use POST");
    co_return revoke_agent(parts[2]);
  }
  if (n == 2 && parts[1] == "jobs") {
    if (!post) co_return error_response(http::status::method_not_allowed, "use POST");
    co_return create_job(req);
  }
  if (n == 2) {
    if (!get) co_return error_response(http::status::method_not_allowed, "use GET");
    co_return list_agents(req);
  }
  if (n == 3) {
    if (parts[1] == "agents" && method == http::verb::patch) co_return update_agent(req, parts[2]);
    if (!get) co_return error_response(http::status::method_not_allowed, "use GET");
    if (parts[1] == "jobs") co_return get_job(req, parts[2]);
    co_return get_agent(req, parts[2]);
  }
  if (parts[3] == "records") {
    if (!get) co_return error_response(http::status::method_not_allowed, "use GET");
    if (parts[1] == "agents") co_return export_agent_records(req, parts[2]);
    co_return export_records(req, parts[2]);
  }
  if (!post) co_return error_response(http::status::method_not_allowed, "use POST");
  co_return cancel_job(req, parts[2]);
}

Response Api::register_agent(const Request& req, const Peer& peer) {
  // The token first: without one the body is nobody's business.
  const auto enrollment = bearer(req);
  if (enrollment.empty()) return error_response(http::status::unauthorized, "invalid enrollment token");
  const std::string enrollment_hash = sha256_hex(enrollment);
  auto known_token = store_.enrollment_token_by_hash(enrollment_hash);
  if (!known_token) return internal_error(known_token.error());
  if (!*known_token || (*known_token)->revoked_ms != 0) {
    return error_response(http::status::unauthorized, "invalid enrollment token");
  }
  auto body = body_object(req);
  if (!body) return error_response(http::status::bad_request, body.error().message);
  if (auto r = only_members(*body, {"name", "hostname", "tags", "version", "public_key"}); !r) {
    return error_response(http::status::bad_request, r.error().message);
  }
  AgentRow a;
  auto name = json_string(*body, "name");
  auto host = json_string(*body, "hostname");
  auto version = json_string(*body, "version");
  auto key = json_string(*body, "public_key");
  auto tags = string_array(*body, "tags", 32, 64);
  if (!name || !host || !version || !key) {
    return error_response(http::status::bad_request, "name, hostname, version and public_key are required strings");
  }
  if (!tags) return error_response(http::status::bad_request, tags.error().message);
  if (name->empty() || !is_printable(*name, 128) || !is_printable(*host, 255) || !is_printable(*version, 64)) {
    return error_response(http::status::bad_request, "name, hostname or version too long or not printable");
  }
  auto raw = base64_decode(*key);
  if (!raw || raw->size() != 32) {
    return error_response(http::status::bad_request, "public_key must be base64 of 32 raw Ed25519 bytes");
  }
  // Proof of possession: the TLS handshake of this very connection was signed with the
  // private key of the certificate's key (CertificateVerify over a transcript with fresh
  // nonces of both sides), so a copied or replayed body proves nothing.
  if (!peer.client_key || !constant_time_equal(*peer.client_key, *raw)) {
    return error_response(http::status::unauthorized,
                          "registration needs a TLS client certificate for public_key (proof of possession)");
  }
  a.name = *name;
  a.hostname = *host;
  a.version = *version;
  a.public_key = base64_encode(*raw);  // one spelling per key, whatever alphabet was sent
  a.tags = *tags;
  std::string token = "dat_" + base64url_encode(random_bytes(32));
  auto enrolled = store_.enroll_agent(a, enrollment_hash, sha256_hex(token), now_ms());
  if (!enrolled) return internal_error(enrolled.error());
  switch (enrolled->status) {
    case Enrolment::Status::registered:
      break;
    case Enrolment::Status::token_refused:
      return error_response(http::status::unauthorized, enrolled->reason);
    case Enrolment::Status::agent_revoked:
      log::warn("controlplane", "revoked agent " + enrolled->agent.id + " tried to register again");
      return error_response(http::status::forbidden, "agent revoked");
  }
  const AgentRow& row = enrolled->agent;
  log::info("controlplane", "agent " + row.id + " (" + row.name + ") " + (enrolled->created ? "enrolled" : "registered again") +
                                " with enrollment token " + (*known_token)->id);
  return json_response(http::status::created, Json{{"agent_id", row.id}, {"agent_token", token}});
}

Response Api::heartbeat(const Request& req, const AgentRow& agent) {
  auto body = body_object(req);
  if (!body) return error_response(http::status::bad_request, body.error().message);
  if (auto r = only_members(*body, {"running"}); !r) return error_response(http::status::bad_request, r.error().message);
  auto running = string_array(*body, "running", 1024, 128);
  if (!running) return error_response(http::status::bad_request, running.error().message);
  std::vector<std::string> ids;
  for (const auto& v : *running) ids.push_back(v.get<std::string>());
  auto cancel = store_.heartbeat(agent.id, ids, now_ms(), config_.lease.count());
  if (!cancel) return internal_error(cancel.error());
  return json_response(http::status::ok, Json{{"cancel", *cancel}});
}

asio::awaitable<Response> Api::acquire(const Request& req, const AgentRow& agent, const Peer& peer) {
  const int client_fd = peer.fd;
  auto body = body_object(req);
  if (!body) co_return error_response(http::status::bad_request, body.error().message);
  if (auto r = only_members(*body, {"capacity", "wait_s"}); !r) {
    co_return error_response(http::status::bad_request, r.error().message);
  }
  auto capacity = json_int(*body, "capacity");
  auto wait_s = json_int(*body, "wait_s");
  if (!capacity || *capacity < 1 || *capacity > 1024 || !wait_s || *wait_s < 0) {
    co_return error_response(http::status::bad_request, "capacity (1..1024) and wait_s (>= 0) are required integers");
  }
  const auto wait = std::chrono::seconds(std::min<std::int64_t>(*wait_s, config_.max_wait_s));
  const auto deadline = std::chrono::steady_clock::now() + wait;
  auto executor = co_await asio::this_coro::executor;
  for (;;) {
    // A long-polling client sends nothing while it waits: readable means it closed
    // (or broke protocol). Leasing a job to it would strand the job until the lease
    // expires, so give up instead.
    if (client_fd >= 0) {
      char probe;
      ssize_t n = ::recv(client_fd, &probe, 1, MSG_PEEK | MSG_DONTWAIT);
      if (n >= 0) {
        Response gone{http::status::no_content, req.version()};
        gone.keep_alive(false);
        co_return gone;
      }
    }
    // Revoked while this poll waited: nothing more for it.
    auto current = store_.agent(agent.id);
    if (!current) co_return internal_error(current.error());
    if (!*current || (*current)->revoked_ms != 0) co_return error_response(http::status::forbidden, "agent revoked");
    auto job = store_.acquire(agent, now_ms(), config_.lease.count());
    if (!job) co_return internal_error(job.error());
    if (*job) {
      log::info("controlplane", "job " + (*job)->id + " leased to agent " + agent.id);
      co_return json_response(http::status::ok, Json{{"job", job_for_agent(**job)}});
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    asio::steady_timer timer(executor);
    timer.expires_at(deadline);
    auto it = waiters_.insert(waiters_.end(), &timer);
    cp_metrics().parked(1);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    cp_metrics().parked(-1);
    waiters_.erase(it);
    // Woken (a job was queued, often by a submission whose batch is still open: the lease
    // then commits with it, in one fsync) or timed out: what follows writes.
    if (group_ && peer.ticket) {
      if (group_->failed(*peer.ticket)) co_return error_response(http::status::internal_server_error, "commit failed");
      group_->join(*peer.ticket);
    }
  }
  Response res{http::status::no_content, req.version()};
  res.prepare_payload();
  co_return res;
}

std::optional<Response> Api::agent_job_request(const Request& req, const AgentRow& agent, const std::string& job_id,
                                               std::initializer_list<const char*> members, JobRow& job, Json& body) {
  if (!is_id(job_id)) return error_response(http::status::not_found, "no such job");
  auto found = store_.job(job_id);
  if (!found) return internal_error(found.error());
  // Another agent's job is indistinguishable from a missing one.
  if (!*found || (*found)->agent_id != agent.id) return error_response(http::status::not_found, "no such job for this agent");
  auto parsed = body_object(req);
  if (!parsed) return error_response(http::status::bad_request, parsed.error().message);
  if (auto r = only_members(*parsed, members); !r) return error_response(http::status::bad_request, r.error().message);
  job = std::move(**found);
  body = std::move(*parsed);
  return std::nullopt;
}

Response Api::records(const Request& req, const AgentRow& agent, const std::string& job_id) {
  if (!is_id(job_id)) return error_response(http::status::not_found, "no such job");
  auto found = store_.job(job_id);
  if (!found) return internal_error(found.error());
  // Records of a job that was requeued because nothing had arrived before its lease ran
  // out (agent or control plane down), from the agent whose lease that was: it did start
  // the job. Ingest checks them under that agent's key and, only if they are stored,
  // leases the job back rather than let it run a second time. Any other agent's records
  // for it are refused like those for a job that is not theirs.
  const bool lease_back = *found && (*found)->status == "queued" && !(*found)->requeued_from.empty() &&
                          (*found)->requeued_from == agent.id && (*found)->next_seq == 0;
  if (!*found || ((*found)->agent_id != agent.id && !lease_back)) {
    return error_response(http::status::not_found, "no such job for this agent");
  }
  auto body = body_object(req);
  if (!body) return error_response(http::status::bad_request, body.error().message);
  if (auto r = only_members(*body, {"records"}); !r) return error_response(http::status::bad_request, r.error().message);
  auto it = body->find("records");
  if (it == body->end() || !it->is_array() || it->size() > kMaxRecordsPerBatch) {
    return error_response(http::status::bad_request, "\"records\" must be an array of at most 1000 records");
  }
  auto key = agent_key(agent);
  if (!key) return internal_error(key.error());
  if (lease_back) {
    auto result = store_.ingest_requeued(job_id, agent.id, *key, *it, now_ms(), config_.lease.count());
    if (result && result->status == IngestResult::Status::ok && result->acked_seq >= 0) {
      log::warn("controlplane", "job " + job_id + " was requeued but agent " + agent.id + " had started it; leased back");
    }
    return ingest_answer(result, job_id);
  }
  return ingest_answer(store_.ingest(**found, *key, *it), job_id);
}

Response Api::agent_stream_records(const Request& req, const AgentRow& agent) {
  auto body = body_object(req);
  if (!body) return error_response(http::status::bad_request, body.error().message);
  if (auto r = only_members(*body, {"records"}); !r) return error_response(http::status::bad_request, r.error().message);
  auto it = body->find("records");
  if (it == body->end() || !it->is_array() || it->size() > kMaxRecordsPerBatch) {
    return error_response(http::status::bad_request, "\"records\" must be an array of at most 1000 records");
  }
  auto key = agent_key(agent);
  if (!key) return internal_error(key.error());
  return ingest_answer(store_.ingest_agent_stream(agent.id, *key, *it), "_agent of " + agent.id);
}

Response Api::ingest_answer(const Result<IngestResult>& result, const std::string& what) {
  if (!result) return internal_error(result.error());
  // Stored records are committed for ok and gap alike (the part before the gap).
  if (result->status != IngestResult::Status::invalid) cp_metrics().ingested(static_cast<std::uint64_t>(result->stored));
  switch (result->status) {
    case IngestResult::Status::ok:
      return json_response(http::status::ok, Json{{"acked_seq", result->acked_seq}});
    case IngestResult::Status::gap:
      return json_response(http::status::conflict,
                           Json{{"error", "gap in records"}, {"expected_seq", result->expected_seq}});
    case IngestResult::Status::invalid:
      log::warn("controlplane", "rejected records for job " + what + ": " + result->error);
      return error_response(http::status::unprocessable_entity, result->error);
  }
  return internal_error(Error{Errc::internal, "unreachable ingest status"});
}

Response Api::complete(const Request& req, const AgentRow& agent, const std::string& job_id) {
  JobRow job;
  Json body;
  if (auto err = agent_job_request(req, agent, job_id, {"status", "last_seq", "last_hash"}, job, body)) {
    return std::move(*err);
  }
  auto status = json_string(body, "status");
  auto last_seq = json_int(body, "last_seq");
  auto last_hash = json_string(body, "last_hash");
  if (!status || !is_final_status(*status) || !last_seq || !last_hash) {
    return error_response(http::status::bad_request, "status (a final status), last_seq and last_hash are required");
  }
  // Completion must match what the store holds: the log is complete before the job is.
  if (*last_seq != job.next_seq - 1 || *last_hash != job.last_hash) {
    return json_response(http::status::conflict, Json{{"error", "last_seq/last_hash do not match the stored records"},
                                                      {"expected_seq", job.next_seq}});
  }
  // The status is the one the signed log states: its last record must be job.end, and
  // the job ends with exactly that record's status.
  auto last = store_.last_record(job_id);
  if (!last) return internal_error(last.error());
  std::optional<audit::Record> end;
  if (*last) {
    auto rec = audit::parse_record(**last);
    if (rec && rec->kind == audit::Kind::job_end) end = std::move(*rec);
  }
  if (!end) return error_response(http::status::conflict, "the job's log does not end with job.end");
  auto it = end->data.find("status");
  const std::string logged = (it != end->data.end() && it->is_string()) ? it->get<std::string>() : std::string();
  if (logged != *status) {
    return error_response(http::status::conflict, "status \"" + *status + "\" differs from the status \"" + logged +
                                                      "\" of the job's signed job.end");
  }
  if (job.status != "running") {
    // The same completion again (a retry whose answer was lost) is acknowledged without
    // a second transition; anything else about a job that is no longer running is not.
    if (job.status == *status) return json_response(http::status::ok, Json{{"status", *status}});
    return error_response(http::status::conflict, "job is " + job.status + ", not running");
  }
  auto changed = store_.complete(job_id, agent.id, *status, now_ms());
  if (!changed) return internal_error(changed.error());
  if (!*changed) return error_response(http::status::conflict, "job is no longer running");
  log::info("controlplane", "job " + job_id + " completed: " + *status);
  return json_response(http::status::ok, Json{{"status", *status}});
}

Response Api::create_job(const Request& req) {
  auto body = body_object(req);
  if (!body) return error_response(http::status::bad_request, body.error().message);
  if (auto r = only_members(*body, {"runbook", "params", "authorization", "selector", "incident", "timeout_s"}); !r) {
    return error_response(http::status::bad_request, r.error().message);
  }
  NewJob j;
  auto runbook = json_string(*body, "runbook");
  if (!runbook || runbook->empty() || !is_printable(*runbook, 128)) {
    return error_response(http::status::bad_request, "\"runbook\" must be a non-empty string");
  }
  j.runbook = *runbook;
  if (auto it = body->find("params"); it != body->end()) {
    if (!it->is_object()) return error_response(http::status::bad_request, "\"params\" must be an object");
    j.params = *it;
  }
  if (auto it = body->find("authorization"); it != body->end()) {
    if (!it->is_object()) return error_response(http::status::bad_request, "\"authorization\" must be an object");
    j.authorization = *it;
  }
  if (auto it = body->find("incident"); it != body->end()) {
    if (!it->is_string() || !is_printable(it->get<std::string>(), 256)) {
      return error_response(http::status::bad_request, "\"incident\" must be a printable string of at most 256 bytes");
    }
    j.incident = it->get<std::string>();
  }
  if (body->contains("timeout_s")) {
    auto t = json_int(*body, "timeout_s");
    if (!t || *t < 0 || *t > 86400) return error_response(http::status::bad_request, "\"timeout_s\" must be 0..86400");
    j.timeout_s = *t;
  }
  if (auto it = body->find("selector"); it != body->end()) {
    if (!it->is_object()) return error_response(http::status::bad_request, "\"selector\" must be an object");
    if (auto r = only_members(*it, {"tags"}); !r) return error_response(http::status::bad_request, "selector: " + r.error().message);
    auto tags = string_array(*it, "tags", 32, 64);
    if (!tags) return error_response(http::status::bad_request, "selector: " + tags.error().message);
    j.selector_tags = *tags;
  }
  auto id = store_.create_job(j, now_ms());
  if (!id) return internal_error(id.error());
  log::info("controlplane", "job " + *id + " queued (runbook " + j.runbook + ")");
  notify_jobs();
  return json_response(http::status::created, Json{{"job_id", *id}});
}

Response Api::get_job(const Request&, const std::string& job_id) {
  if (!is_id(job_id)) return error_response(http::status::not_found, "no such job");
  auto job = store_.job(job_id);
  if (!job) return internal_error(job.error());
  if (!*job) return error_response(http::status::not_found, "no such job");
  return json_response(http::status::ok, job_for_admin(**job));
}

namespace {

// An export: one stored record per line, as JSON Lines.
Response ndjson_response(const Request& req, const std::vector<std::string>& records) {
  Response res{http::status::ok, req.version()};
  res.set(http::field::content_type, "application/x-ndjson");
  std::string body;
  for (const auto& r : records) {
    body += r;
    body += '\n';
  }
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

}  // namespace

Response Api::export_records(const Request& req, const std::string& job_id) {
  if (!is_id(job_id)) return error_response(http::status::not_found, "no such job");
  auto job = store_.job(job_id);
  if (!job) return internal_error(job.error());
  if (!*job) return error_response(http::status::not_found, "no such job");
  auto recs = store_.records(job_id);
  if (!recs) return internal_error(recs.error());
  return ndjson_response(req, *recs);
}

Response Api::export_agent_records(const Request& req, const std::string& agent_id) {
  if (!is_id(agent_id)) return error_response(http::status::not_found, "no such agent");
  auto agent = store_.agent(agent_id);
  if (!agent) return internal_error(agent.error());
  if (!*agent) return error_response(http::status::not_found, "no such agent");
  auto recs = store_.agent_records(agent_id);
  if (!recs) return internal_error(recs.error());
  return ndjson_response(req, *recs);
}

Response Api::list_agents(const Request&) {
  auto agents = store_.agents();
  if (!agents) return internal_error(agents.error());
  Json out = Json::array();
  for (const auto& a : *agents) out.push_back(agent_json(a));
  return json_response(http::status::ok, Json{{"agents", out}});
}

Response Api::get_agent(const Request&, const std::string& agent_id) {
  if (!is_id(agent_id)) return error_response(http::status::not_found, "no such agent");
  auto agent = store_.agent(agent_id);
  if (!agent) return internal_error(agent.error());
  if (!*agent) return error_response(http::status::not_found, "no such agent");
  return json_response(http::status::ok, agent_json(**agent));
}

Response Api::cancel_job(const Request&, const std::string& job_id) {
  if (!is_id(job_id)) return error_response(http::status::not_found, "no such job");
  auto changed = store_.request_cancel(job_id, now_ms());
  if (!changed) return internal_error(changed.error());
  if (!*changed) return error_response(http::status::conflict, "job is not queued or running");
  return json_response(http::status::ok, Json{{"cancel_requested", true}});
}

}  // namespace delegate::controlplane
