#include "sim_agent.hpp"

#include <stdexcept>

#include <delegate/common/encoding.hpp>

namespace delegate::testing {

namespace {

Ed25519PrivateKey fresh_key() {
  auto k = Ed25519PrivateKey::generate();
  if (!k) throw std::runtime_error("key generation failed");
  return std::move(*k);
}

}  // namespace

std::string enrollment_token(const ControlPlane& cp) {
  auto t = read_text(cp.dir() / "enrollment.token");
  while (!t.empty() && (t.back() == '\n' || t.back() == ' ')) t.pop_back();
  return t;
}

SimAgent::SimAgent(ControlPlane& cp, std::string agent_name)
    : name(std::move(agent_name)), cp_(cp), key_(fresh_key()) {}

std::string SimAgent::public_key() const { return base64_encode(key_.public_key()); }

Json SimAgent::registration(Json tags) const {
  return Json{{"name", name}, {"hostname", name + ".example"}, {"tags", std::move(tags)}, {"version", "test"},
              {"public_key", public_key()}};
}

agent::HttpResult SimAgent::post(const std::string& path, const Json& body, const std::string& bearer,
                                 const Ed25519PrivateKey* as) {
  agent::CpClient c(agent::ClientOptions{.base_url = cp_.url(), .ca_file = cp_.dir() / "ca.pem", .identity = as});
  auto r = c.post(path, body, bearer, std::chrono::seconds(30));
  if (!r) throw std::runtime_error("POST " + path + ": " + r.error().message);
  return *r;
}

agent::HttpResult SimAgent::enroll(Json tags, const std::string& enrollment) {
  auto r = post("/v1/agents/register", registration(std::move(tags)), enrollment.empty() ? enrollment_token(cp_) : enrollment);
  if (r.status == 201) {
    auto j = Json::parse(r.body);
    id = j["agent_id"].get<std::string>();
    token = j["agent_token"].get<std::string>();
  }
  return r;
}

agent::HttpResult SimAgent::acquire(int wait_s) {
  return post("/v1/agents/" + id + "/jobs/acquire", Json{{"capacity", 1}, {"wait_s", wait_s}}, token);
}

agent::HttpResult SimAgent::heartbeat(const std::vector<std::string>& running) {
  return post("/v1/agents/" + id + "/heartbeat", Json{{"running", running}}, token);
}

audit::ChainWriter SimAgent::writer(const std::string& job) const { return audit::ChainWriter(key_, clock_, id, job); }

Json SimAgent::records(audit::ChainWriter& w, const std::vector<std::pair<audit::Kind, Json>>& kinds) {
  Json out = Json::array();
  for (const auto& [kind, data] : kinds) {
    auto rec = w.append(kind, data);
    if (!rec) throw std::runtime_error("record: " + rec.error().message);
    out.push_back(audit::to_json(*rec));
  }
  return out;
}

agent::HttpResult SimAgent::post_records(const std::string& job, const Json& records) {
  return post("/v1/jobs/" + job + "/records", Json{{"records", records}}, token);
}

agent::HttpResult SimAgent::complete(const std::string& job, const std::string& status, const audit::ChainWriter& w) {
  return post("/v1/jobs/" + job + "/complete",
              Json{{"status", status},
                   {"last_seq", static_cast<std::int64_t>(w.next_seq()) - 1},
                   {"last_hash", w.last_hash()}},
              token);
}

}  // namespace delegate::testing
