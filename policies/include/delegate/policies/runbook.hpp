#pragma once
// The local approved runbook catalog (README, "Configuration"): one YAML file per runbook in
// runbooks_dir. Unknown keys are errors. Parameters are typed and validated; they are
// substituted only into whole argv elements or JSON values, never into a shell string.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <regex>
#include <string>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/common/json.hpp>

namespace delegate::policies {

enum class ParamType { string, integer, boolean };

struct ParamSpec {
  ParamType type = ParamType::string;
  bool required = false;
  std::string description;
  std::optional<std::string> pattern;  // ECMAScript, must match the whole value
  std::optional<std::regex> compiled;
  std::optional<std::int64_t> min, max;  // integer bounds
  std::size_t max_length = 1024;         // string length cap (bytes)
  std::vector<std::string> allowed;      // "enum": closed set of strings
  bool allow_leading_dash = false;       // a string value may start with '-' (else refused)
  std::optional<Json> default_value;
};

enum class StepKind { command, script };

struct StepSandbox {
  std::string profile = "default";  // "network" when the step sets network: true and no profile
  bool network = false;
  std::uint32_t timeout_s = 60;
  std::uint32_t memory_mb = 256;
  std::optional<std::uint32_t> cpu_s;      // default: timeout_s
  std::optional<std::uint32_t> pids;       // default: 64
  std::optional<std::uint64_t> output_kb;  // default: 1024
  std::optional<std::uint32_t> cpu_percent;  // CPU bandwidth, 100 = one CPU; default: 100
  bool root = false;            // run as uid 0 (no capabilities); only if the agent allows it
  bool allow_degraded = false;  // run even if the host lacks a namespace (recorded in step.start)
  std::vector<std::string> ro, rw, hide;  // absolute host paths: read-only, writable, covered
  // Host Unix sockets the step needs (e.g. /run/systemd/private); each must also be in
  // the agent's sandbox.allow_sockets, or the step fails before it runs.
  std::vector<std::string> sockets;
};

// A step output: a typed value taken from the step's stdout after it exits 0, for later
// steps as ${steps.STEP.outputs.NAME} (docs/runbooks.md). `value` carries the type and
// the checks, with the same meaning as for a parameter (required/default unused).
enum class OutputSource {
  json,  // JSON Pointer (RFC 6901) into the JSON document on the last non-empty stdout line
  line,  // the rest of the one stdout line that starts with `selector`
};

struct OutputSpec {
  OutputSource source = OutputSource::json;
  std::string selector;  // the JSON Pointer or the line prefix
  ParamSpec value;
};

// No output value is longer than this (bytes), whatever max_length says.
inline constexpr std::size_t kMaxOutputValueBytes = 4096;

struct Step {
  std::string name;
  StepKind uses = StepKind::command;
  // command: argv template; script: interpreter argv (default ["/bin/sh"]) + script text.
  std::vector<std::string> argv;
  std::string script;
  // values may reference ${params.x}, ${steps.s.outputs.y} and ${secrets.NAME}
  std::map<std::string, std::string> env;
  // with.secret_files: file name in /run/secrets -> secret NAME (one reference each).
  std::map<std::string, std::string> secret_files;
  // Names of the secrets the env values and secret_files reference: the step receives only these.
  std::vector<std::string> secrets;
  StepSandbox sandbox;
  std::map<std::string, OutputSpec> outputs;  // with.outputs
};

struct AuthorizeRule {
  std::vector<std::string> scopes;  // all required
  std::vector<std::string> roles;   // any one suffices; empty = no role needed
};

struct Runbook {
  std::string name;
  std::string description;
  std::optional<AuthorizeRule> authorize;  // absent = not runnable (least privilege)
  std::map<std::string, ParamSpec> params;
  std::vector<Step> steps;
};

// "${secrets." opens a secret reference; it is allowed only in a step's env values and
// as the whole value of a with.secret_files entry.
inline constexpr std::string_view kSecretRefOpen = "${secrets.";
inline constexpr std::size_t kMaxSecretFiles = 16;

// Secret names, like parameter names: [A-Za-z_][A-Za-z0-9_]{0,63}.
[[nodiscard]] bool valid_secret_name(std::string_view name);

[[nodiscard]] Result<Runbook> parse_runbook(std::string_view yaml_text);

class Catalog {
 public:
  // Loads every *.yaml / *.yml file; any invalid file fails the whole load (fail closed)
  // with an error naming the file. Duplicate names are errors.
  [[nodiscard]] static Result<Catalog> load_dir(const std::filesystem::path& dir);
  [[nodiscard]] const Runbook* find(std::string_view name) const;
  [[nodiscard]] std::size_t size() const { return runbooks_.size(); }
  void add(Runbook rb) { runbooks_[rb.name] = std::move(rb); }

 private:
  std::map<std::string, Runbook, std::less<>> runbooks_;
};

// Validates params against the runbook's schema: unknown names, missing required
// values, wrong types, pattern/bounds/enum violations are errors naming the parameter.
// Returns the params with defaults filled in.
[[nodiscard]] Result<Json> validate_params(const Runbook& rb, const Json& params);

// Replaces every "${params.NAME}" in `tmpl` with the (validated) value's text, and every
// "${steps.STEP.outputs.NAME}" with outputs[STEP][NAME] (the recorded outputs of earlier
// steps). An unknown name is an error. Integers/booleans render as JSON text.
[[nodiscard]] Result<std::string> substitute(std::string_view tmpl, const Json& params,
                                             const Json& outputs = Json::object());

// Checks one extracted output value against its declaration: the parameter checks
// (type, pattern, bounds, enum, NUL, leading '-') plus the output size cap, and a
// negative integer counts as a leading '-'. Errors name "output STEP.NAME".
[[nodiscard]] Result<Json> check_output(const std::string& step, const std::string& name, const OutputSpec& spec,
                                        const Json& value);

// The environment variable a script step reads an earlier output from:
// STEP_<STEP>_<NAME>, upper-cased, '-' in the step name becoming '_'.
[[nodiscard]] std::string output_env_name(std::string_view step, std::string_view name);

}  // namespace delegate::policies
