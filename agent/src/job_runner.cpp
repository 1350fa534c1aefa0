#include <delegate/agent/job_runner.hpp>

#include <mutex>
#include <optional>

#include <delegate/agent/metrics.hpp>
#include <delegate/agent/recorder.hpp>
#include <delegate/audit/chain.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/log.hpp>
#include <delegate/connectors/masker.hpp>
#include <delegate/connectors/outputs.hpp>
#include <delegate/connectors/step.hpp>
#include <delegate/sandbox/seccomp.hpp>

#include "step_egress.hpp"
#include "http_step.hpp"

namespace delegate::agent {
namespace {

std::string_view status_text(sandbox::Status s) {
  switch (s) {
    case sandbox::Status::exited: return "exited";
    case sandbox::Status::signaled: return "signaled";
    case sandbox::Status::timed_out: return "timed_out";
    case sandbox::Status::cancelled: return "cancelled";
    case sandbox::Status::not_found: return "not_found";
    case sandbox::Status::setup_failed: return "setup_failed";
  }
  return "unknown";
}

std::string_view credential_type(policies::CredentialType t) {
  switch (t) {
    case policies::CredentialType::none: return "none";
    case policies::CredentialType::oauth: return "oauth";
    case policies::CredentialType::api_key: return "api_key";
  }
  return "none";
}

// The values of the secrets `step` references, each added to the job's masker before
// the step can print it; `received` lists them by name and fingerprint for step.start.
// Fails closed, naming the secret and never its value.
Result<std::map<std::string, std::string>> resolve_secrets(const policies::Step& step, const RunnerDeps& deps,
                                                           connectors::Masker& masker, Json& received) {
  std::map<std::string, std::string> values;
  for (const auto& name : step.secrets) {
    if (deps.secrets == nullptr) return fail(Errc::not_found, "secret " + name + ": this agent has no secret providers");
    auto v = deps.secrets->resolve(name);
    if (!v) return std::unexpected(v.error());
    if (v->find('\0') != std::string::npos) return fail(Errc::invalid_argument, "secret " + name + " contains a NUL byte");
    if (auto r = masker.add(*v); !r) return fail(r.error().code, "secret " + name + " " + r.error().message);
    received.push_back(Json{{"name", name}, {"fingerprint", deps.secrets->fingerprint(*v)}});
    values.emplace(name, std::move(*v));
  }
  return values;
}

}  // namespace

Result<std::shared_ptr<const sandbox::SeccompProgram>> FilterCache::get(const std::string& profile, bool network,
                                                                        bool unix_sockets) {
  std::lock_guard lock(mu_);
  auto key = std::make_tuple(profile, network, unix_sockets);
  if (auto it = programs_.find(key); it != programs_.end()) return it->second;
  auto compiled = sandbox::SeccompProgram::compile(
      profile, sandbox::SeccompOptions{.network = network, .unix_sockets = unix_sockets});
  if (!compiled) return std::unexpected(compiled.error());
  auto shared = std::make_shared<const sandbox::SeccompProgram>(std::move(*compiled));
  programs_.emplace(key, shared);
  return shared;
}

JobResult run_job(const Json& raw_job, const policies::Job& job, const RunnerDeps& deps, JobControl& control) {
  JobRecorder rec(deps.key, deps.clock, deps.agent_id, job.id, deps.sink);
  const auto started = std::chrono::steady_clock::now();

  rec.add(audit::Kind::job_received, Json{{"digest", policies::job_digest(raw_job)},
                                          {"runbook", job.runbook},
                                          {"params", job.params},
                                          {"incident", job.incident},
                                          {"timeout_s", job.timeout_s},
                                          {"credential", credential_type(job.credential.type)}});

  // Nothing is decided (no jti consumed) and nothing runs for a job whose arrival could
  // not be recorded faithfully.
  std::optional<policies::Decision> decided;
  if (rec.ok()) {
    policies::Authorizer authorizer(deps.catalog, *deps.api_keys, deps.authz);
    decided = authorizer.decide(job, deps.clock.now());
    rec.add(audit::Kind::authz_decision, policies::to_json(*decided));
  }

  std::string status = "succeeded";
  if (!rec.ok()) {
    status = "failed";
    log::error("agent", "job " + job.id + " stopped before running anything: " + rec.failure(),
               {{"job", job.id}, {"event", "job_failed"}});
  } else if (const policies::Decision& decision = *decided; !decision.allow) {
    status = "denied";
    agent_metrics().denied(*decision.reason);
    log::info("agent", "job " + job.id + " denied: " + std::string(policies::to_string(*decision.reason)) +
                           (decision.detail.empty() ? "" : " (" + decision.detail + ")"),
              {{"job", job.id}, {"runbook", job.runbook}, {"event", "job_denied"},
               {"reason", policies::to_string(*decision.reason)}});
  } else {
    log::info("agent", "job " + job.id + " allowed: runbook " + job.runbook + " for " + decision.subject,
              {{"job", job.id}, {"runbook", job.runbook}, {"event", "job_allowed"}, {"subject", decision.subject}});
    const auto deadline = job.timeout_s > 0 ? started + std::chrono::seconds(job.timeout_s)
                                            : std::chrono::steady_clock::time_point::max();
    const auto& steps = decision.runbook->steps;
    // Every secret any step of the job received is masked in all later output too.
    connectors::Masker masker;
    Json outputs = Json::object();  // {STEP: {NAME: value}} of the steps that succeeded
    for (std::size_t i = 0; i < steps.size() && status == "succeeded"; ++i) {
      const auto& step = steps[i];
      if (control.cancel.cancelled()) {
        status = control.interrupted ? "interrupted" : "cancelled";
        break;
      }
      connectors::StepContext ctx = deps.step_base;
      if (deadline != std::chrono::steady_clock::time_point::max()) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) {
          status = "timed_out";
          break;
        }
        ctx.remaining = left;
      }
      if (i == 0) agent_metrics().dispatched(std::chrono::steady_clock::now() - control.acquired);
      Json received = Json::array();
      auto secrets = resolve_secrets(step, deps, masker, received);
      if (step.uses == policies::StepKind::http && secrets) {
        HttpStepResult r;
        const auto http_started = std::chrono::steady_clock::now();
        try {
          r = run_http_step({step, i, decision.params, outputs, *secrets, std::move(received), ctx}, deps, masker,
                            [&](audit::Kind k, Json d) { return rec.add(k, std::move(d)); }, control.cancel);
        } catch (const std::exception& e) {
          // Defence in depth: nothing the request process prints may end the agent. The
          // step's end is still recorded, and the job fails.
          log::error("agent", "job " + job.id + ": http step " + step.name + ": " + masker.mask(e.what()),
                     {{"job", job.id}, {"step", step.name}});
          rec.add(audit::Kind::step_end, Json{{"step", step.name}, {"index", i}, {"status", "agent_error"},
                                              {"error", "the request's result could not be read"}});
          r = HttpStepResult{"failed", nullptr};
        }
        agent_metrics().step_finished(std::chrono::steady_clock::now() - http_started);
        status = r.status == "cancelled" && control.interrupted ? "interrupted" : r.status;
        if (!r.outputs.is_null()) outputs[step.name] = std::move(r.outputs);
        if (!rec.ok()) status = "failed";
        continue;
      }
      auto prepared = secrets ? connectors::prepare_step(step, i, decision.params, ctx, outputs, *secrets)
                              : Result<connectors::PreparedStep>(std::unexpected(secrets.error()));
      // A step with egress needs IP sockets, in a namespace where only the proxy answers.
      auto filter = prepared ? deps.filters.get(prepared->spec.profile,
                                                prepared->spec.network || !step.sandbox.egress.empty(),
                                                !prepared->spec.isolation.sockets.empty())
                             : Result<std::shared_ptr<const sandbox::SeccompProgram>>(std::unexpected(prepared.error()));
      auto step_egress = filter ? StepEgress::start(step, prepared->spec, deps.egress_allow_cidrs, masker,
                                                    [&](Json d) { return rec.add(audit::Kind::net_connect, std::move(d)); })
                                : Result<std::unique_ptr<StepEgress>>(std::unexpected(filter.error()));
      if (!step_egress) {
        const auto& err = step_egress.error();
        agent_metrics().launch_failed(LaunchFailure::prepare);
        rec.add(audit::Kind::step_start, Json{{"step", step.name}, {"index", i}});
        rec.add(audit::Kind::step_end, Json{{"step", step.name}, {"index", i}, {"status", "setup_failed"}, {"error", masker.mask(err.message)}});
        status = "failed";
        break;
      }
      if (!step.secrets.empty()) prepared->audit["secrets"] = std::move(received);
      if (!rec.add(audit::Kind::step_start, prepared->audit)) {
        status = "failed";
        break;
      }
      connectors::OutputCapture capture(step);
      // Output that cannot be recorded stops the step: it must not go on unaudited.
      // Secrets are masked before the record exists (and so before it is signed).
      auto emit = [&](sandbox::Stream stream, std::string_view chunk) {
        for (std::size_t off = 0; off < chunk.size() && rec.ok(); off += audit::kMaxOutputChunk) {
          auto part = chunk.substr(off, audit::kMaxOutputChunk);
          if (!rec.add(audit::Kind::output,
                       Json{{"step", step.name},
                            {"stream", stream == sandbox::Stream::stdout_stream ? "stdout" : "stderr"},
                            {"b64", base64_encode(as_bytes(part))}})) {
            control.cancel.cancel();
          }
        }
      };
      connectors::MaskingStream masked_out(masker), masked_err(masker);
      auto sink = [&](sandbox::Stream stream, std::string_view chunk) {
        if (stream == sandbox::Stream::stdout_stream) capture.feed(chunk);
        emit(stream, (stream == sandbox::Stream::stdout_stream ? masked_out : masked_err).write(chunk));
      };
      auto outcome = sandbox::run(prepared->spec, **filter, sink, &control.cancel);
      step_egress->reset();  // the step is gone: every tunnel and the namespace with it
      emit(sandbox::Stream::stdout_stream, masked_out.finish());
      emit(sandbox::Stream::stderr_stream, masked_err.finish());
      if (!outcome) {
        agent_metrics().launch_failed(LaunchFailure::launch);
        rec.add(audit::Kind::step_end, Json{{"step", step.name}, {"index", i}, {"status", "agent_error"},
                                            {"error", masker.mask(outcome.error().message)}});
        status = "failed";
        break;
      }
      const auto& o = *outcome;
      switch (o.status) {
        case sandbox::Status::setup_failed: agent_metrics().launch_failed(LaunchFailure::setup); break;
        case sandbox::Status::not_found: agent_metrics().launch_failed(LaunchFailure::not_found); break;
        case sandbox::Status::exited:
        case sandbox::Status::signaled:
        case sandbox::Status::timed_out:
        case sandbox::Status::cancelled: agent_metrics().step_finished(o.duration); break;
      }
      Json end{{"step", step.name},
               {"index", i},
               {"status", status_text(o.status)},
               {"exit_code", o.status == sandbox::Status::exited ? Json(o.exit_code) : Json(nullptr)},
               {"signal", o.signal != 0 ? Json(o.signal) : Json(nullptr)},
               {"duration_ms", o.duration.count()},
               {"limits_hit", o.limits_hit},
               {"bytes_dropped", o.bytes_dropped},
               {"max_rss_kb", o.max_rss_kb},
               {"cpu_ms", o.cpu_ms}};
      if (!o.error.empty()) end["error"] = masker.mask(o.error);
      // Outputs only of a step that succeeded; one that is missing or invalid fails it.
      bool outputs_failed = false;
      if (o.status == sandbox::Status::exited && o.exit_code == 0 && !step.outputs.empty()) {
        auto got = capture.finish(o.bytes_dropped > 0);
        // An output is recorded and may reach later steps' argv: it must not carry a secret.
        if (got) {
          for (const auto& [name, value] : got->items()) {
            if (value.is_string() && masker.mask(value.get<std::string>()) != value.get<std::string>()) {
              got = fail(Errc::permission, "output " + name + " of step " + step.name + " carries a secret");
              break;
            }
          }
        }
        outputs_failed = !got;
        if (got) outputs[step.name] = end["outputs"] = std::move(*got);
        else end["error"] = masker.mask(got.error().message);
      }
      rec.add(audit::Kind::step_end, std::move(end));
      if (!rec.ok()) {
        status = "failed";
        break;
      }
      switch (o.status) {
        case sandbox::Status::exited:
          if (o.exit_code != 0) status = "failed";
          break;
        case sandbox::Status::signaled:
        case sandbox::Status::not_found:
        case sandbox::Status::setup_failed:
          status = "failed";
          break;
        case sandbox::Status::timed_out:
          status = "timed_out";
          break;
        case sandbox::Status::cancelled:
          status = control.interrupted ? "interrupted" : "cancelled";
          break;
      }
      if (outputs_failed) status = "failed";
    }
  }
  const std::uint64_t total = rec.count() + 1;  // including job.end itself
  Json end{{"status", status}, {"records", total}};
  if (!rec.ok()) end["error"] = rec.failure();
  rec.add(audit::Kind::job_end, std::move(end));
  agent_metrics().job_finished(status);
  log::info("agent", "job " + job.id + " ended: " + status + " (" + std::to_string(total) + " records)",
            {{"job", job.id}, {"event", "job_ended"}, {"status", status}});
  return JobResult{job.id, status, rec.count() - 1, rec.last_hash()};
}

}  // namespace delegate::agent
