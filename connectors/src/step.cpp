#include <delegate/connectors/step.hpp>

#include <algorithm>
#include <cctype>

namespace delegate::connectors {

std::string_view to_string(policies::StepKind kind) {
  switch (kind) {
    case policies::StepKind::command: return "command";
    case policies::StepKind::script: return "script";
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

}  // namespace

Result<PreparedStep> prepare_step(const policies::Step& step, std::size_t index, const Json& params,
                                  const StepContext& ctx) {
  PreparedStep out;
  sandbox::Spec& spec = out.spec;
  const auto& sb = step.sandbox;

  switch (step.uses) {
    case policies::StepKind::command:
      for (const auto& element : step.argv) {
        auto v = policies::substitute(element, params);
        if (!v) return std::unexpected(v.error());
        spec.argv.push_back(std::move(*v));
      }
      break;
    case policies::StepKind::script:
      spec.argv = step.argv.empty() ? std::vector<std::string>{"/bin/sh"} : step.argv;
      spec.argv.push_back("-c");
      spec.argv.push_back(step.script);
      // Scripts see parameters only as environment values.
      for (auto it = params.begin(); it != params.end(); ++it) {
        spec.env.push_back(env_name(it.key()) + "=" + value_text(it.value()));
      }
      break;
  }
  if (spec.argv.empty()) return fail(Errc::invalid_argument, "step " + step.name + " has an empty argv");
  for (const auto& [name, tmpl] : step.env) {
    auto v = policies::substitute(tmpl, params);
    if (!v) return std::unexpected(v.error());
    spec.env.push_back(name + "=" + *v);
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
                         {"isolation", Json::array({"seccomp", "no_new_privs", "rlimits", "clean_env", "private_workdir"})}}}};
  return out;
}

}  // namespace delegate::connectors
