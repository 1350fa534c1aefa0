#pragma once
// `delegate-agent run`: register, heartbeat, long-poll for jobs, run up to
// `concurrency` of them at once, stream their records, and on SIGTERM stop acquiring,
// give running steps a grace period, interrupt the rest, flush records, exit 0.
#include <delegate/agent/config.hpp>
#include <delegate/common/time.hpp>

namespace delegate::agent {

// Blocks until shutdown. Returns the process exit status: 0 after a clean stop,
// 1 when the agent cannot start (identity, catalog, state dir).
[[nodiscard]] int run_daemon(const Config& config, const Clock& clock);

}  // namespace delegate::agent
