#pragma once
// Helpers shared by the store's source files. Internal to the control plane.
#include <string>

#include <delegate/common/json.hpp>
#include <delegate/controlplane/store.hpp>

#include "sqlite.hpp"

namespace delegate::controlplane::detail {

inline constexpr const char* kAgentColumns =
    "id, name, hostname, tags, version, public_key, created_ms, last_seen_ms, revoked_ms, enrollment_token";

// Stored JSON was produced by this process; a parse failure (a corrupted file) gives null.
[[nodiscard]] Json parse_stored(const std::string& s);
// A row selected with kAgentColumns.
[[nodiscard]] AgentRow agent_from(const sql::Stmt& s);
[[nodiscard]] std::string new_id(const char* prefix);

}  // namespace delegate::controlplane::detail
