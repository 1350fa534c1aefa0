#include <delegate/controlplane/store.hpp>

#include <delegate/audit/record.hpp>
#include <delegate/audit/verifier.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/time.hpp>

#include "sqlite.hpp"
#include "store_internal.hpp"

namespace delegate::controlplane {
namespace {

constexpr const char* kSchema = R"sql(
CREATE TABLE IF NOT EXISTS agents (
  id TEXT PRIMARY KEY,
  name TEXT NOT NULL,
  hostname TEXT NOT NULL,
  tags TEXT NOT NULL,
  version TEXT NOT NULL,
  public_key TEXT NOT NULL UNIQUE,
  token_hash TEXT NOT NULL,
  created_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS agents_token ON agents(token_hash);
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY,
  runbook TEXT NOT NULL,
  params TEXT NOT NULL,
  incident TEXT NOT NULL,
  timeout_s INTEGER NOT NULL,
  authorization TEXT NOT NULL,
  selector_tags TEXT NOT NULL,
  status TEXT NOT NULL,
  agent_id TEXT NOT NULL DEFAULT '',
  lease_expires_ms INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  updated_ms INTEGER NOT NULL,
  next_seq INTEGER NOT NULL DEFAULT 0,
  last_hash TEXT NOT NULL DEFAULT '',
  attempts INTEGER NOT NULL DEFAULT 0,
  cancel_requested INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS jobs_queue ON jobs(status, created_ms);
CREATE TABLE IF NOT EXISTS records (
  job_id TEXT NOT NULL,
  seq INTEGER NOT NULL,
  hash TEXT NOT NULL,
  body TEXT NOT NULL,
  PRIMARY KEY (job_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS enrollment_tokens (
  id TEXT PRIMARY KEY,
  secret_hash TEXT NOT NULL UNIQUE,
  description TEXT NOT NULL DEFAULT '',
  tags TEXT,
  one_time INTEGER NOT NULL DEFAULT 0,
  expires_ms INTEGER NOT NULL DEFAULT 0,
  created_ms INTEGER NOT NULL,
  uses INTEGER NOT NULL DEFAULT 0,
  last_used_ms INTEGER NOT NULL DEFAULT 0,
  revoked_ms INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS agent_streams (
  agent_id TEXT PRIMARY KEY,
  next_seq INTEGER NOT NULL DEFAULT 0,
  last_hash TEXT NOT NULL DEFAULT ''
);
)sql";

// Agent streams share the records table under a key that no job id can take (job ids
// never contain ':'), so one ingest path serves both.
std::string agent_stream_key(const std::string& agent_id) { return "_agent:" + agent_id; }

// Columns added after the first release: databases created before get them at open.
struct AddedColumn {
  const char* table;
  const char* column;
  const char* definition;
};
constexpr AddedColumn kAddedColumns[] = {
    {"agents", "revoked_ms", "INTEGER NOT NULL DEFAULT 0"},
    {"agents", "enrollment_token", "TEXT NOT NULL DEFAULT ''"},
    {"jobs", "requeued_from", "TEXT NOT NULL DEFAULT ''"},
};

Result<void> add_missing_columns(sqlite3* db) {
  for (const auto& c : kAddedColumns) {
    sql::Stmt q(db, "SELECT 1 FROM pragma_table_info(?) WHERE name = ?");
    q.bind(1, c.table).bind(2, c.column);
    auto row = q.step();
    if (!row) return std::unexpected(row.error());
    if (*row) continue;
    const std::string alter = std::string("ALTER TABLE ") + c.table + " ADD COLUMN " + c.column + " " + c.definition;
    if (auto r = sql::exec(db, alter.c_str()); !r) return r;
  }
  return {};
}

constexpr const char* kJobColumns =
    "id, runbook, params, incident, timeout_s, authorization, selector_tags, status, agent_id, "
    "lease_expires_ms, created_ms, updated_ms, next_seq, last_hash, attempts, cancel_requested, requeued_from";

using detail::agent_from;
using detail::kAgentColumns;
using detail::new_id;
using detail::parse_stored;

JobRow job_from(const sql::Stmt& s) {
  JobRow j;
  j.id = s.text(0);
  j.runbook = s.text(1);
  j.params = parse_stored(s.text(2));
  j.incident = s.text(3);
  j.timeout_s = s.i64(4);
  j.authorization = parse_stored(s.text(5));
  j.selector_tags = parse_stored(s.text(6));
  j.status = s.text(7);
  j.agent_id = s.text(8);
  j.lease_expires_ms = s.i64(9);
  j.created_ms = s.i64(10);
  j.updated_ms = s.i64(11);
  j.next_seq = s.i64(12);
  j.last_hash = s.text(13);
  j.attempts = s.i64(14);
  j.cancel_requested = s.i64(15) != 0;
  j.requeued_from = s.text(16);
  return j;
}

bool tags_subset(const Json& wanted, const Json& have) {
  if (!wanted.is_array()) return true;
  for (const auto& t : wanted) {
    bool found = false;
    for (const auto& h : have) found = found || h == t;
    if (!found) return false;
  }
  return true;
}

}  // namespace

namespace detail {

Json parse_stored(const std::string& s) {
  // Stored JSON was produced by this process; a parse failure means a corrupted file.
  auto j = parse_json_strict(s, JsonLimits{.max_bytes = 8u << 20, .max_depth = 32});
  return j ? std::move(*j) : Json();
}

AgentRow agent_from(const sql::Stmt& s) {
  AgentRow a;
  a.id = s.text(0);
  a.name = s.text(1);
  a.hostname = s.text(2);
  a.tags = parse_stored(s.text(3));
  a.version = s.text(4);
  a.public_key = s.text(5);
  a.created_ms = s.i64(6);
  a.last_seen_ms = s.i64(7);
  a.revoked_ms = s.i64(8);
  a.enrollment_token = s.text(9);
  return a;
}

std::string new_id(const char* prefix) { return std::string(prefix) + hex_encode(random_bytes(12)); }

}  // namespace detail

Result<std::unique_ptr<Store>> Store::open(const std::filesystem::path& file) {
  sqlite3* db = nullptr;
  int rc = sqlite3_open_v2(file.c_str(), &db,
                           SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : "out of memory";
    sqlite3_close(db);
    return fail(Errc::io, "cannot open database " + file.string() + ": " + msg);
  }
  std::unique_ptr<Store> store(new Store(db));
  sqlite3_commit_hook(db, &Store::veto_commit_outside_batch, store.get());
  // FULL: a COMMIT is on disk before the ingest answer acknowledges it.
  for (const char* pragma : {"PRAGMA journal_mode=WAL", "PRAGMA synchronous=FULL",
                             "PRAGMA foreign_keys=ON", "PRAGMA busy_timeout=5000"}) {
    if (auto r = sql::exec(db, pragma); !r) return std::unexpected(r.error());
  }
  if (auto r = sql::exec(db, kSchema); !r) return std::unexpected(r.error());
  if (auto r = add_missing_columns(db); !r) return std::unexpected(r.error());
  return store;
}

Store::~Store() { sqlite3_close(db_); }

int Store::veto_commit_outside_batch(void* store) noexcept {
  const auto* self = static_cast<const Store*>(store);
  return self->batch_open_ && !self->committing_batch_ ? 1 : 0;
}

Result<void> Store::begin_batch() {
  auto r = sql::exec(db_, "BEGIN IMMEDIATE");
  batch_open_ = r.has_value();
  return r;
}

Result<void> Store::commit_batch() {
  batch_open_ = false;
  // A statement error can make SQLite roll the transaction back by itself; then there is
  // nothing to commit and the batch's writes are gone (and the commit hook refused every
  // write made since, so nothing of the batch's requests is on disk).
  if (sqlite3_get_autocommit(db_) != 0) return fail(Errc::io, "the batch's transaction was rolled back");
  committing_batch_ = true;
  auto r = sql::exec(db_, "COMMIT");
  committing_batch_ = false;
  if (!r && sqlite3_get_autocommit(db_) == 0) (void)sql::exec(db_, "ROLLBACK");
  return r;
}

Result<AgentRow> Store::register_agent(const AgentRow& p, const std::string& token_hash, std::int64_t now_ms) {
  sql::Transaction tx(db_);
  if (!tx.began()) return fail(Errc::io, "cannot begin transaction");
  auto out = register_in_tx(p, token_hash, now_ms);
  if (!out) return out;
  if (auto r = tx.commit(); !r) return std::unexpected(r.error());
  return out;
}

Result<AgentRow> Store::register_in_tx(const AgentRow& p, const std::string& token_hash, std::int64_t now_ms) {
  sql::Stmt find(db_, std::string("SELECT ") + kAgentColumns + " FROM agents WHERE public_key = ?");
  find.bind(1, p.public_key);
  auto row = find.step();
  if (!row) return std::unexpected(row.error());
  AgentRow out = p;
  if (*row) {
    // A known key keeps its name, hostname and tags: only an admin changes those (tags
    // decide which jobs it gets). The version it reports is informational.
    out = agent_from(find);
    out.version = p.version;
    sql::Stmt up(db_, "UPDATE agents SET version=?, token_hash=?, last_seen_ms=? WHERE id=?");
    up.bind(1, p.version).bind(2, token_hash).bind(3, now_ms).bind(4, out.id);
    if (auto r = up.run(); !r) return std::unexpected(r.error());
  } else {
    out.id = new_id("agt_");
    out.created_ms = now_ms;
    out.revoked_ms = 0;
    sql::Stmt ins(db_,
                  "INSERT INTO agents (id, name, hostname, tags, version, public_key, token_hash, created_ms, "
                  "last_seen_ms, enrollment_token) VALUES (?,?,?,?,?,?,?,?,?,?)");
    ins.bind(1, out.id).bind(2, p.name).bind(3, p.hostname).bind(4, p.tags.dump()).bind(5, p.version)
        .bind(6, p.public_key).bind(7, token_hash).bind(8, now_ms).bind(9, now_ms).bind(10, p.enrollment_token);
    if (auto r = ins.run(); !r) return std::unexpected(r.error());
  }
  out.last_seen_ms = now_ms;
  return out;
}

Result<std::optional<AgentRow>> Store::agent_by_token_hash(const std::string& token_hash) {
  sql::Stmt s(db_, std::string("SELECT ") + kAgentColumns + " FROM agents WHERE token_hash = ?");
  s.bind(1, token_hash);
  auto row = s.step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<AgentRow>();
  return std::optional<AgentRow>(agent_from(s));
}

Result<std::optional<AgentRow>> Store::agent(const std::string& id) {
  sql::Stmt s(db_, std::string("SELECT ") + kAgentColumns + " FROM agents WHERE id = ?");
  s.bind(1, id);
  auto row = s.step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<AgentRow>();
  return std::optional<AgentRow>(agent_from(s));
}

Result<std::vector<AgentRow>> Store::agents() {
  sql::Stmt s(db_, std::string("SELECT ") + kAgentColumns + " FROM agents ORDER BY created_ms");
  std::vector<AgentRow> out;
  for (;;) {
    auto row = s.step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.push_back(agent_from(s));
  }
  return out;
}

Result<void> Store::touch_agent(const std::string& id, std::int64_t now_ms) {
  sql::Stmt s(db_, "UPDATE agents SET last_seen_ms = ? WHERE id = ?");
  s.bind(1, now_ms).bind(2, id);
  return s.run();
}

Result<std::string> Store::create_job(const NewJob& job, std::int64_t now_ms) {
  std::string id = new_id("job_");
  sql::Stmt s(db_,
              "INSERT INTO jobs (id, runbook, params, incident, timeout_s, authorization, selector_tags, "
              "status, created_ms, updated_ms) VALUES (?,?,?,?,?,?,?,'queued',?,?)");
  s.bind(1, id).bind(2, job.runbook).bind(3, job.params.dump()).bind(4, job.incident).bind(5, job.timeout_s)
      .bind(6, job.authorization.dump()).bind(7, job.selector_tags.dump()).bind(8, now_ms).bind(9, now_ms);
  if (auto r = s.run(); !r) return std::unexpected(r.error());
  return id;
}

Result<std::optional<JobRow>> Store::job(const std::string& id) {
  sql::Stmt s(db_, std::string("SELECT ") + kJobColumns + " FROM jobs WHERE id = ?");
  s.bind(1, id);
  auto row = s.step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<JobRow>();
  return std::optional<JobRow>(job_from(s));
}

Result<std::optional<JobRow>> Store::acquire(const AgentRow& agent, std::int64_t now_ms, std::int64_t lease_ms) {
  sql::Transaction tx(db_);
  if (!tx.began()) return fail(Errc::io, "cannot begin transaction");
  {
    // The caller's row may predate a revocation (a long poll that began before it).
    sql::Stmt r(db_, "SELECT revoked_ms FROM agents WHERE id=?");
    r.bind(1, agent.id);
    auto row = r.step();
    if (!row) return std::unexpected(row.error());
    if (!*row || r.i64(0) != 0) return std::optional<JobRow>();
  }
  sql::Stmt s(db_, std::string("SELECT ") + kJobColumns +
                       " FROM jobs WHERE status = 'queued' ORDER BY created_ms, id LIMIT 256");
  std::optional<JobRow> picked;
  for (;;) {
    auto row = s.step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    JobRow j = job_from(s);
    if (tags_subset(j.selector_tags, agent.tags)) {
      picked = std::move(j);
      break;
    }
  }
  if (!picked) return picked;
  sql::Stmt up(db_,
               "UPDATE jobs SET status='running', agent_id=?, lease_expires_ms=?, updated_ms=?, "
               "attempts=attempts+1 WHERE id=? AND status='queued'");
  up.bind(1, agent.id).bind(2, now_ms + lease_ms).bind(3, now_ms).bind(4, picked->id);
  if (auto r = up.run(); !r) return std::unexpected(r.error());
  if (auto r = tx.commit(); !r) return std::unexpected(r.error());
  picked->status = "running";
  picked->agent_id = agent.id;
  picked->lease_expires_ms = now_ms + lease_ms;
  picked->attempts += 1;
  return picked;
}

Result<std::vector<std::string>> Store::heartbeat(const std::string& agent_id,
                                                  const std::vector<std::string>& running,
                                                  std::int64_t now_ms, std::int64_t lease_ms) {
  sql::Transaction tx(db_);
  if (!tx.began()) return fail(Errc::io, "cannot begin transaction");
  std::vector<std::string> cancel;
  for (const auto& id : running) {
    sql::Stmt up(db_, "UPDATE jobs SET lease_expires_ms=? WHERE id=? AND agent_id=? AND status='running'");
    up.bind(1, now_ms + lease_ms).bind(2, id).bind(3, agent_id);
    if (auto r = up.run(); !r) return std::unexpected(r.error());
  }
  sql::Stmt c(db_, "SELECT id FROM jobs WHERE agent_id=? AND status='running' AND cancel_requested=1");
  c.bind(1, agent_id);
  for (;;) {
    auto row = c.step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    cancel.push_back(c.text(0));
  }
  sql::Stmt t(db_, "UPDATE agents SET last_seen_ms=? WHERE id=?");
  t.bind(1, now_ms).bind(2, agent_id);
  if (auto r = t.run(); !r) return std::unexpected(r.error());
  if (auto r = tx.commit(); !r) return std::unexpected(r.error());
  return cancel;
}

Result<bool> Store::request_cancel(const std::string& job_id, std::int64_t now_ms) {
  sql::Transaction tx(db_);
  if (!tx.began()) return fail(Errc::io, "cannot begin transaction");
  // A queued job is cancelled outright; a running one is flagged for its agent.
  sql::Stmt q(db_, "UPDATE jobs SET status='cancelled', updated_ms=? WHERE id=? AND status='queued'");
  q.bind(1, now_ms).bind(2, job_id);
  if (auto r = q.run(); !r) return std::unexpected(r.error());
  bool changed = sqlite3_changes(db_) > 0;
  sql::Stmt r(db_, "UPDATE jobs SET cancel_requested=1, updated_ms=? WHERE id=? AND status='running'");
  r.bind(1, now_ms).bind(2, job_id);
  if (auto rr = r.run(); !rr) return std::unexpected(rr.error());
  changed = changed || sqlite3_changes(db_) > 0;
  if (auto c = tx.commit(); !c) return std::unexpected(c.error());
  return changed;
}

Result<int> Store::expire_leases(std::int64_t now_ms) {
  sql::Transaction tx(db_);
  if (!tx.began()) return fail(Errc::io, "cannot begin transaction");
  sql::Stmt requeue(db_,
                    "UPDATE jobs SET status='queued', requeued_from=agent_id, agent_id='', lease_expires_ms=0, updated_ms=? "
                    "WHERE status='running' AND lease_expires_ms < ? AND next_seq = 0");
  requeue.bind(1, now_ms).bind(2, now_ms);
  if (auto r = requeue.run(); !r) return std::unexpected(r.error());
  int n = sqlite3_changes(db_);
  sql::Stmt lost(db_,
                 "UPDATE jobs SET status='interrupted', updated_ms=? "
                 "WHERE status='running' AND lease_expires_ms < ? AND next_seq > 0");
  lost.bind(1, now_ms).bind(2, now_ms);
  if (auto r = lost.run(); !r) return std::unexpected(r.error());
  if (auto r = tx.commit(); !r) return std::unexpected(r.error());
  return n;
}

Result<IngestResult> Store::ingest(const JobRow& job, const Ed25519PublicKey& key, const Json& records) {
  return ingest_stream(StreamRef{job.id, job.agent_id, job.id, false}, key, records);
}

Result<IngestResult> Store::ingest_agent_stream(const std::string& agent_id, const Ed25519PublicKey& key,
                                                const Json& records) {
  return ingest_stream(StreamRef{agent_stream_key(agent_id), agent_id, std::string(audit::kAgentStreamJob), true}, key,
                       records);
}

Result<IngestResult> Store::ingest_stream(const StreamRef& ref, const Ed25519PublicKey& key, const Json& records,
                                          const LeaseBack* lease_back) {
  IngestResult out;
  sql::Transaction tx(db_);
  if (!tx.began()) return fail(Errc::io, "cannot begin transaction");
  if (lease_back) {
    sql::Stmt q(db_, "SELECT 1 FROM jobs WHERE id=? AND status='queued' AND next_seq=0 AND requeued_from=?");
    q.bind(1, ref.job).bind(2, ref.agent);
    auto row = q.step();
    if (!row) return std::unexpected(row.error());
    if (!*row) {
      out.status = IngestResult::Status::invalid;
      out.error = "job is not waiting for this agent";
      return out;
    }
  }
  // Re-read inside the transaction: the caller's copy may be stale.
  std::int64_t next = 0;
  std::string prev;
  {
    sql::Stmt cur(db_, ref.agent_stream ? "SELECT next_seq, last_hash FROM agent_streams WHERE agent_id=?"
                                        : "SELECT next_seq, last_hash FROM jobs WHERE id=?");
    cur.bind(1, ref.agent_stream ? ref.agent : ref.job);
    auto row = cur.step();
    if (!row) return std::unexpected(row.error());
    if (!*row && !ref.agent_stream) return fail(Errc::not_found, "job not found");
    if (*row) {
      next = cur.i64(0);
      prev = cur.text(1);
    }
  }
  if (next == 0) prev = audit::genesis_prev(ref.agent, ref.job);
  // What the chain rules beyond a single record need: the previous ts and whether the
  // stream already ended.
  std::string last_ts;
  bool ended = false;
  if (next > 0) {
    sql::Stmt last(db_, "SELECT body FROM records WHERE job_id=? AND seq=?");
    last.bind(1, ref.key).bind(2, next - 1);
    auto lr = last.step();
    if (!lr) return std::unexpected(lr.error());
    if (*lr) {
      auto stored = audit::parse_record(last.text(0));
      if (stored) {
        last_ts = stored->ts;
        ended = stored->kind == audit::Kind::job_end;
      }
    }
  }

  auto invalid = [&](std::string msg) {
    out.status = IngestResult::Status::invalid;
    out.error = std::move(msg);
    return out;  // the transaction rolls back: nothing of a bad batch is kept
  };

  for (const auto& rj : records) {
    auto rec = audit::record_from_json(rj);
    if (!rec) return invalid("malformed record: " + rec.error().message);
    if (rec->job != ref.job || rec->agent != ref.agent) {
      return invalid("record seq=" + std::to_string(rec->seq) + " belongs to another job or agent");
    }
    const bool agent_kind = rec->kind == audit::Kind::checkpoint || rec->kind == audit::Kind::agent_start ||
                            rec->kind == audit::Kind::agent_stop;
    if (agent_kind != ref.agent_stream) {
      return invalid("record seq=" + std::to_string(rec->seq) + ": kind " + std::string(audit::to_string(rec->kind)) +
                     " does not belong in this stream");
    }
    auto seq = static_cast<std::int64_t>(rec->seq);
    if (seq < next) {
      sql::Stmt have(db_, "SELECT hash FROM records WHERE job_id=? AND seq=?");
      have.bind(1, ref.key).bind(2, seq);
      auto hr = have.step();
      if (!hr) return std::unexpected(hr.error());
      if (!*hr || have.text(0) != rec->hash) {
        return invalid("record seq=" + std::to_string(seq) + " conflicts with the stored record");
      }
      continue;  // idempotent re-send
    }
    if (seq > next) {
      out.status = IngestResult::Status::gap;
      out.expected_seq = next;
      break;
    }
    if (auto fault = audit::check_record(*rec, key, rec->seq, prev)) {
      return invalid("record seq=" + std::to_string(seq) + ": " + std::string(audit::to_string(fault->fault)) +
                     (fault->detail.empty() ? "" : ": " + fault->detail));
    }
    if (ended) return invalid("record seq=" + std::to_string(seq) + " follows job.end");
    if (!last_ts.empty() && parse_rfc3339(rec->ts).value_or(TimePoint{}) < parse_rfc3339(last_ts).value_or(TimePoint{})) {
      return invalid("record seq=" + std::to_string(seq) + ": timestamp goes backwards");
    }
    last_ts = rec->ts;
    ended = rec->kind == audit::Kind::job_end;
    sql::Stmt ins(db_, "INSERT INTO records (job_id, seq, hash, body) VALUES (?,?,?,?)");
    ins.bind(1, ref.key).bind(2, seq).bind(3, rec->hash).bind(4, audit::serialize(*rec));
    if (auto r = ins.run(); !r) return std::unexpected(r.error());
    prev = rec->hash;
    ++next;
    ++out.stored;
  }
  if (ref.agent_stream) {
    sql::Stmt up(db_,
                 "INSERT INTO agent_streams (agent_id, next_seq, last_hash) VALUES (?,?,?) "
                 "ON CONFLICT(agent_id) DO UPDATE SET next_seq=excluded.next_seq, last_hash=excluded.last_hash");
    up.bind(1, ref.agent).bind(2, next).bind(3, next > 0 ? prev : std::string());
    if (auto r = up.run(); !r) return std::unexpected(r.error());
  } else {
    sql::Stmt up(db_, "UPDATE jobs SET next_seq=?, last_hash=? WHERE id=?");
    up.bind(1, next).bind(2, next > 0 ? prev : std::string()).bind(3, ref.job);
    if (auto r = up.run(); !r) return std::unexpected(r.error());
  }
  if (lease_back && next > 0) {
    // Records signed by the agent that held the lease, and now stored: lease it back.
    sql::Stmt claim(db_,
                    "UPDATE jobs SET status='running', agent_id=?, requeued_from='', lease_expires_ms=?, updated_ms=? "
                    "WHERE id=? AND status='queued'");
    claim.bind(1, ref.agent).bind(2, lease_back->now_ms + lease_back->lease_ms).bind(3, lease_back->now_ms).bind(4, ref.job);
    if (auto r = claim.run(); !r) return std::unexpected(r.error());
  }
  // Durable before the caller acknowledges anything (synchronous=FULL).
  if (auto r = tx.commit(); !r) return std::unexpected(r.error());
  out.acked_seq = next - 1;
  return out;
}

Result<IngestResult> Store::ingest_requeued(const std::string& job_id, const std::string& agent_id,
                                            const Ed25519PublicKey& key, const Json& records, std::int64_t now_ms,
                                            std::int64_t lease_ms) {
  const LeaseBack lease_back{now_ms, lease_ms};
  return ingest_stream(StreamRef{job_id, agent_id, job_id, false}, key, records, &lease_back);
}

Result<void> Store::extend_running_leases(std::int64_t until_ms) {
  sql::Stmt s(db_, "UPDATE jobs SET lease_expires_ms=? WHERE status='running' AND lease_expires_ms < ?");
  s.bind(1, until_ms).bind(2, until_ms);
  return s.run();
}

Result<std::vector<std::string>> Store::agent_records(const std::string& agent_id) {
  return records(agent_stream_key(agent_id));
}

Result<bool> Store::complete(const std::string& job_id, const std::string& agent_id, const std::string& status,
                             std::int64_t now_ms) {
  sql::Stmt s(db_,
              "UPDATE jobs SET status=?, updated_ms=?, lease_expires_ms=0 WHERE id=? AND agent_id=? AND status='running'");
  s.bind(1, status).bind(2, now_ms).bind(3, job_id).bind(4, agent_id);
  if (auto r = s.run(); !r) return std::unexpected(r.error());
  return sqlite3_changes(db_) > 0;
}

Result<std::optional<std::string>> Store::last_record(const std::string& job_id) {
  sql::Stmt s(db_, "SELECT body FROM records WHERE job_id=? ORDER BY seq DESC LIMIT 1");
  s.bind(1, job_id);
  auto row = s.step();
  if (!row) return std::unexpected(row.error());
  if (!*row) return std::optional<std::string>();
  return std::optional<std::string>(s.text(0));
}

Result<std::vector<std::string>> Store::records(const std::string& job_id) {
  sql::Stmt s(db_, "SELECT body FROM records WHERE job_id=? ORDER BY seq");
  s.bind(1, job_id);
  std::vector<std::string> out;
  for (;;) {
    auto row = s.step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.push_back(s.text(0));
  }
  return out;
}

}  // namespace delegate::controlplane
