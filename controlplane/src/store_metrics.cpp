// Store::counts, for the metrics (kept apart from the job and record paths).
#include <delegate/controlplane/store.hpp>

#include "store_internal.hpp"

namespace delegate::controlplane {

Result<StoreCounts> Store::counts(std::int64_t seen_since_ms) {
  StoreCounts out;
  sql::Stmt jobs(db_, "SELECT status, COUNT(*) FROM jobs GROUP BY status");
  for (;;) {
    auto row = jobs.step();
    if (!row) return std::unexpected(row.error());
    if (!*row) break;
    out.jobs[jobs.text(0)] = jobs.i64(1);
  }
  sql::Stmt agents(db_,
                   "SELECT COALESCE(SUM(revoked_ms != 0), 0), COALESCE(SUM(revoked_ms = 0 AND last_seen_ms >= ?), 0), "
                   "COALESCE(SUM(revoked_ms = 0 AND last_seen_ms < ?), 0) FROM agents");
  agents.bind(1, seen_since_ms).bind(2, seen_since_ms);
  auto row = agents.step();
  if (!row) return std::unexpected(row.error());
  if (*row) {
    out.agents_revoked = agents.i64(0);
    out.agents_online = agents.i64(1);
    out.agents_offline = agents.i64(2);
  }
  return out;
}

}  // namespace delegate::controlplane
