#include "http_step.hpp"
#include "step_egress.hpp"

#include <algorithm>
#include <array>
#include <cctype>

#include <delegate/agent/token_cache.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/uri.hpp>
#include <delegate/connectors/step.hpp>

namespace delegate::agent {
namespace {

constexpr std::size_t kRecordedBody = 4096;
constexpr std::size_t kMaxResultLine = 1u << 20;
constexpr std::size_t kMaxChildStderr = 4096;
constexpr std::int64_t kChildGraceMs = 2000;

std::string b64(std::string_view s) { return base64_encode(as_bytes(s)); }


std::string join(const std::vector<std::string>& v, const char* sep) {
  std::string out;
  for (const auto& s : v) out += (out.empty() ? "" : sep) + s;
  return out;
}

// Valid UTF-8, at most `cap` bytes, cut on a character boundary.
std::string clean_text(std::string s, std::size_t cap) {
  if (s.size() > cap) {
    std::size_t cut = cap;
    while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
    s.resize(cut);
  }
  return Json::parse(Json(s).dump(-1, ' ', false, Json::error_handler_t::replace)).get<std::string>();
}

// Masked first, then cut: never cut first, or a secret at the cut would leave its prefix.
// Text that arrived already cut at `cut_at` bytes (a kept header, the child's stderr)
// may end in a secret's prefix: it is masked as a stream that is never finished, so such
// a tail is held back and dropped.
std::string masked_cut(const connectors::Masker& masker, std::string_view text, std::size_t cap,
                       std::size_t cut_at = std::string_view::npos) {
  if (text.size() < cut_at) return clean_text(masker.mask(text), cap);
  connectors::MaskingStream stream(masker);
  return clean_text(stream.write(text), cap);
}

// The response headers the child keeps (connectors/src/http_request.cpp), each value at
// most kChildHeaderCut bytes; nothing else the child prints is recorded as a header.
constexpr std::array<std::string_view, 4> kRecordedHeaders = {"content-type", "location", "retry-after",
                                                              "x-request-id"};
constexpr std::size_t kChildHeaderCut = 1024;

struct ChildRun {
  sandbox::Outcome outcome;
  std::string stdout_text;
  std::string stderr_text;
  bool overflow = false;
};

// The sandbox launch of `PROGRAM http-request` for this step: the step's own sandbox
// settings and the agent's policy, exactly as for a command step.
Result<connectors::PreparedStep> prepare_child(const HttpStepInput& in) {
  if (in.ctx.http_program.empty()) return fail(Errc::not_found, "this agent has no http program configured");
  policies::Step child = in.step;
  child.uses = policies::StepKind::command;
  child.argv = {in.ctx.http_program.string(), "http-request"};
  child.env.clear();
  child.outputs.clear();
  return connectors::prepare_step(child, in.index, Json::object(), in.ctx);
}

// Runs the child with `request` on stdin. Its stdout is captured for the agent and
// never recorded as output (it may hold a token). With sandbox.egress the child runs in
// its own namespace behind the agent's proxy (which libcurl finds in HTTPS_PROXY), and
// every connection it attempts is recorded as net.connect.
Result<ChildRun> run_child(const HttpStepInput& in, const RunnerDeps& deps, sandbox::Spec spec, const Json& request,
                           std::chrono::milliseconds limit, const sandbox::CancelToken& cancel,
                           const connectors::Masker& masker, const RecordFn& record) {
  spec.stdin_data = request.dump(-1, ' ', false, Json::error_handler_t::replace);
  spec.limits.timeout = std::min(limit, in.ctx.remaining);
  spec.limits.output_bytes = 2 * kMaxResultLine;
  const bool egress = !in.step.sandbox.egress.empty();
  auto filter = deps.filters.get(spec.profile, spec.network || egress, !spec.isolation.sockets.empty());
  if (!filter) return std::unexpected(filter.error());
  auto step_egress = StepEgress::start(in.step, spec, deps.egress_allow_cidrs, masker,
                                       [&](Json d) { return record(audit::Kind::net_connect, std::move(d)); });
  if (!step_egress) return std::unexpected(step_egress.error());
  ChildRun out;
  auto sink = [&](sandbox::Stream stream, std::string_view chunk) {
    std::string& dst = stream == sandbox::Stream::stdout_stream ? out.stdout_text : out.stderr_text;
    const std::size_t cap = stream == sandbox::Stream::stdout_stream ? kMaxResultLine : kMaxChildStderr;
    if (dst.size() + chunk.size() > cap) {
      out.overflow = out.overflow || stream == sandbox::Stream::stdout_stream;
      dst.append(chunk.substr(0, cap - std::min(cap, dst.size())));
    } else {
      dst.append(chunk);
    }
  };
  auto outcome = sandbox::run(spec, **filter, sink, &cancel);
  if (!outcome) return std::unexpected(outcome.error());
  out.outcome = std::move(*outcome);
  return out;
}

// The child's one result line. Its content came from a remote service through a
// process that parsed it: read it with the strict parser, like any untrusted input.
Result<Json> result_of(const ChildRun& run, const connectors::Masker& masker) {
  const auto& o = run.outcome;
  if (o.status != sandbox::Status::exited || o.exit_code != 0) {
    std::string why = o.status == sandbox::Status::timed_out ? "timed out" : "the request process failed";
    if (!o.error.empty()) why += ": " + o.error;
    if (!run.stderr_text.empty()) why += ": " + masked_cut(masker, run.stderr_text, 512, kMaxChildStderr);
    return fail(o.status == sandbox::Status::timed_out ? Errc::timeout : Errc::io, masker.mask(why));
  }
  if (run.overflow) return fail(Errc::too_large, "the request process printed more than 1 MiB");
  std::string_view line = run.stdout_text;
  while (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  auto doc = parse_json_strict(line, JsonLimits{.max_bytes = kMaxResultLine, .max_depth = 8});
  if (!doc || !doc->is_object()) return fail(Errc::parse, "the request process printed no result");
  // The child is what a hostile response may have compromised: a result shaped to make
  // a typed read below throw must fail the step, not the agent.
  for (const char* key : {"status", "attempts", "body_bytes"}) {
    if (doc->contains(key) && !(*doc)[key].is_number_integer()) {
      return fail(Errc::parse, std::string("the request process printed a malformed ") + key);
    }
  }
  if (doc->contains("error") && !(*doc)["error"].is_string()) {
    return fail(Errc::parse, "the request process printed a malformed error");
  }
  return *doc;
}

Json base_request(const HttpStepInput& in, std::int64_t timeout_ms) {
  Json allow = Json::array({in.step.http.authority});
  for (const auto& e : in.step.sandbox.egress) allow.push_back(e);
  return Json{{"timeout_ms", timeout_ms}, {"ca_pem", in.ctx.http_ca_pem}, {"allow", allow}};
}

struct Token {
  std::string value;
  bool fetched = false;
};

// An access token for the step's oauth2_client_credentials auth: from the cache, or
// fetched through the sandboxed child (its answer captured, never recorded).
Result<Token> oauth_token(const HttpStepInput& in, const RunnerDeps& deps, const sandbox::Spec& spec,
                          connectors::Masker& masker, const TokenKey& key, bool force, std::int64_t timeout_ms,
                          const sandbox::CancelToken& cancel, const RecordFn& record) {
  if (deps.tokens == nullptr) return fail(Errc::internal, "this agent keeps no token cache");
  if (!force) {
    if (auto t = deps.tokens->get(key)) {
      // A job's masker starts empty: a cached token must be masked in this job too, or an
      // API that echoes the Authorization header would put it in the records.
      if (auto r = masker.add(*t); !r) return fail(r.error().code, "access token " + r.error().message);
      return Token{*t, false};
    }
  }
  const auto& a = in.step.http.auth;
  const std::string basic = b64(percent_encode(a.client_id) + ":" + percent_encode(in.secrets.at(a.client_secret)));
  if (auto r = masker.add(basic); !r) return fail(r.error().code, "client credentials " + r.error().message);
  std::string form = "grant_type=client_credentials";
  if (!a.scopes.empty()) form += "&scope=" + percent_encode(join(a.scopes, " "));
  Json req = base_request(in, timeout_ms);
  req["method"] = "POST";
  req["url"] = a.token_url;
  req["allow"] = Json::array({in.step.http.token_authority});
  req["headers"] = Json::array({Json::array({"Authorization", "Basic " + basic}),
                                Json::array({"Content-Type", "application/x-www-form-urlencoded"}),
                                Json::array({"Accept", "application/json"})});
  req["body"] = form;
  req["raw_body_max"] = kMaxTokenResponse;
  auto run = run_child(in, deps, spec, req, std::chrono::milliseconds(timeout_ms + kChildGraceMs), cancel, masker,
                       record);
  if (!run) return fail(run.error().code, "token request: " + masker.mask(run.error().message));
  auto res = result_of(*run, masker);
  if (!res) return fail(res.error().code, "token request: " + res.error().message);
  if (res->contains("error")) {
    return fail(Errc::io, "token request: " + masker.mask(res->value("error", std::string("failed"))));
  }
  const auto status = res->value("status", 0);
  if (status != 200) return fail(Errc::permission, "token endpoint answered " + std::to_string(status));
  if (!(*res)["body_raw"].is_string()) return fail(Errc::parse, "token request: no body");
  auto parsed = parse_token_response((*res)["body_raw"].get_ref<const std::string&>());
  if (!parsed) return fail(parsed.error().code, "token endpoint: " + parsed.error().message);
  if (auto r = masker.add(parsed->access_token); !r) return fail(r.error().code, "access token " + r.error().message);
  deps.tokens->put(key, parsed->access_token, parsed->expires_in);
  return Token{std::move(parsed->access_token), true};
}

bool expected(const policies::HttpSpec& h, long status) {
  if (h.expect_status.empty()) return status >= 200 && status <= 299;
  return std::find(h.expect_status.begin(), h.expect_status.end(), status) != h.expect_status.end();
}

std::string_view auth_type(policies::HttpAuthType t) {
  switch (t) {
    case policies::HttpAuthType::none: return "none";
    case policies::HttpAuthType::api_key: return "api_key";
    case policies::HttpAuthType::bearer: return "bearer";
    case policies::HttpAuthType::basic: return "basic";
    case policies::HttpAuthType::oauth2_client_credentials: return "oauth2_client_credentials";
  }
  return "none";
}

}  // namespace

HttpStepResult run_http_step(const HttpStepInput& in, const RunnerDeps& deps, connectors::Masker& masker,
                             const RecordFn& record, const sandbox::CancelToken& cancel) {
  const auto& step = in.step;
  const auto& h = step.http;
  const auto started = std::chrono::steady_clock::now();
  const std::int64_t timeout_ms =
      std::min<std::int64_t>(std::int64_t{h.timeout_s} * 1000, in.ctx.remaining.count());
  Json start{{"step", step.name}, {"index", in.index}, {"uses", "http"}};
  Json end{{"step", step.name}, {"index", in.index}};
  auto setup_failed = [&](const Error& e) {
    record(audit::Kind::step_start, start);
    end["status"] = "setup_failed";
    end["error"] = masker.mask(e.message);
    record(audit::Kind::step_end, end);
    return HttpStepResult{"failed", nullptr};
  };

  // The request: URL references percent-encoded, header values and body substituted,
  // credentials from resolved secrets only.
  auto url = policies::substitute_url(h.url, in.params, in.outputs);
  if (!url) return setup_failed(url.error());
  start["http"] = Json{{"method", h.method}, {"url", masker.mask(*url)}, {"timeout_ms", timeout_ms}};
  Json headers = Json::array();
  for (const auto& [name, tmpl] : h.headers) {
    auto v = policies::substitute_with_secrets(tmpl, in.params, in.outputs, in.secrets);
    if (!v) return setup_failed(v.error());
    if (v->find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      return setup_failed(Error{Errc::invalid_argument, "header " + name + " would contain CR, LF or NUL"});
    }
    headers.push_back(Json::array({name, *v}));
  }
  Json request = base_request(in, timeout_ms);
  request["method"] = h.method;
  request["url"] = *url;
  if (h.body) {
    auto body = policies::substitute_body(*h.body, in.params, in.outputs, in.secrets);
    if (!body) return setup_failed(body.error());
    request["body"] = body->dump(-1, ' ', false, Json::error_handler_t::replace);
    const bool typed = std::any_of(h.headers.begin(), h.headers.end(), [](const auto& kv) {
      std::string n = kv.first;
      std::transform(n.begin(), n.end(), n.begin(), [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); });
      return n == "content-type";
    });
    if (!typed) headers.push_back(Json::array({"Content-Type", "application/json"}));
  }
  // The request is complete and checked before the sandbox is prepared or anything runs.
  auto child = prepare_child(in);
  if (!child) return setup_failed(child.error());
  start["sandbox"] = child->audit["sandbox"];
  start["sandbox"]["egress"] = step.sandbox.egress;
  // What run_child applies: the step's timeout (plus the child's grace to report) and
  // room for the result line, whatever the step's sandbox block says.
  start["sandbox"]["timeout_ms"] = std::min<std::int64_t>(timeout_ms + kChildGraceMs, in.ctx.remaining.count());
  start["sandbox"]["output_bytes"] = 2 * kMaxResultLine;
  const sandbox::Spec& spec = child->spec;
  Json auth{{"type", std::string(auth_type(h.auth.type))}};
  TokenKey token_key;
  Token token;
  switch (h.auth.type) {
    case policies::HttpAuthType::none: break;
    case policies::HttpAuthType::api_key:
      headers.push_back(Json::array({h.auth.header, in.secrets.at(h.auth.secret)}));
      auth["header"] = h.auth.header;
      auth["secret"] = h.auth.secret;
      break;
    case policies::HttpAuthType::bearer:
      headers.push_back(Json::array({"Authorization", "Bearer " + in.secrets.at(h.auth.secret)}));
      auth["secret"] = h.auth.secret;
      break;
    case policies::HttpAuthType::basic: {
      const std::string cred = b64(h.auth.username + ":" + in.secrets.at(h.auth.secret));
      // The secret's own base64 forms are masked at every alignment; the whole derived
      // value is added too, so no edge character of it survives.
      if (auto r = masker.add(cred); !r) return setup_failed(r.error());
      headers.push_back(Json::array({"Authorization", "Basic " + cred}));
      auth["username"] = h.auth.username;
      auth["secret"] = h.auth.secret;
      break;
    }
    case policies::HttpAuthType::oauth2_client_credentials: {
      token_key = TokenKey{h.auth.token_url, h.auth.client_id, join(h.auth.scopes, " "),
                           deps.secrets != nullptr ? deps.secrets->fingerprint(in.secrets.at(h.auth.client_secret)) : ""};
      auth["token_url"] = h.auth.token_url;
      auth["client_id"] = h.auth.client_id;
      auth["scopes"] = h.auth.scopes;
      auto t = oauth_token(in, deps, spec, masker, token_key, false, timeout_ms, cancel, record);
      if (!t) return setup_failed(t.error());
      token = std::move(*t);
      auth["token"] = token.fetched ? "fetched" : "cached";
      headers.push_back(Json::array({"Authorization", "Bearer " + token.value}));
      break;
    }
  }
  // Credentials come from secret stores and token endpoints, which may be hostile too:
  // no value may split the request.
  for (const auto& hdr : headers) {
    if (hdr[1].get_ref<const std::string&>().find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
      return setup_failed(Error{Errc::invalid_argument,
                                "header " + hdr[0].get<std::string>() + " would contain CR, LF or NUL"});
    }
  }
  request["headers"] = headers;
  // The headers a redirect to another host:port must not carry: auth's, and any that
  // holds a secret.
  Json credential_headers = Json::array();
  switch (h.auth.type) {
    case policies::HttpAuthType::none: break;
    case policies::HttpAuthType::api_key: credential_headers.push_back(h.auth.header); break;
    case policies::HttpAuthType::bearer:
    case policies::HttpAuthType::basic:
    case policies::HttpAuthType::oauth2_client_credentials: credential_headers.push_back("Authorization"); break;
  }
  for (const auto& [name, tmpl] : h.headers) {
    if (tmpl.find(policies::kSecretRefOpen) != std::string::npos) credential_headers.push_back(name);
  }
  request["credential_headers"] = std::move(credential_headers);
  request["body_has_secret"] = h.body.has_value() && h.body->dump().find(policies::kSecretRefOpen) != std::string::npos;
  if (h.retry_attempts > 1) request["retry"] = Json{{"attempts", h.retry_attempts}, {"on_status", h.retry_on}};
  Json pointers = Json::object();
  for (const auto& [name, spec] : step.outputs) pointers[name] = spec.selector;
  request["outputs"] = pointers;
  request["preview_bytes"] = kRecordedBody + masker.longest() + 1;

  start["auth"] = auth;
  if (!step.secrets.empty()) start["secrets"] = in.received;
  if (!record(audit::Kind::step_start, start)) return HttpStepResult{"failed", nullptr};

  auto attempt = [&]() -> Result<Json> {
    auto run = run_child(in, deps, spec, request, std::chrono::milliseconds(timeout_ms + kChildGraceMs), cancel,
                         masker, record);
    if (!run) return std::unexpected(run.error());
    if (run->outcome.status == sandbox::Status::cancelled) return fail(Errc::conflict, "cancelled");
    return result_of(*run, masker);
  };
  auto res = attempt();
  bool refreshed = false;
  if (res && h.auth.type == policies::HttpAuthType::oauth2_client_credentials && res->value("status", 0) == 401) {
    // The token may have been revoked early: fetch a new one and try exactly once more.
    deps.tokens->invalidate(token_key, token.value);
    auto t = oauth_token(in, deps, spec, masker, token_key, true, timeout_ms, cancel, record);
    if (!t) {
      res = std::unexpected(t.error());
    } else {
      token = std::move(*t);
      request["headers"].back()[1] = "Bearer " + token.value;
      refreshed = true;
      res = attempt();
    }
  }

  end["duration_ms"] = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started).count();
  HttpStepResult result{"succeeded", nullptr};
  Json http{{"request", h.method + " " + masker.mask(*url)}};
  if (refreshed) http["token_refreshed"] = true;
  if (!res) {
    result.status = cancel.cancelled() ? "cancelled" : res.error().code == Errc::timeout ? "timed_out" : "failed";
    end["status"] = result.status;
    end["error"] = masker.mask(res.error().message);
    end["http"] = http;
    record(audit::Kind::step_end, end);
    return result;
  }
  const Json& r = *res;
  const long status = r.value("status", 0L);
  if (status != 0) http["status"] = status;
  if (r.contains("headers") && r["headers"].is_object()) {
    Json kept = Json::object();
    for (const auto& [k, v] : r["headers"].items()) {
      const bool known = std::find(kRecordedHeaders.begin(), kRecordedHeaders.end(), k) != kRecordedHeaders.end();
      if (known && v.is_string()) kept[k] = masked_cut(masker, v.get<std::string>(), kChildHeaderCut, kChildHeaderCut);
    }
    http["headers"] = kept;
  }
  http["attempts"] = r.value("attempts", 1);
  if (r.contains("redirects") && r["redirects"].is_array() && !r["redirects"].empty()) {
    Json red = Json::array();
    for (const auto& u : r["redirects"]) {
      if (u.is_string()) red.push_back(masked_cut(masker, u.get<std::string>(), 2048));
    }
    http["redirects"] = red;
  }
  std::string error;
  if (r.contains("error")) {
    error = r["error"].is_string() ? r["error"].get<std::string>() : "request failed";
  } else {
    http["body_bytes"] = r.value("body_bytes", std::uint64_t{0});
    if (r.contains("body_preview") && r["body_preview"].is_string()) {
      // The preview is longer than what is kept by the longest secret pattern: a secret
      // that starts inside the kept part is whole in it, and masked before the cut.
      connectors::MaskingStream ms(masker);
      const auto& preview = r["body_preview"].get_ref<const std::string&>();
      std::string masked = ms.write(preview);
      if (r.value("body_bytes", std::uint64_t{0}) <= preview.size()) masked += ms.finish();
      http["body"] = clean_text(std::move(masked), kRecordedBody);
    }
    if (!expected(h, status)) {
      error = "unexpected status " + std::to_string(status);
    } else if (r.contains("output_errors") && r["output_errors"].is_object() && !r["output_errors"].empty()) {
      const auto first = r["output_errors"].items().begin();
      error = "output " + first.key() + ": " + (first.value().is_string() ? first.value().get<std::string>() : "");
    } else if (!step.outputs.empty()) {
      Json got = Json::object();
      const Json empty = Json::object();
      const Json& values = r.contains("outputs") && r["outputs"].is_object() ? r["outputs"] : empty;
      for (const auto& [name, spec] : step.outputs) {
        if (!values.contains(name)) {
          error = "output " + name + " is missing";
          break;
        }
        auto v = policies::check_output(step.name, name, spec, values[name]);
        if (!v) {
          error = v.error().message;
          break;
        }
        // Recorded and substituted into later steps: it must not carry a secret.
        if (v->is_string() && masker.mask(v->get<std::string>()) != v->get<std::string>()) {
          error = "output " + name + " of step " + step.name + " carries a secret";
          break;
        }
        got[name] = std::move(*v);
      }
      if (error.empty()) {
        end["outputs"] = got;
        result.outputs = std::move(got);
      }
    }
  }
  end["http"] = std::move(http);
  if (!error.empty()) {
    end["status"] = "failed";
    end["error"] = clean_text(masker.mask(error), 1024);
    result.status = "failed";
    result.outputs = nullptr;
  } else {
    end["status"] = "succeeded";
  }
  if (!record(audit::Kind::step_end, std::move(end))) result.status = "failed";
  return result;
}

}  // namespace delegate::agent
