#include <delegate/common/crypto.hpp>
#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/strict.hpp>
#include <delegate/controlplane/server.hpp>

#include "dev_issuer.hpp"
#include "pki.hpp"

namespace delegate::controlplane {
namespace fs = std::filesystem;

namespace {

Result<std::pair<std::string, std::uint16_t>> split_listen(const std::string& listen) {
  auto colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return fail(Errc::invalid_argument, "listen must be HOST:PORT, got \"" + listen + "\"");
  std::string host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  unsigned long port = 0;
  try {
    std::size_t used = 0;
    port = std::stoul(listen.substr(colon + 1), &used);
    if (used != listen.size() - colon - 1) throw std::invalid_argument("trailing");
  } catch (const std::exception&) {
    return fail(Errc::invalid_argument, "invalid port in \"" + listen + "\"");
  }
  if (port > 65535) return fail(Errc::invalid_argument, "invalid port in \"" + listen + "\"");
  return std::pair{host, static_cast<std::uint16_t>(port)};
}

std::string new_token(const char* prefix) { return std::string(prefix) + base64url_encode(random_bytes(32)); }

}  // namespace

Result<void> init_dir(const InitOptions& o) {
  auto hp = split_listen(o.listen);
  if (!hp) return std::unexpected(hp.error());
  if (auto r = ensure_dir(o.dir, 0700); !r) return r;
  const fs::path dir = fs::absolute(o.dir);
  if (fs::exists(dir / "controlplane.json") && !o.force) {
    return fail(Errc::conflict, dir.string() + " is already initialised (use --force to overwrite its keys)");
  }
  auto pki = make_dev_pki({"localhost"}, {"127.0.0.1", "::1"}, 365);
  if (!pki) return std::unexpected(pki.error());
  if (auto r = write_file_atomic(dir / "ca.pem", pki->ca_cert_pem, 0644); !r) return r;
  if (auto r = write_file_atomic(dir / "server.pem", pki->server_cert_pem, 0644); !r) return r;
  if (auto r = write_file_atomic(dir / "server.key", pki->server_key_pem, 0600); !r) return r;
  if (auto r = write_file_atomic(dir / "admin.token", new_token("dadm_") + "\n", 0600); !r) return r;
  if (auto r = write_file_atomic(dir / "enrollment.token", new_token("denr_") + "\n", 0600); !r) return r;

  if (auto r = DevIssuer::init(dir); !r) return r;
  std::string host = hp->first;
  if (host == "0.0.0.0" || host == "::" || host.empty()) host = "127.0.0.1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  const std::string base = "https://" + host + ":" + std::to_string(hp->second);
  Json cp{{"listen", o.listen},
          {"dev_oauth_issuer", base + "/"},
          {"db", "controlplane.db"},
          {"cert", "server.pem"},
          {"key", "server.key"},
          {"admin_token_file", "admin.token"},
          {"enrollment_token_file", "enrollment.token"},
          {"lease_s", 30}};
  if (auto r = write_file_atomic(dir / "controlplane.json", cp.dump(2) + "\n", 0600); !r) return r;

  fs::path runbooks = dir / "runbooks";
  if (auto r = ensure_dir(runbooks, 0755); !r) return r;
  std::error_code ec;
  if (!o.runbooks_source.empty() && fs::is_directory(o.runbooks_source, ec)) {
    for (const auto& e : fs::directory_iterator(o.runbooks_source, ec)) {
      if (e.is_regular_file() && (e.path().extension() == ".yaml" || e.path().extension() == ".yml")) {
        fs::copy_file(e.path(), runbooks / e.path().filename(), fs::copy_options::overwrite_existing, ec);
        if (ec) return fail(Errc::io, "cannot copy runbook " + e.path().string() + ": " + ec.message());
      }
    }
  }
  std::string agent_yaml =
      "# Written by delegate-controlplane init for local development.\n"
      "control_plane:\n"
      "  url: https://" + host + ":" + std::to_string(hp->second) + "\n"
      "  ca_file: " + (dir / "ca.pem").string() + "\n"
      "  enrollment_token_file: " + (dir / "enrollment.token").string() + "\n"
      "agent:\n"
      "  name: dev-agent\n"
      "  tags: [dev]\n"
      "  state_dir: " + (dir / "agent-state").string() + "\n"
      "  concurrency: 4\n"
      "sandbox:\n"
      "  step_user: nobody        # steps run as this account when the agent is root\n"
      "  allow_root_steps: false  # steps asking for root (restart-service) fail closed\n"
      "  allow_sockets: []        # host Unix sockets runbooks may ask for; restart-service\n"
      "                           # needs [/run/systemd/private] (and allow_root_steps: true)\n"
      "auth:\n"
      "  clock_skew_s: 60\n"
      "  oauth:\n"
      "    - issuer: " + base + "/\n"
      "      audience: " + kDevAudience + "\n"
      "      jwks_uri: " + base + "/.well-known/jwks.json\n"
      "      ca_file: " + (dir / "ca.pem").string() + "\n"
      "      algorithms: [EdDSA]\n"
      "      scope_claim: scope\n"
      "      roles_claim: roles\n"
      "  api_keys_file: " + (dir / "api-keys.yaml").string() + "\n"
      "runbooks_dir: " + runbooks.string() + "\n";
  return write_file_atomic(dir / "agent.yaml", agent_yaml, 0600);
}

Result<ServerConfig> load_dir_config(const fs::path& dir_in) {
  const fs::path dir = fs::absolute(dir_in);
  auto text = read_file(dir / "controlplane.json", 64 * 1024);
  if (!text) return fail(text.error().code, text.error().message + " (run `delegate-controlplane init --dir " + dir.string() + "` first)");
  auto j = parse_json_strict(*text);
  if (!j) return fail(Errc::parse, (dir / "controlplane.json").string() + ": " + j.error().message);
  if (!j->is_object()) return fail(Errc::parse, (dir / "controlplane.json").string() + ": not a JSON object");
  ServerConfig c;
  if (auto r = json_only_members(*j, "", {"listen", "db", "cert", "key", "admin_token_file", "enrollment_token_file",
                                        "lease_s", "dev_oauth_issuer", "max_connections",
                                        "max_connections_per_peer", "header_timeout_ms"});
      !r) {
    return fail(Errc::invalid_argument, "controlplane.json: " + r.error().message);
  }
  auto str = [&](const char* k) -> Result<std::string> { return json_string(*j, k); };
  auto listen = str("listen");
  auto db = str("db");
  auto cert = str("cert");
  auto key = str("key");
  auto admin = str("admin_token_file");
  auto enroll = str("enrollment_token_file");
  if (!listen || !db || !cert || !key || !admin || !enroll) {
    return fail(Errc::invalid_argument, "controlplane.json: listen, db, cert, key, admin_token_file and enrollment_token_file are required strings");
  }
  auto hp = split_listen(*listen);
  if (!hp) return std::unexpected(hp.error());
  c.listen_host = hp->first;
  c.port = hp->second;
  auto rel = [&](const std::string& p) { return fs::path(p).is_absolute() ? fs::path(p) : dir / p; };
  c.db_file = rel(*db);
  c.cert_file = rel(*cert);
  c.key_file = rel(*key);
  auto admin_token = read_secret_file(rel(*admin));
  if (!admin_token) return std::unexpected(admin_token.error());
  auto enroll_token = read_secret_file(rel(*enroll));
  if (!enroll_token) return std::unexpected(enroll_token.error());
  c.admin_token = *admin_token;
  c.enrollment_token = *enroll_token;
  if (j->contains("dev_oauth_issuer")) {
    auto iss = json_string(*j, "dev_oauth_issuer");
    if (!iss || iss->rfind("https://", 0) != 0) return fail(Errc::invalid_argument, "controlplane.json: dev_oauth_issuer must be an https:// URL");
    c.dev_oauth_issuer = *iss;
    c.dev_oauth_dir = dir;
  }
  if (j->contains("lease_s")) {
    auto lease = json_int(*j, "lease_s");
    if (!lease || *lease < 1 || *lease > 3600) return fail(Errc::invalid_argument, "controlplane.json: lease_s must be 1..3600");
    c.lease = std::chrono::seconds(*lease);
  }
  // Connection limits (docs/architecture.md, "Control plane").
  struct Bound {
    const char* key;
    std::int64_t min, max;
  };
  for (const Bound b : {Bound{"max_connections", 1, 100000}, Bound{"max_connections_per_peer", 1, 100000},
                        Bound{"header_timeout_ms", 100, 600000}}) {
    if (!j->contains(b.key)) continue;
    auto v = json_int(*j, b.key);
    if (!v || *v < b.min || *v > b.max) {
      return fail(Errc::invalid_argument, std::string("controlplane.json: ") + b.key + " must be " + std::to_string(b.min) +
                                              ".." + std::to_string(b.max));
    }
    if (std::string_view(b.key) == "max_connections") c.max_connections = static_cast<std::size_t>(*v);
    if (std::string_view(b.key) == "max_connections_per_peer") c.max_connections_per_peer = static_cast<std::size_t>(*v);
    if (std::string_view(b.key) == "header_timeout_ms") c.header_timeout = std::chrono::milliseconds(*v);
  }
  return c;
}

}  // namespace delegate::controlplane
