// The store's identity state: enrollment tokens, enrolment of agents under them, and
// revocation of agents.
#include <delegate/controlplane/store.hpp>

#include <delegate/common/encoding.hpp>

#include "sqlite.hpp"
#include "store_internal.hpp"

namespace delegate::controlplane {
namespace {

constexpr const char* kTokenColumns =
    "id, description, tags, one_time, expires_ms, created_ms, uses, last_used_ms, revoked_ms";

EnrollmentToken token_from(const sql::Stmt& s) {
  EnrollmentToken t;
  t.id = s.text(0);
  t.description = s.text(1);
  const std::string tags = s.text(2);
  if (!tags.empty()) t.tags = detail::parse_stored(tags);
  t.one_time = s.i64(3) != 0;
  t.expires_ms = s.i64(4);
  t.created_ms = s.i64(5);
  t.uses = s.i64(6);
  t.last_used_ms = s.i64(7);
  t.revoked_ms = s.i64(8);
  return t;
}

}  // namespace

Result<EnrollmentToken> Store::create_enrollment_token(EnrollmentToken token, const std::string& secret_hash,
                                                       std::int64_t now_ms) {
  if (token.id.empty()) token.id = detail::new_id("enr_");
  token.created_ms = now_ms;
  token.uses = 0;
  token.last_used_ms = 0;
  token.revoked_ms = 0;
  sql::Stmt s(db_,
              "INSERT INTO enrollment_tokens (id, secret_hash, description, tags, one_time, expires_ms, created_ms) "
              "VALUES (?,?,?,?,?,?,?)");
  s.bind(1, token.id).bind(2, secret_hash).bind(3, token.description);
  if (token.tags) {
    s.bind(4, token.tags->dump());
  } else {
    s.bind_null(4);
  }
  s.bind(5, std::int64_t{token.one_time ? 1 : 0}).bind(6, token.expires_ms).bind(7, now_ms);
  if (auto r = s.run(); !r) return std::unexpected(r.error());
  return token;
}

Result<void> Store::seed_enrollment_token(const std::string& id, const std::string& secret_hash, std::int64_t now_ms) {
  // The configured secret may have been rotated in the file; a revoked default token
  // stays revoked.
  sql::Stmt s(db_,
              "INSERT INTO enrollment_tokens (id, secret_hash, description, created_ms) VALUES (?,?,?,?) "
              "ON CONFLICT(id) DO UPDATE SET secret_hash=excluded.secret_hash");
  s.bind(1, id).bind(2, secret_hash).bind(3, "development default (enrollment_token_file)").bind(4, now_ms);
  return s.run();
}

Result<std::optional<EnrollmentToken>> Store::enrollment_token(const std::string& id) {
  sql::Stmt s(db_, std::string("SELECT ") + kTokenColumns + " FROM enrollment_tokens WHERE id = ?");
  s.bind(1, id);
  auto row = s.step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<EnrollmentToken>();
  return std::optional<EnrollmentToken>(token_from(s));
}

Result<std::optional<EnrollmentToken>> Store::enrollment_token_by_hash(const std::string& secret_hash) {
  sql::Stmt s(db_, std::string("SELECT ") + kTokenColumns + " FROM enrollment_tokens WHERE secret_hash = ?");
  s.bind(1, secret_hash);
  auto row = s.step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<EnrollmentToken>();
  return std::optional<EnrollmentToken>(token_from(s));
}

Result<std::vector<EnrollmentToken>> Store::enrollment_tokens() {
  sql::Stmt s(db_, std::string("SELECT ") + kTokenColumns + " FROM enrollment_tokens ORDER BY created_ms, id");
  std::vector<EnrollmentToken> out;
  for (;;) {
    auto row = s.step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.push_back(token_from(s));
  }
  return out;
}

Result<bool> Store::revoke_enrollment_token(const std::string& id, std::int64_t now_ms) {
  sql::Stmt s(db_, "UPDATE enrollment_tokens SET revoked_ms=? WHERE id=? AND revoked_ms=0");
  s.bind(1, now_ms).bind(2, id);
  if (auto r = s.run(); !r) return std::unexpected(r.error());
  auto t = enrollment_token(id);
  if (!t) return std::unexpected(t.error());
  return t->has_value();
}

Result<Enrolment> Store::enroll_agent(const AgentRow& proposed, const std::string& enrollment_hash,
                                      const std::string& token_hash, std::int64_t now_ms) {
  sql::Transaction tx(db_);
  if (!tx.began()) return fail(Errc::io, "cannot begin transaction");
  Enrolment out;
  auto refuse = [&](Enrolment::Status status, std::string reason) {
    out.status = status;
    out.reason = std::move(reason);
    return out;  // rolls back: a refused enrolment changes nothing
  };
  sql::Stmt find_token(db_, std::string("SELECT ") + kTokenColumns + " FROM enrollment_tokens WHERE secret_hash = ?");
  find_token.bind(1, enrollment_hash);
  auto trow = find_token.step();
  if (!trow) return std::unexpected(trow.error());
  if (!*trow) return refuse(Enrolment::Status::token_refused, "invalid enrollment token");
  const EnrollmentToken token = token_from(find_token);
  if (token.revoked_ms != 0) return refuse(Enrolment::Status::token_refused, "enrollment token revoked");

  auto known = agent_by_public_key(proposed.public_key);
  if (!known) return std::unexpected(known.error());
  if (*known) {
    // The registrant proved it holds this key: it is that agent, re-registering (lost
    // its token file, or its token was refused). Expiry and one-time use limit the
    // admission of new keys only.
    if ((*known)->revoked_ms != 0) return refuse(Enrolment::Status::agent_revoked, "agent revoked");
  } else {
    if (token.expires_ms != 0 && now_ms >= token.expires_ms) {
      return refuse(Enrolment::Status::token_refused, "enrollment token expired");
    }
    if (token.one_time && token.uses > 0) return refuse(Enrolment::Status::token_refused, "enrollment token already used");
    sql::Stmt use(db_, "UPDATE enrollment_tokens SET uses=uses+1, last_used_ms=? WHERE id=?");
    use.bind(1, now_ms).bind(2, token.id);
    if (auto r = use.run(); !r) return std::unexpected(r.error());
  }
  AgentRow p = proposed;
  if (token.tags) p.tags = *token.tags;  // the token fixes the tags of agents it admits
  p.enrollment_token = token.id;
  auto row = register_in_tx(p, token_hash, now_ms);
  if (!row) return std::unexpected(row.error());
  if (auto r = tx.commit(); !r) return std::unexpected(r.error());
  out.status = Enrolment::Status::registered;
  out.agent = std::move(*row);
  out.created = !known->has_value();
  return out;
}

Result<std::optional<AgentRow>> Store::agent_by_public_key(const std::string& public_key) {
  sql::Stmt s(db_, std::string("SELECT ") + detail::kAgentColumns + " FROM agents WHERE public_key = ?");
  s.bind(1, public_key);
  auto row = s.step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<AgentRow>();
  return std::optional<AgentRow>(detail::agent_from(s));
}

Result<bool> Store::update_agent(const std::string& agent_id, const AgentChange& change) {
  sql::Stmt s(db_,
              "UPDATE agents SET name=COALESCE(?, name), hostname=COALESCE(?, hostname), tags=COALESCE(?, tags) "
              "WHERE id=?");
  auto bind_opt = [&](int i, const std::optional<std::string>& v) {
    if (v) {
      s.bind(i, *v);
    } else {
      s.bind_null(i);
    }
  };
  bind_opt(1, change.name);
  bind_opt(2, change.hostname);
  bind_opt(3, change.tags ? std::optional<std::string>(change.tags->dump()) : std::nullopt);
  s.bind(4, agent_id);
  if (auto r = s.run(); !r) return std::unexpected(r.error());
  return sqlite3_changes(db_) > 0;
}

Result<std::optional<std::vector<std::string>>> Store::revoke_agent(const std::string& agent_id, std::int64_t now_ms) {
  sql::Transaction tx(db_);
  if (!tx.began()) return fail(Errc::io, "cannot begin transaction");
  auto agent = this->agent(agent_id);
  if (!agent) return std::unexpected(agent.error());
  if (!*agent) return std::optional<std::vector<std::string>>();
  if ((*agent)->revoked_ms == 0) {
    sql::Stmt s(db_, "UPDATE agents SET revoked_ms=? WHERE id=?");
    s.bind(1, now_ms).bind(2, agent_id);
    if (auto r = s.run(); !r) return std::unexpected(r.error());
  }
  std::vector<std::string> interrupted;
  {
    sql::Stmt q(db_, "SELECT id FROM jobs WHERE agent_id=? AND status='running' ORDER BY id");
    q.bind(1, agent_id);
    for (;;) {
      auto row = q.step();
      if (!row) return std::unexpected(row.error());
      if (!*row) break;
      interrupted.push_back(q.text(0));
    }
  }
  // Its running jobs end here; what it logged so far stays stored and verifiable. A job
  // requeued from it can no longer be claimed back by it.
  sql::Stmt up(db_, "UPDATE jobs SET status='interrupted', lease_expires_ms=0, updated_ms=? WHERE agent_id=? AND status='running'");
  up.bind(1, now_ms).bind(2, agent_id);
  if (auto r = up.run(); !r) return std::unexpected(r.error());
  sql::Stmt rq(db_, "UPDATE jobs SET requeued_from='' WHERE requeued_from=?");
  rq.bind(1, agent_id);
  if (auto r = rq.run(); !r) return std::unexpected(r.error());
  if (auto r = tx.commit(); !r) return std::unexpected(r.error());
  return std::optional<std::vector<std::string>>(std::move(interrupted));
}

}  // namespace delegate::controlplane
