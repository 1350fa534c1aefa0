#pragma once
// Helpers shared by the API handler files. Internal to the control plane.
#include <cstdint>
#include <initializer_list>
#include <string>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>
#include <delegate/controlplane/store.hpp>

#include "api.hpp"

namespace delegate::controlplane::detail {

[[nodiscard]] std::int64_t now_ms();
// The body as a JSON object, parsed strictly.
[[nodiscard]] Result<Json> body_object(const Request& req);
[[nodiscard]] Result<void> only_members(const Json& obj, std::initializer_list<const char*> allowed);
// obj[key] as an array of at most max_items non-empty printable strings (absent: []).
[[nodiscard]] Result<Json> string_array(const Json& obj, const char* key, std::size_t max_items, std::size_t max_len);
[[nodiscard]] bool is_id(const std::string& s);
[[nodiscard]] bool is_printable(const std::string& s, std::size_t max);
// Logs the error and answers 500 without details.
[[nodiscard]] Response internal_error(const Error& e);
[[nodiscard]] Json agent_json(const AgentRow& a);

}  // namespace delegate::controlplane::detail
