#pragma once
// One strict reader for every document the agent and the control plane read
// (agent.yaml, runbooks, the API-key file, controlplane.json, seccomp profiles, jobs,
// audit records, JWKS, JWT header and claims). Parsers that silently keep the last of
// two equal keys let one file mean two things to two readers (a reviewer sees the
// first `allow_root_steps: false`, the agent obeys the second `true`); every reader
// here refuses duplicates and names the key path ("duplicate key sandbox.allow_root_steps").
//
// JSON: parse_json_strict (json.hpp) refuses duplicates with the same message.
// YAML: parse_yaml_strict below walks the tree yaml-cpp builds (it keeps duplicate
// keys as separate pairs) and refuses them, non-string keys and over-deep nesting.
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>

#include <yaml-cpp/yaml.h>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>

namespace delegate {

struct YamlLimits {
  std::size_t max_bytes = 1u << 20;
  std::size_t max_depth = 32;
  // Nodes visited by the walk, counting each use of an alias again: bounds the
  // "billion laughs" expansion that anchors allow.
  std::size_t max_nodes = 200'000;
};

// Loads one YAML document and refuses what a strict reader must: syntax errors,
// duplicate keys (anywhere, by key path), keys that are not scalars, nesting deeper
// than the limit. Errc::parse (Errc::too_large for the size cap); never throws.
[[nodiscard]] Result<YAML::Node> parse_yaml_strict(std::string_view text, YamlLimits limits = {});

// Members of `obj` (a JSON object) must all be in `allowed`; otherwise
// "<path>.<key>: unknown key" (or "<key>: unknown key" at top level).
[[nodiscard]] Result<void> json_only_members(const Json& obj, std::string_view path,
                                             std::initializer_list<std::string_view> allowed);

[[nodiscard]] Result<void> json_only_members(const Json& obj, std::string_view path,
                                             std::span<const char* const> allowed);

// Keys of a YAML mapping must all be in `allowed`; same message shape as above.
[[nodiscard]] Result<void> yaml_only_keys(const YAML::Node& map, std::string_view path,
                                          std::initializer_list<std::string_view> allowed);

// "a.b" from "a" and "b"; "b" when `path` is empty.
[[nodiscard]] std::string key_path(std::string_view path, std::string_view key);

// Untrusted text quoted in an error, a log line, an audit detail or JSON output:
// printable ASCII only (everything else becomes '?', so the result is valid UTF-8
// and one line whatever the input was), at most `max` bytes plus "...".
[[nodiscard]] std::string printable(std::string_view s, std::size_t max = 64);

// Serialises JSON that may quote untrusted strings: invalid UTF-8 is replaced
// (U+FFFD) instead of throwing.
[[nodiscard]] std::string dump_safe(const Json& j, int indent = -1);

}  // namespace delegate
