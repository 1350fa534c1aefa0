#pragma once
// HTTP API handlers (docs/protocol.md). Internal to the control plane.
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/http.hpp>

#include <initializer_list>
#include <list>
#include <optional>
#include <string>

#include <delegate/controlplane/server.hpp>
#include <delegate/controlplane/store.hpp>

#include "dev_issuer.hpp"
#include "group_commit.hpp"

namespace delegate::controlplane {

namespace http = boost::beast::http;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// What the connection proved about its client: the public key of its TLS client
// certificate when that key is Ed25519 (the handshake's CertificateVerify showed the
// client holds the private key).
struct Peer {
  int fd = -1;  // the connection's socket
  std::optional<Ed25519PublicKey> client_key;
  // Set by the API once a request on this connection authenticated (agent, admin or a
  // successful registration): it then gets the longer keep-alive deadlines.
  bool authenticated = false;
  // The request's group-commit ticket (server.cpp); a long poll joins a later batch with
  // it when it wakes up to lease a job.
  GroupCommit::Ticket* ticket = nullptr;
};

Response json_response(http::status status, const Json& body, unsigned version = 11);
Response error_response(http::status status, const std::string& message, unsigned version = 11);

class Api {
 public:
  Api(Store& store, const ServerConfig& config, const DevIssuer* dev_issuer = nullptr, GroupCommit* group = nullptr)
      : store_(store), config_(config), dev_issuer_(dev_issuer), group_(group) {}

  // peer.fd is used only to notice a long-polling client that went away before a job is
  // leased to it.
  boost::asio::awaitable<Response> handle(const Request& req, Peer& peer);
  // Wakes long-polling acquirers (a job was queued or requeued).
  void notify_jobs();
  // Periodic: expire leases.
  void sweep();
  // At start: running jobs get a fresh lease (see Store::extend_running_leases).
  void grant_restart_grace();

 private:
  boost::asio::awaitable<Response> acquire(const Request& req, const AgentRow& agent, const Peer& peer);
  Response register_agent(const Request& req, const Peer& peer);
  Response heartbeat(const Request& req, const AgentRow& agent);
  Response records(const Request& req, const AgentRow& agent, const std::string& job_id);
  Response agent_stream_records(const Request& req, const AgentRow& agent);
  Response export_agent_records(const Request& req, const std::string& agent_id);
  Response ingest_answer(const Result<IngestResult>& result, const std::string& what);
  Response complete(const Request& req, const AgentRow& agent, const std::string& job_id);
  Response create_job(const Request& req);
  Response get_job(const Request& req, const std::string& job_id);
  Response export_records(const Request& req, const std::string& job_id);
  Response list_agents(const Request& req);
  Response get_agent(const Request& req, const std::string& agent_id);
  Response cancel_job(const Request& req, const std::string& job_id);
  // api_identity.cpp
  Response create_enrollment_token(const Request& req);
  Response list_enrollment_tokens();
  Response get_enrollment_token(const std::string& id);
  Response delete_enrollment_token(const std::string& id);
  Response update_agent(const Request& req, const std::string& agent_id);
  Response revoke_agent(const std::string& agent_id);

  // Common prologue of the agent's per-job calls: the job exists and is leased to this
  // agent, the body is a JSON object with only `members`. Returns the error response
  // to send, or fills job and body.
  std::optional<Response> agent_job_request(const Request& req, const AgentRow& agent, const std::string& job_id,
                                            std::initializer_list<const char*> members, JobRow& job, Json& body);
  bool is_admin(const Request& req) const;
  Result<std::optional<AgentRow>> authenticate_agent(const Request& req);

  Store& store_;
  const ServerConfig& config_;
  const DevIssuer* dev_issuer_;
  GroupCommit* group_;
  std::list<boost::asio::steady_timer*> waiters_;
};

}  // namespace delegate::controlplane
