#include <delegate/agent/reload.hpp>

#include <algorithm>

#include <delegate/common/crypto.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/strict.hpp>

namespace delegate::agent {
namespace {

// What every step gets from local policy: its working-directory parent, its user, whether
// root is allowed, and the agent's own files hidden from its view.
connectors::StepContext step_base(const Config& c, const std::filesystem::path& credentials_dir) {
  connectors::StepContext ctx;
  ctx.work_parent = c.agent.state_dir / "work";
  ctx.step_user = sandbox::StepUser{c.sandbox.step_uid, c.sandbox.step_gid};
  ctx.allow_root = c.sandbox.allow_root_steps;
  ctx.allowed_sockets = c.sandbox.allow_sockets;
  ctx.allow_host_network = c.sandbox.allow_host_network;
  // http steps run this very binary's http-request subcommand in their sandbox.
  std::error_code self_ec;
  ctx.http_program = std::filesystem::read_symlink("/proc/self/exe", self_ec);
  ctx.http_ca_pem = c.connectors.ca_pem;
  std::vector<std::filesystem::path> hidden = {c.agent.state_dir, c.control_plane.enrollment_token_file,
                                                c.auth.api_keys_file, c.agent.spool_key_file, credentials_dir};
  // The local secret store (secrets.enc, secrets.key) lives in state_dir, hidden above.
  if (c.secrets.vault) {
    hidden.push_back(c.secrets.vault->token_file);
    hidden.push_back(c.secrets.vault->secret_id_file);
  }
  hidden.insert(hidden.end(), c.sandbox.hide_paths.begin(), c.sandbox.hide_paths.end());
  // All of them, whether they exist yet or not: each launch covers those that exist then
  // (connectors::prepare_step), so a file created after the agent started is hidden too.
  for (const auto& p : hidden) {
    std::error_code ec;
    if (!p.empty()) ctx.hidden.push_back(std::filesystem::absolute(p, ec));
  }
  return ctx;
}

// Issuer material that is only read when the first token arrives: read it now, so a
// missing JWKS file or CA fails the (re)load instead of every OAuth job later.
Result<void> check_issuers(const Config& c, std::string& digest) {
  for (std::size_t i = 0; i < c.auth.oauth.size(); ++i) {
    const auto& iss = c.auth.oauth[i];
    const std::string where = "auth.oauth[" + std::to_string(i) + "]";
    if (!iss.jwks_file.empty()) {
      auto text = read_file(iss.jwks_file, 1u << 20);
      if (!text) return fail(Errc::invalid_argument, where + ".jwks_file: " + text.error().message);
      auto json = parse_json_strict(*text);
      if (!json || !json->is_object() || !json->contains("keys")) {
        return fail(Errc::invalid_argument, where + ".jwks_file: " + iss.jwks_file.string() + " is not a JWK set");
      }
      digest += *text;
    }
    if (!iss.ca_file.empty()) {
      auto text = read_file(iss.ca_file, 1u << 20);
      if (!text) return fail(Errc::invalid_argument, where + ".ca_file: " + text.error().message);
      if (text->find("-----BEGIN CERTIFICATE-----") == std::string::npos) {
        return fail(Errc::invalid_argument, where + ".ca_file: " + iss.ca_file.string() + " holds no PEM certificate");
      }
      digest += *text;
    }
  }
  return ok();
}

// Compiles the seccomp program of every step, as the runner will ask for it: a profile
// file that is missing or malformed fails the load, not the step.
Result<void> check_profiles(const policies::Catalog& catalog, FilterCache& filters) {
  for (const auto& [name, rb] : catalog.all()) {
    for (const auto& step : rb.steps) {
      const auto& sb = step.sandbox;
      auto f = filters.get(sb.profile, sb.network || !sb.egress.empty(), !sb.sockets.empty());
      if (!f) {
        return fail(Errc::invalid_argument,
                    "runbook " + name + ", step " + step.name + ": seccomp profile " + sb.profile + ": " + f.error().message);
      }
    }
  }
  return ok();
}

// The runbook files in directory order by name, for the fingerprint. Only regular
// files, opened without blocking: a FIFO dropped into the directory must not hang the
// signal thread (and with it every later SIGTERM); a directory that cannot be listed
// only makes the fingerprint less specific, the load itself reports it.
void digest_dir(const std::filesystem::path& dir, std::string& digest) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::error_code type_ec;
    if (it->is_regular_file(type_ec) && !type_ec) files.push_back(it->path());
  }
  std::sort(files.begin(), files.end());
  for (const auto& f : files) {
    auto text = read_file(f, 4u << 20);
    digest += f.filename().string() + '\0' + (text ? *text : std::string()) + '\0';
  }
}

}  // namespace

Result<std::shared_ptr<const AgentState>> build_state(Config config, const StateInputs& in) {
  std::string digest = in.config_text + '\0';
  auto catalog = policies::Catalog::load_dir(config.runbooks_dir);
  if (!catalog) return fail(catalog.error().code, "runbooks: " + catalog.error().message);
  digest_dir(config.runbooks_dir, digest);
  // The cache re-reads the file later; this load only proves it is usable now (a missing
  // file is an empty store, as at any time).
  std::size_t keys = 0;
  if (!config.auth.api_keys_file.empty()) {
    auto store = policies::ApiKeyStore::load(config.auth.api_keys_file);
    if (!store) return fail(store.error().code, "auth.api_keys_file: " + store.error().message);
    keys = store->entries().size();
    if (auto text = read_file(config.auth.api_keys_file, 16u << 20)) digest += *text;
  }
  if (auto r = check_issuers(config, digest); !r) return std::unexpected(r.error());
  auto oauth = OAuthSetup::create(config, in.clock, /*with_replay=*/true, in.replay);
  if (!oauth) return std::unexpected(oauth.error());
  auto filters = std::make_unique<FilterCache>();
  if (auto r = check_profiles(*catalog, *filters); !r) return std::unexpected(r.error());
  auto secrets = SecretResolver::create(config, in.credentials_dir, in.clock);
  if (!secrets) return fail(secrets.error().code, "secrets: " + secrets.error().message);
  std::vector<egress::Cidr> cidrs;
  for (const auto& text : config.sandbox.egress_allow_cidrs) {
    auto cidr = egress::parse_cidr(text);
    if (!cidr) return fail(Errc::invalid_argument, "sandbox.egress_allow_cidrs: " + text + ": " + cidr.error().message);
    cidrs.push_back(*cidr);
  }
  auto base = step_base(config, secrets->credentials_dir());
  auto api_keys = std::make_unique<ApiKeyCache>(config.auth.api_keys_file);
  const std::string fingerprint = sha256_hex(digest).substr(0, 16);
  return std::shared_ptr<const AgentState>(new AgentState{std::move(config), std::move(*catalog), std::move(*oauth),
                                                          std::move(api_keys), std::move(filters), std::move(*secrets),
                                                          std::move(base), std::move(cidrs), keys, fingerprint});
}

Result<void> check_restart_keys(const Config& a, const Config& b) {
  const auto& x = a.agent;
  const auto& y = b.agent;
  // The listener is bound once at start.
  const auto same_listen = [](const Config& p, const Config& q) {
    const auto& l = p.metrics.address;
    const auto& r = q.metrics.address;
    if (l.has_value() != r.has_value()) return false;
    return !l || (l->kind == r->kind && l->host == r->host && l->port == r->port && l->path == r->path);
  };
  const std::pair<const char*, bool> keys[] = {
      {"control_plane.url", a.control_plane.url == b.control_plane.url},
      {"control_plane.ca_file", a.control_plane.ca_file == b.control_plane.ca_file},
      {"control_plane.enrollment_token_file", a.control_plane.enrollment_token_file == b.control_plane.enrollment_token_file},
      // The control-plane clients keep the route they were built with; a reload that
      // seemed to drop a proxy while the link still went through it would mislead.
      {"control_plane.proxy", a.control_plane.proxy == b.control_plane.proxy},
      {"control_plane.no_proxy", a.control_plane.no_proxy == b.control_plane.no_proxy},
      {"agent.name", x.name == y.name},
      {"agent.tags", x.tags == y.tags},
      {"agent.state_dir", x.state_dir == y.state_dir},
      {"agent.concurrency", x.concurrency == y.concurrency},
      {"agent.poll_wait_s", x.poll_wait_s == y.poll_wait_s},
      {"agent.heartbeat_s", x.heartbeat_s == y.heartbeat_s},
      {"agent.shutdown_grace_s", x.shutdown_grace_s == y.shutdown_grace_s},
      {"agent.spool_key_file", x.spool_key_file == y.spool_key_file},
      {"agent.spool_max_bytes", x.spool_max_bytes == y.spool_max_bytes},
      {"agent.checkpoint_interval_s", x.checkpoint_interval_s == y.checkpoint_interval_s},
      {"metrics.listen", same_listen(a, b)},
  };
  for (const auto& [name, same] : keys) {
    if (!same) return fail(Errc::invalid_argument, std::string(name) + " changed: it takes effect only after a restart");
  }
  return ok();
}

Result<std::shared_ptr<const AgentState>> reload_state(const std::filesystem::path& file, const Config& running,
                                                       const AgentState& current, const Clock& clock,
                                                       const std::string& credentials_dir) {
  if (file.empty()) return fail(Errc::invalid_argument, "the agent was started without a configuration file");
  auto text = read_file(file, 1u << 20);
  if (!text) return fail(text.error().code, file.string() + ": " + text.error().message);
  auto next = parse_config(*text, process_environment());
  if (!next) return fail(next.error().code, file.string() + ": " + next.error().message);
  if (auto r = check_restart_keys(running, *next); !r) return fail(r.error().code, file.string() + ": " + r.error().message);
  auto state = build_state(std::move(*next), StateInputs{clock, credentials_dir, *text, current.oauth->replay()});
  if (!state) return fail(state.error().code, file.string() + ": " + state.error().message);
  return state;
}

std::string summary(const AgentState& s) {
  const auto n = [](std::size_t v, const char* one, const char* many) {
    return std::to_string(v) + " " + (v == 1 ? one : many);
  };
  return n(s.catalog.size(), "runbook", "runbooks") + ", " + n(s.api_key_count, "API key", "API keys") + ", " +
         n(s.config.auth.oauth.size(), "issuer", "issuers") + ", config " + s.fingerprint;
}

}  // namespace delegate::agent
