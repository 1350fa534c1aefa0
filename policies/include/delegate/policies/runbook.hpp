#pragma once
// The local approved runbook catalog (docs/runbooks.md): one YAML file per runbook in
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

enum class StepKind { command, script, http };

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
  // host:port pairs (canonical) the step may reach through the agent's egress proxy; the
  // step then runs in a namespace whose only way out is that proxy (docs/egress.md).
  // An http step\'s URL (and token URL) must be among them unless it sets network: true.
  std::vector<std::string> egress;
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

// with.auth of an http step (docs/connectors.md): the header is built by the agent from
// resolved secrets; the step's text never holds a credential.
enum class HttpAuthType { none, api_key, bearer, basic, oauth2_client_credentials };

struct HttpAuth {
  HttpAuthType type = HttpAuthType::none;
  std::string header;   // api_key: the header name
  std::string secret;   // api_key, bearer, basic: the secret's name
  std::string username;  // basic
  std::string token_url, client_id, client_secret;  // oauth2_client_credentials (client_secret: a secret's name)
  std::vector<std::string> scopes;
};

// An http step (uses: http). The URL's scheme, host and port are literal; references
// (${params.x}, ${steps.S.outputs.N}) may appear only in its path and query, and are
// percent-encoded when substituted. Header values may hold references and secrets;
// body is a JSON value whose strings may hold them.
struct HttpSpec {
  std::string method = "GET";
  std::string url;        // template
  std::string authority;  // "host:port" of the URL, lower-case
  std::vector<std::pair<std::string, std::string>> headers;  // value templates
  std::optional<Json> body;
  std::vector<int> expect_status;  // empty: any 2xx
  std::uint32_t timeout_s = 30;
  HttpAuth auth;
  std::string token_authority;  // "host:port" of auth.token_url
  std::uint32_t retry_attempts = 1;
  std::vector<int> retry_on;
};

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
  HttpSpec http;                              // uses: http
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

// Substitutes references into an http step's URL: each value is percent-encoded (all
// but RFC 3986 unreserved characters), so it stays inside its path segment or query value.
[[nodiscard]] Result<std::string> substitute_url(std::string_view tmpl, const Json& params, const Json& outputs);

// The body of an http step with references substituted: a string that is exactly one
// reference takes the value's type; other strings get the values' text. `secrets` are
// the resolved values of the step's secrets.
[[nodiscard]] Result<Json> substitute_body(const Json& tmpl, const Json& params, const Json& outputs,
                                           const std::map<std::string, std::string>& secrets);

// A header value (or any text) with references and secrets substituted.
[[nodiscard]] Result<std::string> substitute_with_secrets(std::string_view tmpl, const Json& params,
                                                          const Json& outputs,
                                                          const std::map<std::string, std::string>& secrets);

class Catalog {
 public:
  // Loads every *.yaml / *.yml file; any invalid file fails the whole load (fail closed)
  // with an error naming the file. Duplicate names are errors.
  [[nodiscard]] static Result<Catalog> load_dir(const std::filesystem::path& dir);
  [[nodiscard]] const Runbook* find(std::string_view name) const;
  [[nodiscard]] std::size_t size() const { return runbooks_.size(); }
  [[nodiscard]] const std::map<std::string, Runbook, std::less<>>& all() const { return runbooks_; }
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
