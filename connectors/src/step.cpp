#include <delegate/connectors/step.hpp>

#include <algorithm>
#include <cctype>

namespace delegate::connectors {

std::string_view to_string(policies::StepKind kind) {
  switch (kind) {
    case policies::StepKind::command: return "command";
    case policies::StepKind::script: return "script";
    case policies::StepKind::http: return "http";
  }
  return "unknown";
}

namespace {

std::string env_name(const std::string& param) {
  std::string out = "PARAM_";
  for (char c : param) out += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string value_text(const Json& v) { return v.is_string() ? v.get<std::string>() : v.dump(); }

// An env value: parameters and outputs are substituted in the runbook's text between
// secret references, never in a secret's value, and their values can never become a
// secret reference (the references are found in the template only).
Result<std::string> env_value(const std::string& tmpl, const Json& params, const Json& outputs,
                              const std::map<std::string, std::string>& secrets) {
  std::string out;
  std::size_t last = 0;
  const auto open = policies::kSecretRefOpen;
  for (std::size_t pos = tmpl.find(open); pos != std::string::npos; pos = tmpl.find(open, last)) {
    auto piece = policies::substitute(std::string_view(tmpl).substr(last, pos - last), params, outputs);
    if (!piece) return std::unexpected(piece.error());
    out += *piece;
    const std::size_t close = tmpl.find('}', pos);
    if (close == std::string::npos) return fail(Errc::invalid_argument, "malformed secret reference");
    const std::string name = tmpl.substr(pos + open.size(), close - pos - open.size());
    auto it = secrets.find(name);
    if (it == secrets.end()) return fail(Errc::not_found, "secret " + name + " was not resolved");
    out += it->second;
    last = close + 1;
  }
  auto rest = policies::substitute(std::string_view(tmpl).substr(last), params, outputs);
  if (!rest) return std::unexpected(rest.error());
  out += *rest;
  return out;
}

}  // namespace

Result<PreparedStep> prepare_step(const policies::Step& step, std::size_t index, const Json& params,
                                  const StepContext& ctx, const Json& outputs,
                                  const std::map<std::string, std::string>& secrets) {
  PreparedStep out;
  sandbox::Spec& spec = out.spec;
  const auto& sb = step.sandbox;

  switch (step.uses) {
    case policies::StepKind::command:
      for (const auto& element : step.argv) {
        auto v = policies::substitute(element, params, outputs);
        if (!v) return std::unexpected(v.error());
        spec.argv.push_back(std::move(*v));
      }
      break;
    case policies::StepKind::script:
      // The interpreter's arguments take references like a command's (not its program).
      for (const auto& element : step.argv.empty() ? std::vector<std::string>{"/bin/sh"} : step.argv) {
        auto v = policies::substitute(element, params, outputs);
        if (!v) return std::unexpected(v.error());
        spec.argv.push_back(std::move(*v));
      }
      spec.argv.push_back("-c");
      spec.argv.push_back(step.script);
      // Scripts see parameters only as environment values.
      for (auto it = params.begin(); it != params.end(); ++it) {
        spec.env.push_back(env_name(it.key()) + "=" + value_text(it.value()));
      }
      // ... and the outputs of earlier steps likewise.
      for (const auto& [from, values] : outputs.items()) {
        for (const auto& [name, value] : values.items()) {
          spec.env.push_back(policies::output_env_name(from, name) + "=" + value_text(value));
        }
      }
      break;
    case policies::StepKind::http:
      // Its request is built by the agent (agent/src/http_step.cpp), which runs the
      // child through prepare_step as a command step of the http program.
      return fail(Errc::internal, "step " + step.name + " is an http step");
  }
  if (spec.argv.empty()) return fail(Errc::invalid_argument, "step " + step.name + " has an empty argv");
  for (const auto& [name, tmpl] : step.env) {
    auto v = env_value(tmpl, params, outputs, secrets);
    if (!v) return std::unexpected(v.error());
    spec.env.push_back(name + "=" + *v);
  }

  // Secret files: the value goes to the launcher, which writes it into the step's own
  // tmpfs; step.start names the files only.
  for (const auto& [file, name] : step.secret_files) {
    auto it = secrets.find(name);
    if (it == secrets.end()) return fail(Errc::not_found, "secret " + name + " was not resolved");
    spec.secret_files.push_back(sandbox::SecretFile{file, it->second});
  }

  spec.profile = sb.profile;
  spec.network = sb.network;
  spec.work_parent = ctx.work_parent;
  auto& lim = spec.limits;
  lim.timeout = std::min<std::chrono::milliseconds>(std::chrono::seconds(sb.timeout_s), ctx.remaining);
  lim.cpu_seconds = sb.cpu_s.value_or(sb.timeout_s);
  lim.memory_bytes = static_cast<std::uint64_t>(sb.memory_mb) << 20;
  lim.processes = sb.pids.value_or(64);
  lim.output_bytes = sb.output_kb.value_or(1024) * 1024;
  lim.cpu_percent = sb.cpu_percent.value_or(100);

  if (sb.root && !ctx.allow_root) {
    return fail(Errc::permission, "step " + step.name +
                                      " asks to run as root, which this agent's policy does not allow "
                                      "(sandbox.allow_root_steps)");
  }
  if (sb.network && !ctx.allow_host_network) {
    return fail(Errc::permission, "step " + step.name +
                                      " asks for the host's network (network: true), which this agent's policy does "
                                      "not allow (sandbox.allow_host_network); use sandbox.egress instead");
  }
  auto& iso = spec.isolation;
  // A host socket needs both halves: the runbook asks for it, the agent's policy lists
  // it. Compared after resolving symlinks, so neither side can name it by an alias.
  for (const auto& requested : sb.sockets) {
    std::error_code ec;
    const auto canon = std::filesystem::canonical(requested, ec);
    if (ec) return fail(Errc::not_found, "step " + step.name + " asks for host socket " + requested + ": " + ec.message());
    const bool allowed = std::any_of(ctx.allowed_sockets.begin(), ctx.allowed_sockets.end(), [&](const auto& a) {
      std::error_code aec;
      const auto allowed_canon = std::filesystem::canonical(a, aec);
      return !aec && allowed_canon == canon;
    });
    if (!allowed) {
      return fail(Errc::permission, "step " + step.name + " asks for host socket " + requested +
                                        ", which this agent's policy does not allow (sandbox.allow_sockets)");
    }
    iso.sockets.push_back(canon);
  }
  iso.root = sb.root;
  iso.user = ctx.step_user;
  iso.allow_degraded = sb.allow_degraded;
  // The agent's own files first. A later bind sits on top of them, so ro/rw must not
  // overlap them either way: below a hidden path it would re-expose part of it, and
  // above one (e.g. rw: /var/lib over the state_dir /var/lib/delegate, or ro: /) the
  // bind of the host's tree would cover the hidden mount and re-expose all of it.
  // Checked at every launch, not once at start: a hidden file created later (the API-key
  // file written by the first `api-key create`, a rotated key) is covered from then on.
  for (const auto& h : ctx.hidden) {
    std::error_code ec;
    if (std::filesystem::exists(h, ec)) iso.mounts.push_back({sandbox::BindMount::Kind::hidden, h});
  }
  // Symlinks resolved as far as the paths exist, like the launcher resolves its mounts:
  // ro: /srv/link with a link to /etc/delegate must not slip past a lexical comparison.
  auto resolved = [](const std::filesystem::path& p) {
    std::error_code ec;
    auto r = std::filesystem::weakly_canonical(p, ec);
    return ec ? p.lexically_normal() : r.lexically_normal();
  };
  auto within = [&](const std::filesystem::path& p, const std::filesystem::path& dir) {
    const auto rel = resolved(p).lexically_relative(resolved(dir));
    return !rel.empty() && *rel.begin() != "..";
  };
  using Kind = sandbox::BindMount::Kind;
  for (const auto& [paths, kind] : {std::pair{&sb.ro, Kind::read_only}, std::pair{&sb.rw, Kind::read_write},
                                    std::pair{&sb.hide, Kind::hidden}}) {
    for (const auto& p : *paths) {
      if (kind != Kind::hidden) {
        for (const auto& h : ctx.hidden) {
          if (within(p, h)) {
            return fail(Errc::permission, "step " + step.name + " mounts " + p + ", which the agent keeps hidden");
          }
          if (within(h, p)) {
            return fail(Errc::permission, "step " + step.name + " mounts " + p + ", which contains " + h.string() +
                                              ", a path the agent keeps hidden");
          }
        }
      }
      iso.mounts.push_back({kind, p});
    }
  }
  auto plan = sandbox::plan_isolation(spec, sandbox::host_support());
  if (!plan) return fail(plan.error().code, "step " + step.name + ": " + plan.error().message);

  Json argv = Json::array();
  for (const auto& a : spec.argv) argv.push_back(a);
  out.audit = Json{{"step", step.name},
                   {"index", index},
                   {"uses", to_string(step.uses)},
                   {"argv", argv},
                   {"sandbox",
                    Json{{"profile", sb.profile},
                         {"network", sb.network},
                         {"timeout_ms", lim.timeout.count()},
                         {"cpu_s", lim.cpu_seconds},
                         {"memory_mb", sb.memory_mb},
                         {"pids", lim.processes},
                         {"output_bytes", lim.output_bytes},
                         {"cpu_percent", lim.cpu_percent},
                         {"ro", sb.ro},
                         {"rw", sb.rw},
                         {"hide", sb.hide},
                         {"sockets", sb.sockets},
                         {"egress", sb.egress},
                         {"isolation", sandbox::describe(*plan)}}}};
  if (!step.secret_files.empty()) {
    Json files = Json::array();
    for (const auto& [file, name] : step.secret_files) files.push_back(file);
    out.audit["secret_files"] = std::move(files);
  }
  return out;
}

}  // namespace delegate::connectors
