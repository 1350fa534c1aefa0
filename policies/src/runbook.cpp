#include <delegate/policies/runbook.hpp>

#include <algorithm>
#include <cctype>

#include <delegate/common/strict.hpp>
#include <set>
#include <system_error>

#include <delegate/common/fs.hpp>

#include "runbook_egress.hpp"
#include "runbook_detail.hpp"
#include "runbook_secret_files.hpp"
#include "yaml_util.hpp"

namespace delegate::policies {
namespace {

using detail::yfail;
using detail::yindex;
using detail::ykey;

constexpr std::size_t kMaxParams = 64;
constexpr std::size_t kMaxSteps = 32;
constexpr std::size_t kMaxArgv = 256;
constexpr std::size_t kMaxEnv = 64;
constexpr std::size_t kMaxEnum = 256;
constexpr std::size_t kMaxPattern = 1024;
constexpr std::size_t kMaxPatternedLength = 1024;
constexpr std::size_t kMaxStringCap = 1u << 20;
constexpr std::size_t kMaxRunbookBytes = 1u << 20;
constexpr std::size_t kMaxOutputs = 16;
constexpr std::size_t kMaxLinePrefix = 256;
constexpr std::string_view kRefOpen = "${params.";
constexpr std::string_view kStepRefOpen = "${steps.";
constexpr std::string_view kOutputsInfix = ".outputs.";

// Either kind of reference: places that take no substitution refuse both.
bool has_ref(std::string_view s) {
  return s.find(kRefOpen) != std::string_view::npos || s.find(kStepRefOpen) != std::string_view::npos;
}

bool is_lower_alnum(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
bool is_ident_start(char c) { return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || c == '_'; }
bool is_ident(char c) { return is_ident_start(c) || (c >= '0' && c <= '9'); }

bool valid_runbook_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || !is_lower_alnum(s[0])) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_lower_alnum(c) || c == '.' || c == '_' || c == '-'; });
}

bool valid_param_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || !is_ident_start(s[0])) return false;
  return std::all_of(s.begin(), s.end(), is_ident);
}

bool valid_step_name(std::string_view s) {
  if (s.empty() || s.size() > 64) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return c >= 0x20 && c < 0x7f; });
}

// A step that others reference by name: no '.', '}' or space to make a reference
// ambiguous, and a name that maps onto an environment variable name.
bool valid_output_step_name(std::string_view s) {
  if (s.empty() || s.size() > 64 || !is_ident_start(s[0])) return false;
  return std::all_of(s.begin(), s.end(), [](char c) { return is_ident(c) || c == '-'; });
}


// One reference found in a template: "${params.NAME}" (step empty) or
// "${steps.STEP.outputs.NAME}".
struct Ref {
  std::size_t begin, end;  // [begin, end) covers the whole reference
  std::string_view step;
  std::string_view name;
};

// Scans `tmpl` for "${params.NAME}" and "${steps.STEP.outputs.NAME}". Anything else
// containing '$' is literal text; a "${params." or "${steps." that is not a well-formed
// reference is an error rather than literal text, because the author clearly meant a
// substitution.
Result<std::vector<Ref>> find_refs(std::string_view tmpl) {
  std::vector<Ref> refs;
  std::size_t pos = 0;
  while ((pos = tmpl.find("${", pos)) != std::string_view::npos) {
    const std::string_view rest = tmpl.substr(pos);
    const bool param = rest.starts_with(kRefOpen);
    if (!param && !rest.starts_with(kStepRefOpen)) {
      pos += 2;
      continue;
    }
    const std::size_t inner_begin = pos + (param ? kRefOpen.size() : kStepRefOpen.size());
    const std::size_t close = tmpl.find('}', inner_begin);
    if (close == std::string_view::npos) {
      return fail(Errc::parse, param ? "unterminated ${params.…} reference" : "unterminated ${steps.…} reference");
    }
    const std::string_view inner = tmpl.substr(inner_begin, close - inner_begin);
    if (param) {
      if (!valid_param_name(inner)) {
        return fail(Errc::parse, "malformed parameter reference ${params." + printable(inner) + "}");
      }
      refs.push_back({pos, close + 1, {}, inner});
    } else {
      const std::size_t infix = inner.find(kOutputsInfix);
      const std::string_view step = inner.substr(0, infix);
      const std::string_view name = infix == std::string_view::npos ? "" : inner.substr(infix + kOutputsInfix.size());
      if (infix == std::string_view::npos || !valid_output_step_name(step) || !valid_param_name(name)) {
        return fail(Errc::parse, "malformed step output reference ${steps." + printable(inner) +
                                     "} (expected ${steps.STEP.outputs.NAME})");
      }
      refs.push_back({pos, close + 1, step, name});
    }
    pos = close + 1;
  }
  return refs;
}

// Checks every reference in a template names a declared parameter that will always
// have a value (required or defaulted), or a declared output of an earlier step (a
// step that got that far has recorded all its outputs), so substitution cannot fail
// at run time.
void check_refs(const Runbook& rb, std::string_view tmpl, const std::string& path) {
  auto refs = find_refs(tmpl);
  if (!refs) yfail(path, refs.error().message);
  for (const auto& r : *refs) {
    if (!r.step.empty()) {
      const std::string ref = "${steps." + std::string(r.step) + ".outputs." + std::string(r.name) + "}";
      auto st = std::find_if(rb.steps.begin(), rb.steps.end(), [&](const Step& s) { return s.name == r.step; });
      if (st == rb.steps.end()) yfail(path, "references " + ref + " but no earlier step is named " + std::string(r.step));
      if (!st->outputs.contains(std::string(r.name))) {
        yfail(path, "references " + ref + " but step " + std::string(r.step) + " declares no output " +
                        std::string(r.name));
      }
      continue;
    }
    auto it = rb.params.find(std::string(r.name));
    if (it == rb.params.end()) yfail(path, "references undeclared parameter " + std::string(r.name));
    if (!it->second.required && !it->second.default_value) {
      yfail(path, "references optional parameter " + std::string(r.name) + " that has no default");
    }
  }
}

ParamType parse_type(const YAML::Node& n, const std::string& path) {
  std::string t = detail::ystring(n, path);
  if (t == "string") return ParamType::string;
  if (t == "integer") return ParamType::integer;
  if (t == "boolean") return ParamType::boolean;
  yfail(path, "must be string, integer or boolean");
}

Json yaml_default(const YAML::Node& n, const ParamSpec& spec, const std::string& path) {
  switch (spec.type) {
    case ParamType::string: return Json(detail::ystring(n, path));
    case ParamType::integer: return Json(detail::yint(n, path));
    case ParamType::boolean: return Json(detail::ybool(n, path));
  }
  yfail(path, "unsupported type");
}

Result<Json> check_value(const std::string& what, const ParamSpec& spec, const Json& v);

std::string param_subject(std::string_view name) { return "parameter \"" + printable(name) + "\""; }

// The typed value checks shared by parameters and step outputs. Outputs have no
// required/default (their keys are refused before this), may set allow_leading_dash on
// an integer (a negative number is an option too), and are capped at 4 KiB.
ParamSpec parse_value_spec(const YAML::Node& n, const std::string& path, bool output) {
  ParamSpec s;
  if (!n["type"]) yfail(ykey(path, "type"), "missing");
  s.type = parse_type(n["type"], ykey(path, "type"));
  const char* kind = output ? " outputs" : " parameters";
  auto only_for = [&](const char* key, ParamType t, const char* tname) {
    if (n[key] && s.type != t) yfail(ykey(path, key), std::string("only applies to ") + tname + kind);
  };
  only_for("pattern", ParamType::string, "string");
  only_for("max_length", ParamType::string, "string");
  only_for("enum", ParamType::string, "string");
  if (!output) only_for("allow_leading_dash", ParamType::string, "string");
  if (output && n["allow_leading_dash"] && s.type == ParamType::boolean) {
    yfail(ykey(path, "allow_leading_dash"), "only applies to string or integer outputs");
  }
  only_for("min", ParamType::integer, "integer");
  only_for("max", ParamType::integer, "integer");

  if (n["required"]) s.required = detail::ybool(n["required"], ykey(path, "required"));
  if (n["allow_leading_dash"]) {
    s.allow_leading_dash = detail::ybool(n["allow_leading_dash"], ykey(path, "allow_leading_dash"));
  }
  if (n["description"]) s.description = detail::ystring(n["description"], ykey(path, "description"));
  if (n["pattern"]) {
    std::string p = detail::ystring(n["pattern"], ykey(path, "pattern"));
    if (p.empty() || p.size() > kMaxPattern) yfail(ykey(path, "pattern"), "must be 1..1024 characters");
    try {
      s.compiled.emplace(p, std::regex::ECMAScript);
    } catch (const std::regex_error& e) {
      yfail(ykey(path, "pattern"), std::string("invalid regular expression: ") + e.what());
    }
    s.pattern = std::move(p);
  }
  if (n["max_length"]) {
    s.max_length = static_cast<std::size_t>(detail::yint_range(
        n["max_length"], ykey(path, "max_length"), 1, output ? kMaxOutputValueBytes : kMaxStringCap));
  }
  // libstdc++'s std::regex recurses once per input character or more: a long value
  // against a pattern with groups overflows a 2 MiB stack near 2 KiB of input. Keep
  // patterned values short enough that matching untrusted input cannot crash the agent.
  if (s.compiled && s.max_length > kMaxPatternedLength) {
    yfail(ykey(path, "max_length"), "must be at most 1024 when a pattern is set");
  }
  if (n["enum"]) {
    s.allowed = detail::ystring_list(n["enum"], ykey(path, "enum"), kMaxEnum);
    if (s.allowed.empty()) yfail(ykey(path, "enum"), "must not be empty");
  }
  if (n["min"]) s.min = detail::yint(n["min"], ykey(path, "min"));
  if (n["max"]) s.max = detail::yint(n["max"], ykey(path, "max"));
  if (s.min && s.max && *s.min > *s.max) yfail(path, "min is greater than max");
  if (n["default"]) {
    if (s.required) yfail(ykey(path, "default"), "a required parameter cannot have a default");
    Json d = yaml_default(n["default"], s, ykey(path, "default"));
    // A default that its own schema would reject is a runbook bug; catch it at load.
    auto checked = check_value(param_subject("default"), s, d);
    if (!checked) yfail(ykey(path, "default"), checked.error().message);
    s.default_value = std::move(d);
  }
  return s;
}

ParamSpec parse_param(const YAML::Node& n, const std::string& path) {
  detail::ycheck_keys(n, path,
                      {"type", "pattern", "required", "description", "min", "max", "max_length", "enum", "default",
                       "allow_leading_dash"});
  return parse_value_spec(n, path, false);
}

// with.outputs: NAME: /json/pointer (a string output at that pointer), or a mapping
// with exactly one of json: /pointer or line: "prefix", a type and the value checks.
OutputSpec parse_output(const YAML::Node& n, const std::string& path) {
  OutputSpec o;
  if (n.IsScalar()) {
    o.selector = detail::ystring(n, path);
  } else {
    detail::ycheck_keys(n, path,
                        {"json", "line", "type", "pattern", "description", "min", "max", "max_length", "enum",
                         "allow_leading_dash"});
    if (static_cast<bool>(n["json"]) == static_cast<bool>(n["line"])) yfail(path, "needs exactly one of json or line");
    o.source = n["json"] ? OutputSource::json : OutputSource::line;
    const std::string spath = ykey(path, n["json"] ? "json" : "line");
    o.selector = detail::ystring(n[n["json"] ? "json" : "line"], spath);
    o.value = parse_value_spec(n, path, true);
    if (o.source == OutputSource::line) {
      if (o.selector.empty() || o.selector.size() > kMaxLinePrefix) yfail(spath, "must be 1..256 characters");
      if (!std::all_of(o.selector.begin(), o.selector.end(), [](char c) { return c >= 0x20 && c < 0x7f; })) {
        yfail(spath, "must be printable ASCII");
      }
      return o;
    }
  }
  // The whole document ("") is never a typed scalar; "~" escapes are ~0 and ~1 only.
  const std::string where = n.IsScalar() ? path : ykey(path, "json");
  if (o.selector.empty() || o.selector.front() != '/' || o.selector.size() > kMaxLinePrefix) {
    yfail(where, "must be a JSON Pointer (RFC 6901) starting with '/', at most 256 characters");
  }
  try {
    (void)Json::json_pointer(o.selector);
  } catch (const Json::exception&) {
    yfail(where, "is not a valid JSON Pointer (RFC 6901)");
  }
  return o;
}

std::map<std::string, OutputSpec> parse_outputs(const YAML::Node& n, const std::string& path) {
  std::map<std::string, OutputSpec> out;
  auto names = detail::ymap_keys(n, path);
  if (names.empty() || names.size() > kMaxOutputs) yfail(path, "must declare 1..16 outputs");
  for (const auto& name : names) {
    const std::string opath = ykey(path, name);
    if (!valid_param_name(name)) yfail(opath, "output names must match [A-Za-z_][A-Za-z0-9_]{0,63}");
    out.emplace(name, parse_output(n[name], opath));
  }
  return out;
}

// A step output is data some other system printed: spliced into the command string of
// `sh -c`, it would be shell code. Refused in the argument after a shell's -c option;
// pass it as a positional argument ("$1") or through env instead.
void check_shell_string(const std::vector<std::string>& argv, const std::string& path) {
  static const std::set<std::string, std::less<>> kShells{"sh", "bash", "dash", "zsh", "ksh", "mksh", "ash", "busybox"};
  const auto slash = argv[0].rfind('/');
  const std::string_view base = slash == std::string::npos ? std::string_view(argv[0]) : std::string_view(argv[0]).substr(slash + 1);
  if (!kShells.contains(base)) return;
  for (std::size_t i = 2; i < argv.size(); ++i) {
    const std::string& opt = argv[i - 1];
    const bool command_option = opt.size() > 1 && opt[0] == '-' && opt[1] != '-' && opt.find('c') != std::string::npos;
    if (command_option && argv[i].find(kStepRefOpen) != std::string::npos) {
      yfail(yindex(path, i), "step outputs cannot be substituted into a shell command string; pass them as "
                             "positional arguments or via env instead");
    }
  }
}

StepSandbox parse_sandbox(const YAML::Node& n, const std::string& path) {
  detail::ycheck_keys(n, path, {"profile", "network", "timeout_s", "memory_mb", "cpu_s", "pids", "output_kb",
                                "cpu_percent", "root", "allow_degraded", "ro", "rw", "hide", "sockets", "egress"});
  StepSandbox s;
  auto u32 = [&](const char* key, std::int64_t hi) {
    return static_cast<std::uint32_t>(detail::yint_range(n[key], ykey(path, key), 1, hi));
  };
  if (n["profile"]) {
    s.profile = detail::ystring(n["profile"], ykey(path, "profile"));
    if (s.profile.empty()) yfail(ykey(path, "profile"), "must not be empty");
  }
  if (n["network"]) s.network = detail::ybool(n["network"], ykey(path, "network"));
  // A step that asks for the network wants the profile that allows IP sockets, unless
  // it names one itself.
  if (s.network && !n["profile"]) s.profile = "network";
  if (n["egress"]) {
    s.egress = detail::parse_egress(n["egress"], ykey(path, "egress"));
    // Host networking would bypass the proxy: the two cannot be combined.
    if (s.network) yfail(ykey(path, "egress"), "cannot be combined with network: true");
    // Only the proxy on the namespace's loopback is reachable, but the step needs IP
    // sockets to talk to it.
    if (!s.egress.empty() && !n["profile"]) s.profile = "network";
  }
  if (n["cpu_percent"]) s.cpu_percent = u32("cpu_percent", 100000);
  if (n["root"]) s.root = detail::ybool(n["root"], ykey(path, "root"));
  if (n["allow_degraded"]) s.allow_degraded = detail::ybool(n["allow_degraded"], ykey(path, "allow_degraded"));
  // sockets: host Unix sockets the step asks to connect to; granted only when the
  // agent's sandbox.allow_sockets lists them too.
  for (const char* key : {"ro", "rw", "hide", "sockets"}) {
    if (!n[key]) continue;
    const YAML::Node& list = n[key];
    if (!list.IsSequence()) yfail(ykey(path, key), "must be a list of absolute paths");
    // Each entry is a mount in the step's launch; a bound list keeps launches bounded.
    if (list.size() > 64) yfail(ykey(path, key), "at most 64 paths");
    const std::string_view k = key;
    auto& dst = k == "ro" ? s.ro : k == "rw" ? s.rw : k == "hide" ? s.hide : s.sockets;
    for (std::size_t i = 0; i < list.size(); ++i) {
      const std::string where = ykey(path, key) + "[" + std::to_string(i) + "]";
      auto p = detail::ystring(list[i], where);
      // Paths are fixed by the runbook: a parameter must never choose what a step sees.
      if (p.empty() || p.front() != '/') yfail(where, "must be an absolute path");
      if (has_ref(p)) yfail(where, "a mount path cannot be a parameter or step output");
      // The sandbox builds /proc and /dev itself; refuse here rather than at launch.
      for (std::string_view reserved : {"/proc", "/dev"}) {
        if (p == reserved || p.starts_with(std::string(reserved) + "/")) {
          yfail(where, "paths under " + std::string(reserved) + " are provided by the sandbox");
        }
      }
      dst.push_back(std::move(p));
    }
  }
  if (n["timeout_s"]) s.timeout_s = u32("timeout_s", 86400);
  if (n["memory_mb"]) s.memory_mb = u32("memory_mb", 1 << 20);
  if (n["cpu_s"]) s.cpu_s = u32("cpu_s", 86400);
  if (n["pids"]) s.pids = u32("pids", 65536);
  if (n["output_kb"]) {
    s.output_kb = static_cast<std::uint64_t>(detail::yint_range(n["output_kb"], ykey(path, "output_kb"), 1, 1 << 22));
  }
  return s;
}

// The program a step runs is fixed by the runbook; only its arguments may vary.
void check_program(const std::string& program, const std::string& path) {
  if (program.empty()) yfail(path, "the program must not be empty");
  if (has_ref(program)) yfail(path, "the program cannot be a parameter or step output");
}

// Variables that change how the loader or a shell behaves must not carry caller input.
bool is_control_env(std::string_view name) {
  return name.starts_with("LD_") || name == "PATH" || name == "BASH_ENV" || name == "ENV" ||
         name == "IFS" || name == "SHELLOPTS" || name == "PS4";
}

// A secret reference anywhere but an env value or a with.secret_files value (argv,
// script text, mount paths, names) would put the value where it is recorded or visible
// to other processes: refused. At a step's root (step_root), those are skipped.
void refuse_secret_refs(const YAML::Node& n, const std::string& path, const std::string& step,
                        bool step_root = false, bool http = false) {
  if (n.IsScalar()) {
    if (n.Scalar().find(kSecretRefOpen) != std::string::npos) {
      yfail(path, (step.empty() ? std::string() : "step \"" + printable(step) + "\": ") +
                      "${secrets.…} may only be used in a step's env values and with.secret_files");
    }
    return;
  }
  if (n.IsSequence()) {
    for (std::size_t i = 0; i < n.size(); ++i) refuse_secret_refs(n[i], yindex(path, i), step);
  } else if (n.IsMap()) {
    for (const auto& kv : n) {
      const std::string key = kv.first.IsScalar() ? kv.first.Scalar() : std::string();
      refuse_secret_refs(kv.first, path, step);
      if (step_root && http && key == "with") {
        continue;  // an http step's with: is checked key by key (runbook_http.cpp)
      } else if (step_root && key == "env" && kv.second.IsMap()) {
        for (const auto& var : kv.second) refuse_secret_refs(var.first, ykey(path, key), step);
      } else if (step_root && key == "with" && kv.second.IsMap()) {
        // with.secret_files values are secret references by design; their file names are not.
        for (const auto& w : kv.second) {
          const std::string wkey = w.first.IsScalar() ? w.first.Scalar() : std::string();
          refuse_secret_refs(w.first, ykey(path, key), step);
          if (wkey != "secret_files" || !w.second.IsMap()) refuse_secret_refs(w.second, ykey(ykey(path, key), wkey), step);
          else for (const auto& f : w.second) refuse_secret_refs(f.first, ykey(ykey(path, key), wkey), step);
        }
      } else {
        refuse_secret_refs(kv.second, ykey(path, key), step);
      }
    }
  }
}

// The secret names an env value references; a malformed reference is an error.
std::vector<std::string> secret_refs(std::string_view value, const std::string& path) {
  std::vector<std::string> names;
  for (std::size_t pos = value.find(kSecretRefOpen); pos != std::string_view::npos;
       pos = value.find(kSecretRefOpen, pos)) {
    const std::size_t begin = pos + kSecretRefOpen.size();
    const std::size_t close = value.find('}', begin);
    const auto name = value.substr(begin, close == std::string_view::npos ? std::string_view::npos : close - begin);
    if (close == std::string_view::npos || !valid_secret_name(name)) {
      yfail(path, "malformed secret reference ${secrets." + printable(name) + "}");
    }
    names.emplace_back(name);
    pos = close + 1;
  }
  return names;
}

Step parse_step(const YAML::Node& n, const std::string& path, const Runbook& rb) {
  detail::ycheck_keys(n, path, {"name", "uses", "with", "sandbox", "env"});
  Step st;
  if (!n["name"]) yfail(ykey(path, "name"), "missing");
  st.name = detail::ystring(n["name"], ykey(path, "name"));
  if (!valid_step_name(st.name)) yfail(ykey(path, "name"), "must be 1..64 printable ASCII characters");
  const bool http = n["uses"] && n["uses"].IsScalar() && n["uses"].Scalar() == "http";
  refuse_secret_refs(n, path, st.name, /*step_root=*/true, http);
  if (!n["uses"]) yfail(ykey(path, "uses"), "missing");
  std::string uses = detail::ystring(n["uses"], ykey(path, "uses"));
  const std::string wpath = ykey(path, "with");
  if (!n["with"]) yfail(wpath, "missing");
  const YAML::Node with = n["with"];
  if (uses == "command") {
    st.uses = StepKind::command;
    detail::ycheck_keys(with, wpath, {"argv", "outputs", "secret_files"});
    if (!with["argv"]) yfail(ykey(wpath, "argv"), "missing");
    st.argv = detail::ystring_list(with["argv"], ykey(wpath, "argv"), kMaxArgv);
    if (st.argv.empty()) yfail(ykey(wpath, "argv"), "must not be empty");
    check_program(st.argv[0], yindex(ykey(wpath, "argv"), 0));
    for (std::size_t i = 1; i < st.argv.size(); ++i) check_refs(rb, st.argv[i], yindex(ykey(wpath, "argv"), i));
    check_shell_string(st.argv, ykey(wpath, "argv"));
  } else if (uses == "script") {
    st.uses = StepKind::script;
    detail::ycheck_keys(with, wpath, {"script", "interpreter", "outputs", "secret_files"});
    if (!with["script"]) yfail(ykey(wpath, "script"), "missing");
    st.script = detail::ystring(with["script"], ykey(wpath, "script"));
    if (st.script.empty()) yfail(ykey(wpath, "script"), "must not be empty");
    // Splicing caller input into program text is exactly the injection the design
    // forbids; scripts read parameters from env (or argv) instead.
    if (has_ref(st.script)) {
      yfail(ykey(wpath, "script"),
            "parameters cannot be substituted into script text, nor step outputs; pass them via env instead");
    }
    if (with["interpreter"]) {
      st.argv = detail::ystring_list(with["interpreter"], ykey(wpath, "interpreter"), kMaxArgv);
      if (st.argv.empty()) yfail(ykey(wpath, "interpreter"), "must not be empty");
    } else {
      st.argv = {"/bin/sh"};
    }
    check_program(st.argv[0], yindex(ykey(wpath, "interpreter"), 0));
    for (std::size_t i = 1; i < st.argv.size(); ++i) {
      check_refs(rb, st.argv[i], yindex(ykey(wpath, "interpreter"), i));
    }
    check_shell_string(st.argv, ykey(wpath, "interpreter"));
  } else if (uses == "http") {
    st.uses = StepKind::http;
    detail::parse_http_with(with, wpath, st, rb);
    if (n["env"]) yfail(ykey(path, "env"), "an http step has no environment (use headers or auth)");
  } else {
    yfail(ykey(path, "uses"), "must be command, script or http");
  }
  if (with["outputs"]) {
    st.outputs = parse_outputs(with["outputs"], ykey(wpath, "outputs"));
    if (!valid_output_step_name(st.name)) {
      yfail(ykey(path, "name"), "a step with outputs must be named [A-Za-z_][A-Za-z0-9_-]{0,63}");
    }
  }
  if (with["secret_files"]) detail::parse_secret_files(with["secret_files"], ykey(wpath, "secret_files"), st);
  if (n["sandbox"]) st.sandbox = parse_sandbox(n["sandbox"], ykey(path, "sandbox"));
  if (st.uses == StepKind::http) detail::check_http_step(st, path);
  if (n["env"]) {
    const std::string epath = ykey(path, "env");
    auto names = detail::ymap_keys(n["env"], epath);
    if (names.size() > kMaxEnv) yfail(epath, "more than 64 variables");
    for (const auto& name : names) {
      const std::string vpath = ykey(epath, name);
      if (!valid_param_name(name)) yfail(vpath, "variable names must match [A-Za-z_][A-Za-z0-9_]{0,63}");
      std::string value = detail::ystring(n["env"][name], vpath);
      check_refs(rb, value, vpath);
      if (is_control_env(name) && has_ref(value)) {
        yfail(vpath, "parameters and step outputs cannot be substituted into loader/shell control variables");
      }
      if (is_control_env(name) && value.find(kSecretRefOpen) != std::string::npos) {
        yfail(vpath, "step \"" + printable(st.name) + "\": secrets cannot be loader/shell control variables");
      }
      for (auto& secret : secret_refs(value, vpath)) {
        if (std::find(st.secrets.begin(), st.secrets.end(), secret) == st.secrets.end()) st.secrets.push_back(secret);
      }
      st.env.emplace(name, std::move(value));
    }
  }
  return st;
}

Runbook parse_root(const YAML::Node& root) {
  detail::ycheck_keys(root, "", {"name", "description", "authorize", "params", "steps"});
  for (const char* key : {"name", "description", "authorize", "params"}) {
    if (root[key]) refuse_secret_refs(root[key], key, "");
  }
  Runbook rb;
  if (!root["name"]) yfail("name", "missing");
  rb.name = detail::ystring(root["name"], "name");
  if (!valid_runbook_name(rb.name)) yfail("name", "must match [a-z0-9][a-z0-9._-]{0,63}");
  if (root["description"]) rb.description = detail::ystring(root["description"], "description");

  if (root["authorize"]) {
    const YAML::Node a = root["authorize"];
    detail::ycheck_keys(a, "authorize", {"scopes", "roles"});
    AuthorizeRule rule;
    if (a["scopes"]) rule.scopes = detail::ystring_list(a["scopes"], "authorize.scopes", 64);
    if (a["roles"]) rule.roles = detail::ystring_list(a["roles"], "authorize.roles", 64);
    // An empty rule would let any valid credential run the runbook; make that an
    // explicit choice of scopes rather than an accident of an empty block.
    if (rule.scopes.empty() && rule.roles.empty()) {
      yfail("authorize", "must list at least one scope or role (omit the block to make the runbook not runnable)");
    }
    for (const auto& s : rule.scopes) {
      if (s.empty()) yfail("authorize.scopes", "scopes must not be empty");
    }
    for (const auto& r : rule.roles) {
      if (r.empty()) yfail("authorize.roles", "roles must not be empty");
    }
    rb.authorize = std::move(rule);
  }

  if (root["params"] && !root["params"].IsNull()) {
    auto names = detail::ymap_keys(root["params"], "params");
    if (names.size() > kMaxParams) yfail("params", "more than 64 parameters");
    for (const auto& name : names) {
      const std::string ppath = ykey("params", name);
      if (!valid_param_name(name)) yfail(ppath, "parameter names must match [A-Za-z_][A-Za-z0-9_]{0,63}");
      rb.params.emplace(name, parse_param(root["params"][name], ppath));
    }
  }

  if (!root["steps"]) yfail("steps", "missing");
  const YAML::Node steps = root["steps"];
  if (!steps.IsSequence() || steps.size() == 0) yfail("steps", "must be a non-empty list");
  if (steps.size() > kMaxSteps) yfail("steps", "more than 32 steps");
  std::set<std::string> step_names;
  std::map<std::string, std::string> env_names;  // STEP_X_Y -> the output it came from
  for (std::size_t i = 0; i < steps.size(); ++i) {
    Step st = parse_step(steps[i], yindex("steps", i), rb);
    if (!step_names.insert(st.name).second) yfail(ykey(yindex("steps", i), "name"), "duplicate step name");
    // Scripts read outputs by environment name: two outputs must not share one.
    for (const auto& [oname, spec] : st.outputs) {
      const std::string ref = st.name + "." + oname;
      auto [it, fresh] = env_names.emplace(output_env_name(st.name, oname), ref);
      if (!fresh) {
        yfail(ykey(ykey(yindex("steps", i), "with.outputs"), oname),
              "environment name " + it->first + " is also that of output " + it->second);
      }
    }
    rb.steps.push_back(std::move(st));
  }
  return rb;
}

std::string render(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

Result<Json> check_value(const std::string& what, const ParamSpec& spec, const Json& v) {
  switch (spec.type) {
    case ParamType::boolean:
      if (!v.is_boolean()) return fail(Errc::invalid_argument, what + " must be a boolean");
      return v;
    case ParamType::integer: {
      // Strings and floats are refused even when they look integral: the schema is the
      // contract, and "5" vs 5.0 vs 5 must not all mean the same thing.
      std::int64_t x = 0;
      if (v.is_number_unsigned()) {
        auto u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(INT64_MAX)) return fail(Errc::invalid_argument, what + " is out of range");
        x = static_cast<std::int64_t>(u);
      } else if (v.is_number_integer()) {
        x = v.get<std::int64_t>();
      } else {
        return fail(Errc::invalid_argument, what + " must be an integer");
      }
      if (spec.min && x < *spec.min) return fail(Errc::invalid_argument, what + " is below the minimum " + std::to_string(*spec.min));
      if (spec.max && x > *spec.max) return fail(Errc::invalid_argument, what + " is above the maximum " + std::to_string(*spec.max));
      return Json(x);
    }
    case ParamType::string: {
      if (!v.is_string()) return fail(Errc::invalid_argument, what + " must be a string");
      const auto& s = v.get_ref<const std::string&>();
      if (s.size() > spec.max_length) {
        return fail(Errc::invalid_argument, what + " is longer than " + std::to_string(spec.max_length) + " bytes");
      }
      // argv elements and env values are C strings: a NUL would silently truncate them.
      if (s.find('\0') != std::string::npos) return fail(Errc::invalid_argument, what + " contains a NUL byte");
      // Substituted into argv, "-H host" or "--help" would be an option to the command,
      // not the operand the runbook author had in mind, whatever the pattern says.
      if (!s.empty() && s.front() == '-' && !spec.allow_leading_dash) {
        return fail(Errc::invalid_argument, what + " starts with '-' (allow_leading_dash is not set)");
      }
      if (!spec.allowed.empty() && std::find(spec.allowed.begin(), spec.allowed.end(), s) == spec.allowed.end()) {
        return fail(Errc::invalid_argument, what + " is not one of the allowed values");
      }
      if (spec.compiled) {
        bool matched = false;
        try {
          matched = std::regex_match(s, *spec.compiled);
        } catch (const std::regex_error&) {
          // libstdc++ throws on excessive backtracking: refuse rather than guess.
          matched = false;
        }
        if (!matched) return fail(Errc::invalid_argument, what + " does not match its pattern");
      }
      return v;
    }
  }
  return fail(Errc::internal, what + " has an unknown type");
}

}  // namespace

namespace detail {

void check_refs_in(const Runbook& rb, std::string_view tmpl, const std::string& path) { check_refs(rb, tmpl, path); }

void check_template(const Runbook& rb, Step& st, std::string_view tmpl, const std::string& path) {
  // Secret references are cut out first: what is left takes parameters and outputs.
  std::string rest;
  std::size_t last = 0;
  for (std::size_t pos = tmpl.find(kSecretRefOpen); pos != std::string_view::npos; pos = tmpl.find(kSecretRefOpen, last)) {
    rest.append(tmpl.substr(last, pos - last));
    const std::size_t close = tmpl.find('}', pos);
    last = close == std::string_view::npos ? tmpl.size() : close + 1;
  }
  rest.append(tmpl.substr(last));
  check_refs(rb, rest, path);
  for (auto& secret : secret_refs(tmpl, path)) {
    if (std::find(st.secrets.begin(), st.secrets.end(), secret) == st.secrets.end()) st.secrets.push_back(secret);
  }
}

}  // namespace detail

bool valid_secret_name(std::string_view name) { return valid_param_name(name); }

Result<Runbook> parse_runbook(std::string_view yaml_text) {
  if (yaml_text.size() > kMaxRunbookBytes) return fail(Errc::too_large, "runbook larger than 1 MiB");
  try {
    auto root = parse_yaml_strict(yaml_text, YamlLimits{.max_bytes = kMaxRunbookBytes});
    if (!root) return std::unexpected(root.error());
    if (!*root || root->IsNull()) return fail(Errc::parse, "empty runbook");
    return parse_root(*root);
  } catch (const detail::YamlError& e) {
    return fail(Errc::parse, e.message);
  } catch (const YAML::Exception& e) {
    return fail(Errc::parse, std::string("invalid YAML: ") + e.what());
  } catch (const std::exception& e) {
    return fail(Errc::parse, std::string("invalid runbook: ") + e.what());
  }
}

Result<Catalog> Catalog::load_dir(const std::filesystem::path& dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(dir, ec)) {
    return fail(Errc::not_found, "runbooks directory " + dir.string() + " does not exist or is not a directory");
  }
  std::vector<std::filesystem::path> files;
  std::filesystem::directory_iterator it(dir, ec), end;
  if (ec) return fail(Errc::io, "cannot read runbooks directory " + dir.string() + ": " + ec.message());
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    const auto& p = it->path();
    auto ext = p.extension().string();
    if (ext != ".yaml" && ext != ".yml") continue;
    files.push_back(p);
  }
  if (ec) return fail(Errc::io, "cannot read runbooks directory " + dir.string() + ": " + ec.message());
  // Deterministic order so that "duplicate name" errors always name the same file.
  std::sort(files.begin(), files.end());

  Catalog cat;
  std::map<std::string, std::filesystem::path> origin;
  for (const auto& f : files) {
    auto text = read_file(f, kMaxRunbookBytes);
    if (!text) return fail(text.error().code, f.string() + ": " + text.error().message);
    auto rb = parse_runbook(*text);
    if (!rb) return fail(rb.error().code, f.string() + ": " + rb.error().message);
    auto [pos, inserted] = origin.emplace(rb->name, f);
    if (!inserted) {
      return fail(Errc::conflict, f.string() + ": duplicate runbook name " + rb->name + " (also in " +
                                      pos->second.string() + ")");
    }
    cat.add(std::move(*rb));
  }
  return cat;
}

const Runbook* Catalog::find(std::string_view name) const {
  auto it = runbooks_.find(name);
  return it == runbooks_.end() ? nullptr : &it->second;
}

Result<Json> validate_params(const Runbook& rb, const Json& params) {
  if (!params.is_object()) return fail(Errc::invalid_argument, "params must be a JSON object");
  Json out = Json::object();
  for (const auto& [name, value] : params.items()) {
    auto spec = rb.params.find(name);
    if (spec == rb.params.end()) {
      return fail(Errc::invalid_argument, "unknown parameter \"" + printable(name) + "\"");
    }
    auto v = check_value(param_subject(name), spec->second, value);
    if (!v) return std::unexpected(v.error());
    out[name] = std::move(*v);
  }
  for (const auto& [name, spec] : rb.params) {
    if (out.contains(name)) continue;
    if (spec.required) return fail(Errc::invalid_argument, "missing required parameter \"" + name + "\"");
    if (spec.default_value) out[name] = *spec.default_value;
  }
  return out;
}

Result<std::string> substitute(std::string_view tmpl, const Json& params, const Json& outputs) {
  auto refs = find_refs(tmpl);
  if (!refs) return std::unexpected(refs.error());
  std::string out;
  std::size_t last = 0;
  for (const auto& r : *refs) {
    out.append(tmpl.substr(last, r.begin - last));
    const std::string name = r.step.empty() ? std::string(r.name) : std::string(r.step) + ".outputs." + std::string(r.name);
    const Json* scope = &params;
    if (!r.step.empty()) {
      const std::string step(r.step);
      scope = outputs.is_object() && outputs.contains(step) ? &outputs.at(step) : nullptr;
    }
    if (scope == nullptr || !scope->is_object() || !scope->contains(std::string(r.name))) {
      return fail(Errc::invalid_argument, "no value for " + std::string(r.step.empty() ? "parameter" : "step output") +
                                              " \"" + name + "\"");
    }
    const Json& v = scope->at(std::string(r.name));
    if (!v.is_string() && !v.is_boolean() && !v.is_number_integer()) {
      return fail(Errc::invalid_argument, "\"" + name + "\" has a type that cannot be substituted");
    }
    std::string text = render(v);
    if (text.find('\0') != std::string::npos) {
      return fail(Errc::invalid_argument, "\"" + name + "\" contains a NUL byte");
    }
    out += text;
    last = r.end;
  }
  out.append(tmpl.substr(last));
  return out;
}

Result<Json> check_output(const std::string& step, const std::string& name, const OutputSpec& spec,
                          const Json& value) {
  const std::string what = "output " + printable(step) + "." + printable(name);
  if (value.is_string() && value.get_ref<const std::string&>().size() > kMaxOutputValueBytes) {
    return fail(Errc::invalid_argument, what + " is longer than " + std::to_string(kMaxOutputValueBytes) + " bytes");
  }
  auto v = check_value(what, spec.value, value);
  if (!v) return v;
  // A signed record (RFC 8785 numbers are IEEE doubles) carries integers up to 2^53 exactly.
  constexpr std::int64_t kMaxExact = (std::int64_t{1} << 53) - 1;
  if (v->is_number_integer() && (v->get<std::int64_t>() > kMaxExact || v->get<std::int64_t>() < -kMaxExact)) {
    return fail(Errc::invalid_argument, what + " is beyond +-(2^53-1), which a record cannot carry exactly");
  }
  // Rendered into argv, -5 is an option as much as -n is.
  if (v->is_number_integer() && v->get<std::int64_t>() < 0 && !spec.value.allow_leading_dash) {
    return fail(Errc::invalid_argument, what + " is negative, which starts with '-' (allow_leading_dash is not set)");
  }
  return v;
}

std::string output_env_name(std::string_view step, std::string_view name) {
  std::string out = "STEP_";
  auto up = [&](std::string_view s) {
    for (char c : s) out += c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  };
  up(step);
  out += '_';
  up(name);
  return out;
}

}  // namespace delegate::policies
