#pragma once
// `delegate-agent run`: register, heartbeat, long-poll for jobs, run up to
// `concurrency` of them at once, stream their records, and on SIGTERM stop acquiring,
// give running steps a grace period, interrupt the rest, flush records, exit 0. On SIGHUP,
// reload what agent.yaml points to (reload.hpp).
#include <filesystem>
#include <optional>

#include <delegate/agent/config.hpp>
#include <delegate/common/log.hpp>
#include <delegate/common/time.hpp>

namespace delegate::agent {

struct DaemonOptions {
  // Read again on SIGHUP (docs/operations.md, "Reload"); empty: reload is refused.
  std::filesystem::path config_file;
  // --log-level / --log-format: kept over the file's log section, also after a reload.
  std::optional<log::Level> log_level;
  std::optional<log::Format> log_format;
};

// Blocks until shutdown. Returns the process exit status: 0 after a clean stop,
// 1 when the agent cannot start (identity, catalog, state dir).
[[nodiscard]] int run_daemon(const Config& config, const Clock& clock, DaemonOptions options = {});

}  // namespace delegate::agent
