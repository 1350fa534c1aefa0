#pragma once
// Every group of rows delegate-bench measures; each lives in its own file and adds its
// rows to the one table main prints.
#include "table.hpp"

namespace delegate::bench {

// Record sealing (JCS + SHA-256 + Ed25519) against a raw Ed25519 signature.
void seal_rows(Table& t);
// Output masking MB/s against memcpy of the same chunks.
void mask_rows(Table& t);
// Admin POST /v1/jobs -> a parked long poll answered, through the real control plane
// over TLS 1.3, against one HTTPS round trip.
void dispatch_rows(Table& t);
// Sandboxed launches of /bin/true in process, against posix_spawn and bubblewrap.
void launch_rows(Table& t);
// Whole processes: `delegate-agent sandbox-run -- /bin/true` against bubblewrap's.
void footprint_rows(Table& t);
// The control plane and an agent as processes: dispatch latency, jobs/s, agent RSS, ingest.
void system_rows(Table& t);
// OAuth token verification (full per-job path) and the audit pipeline of step output.
void token_rows(Table& t);
void pipeline_rows(Table& t);

}  // namespace delegate::bench
