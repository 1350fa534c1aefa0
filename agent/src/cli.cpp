// Subcommands of delegate-agent (README, "Command lines and exit codes"). Exit statuses: 0 success; 2 usage,
// unreadable or malformed input; 3 check-job deny; 1 other failures.
#include "cli.hpp"

#include <boost/program_options.hpp>

#include <signal.h>

#include <iostream>
#include <optional>

#include <delegate/agent/config.hpp>
#include <delegate/agent/daemon.hpp>
#include <delegate/agent/oauth_setup.hpp>
#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/log.hpp>
#include <delegate/common/strict.hpp>
#include <delegate/policies/authorizer.hpp>

namespace po = boost::program_options;

namespace delegate::agent::cli {
namespace {

constexpr int kUsage = 2;

int error(const std::string& msg, int code) {
  std::cerr << "delegate-agent: " << msg << "\n";
  return code;
}

// Parses `args` (after the subcommand); throws po errors, mapped to exit 2 by main.
po::variables_map parse(const std::vector<std::string>& args, const po::options_description& opts) {
  po::variables_map vm;
  po::store(po::command_line_parser(args).options(opts).run(), vm);
  po::notify(vm);
  return vm;
}

Result<Config> config_from(const po::variables_map& vm) {
  return load_config(vm["config"].as<std::string>(), process_environment());
}

}  // namespace

int run(const std::vector<std::string>& args) {
  // Blocked before anything else, for every thread to come: a `systemctl reload` that
  // lands while the agent is still starting must wait for the signal thread, not end the
  // process with SIGHUP's default action (which Restart=on-failure counts as clean).
  sigset_t hup;
  sigemptyset(&hup);
  sigaddset(&hup, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &hup, nullptr);
  po::options_description opts("delegate-agent run");
  opts.add_options()("config", po::value<std::string>()->required(), "agent configuration file")(
      "log-level", po::value<std::string>(), "debug|info|warn|error (default: agent.yaml log.level)")(
      "log-format", po::value<std::string>(), "text|json (default: agent.yaml log.format)");
  auto vm = parse(args, opts);
  std::optional<log::Level> lvl;
  std::optional<log::Format> fmt;
  if (vm.count("log-level") && !(lvl = log::parse_level(vm["log-level"].as<std::string>()))) {
    return error("--log-level must be debug, info, warn or error", kUsage);
  }
  if (vm.count("log-format") && !(fmt = log::parse_format(vm["log-format"].as<std::string>()))) {
    return error("--log-format must be text or json", kUsage);
  }
  if (fmt) log::set_format(*fmt);
  auto config = config_from(vm);
  if (!config) return error(config.error().message, kUsage);
  // The flags win over the file, now and after a reload (daemon.cpp keeps them).
  log::set_level(lvl.value_or(config->log.level));
  log::set_format(fmt.value_or(config->log.format));
  SystemClock clock;
  return run_daemon(*config, clock, DaemonOptions{vm["config"].as<std::string>(), lvl, fmt});
}

int check_job(const std::vector<std::string>& args) {
  po::options_description opts("delegate-agent check-job");
  opts.add_options()("config", po::value<std::string>()->required())("job", po::value<std::string>()->required())(
      "now", po::value<std::string>());
  auto vm = parse(args, opts);
  auto config = config_from(vm);
  if (!config) return error(config.error().message, kUsage);
  TimePoint now = std::chrono::system_clock::now();
  if (vm.count("now")) {
    auto t = parse_rfc3339(vm["now"].as<std::string>());
    if (!t) return error("--now: " + t.error().message, kUsage);
    now = *t;
  }
  auto text = read_file(vm["job"].as<std::string>(), 4u << 20);
  if (!text) return error(text.error().message, kUsage);
  auto raw = parse_json_strict(*text);
  if (!raw) return error(vm["job"].as<std::string>() + ": " + raw.error().message, kUsage);
  if (!raw->is_object()) return error(vm["job"].as<std::string>() + ": a job must be a JSON object", kUsage);
  auto job = policies::parse_job(*raw);
  if (!job) return error(vm["job"].as<std::string>() + ": " + job.error().message, kUsage);
  auto catalog = policies::Catalog::load_dir(config->runbooks_dir);
  if (!catalog) return error("runbooks: " + catalog.error().message, kUsage);
  auto keys = config->auth.api_keys_file.empty() ? Result<policies::ApiKeyStore>(policies::ApiKeyStore{})
                                                 : policies::ApiKeyStore::load(config->auth.api_keys_file);
  if (!keys) return error("api keys: " + keys.error().message, kUsage);
  // Offline evaluation must not use up the token's jti: no replay cache here.
  SystemClock key_clock;
  auto oauth = OAuthSetup::create(*config, key_clock, /*with_replay=*/false);
  if (!oauth) return error(oauth.error().message, kUsage);
  policies::Authorizer authorizer(
      *catalog, *keys,
      policies::AuthorizerOptions{.oauth = (*oauth)->verifier()});
  auto decision = authorizer.decide(*job, now);
  Json out = policies::to_json(decision);
  out["job"] = job->id;
  out["runbook"] = job->runbook;
  if (decision.allow) out["params"] = decision.params;
  // The decision quotes the job and the token; never let their bytes abort the output.
  std::cout << dump_safe(out) << "\n";
  return decision.allow ? 0 : 3;
}

int identity(const std::vector<std::string>& args) {
  po::options_description opts("delegate-agent identity");
  opts.add_options()("config", po::value<std::string>()->required());
  auto vm = parse(args, opts);
  auto config = config_from(vm);
  if (!config) return error(config.error().message, kUsage);
  if (auto r = ensure_dir(config->agent.state_dir, 0700); !r) return error(r.error().message, 1);
  auto key = Ed25519PrivateKey::load_or_create(config->agent.state_dir / "identity.key");
  if (!key) return error("identity: " + key.error().message, 1);
  std::cout << base64_encode(key->public_key()) << "\n";
  return 0;
}

int api_key(const std::vector<std::string>& args) {
  if (args.empty()) return error("usage: api-key create|revoke|list --config FILE ...", kUsage);
  const std::string action = args.front();
  std::vector<std::string> rest(args.begin() + 1, args.end());
  po::options_description opts("delegate-agent api-key");
  opts.add_options()("config", po::value<std::string>()->required())("id", po::value<std::string>())(
      "scope", po::value<std::vector<std::string>>()->composing())(
      "role", po::value<std::vector<std::string>>()->composing())("expires", po::value<std::string>());
  auto vm = parse(rest, opts);
  auto config = config_from(vm);
  if (!config) return error(config.error().message, kUsage);
  const auto& file = config->auth.api_keys_file;
  if (file.empty()) return error("auth.api_keys_file is not configured", kUsage);
  auto store = policies::ApiKeyStore::load(file);
  if (!store) return error(store.error().message, kUsage);
  const TimePoint now = std::chrono::system_clock::now();

  if (action == "list") {
    for (const auto& e : store->entries()) {
      Json j{{"id", e.id},
             {"scopes", e.scopes},
             {"roles", e.roles},
             {"created", format_rfc3339_ms(e.created)},
             {"expires", e.expires ? Json(format_rfc3339_ms(*e.expires)) : Json(nullptr)},
             {"revoked", e.revoked},
             {"expired", e.expires && *e.expires <= now}};
      std::cout << j.dump() << "\n";
    }
    return 0;
  }
  if (!vm.count("id")) return error("api-key " + action + ": --id is required", kUsage);
  const auto id = vm["id"].as<std::string>();
  if (action == "create") {
    std::optional<TimePoint> expires;
    if (vm.count("expires")) {
      auto t = parse_rfc3339(vm["expires"].as<std::string>());
      if (!t) return error("--expires: " + t.error().message, kUsage);
      expires = *t;
    }
    auto scopes = vm.count("scope") ? vm["scope"].as<std::vector<std::string>>() : std::vector<std::string>{};
    auto roles = vm.count("role") ? vm["role"].as<std::vector<std::string>>() : std::vector<std::string>{};
    auto key = store->create(id, scopes, roles, expires, now);
    if (!key) return error(key.error().message, key.error().code == Errc::conflict ? 1 : kUsage);
    if (auto r = store->save(file); !r) return error(r.error().message, 1);
    std::cout << *key << "\n";  // shown once; only its salted hash is stored
    return 0;
  }
  if (action == "revoke") {
    if (auto r = store->revoke(id); !r) return error(r.error().message, r.error().code == Errc::not_found ? 1 : kUsage);
    if (auto r = store->save(file); !r) return error(r.error().message, 1);
    std::cout << "revoked " << id << "\n";
    return 0;
  }
  return error("unknown api-key action \"" + action + "\" (create, revoke, list)", kUsage);
}

}  // namespace delegate::agent::cli
