#include <delegate/agent/session.hpp>

#include <unistd.h>

#include <delegate/common/encoding.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/json.hpp>
#include <delegate/common/log.hpp>

namespace delegate::agent {
namespace {

std::filesystem::path creds_file(const Config& c) { return c.agent.state_dir / "agent.json"; }

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

}  // namespace

Result<Credentials> Session::credentials(CpClient& client) {
  std::lock_guard lock(mu_);
  if (!current_.token.empty()) return current_;
  // Saved credentials are only trusted if they belong to the current identity key.
  const std::string pub = base64_encode(key_.public_key());
  if (auto saved = read_secret_file(creds_file(config_)); saved) {
    auto j = parse_json_strict(*saved);
    if (j && j->is_object()) {
      auto id = json_string(*j, "agent_id");
      auto token = json_string(*j, "agent_token");
      auto key = json_string(*j, "public_key");
      auto url = json_string(*j, "url");
      if (id && token && key && *key == pub && url && *url == config_.control_plane.url) {
        current_ = Credentials{*id, *token};
        return current_;
      }
    }
    log::warn("agent", "saved credentials in " + creds_file(config_).string() + " do not match this identity or control plane; registering again");
  }
  auto fresh = register_agent(client);
  if (!fresh) return fresh;
  current_ = *fresh;
  return current_;
}

void Session::invalidate(const Credentials& stale) {
  std::lock_guard lock(mu_);
  if (current_.token == stale.token) current_ = {};
  std::error_code ec;
  std::filesystem::remove(creds_file(config_), ec);
}

Result<Credentials> Session::register_agent(CpClient& client) {
  auto enrollment = read_secret_file(config_.control_plane.enrollment_token_file);
  if (!enrollment) return std::unexpected(enrollment.error());
  Json tags = Json::array();
  for (const auto& t : config_.agent.tags) tags.push_back(t);
  Json body{{"name", config_.agent.name},
            {"hostname", hostname()},
            {"tags", tags},
            {"version", DELEGATE_VERSION},
            {"public_key", base64_encode(key_.public_key())}};
  auto res = client.post("/v1/agents/register", body, *enrollment, std::chrono::seconds(30));
  if (!res) return std::unexpected(res.error());
  if (res->status == 401) {
    return fail(Errc::permission, "control plane refused the registration (401): " + res->body.substr(0, 200));
  }
  if (res->status == 403) return fail(Errc::permission, "control plane refused this agent: it was revoked (403)");
  if (res->status != 201) {
    return fail(Errc::unavailable, "registration failed with HTTP " + std::to_string(res->status));
  }
  auto j = parse_json_strict(res->body);
  if (!j || !j->is_object()) return fail(Errc::parse, "registration answer is not a JSON object");
  auto id = json_string(*j, "agent_id");
  auto token = json_string(*j, "agent_token");
  if (!id || !token || id->empty() || token->empty()) return fail(Errc::parse, "registration answer lacks agent_id/agent_token");
  Json saved{{"agent_id", *id}, {"agent_token", *token}, {"public_key", body["public_key"]}, {"url", config_.control_plane.url}};
  if (auto r = write_file_atomic(creds_file(config_), saved.dump() + "\n", 0600); !r) return std::unexpected(r.error());
  log::info("agent", "registered as " + *id);
  return Credentials{*id, *token};
}

}  // namespace delegate::agent
