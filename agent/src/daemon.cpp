#include <delegate/agent/daemon.hpp>

#include <pthread.h>
#include <signal.h>

#include <condition_variable>
#include <cstdlib>
#include <limits>
#include <map>
#include <mutex>
#include <thread>

#include <unistd.h>

#include <delegate/agent/agent_stream.hpp>
#include <delegate/agent/backoff.hpp>
#include <delegate/agent/cp_client.hpp>
#include <delegate/agent/job_runner.hpp>
#include <delegate/agent/key_cache.hpp>
#include <delegate/agent/metrics.hpp>
#include <delegate/agent/oauth_setup.hpp>
#include <delegate/agent/reload.hpp>
#include <delegate/agent/secrets.hpp>
#include <delegate/agent/session.hpp>
#include <delegate/agent/spool.hpp>
#include <delegate/agent/uploader.hpp>
#include <delegate/common/fs.hpp>
#include <delegate/common/log.hpp>
#include <delegate/policies/job.hpp>
#include <delegate/policies/runbook.hpp>

namespace delegate::agent {
namespace {

using Clock_ = std::chrono::steady_clock;

std::uint64_t random_seed() {
  auto b = random_bytes(8);
  std::uint64_t s = 0;
  for (auto x : b) s = (s << 8) | x;
  return s;
}

std::string hostname() {
  char buf[256] = {0};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "unknown";
  return buf;
}

// A finished job whose completion is still to be reported to the control plane.
struct Completion {
  StreamKey key;
  std::string status;
  std::uint64_t last_seq = 0;
  std::string last_hash;
};

class Daemon {
 public:
  Daemon(const Config& config, const Clock& clock, Ed25519PrivateKey key, std::shared_ptr<const AgentState> state,
         std::unique_ptr<Spool> spool, DaemonOptions options)
      : config_(config),
        clock_(clock),
        key_(std::move(key)),
        options_(std::move(options)),
        state_(std::move(state)),
        spool_(std::move(spool)),
        session_(config_, key_),
        client_options_{.base_url = config_.control_plane.url,
                        .ca_file = config_.control_plane.ca_file,
                        .identity = &key_,
                        .proxy = config_.control_plane.proxy_settings},
        uploader_(session_, client_options_, *spool_),
        agent_stream_(key_, clock_, *spool_, DELEGATE_VERSION) {}

  int run();

 private:
  // Crash recovery: closes jobs that were running when the agent died (job.end
  // "interrupted", continuing their chain) and queues every unreported completion.
  void replay();
  void completer_loop(std::stop_token stop);
  void checkpoint_loop(std::stop_token stop);
  // One attempt; true when the control plane settled it (accepted or refused for good).
  bool report_completion(CpClient& client, const Completion& c);
  void start_agent_stream(const std::string& agent_id);
  void signal_loop(std::stop_token stop);
  // SIGHUP: builds and validates the new state, then swaps it in (reload.cpp builds it).
  void reload();
  [[nodiscard]] std::shared_ptr<const AgentState> state() const {
    std::lock_guard lock(state_mu_);
    return state_;
  }
  void heartbeat_loop(std::stop_token stop);
  void acquire_loop();
  void start_job(Json raw, std::string agent_id);
  void job_thread(Json raw, policies::Job job, std::string agent_id, std::shared_ptr<JobControl> control);
  // Sleeps up to `d`, waking early when stopping.
  void pause(std::chrono::milliseconds d);
  void shutdown();
  // Joins threads of finished jobs so a long-lived agent does not accumulate them.
  void reap();

  const Config& config_;
  const Clock& clock_;
  Ed25519PrivateKey key_;
  DaemonOptions options_;
  mutable std::mutex state_mu_;
  std::shared_ptr<const AgentState> state_;  // guarded by state_mu_; replaced whole by reload()
  std::unique_ptr<Spool> spool_;
  Session session_;
  ClientOptions client_options_;
  Uploader uploader_;
  AgentStream agent_stream_;
  TokenCache tokens_{clock_};

  std::atomic<bool> stopping_{false};
  std::atomic<bool> hb_abort_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<JobControl>> running_;
  std::map<std::string, std::jthread> job_threads_;
  std::vector<std::string> finished_;  // job threads that ended and can be joined
  std::map<StreamKey, Completion> completions_;  // guarded by mu_
  std::atomic<std::int64_t> completion_deadline_ns_{std::numeric_limits<std::int64_t>::max()};
};

void Daemon::replay() {
  for (const auto& s : spool_->streams()) {
    if (s.key.job == audit::kAgentStreamJob || s.next_seq == 0) continue;
    StreamInfo done = s;
    if (!s.ended) {
      // The agent died while this job ran. Its steps are gone with it; the job is never
      // run again (that would need a new lease), its log is closed here.
      audit::ChainWriter writer(key_, clock_, s.key.agent, s.key.job, s.next_seq, s.last_hash, s.last_ts);
      auto rec = writer.append(audit::Kind::job_end, Json{{"status", "interrupted"}, {"records", s.next_seq + 1}});
      if (!rec) {
        log::error("agent", "cannot close interrupted job " + s.key.job + ": " + rec.error().message);
        continue;
      }
      if (auto r = spool_->append(*rec); !r) {
        log::error("agent", "cannot close interrupted job " + s.key.job + ": " + r.error().message);
        continue;
      }
      log::warn("agent", "job " + s.key.job + " was running when the agent stopped; recorded it as interrupted",
                {{"job", s.key.job}, {"event", "job_interrupted"}});
      done.status = "interrupted";
      agent_metrics().job_finished("interrupted");
      done.next_seq = rec->seq + 1;
      done.last_hash = rec->hash;
    } else if (s.completed) {
      continue;
    }
    std::lock_guard lock(mu_);
    completions_[s.key] = Completion{s.key, done.status, done.next_seq - 1, done.last_hash};
  }
}

bool Daemon::report_completion(CpClient& client, const Completion& c) {
  auto creds = session_.credentials(client);
  if (!creds) return false;
  auto res = client.post("/v1/jobs/" + c.key.job + "/complete",
                         Json{{"status", c.status}, {"last_seq", c.last_seq}, {"last_hash", c.last_hash}}, creds->token,
                         std::chrono::seconds(30));
  if (!res) {
    log::warn("agent", "completion of job " + c.key.job + " failed: " + res.error().message);
    return false;
  }
  switch (res->status) {
    case 200:
      return true;
    case 401:
      session_.invalidate(*creds);
      return false;
    case 400:
    case 404:
    case 409:
      log::error("agent", "control plane refused completion of job " + c.key.job + ": HTTP " +
                              std::to_string(res->status) + " " + res->body.substr(0, 200));
      return true;
    default:
      log::warn("agent", "completion of job " + c.key.job + ": HTTP " + std::to_string(res->status));
      return false;
  }
}

void Daemon::completer_loop(std::stop_token stop) {
  CpClient client(client_options_, &hb_abort_);
  Backoff backoff(std::chrono::milliseconds(200), std::chrono::seconds(10), random_seed());
  std::stop_callback on_stop(stop, [this] { spool_->wake(); });
  std::uint64_t seen = 0;
  for (;;) {
    std::vector<Completion> todo;
    {
      std::lock_guard lock(mu_);
      for (const auto& [_, c] : completions_) todo.push_back(c);
    }
    const bool past_deadline =
        Clock_::now().time_since_epoch() >= std::chrono::nanoseconds(completion_deadline_ns_.load());
    if (stop.stop_requested() && (todo.empty() || past_deadline)) {
      if (!todo.empty()) {
        log::warn("agent", std::to_string(todo.size()) + " job completion(s) not reported yet; they are reported at the next start");
      }
      return;
    }
    bool failed = false;
    for (const auto& c : todo) {
      // The log must be in the store before the job is reported complete.
      auto info = spool_->stream(c.key);
      bool settled = false;
      if (!info || info->dead) {
        log::error("agent", "completion of job " + c.key.job + " not reported: its records were refused");
        settled = true;
      } else if (info->acked >= static_cast<std::int64_t>(c.last_seq)) {
        settled = report_completion(client, c);
        failed = failed || !settled;
      }
      if (settled) {
        spool_->mark_completed(c.key);
        std::lock_guard lock(mu_);
        completions_.erase(c.key);
      }
    }
    if (failed) {
      auto wait = backoff.next();
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, wait, [&] { return stop.stop_requested(); });
      continue;
    }
    backoff.reset();
    seen = spool_->wait_change(seen, std::chrono::milliseconds(500));
  }
}

void Daemon::start_agent_stream(const std::string& agent_id) {
  if (agent_stream_.started()) return;
  if (auto r = agent_stream_.start(agent_id, hostname()); !r) {
    log::error("agent", "agent stream: " + r.error().message);
    return;
  }
  // Jobs closed during replay, and any finished before a crash, are listed right away.
  if (auto r = agent_stream_.checkpoint(); !r) log::error("agent", "checkpoint: " + r.error().message);
}

void Daemon::checkpoint_loop(std::stop_token stop) {
  while (!stop.stop_requested()) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(config_.agent.checkpoint_interval_s), [&] { return stop.stop_requested(); });
    }
    if (stop.stop_requested()) break;
    if (auto r = agent_stream_.checkpoint(); !r) log::error("agent", "checkpoint: " + r.error().message);
  }
}

void Daemon::signal_loop(std::stop_token stop) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  while (!stop.stop_requested()) {
    timespec ts{0, 200'000'000};
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig == SIGHUP) {
      if (stopping_) {
        log::warn("agent", "received SIGHUP while stopping: configuration not reloaded");
      } else {
        // Nothing thrown while reloading may end the agent with jobs running.
        try {
          reload();
        } catch (const std::exception& e) {
          log::error("agent", std::string("reload rejected, the running configuration stays in force: ") + e.what(),
                     {{"event", "reload_rejected"}});
        }
      }
    }
    if (sig == SIGTERM || sig == SIGINT) {
      if (!stopping_.exchange(true)) {
        log::info("agent", std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + ": stopping");
      }
      { std::lock_guard lock(mu_); }  // see heartbeat stop: no lost wake-up
      cv_.notify_all();
    }
  }
}

void Daemon::reload() {
  log::info("agent", "SIGHUP: reloading " + options_.config_file.string());
  const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
  auto next = reload_state(options_.config_file, config_, *state(), clock_, creds != nullptr ? creds : "");
  if (!next) {
    log::error("agent", "reload rejected, the running configuration stays in force: " + next.error().message,
               {{"event", "reload_rejected"}});
    return;
  }
  log::set_level(options_.log_level.value_or((*next)->config.log.level));
  log::set_format(options_.log_format.value_or((*next)->config.log.format));
  const auto text = summary(**next);
  const auto fingerprint = (*next)->fingerprint;
  {
    std::lock_guard lock(state_mu_);
    state_ = std::move(*next);  // the old state lives on in the jobs that hold it
  }
  log::info("agent", "configuration reloaded: " + text, {{"event", "reloaded"}, {"fingerprint", fingerprint}});
}

void Daemon::pause(std::chrono::milliseconds d) {
  std::unique_lock lock(mu_);
  cv_.wait_for(lock, d, [&] { return stopping_.load(); });
}

void Daemon::heartbeat_loop(std::stop_token stop) {
  CpClient client(client_options_, &hb_abort_);
  while (!stop.stop_requested()) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::seconds(config_.agent.heartbeat_s), [&] { return stop.stop_requested(); });
    }
    if (stop.stop_requested()) break;
    Json ids = Json::array();
    {
      std::lock_guard lock(mu_);
      for (const auto& [id, _] : running_) ids.push_back(id);
      // Finished jobs keep their lease until their completion is reported.
      for (const auto& [key, _] : completions_) ids.push_back(key.job);
    }
    auto creds = session_.credentials(client);
    if (!creds) {
      log::warn("agent", "heartbeat skipped: " + creds.error().message);
      continue;
    }
    auto res = client.post("/v1/agents/" + creds->agent_id + "/heartbeat", Json{{"running", ids}}, creds->token,
                           std::chrono::seconds(30));
    if (!res) {
      log::warn("agent", "heartbeat failed: " + res.error().message);
      continue;
    }
    if (res->status == 401) {
      session_.invalidate(*creds);
      continue;
    }
    if (res->status != 200) {
      log::warn("agent", "heartbeat answered HTTP " + std::to_string(res->status));
      continue;
    }
    auto body = parse_json_strict(res->body);
    if (!body || !body->is_object() || !(*body)["cancel"].is_array()) {
      log::warn("agent", "heartbeat answer is malformed; ignored");
      continue;
    }
    std::lock_guard lock(mu_);
    for (const auto& id : (*body)["cancel"]) {
      if (!id.is_string()) continue;
      auto it = running_.find(id.get<std::string>());
      if (it != running_.end() && !it->second->cancel.cancelled()) {
        log::info("agent", "control plane cancelled job " + it->first, {{"job", it->first}, {"event", "job_cancelled"}});
        it->second->cancel.cancel();
      }
    }
  }
}

void Daemon::start_job(Json raw, std::string agent_id) {
  auto job = policies::parse_job(raw);
  if (!job) {
    // Without a valid id there is no stream to record into and nothing to complete;
    // the control plane's lease will expire and the job will be requeued or dropped.
    log::error("agent", "control plane sent a job without a valid id; refused: " + job.error().message);
    return;
  }
  auto control = std::make_shared<JobControl>();
  std::lock_guard lock(mu_);
  if (running_.contains(job->id)) {
    log::warn("agent", "job " + job->id + " is already running here; duplicate lease ignored");
    return;
  }
  if (spool_->stream(StreamKey{agent_id, job->id})) {
    // Its records are in the spool: it already ran (or started) here, e.g. before a
    // restart, and the control plane requeued it meanwhile. Never run a job twice; its
    // log and completion are being delivered.
    log::warn("agent", "job " + job->id + " already ran on this agent; not running it again");
    return;
  }
  const std::string id = job->id;  // *job is moved into the thread below
  running_[id] = control;
  job_threads_.insert_or_assign(id, std::jthread([this, raw = std::move(raw), job = std::move(*job), agent_id = std::move(agent_id),
                                                 control](std::stop_token) mutable {
    job_thread(std::move(raw), std::move(job), std::move(agent_id), std::move(control));
  }));
}

void Daemon::reap() {
  std::vector<std::jthread> done;
  {
    std::lock_guard lock(mu_);
    for (const auto& id : finished_) {
      auto it = job_threads_.find(id);
      if (it != job_threads_.end()) {
        done.push_back(std::move(it->second));
        job_threads_.erase(it);
      }
    }
    finished_.clear();
  }
  // `done` joins here, outside the lock; these threads have already left job_thread.
}

void Daemon::job_thread(Json raw, policies::Job job, std::string agent_id, std::shared_ptr<JobControl> control) {
  // agent_id is the identity the job was leased to: the records must chain under it even
  // if the session is re-registering meanwhile (an empty id would get them all refused).
  // The state this job runs under from its first record to its last, whatever reloads
  // happen meanwhile.
  const auto state = this->state();
  RunnerDeps deps{key_, clock_, std::move(agent_id), state->catalog, state->api_keys->current(),
                  policies::AuthorizerOptions{.oauth = state->oauth->verifier()},
                  uploader_,
                  state->step_base,
                  *state->filters,
                  &state->secrets,
                  state->egress_cidrs,
                  &tokens_};
  const StreamKey key{deps.agent_id, job.id};
  JobResult result = run_job(raw, job, deps, *control);
  {
    std::lock_guard lock(mu_);
    // Reported by the completer once the records are acknowledged; the slot is free now.
    completions_[key] = Completion{key, result.status, result.last_seq, result.last_hash};
    running_.erase(job.id);
    finished_.push_back(job.id);
  }
  cv_.notify_all();
  spool_->wake();
}

void Daemon::acquire_loop() {
  CpClient client(client_options_, &stopping_);
  Backoff backoff(std::chrono::milliseconds(500), std::chrono::seconds(30), random_seed());
  while (!stopping_) {
    reap();
    std::size_t capacity = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || running_.size() < config_.agent.concurrency; });
      if (stopping_) break;
      capacity = config_.agent.concurrency - running_.size();
    }
    auto creds = session_.credentials(client);
    // Ready (/readyz) while registered and polling; a failed poll clears it until the next.
    agent_metrics().set_polling(creds.has_value() && !stopping_);
    if (!creds) {
      if (stopping_) break;
      log::error("agent", "cannot register with the control plane: " + creds.error().message);
      pause(backoff.next());
      continue;
    }
    start_agent_stream(creds->agent_id);
    auto res = client.post("/v1/agents/" + creds->agent_id + "/jobs/acquire",
                           Json{{"capacity", capacity}, {"wait_s", config_.agent.poll_wait_s}}, creds->token,
                           std::chrono::seconds(config_.agent.poll_wait_s + 15));
    if (!res || (res->status != 200 && res->status != 204)) agent_metrics().set_polling(false);
    if (!res) {
      if (stopping_) break;
      log::warn("agent", "acquire failed: " + res.error().message);
      pause(backoff.next());
      continue;
    }
    switch (res->status) {
      case 204:
        backoff.reset();
        continue;
      case 200: {
        auto body = parse_json_strict(res->body, JsonLimits{.max_bytes = 4u << 20, .max_depth = 32});
        if (!body || !body->is_object() || !body->contains("job") || !(*body)["job"].is_object()) {
          log::error("agent", "acquire answer is malformed and was ignored: " +
                                  (body ? std::string("no job object") : body.error().message));
          pause(backoff.next());
          continue;
        }
        backoff.reset();
        start_job(std::move((*body)["job"]), creds->agent_id);
        continue;
      }
      case 401:
        session_.invalidate(*creds);
        pause(backoff.next());
        continue;
      default:
        log::warn("agent", "acquire answered HTTP " + std::to_string(res->status));
        pause(backoff.next());
    }
  }
}

void Daemon::shutdown() {
  agent_metrics().set_polling(false);
  std::unique_lock lock(mu_);
  if (!running_.empty()) {
    log::info("agent", "waiting up to " + std::to_string(config_.agent.shutdown_grace_s) + " s for " +
                           std::to_string(running_.size()) + " running job(s)");
  }
  bool drained = cv_.wait_for(lock, std::chrono::seconds(config_.agent.shutdown_grace_s), [&] { return running_.empty(); });
  if (!drained) {
    log::warn("agent", "grace period over: interrupting " + std::to_string(running_.size()) + " job(s)");
    // A job blocked on a full spool must still be able to record its end.
    spool_->lift_quota();
    for (auto& [_, control] : running_) {
      control->interrupted = true;
      control->cancel.cancel();
    }
  }
  auto threads = std::move(job_threads_);
  job_threads_.clear();
  lock.unlock();
  threads.clear();  // joins: each job records job.end and waits for its acks
}

int Daemon::run() {
  std::jthread signals([this](std::stop_token st) { signal_loop(st); });
  log::info("agent", "starting " + config_.agent.name + " (" + summary(*state()) + ", concurrency " +
                         std::to_string(config_.agent.concurrency) + ")");
  replay();
  std::jthread uploader([this](std::stop_token st) { uploader_.run(st); });
  std::jthread completer([this](std::stop_token st) { completer_loop(st); });
  std::jthread heartbeat([this](std::stop_token st) { heartbeat_loop(st); });
  std::jthread checkpoints([this](std::stop_token st) { checkpoint_loop(st); });
  acquire_loop();
  shutdown();
  {
    std::lock_guard lock(mu_);
    checkpoints.request_stop();
  }
  cv_.notify_all();
  checkpoints.join();
  // Every job has recorded its job.end: list them, then close this boot's stream.
  if (auto r = agent_stream_.stop(); !r) log::error("agent", "agent stream: " + r.error().message);
  const auto drain = Clock_::now() + std::chrono::seconds(10);
  completion_deadline_ns_ = std::chrono::duration_cast<std::chrono::nanoseconds>(drain.time_since_epoch()).count();
  uploader_.set_drain_deadline(drain);
  {
    std::lock_guard lock(mu_);
    completer.request_stop();
  }
  cv_.notify_all();
  completer.join();
  hb_abort_ = true;
  {
    // Under the lock, so the heartbeat thread cannot miss the stop between its
    // predicate check and its wait.
    std::lock_guard lock(mu_);
    heartbeat.request_stop();
  }
  cv_.notify_all();
  heartbeat.join();
  uploader.request_stop();
  uploader.join();
  spool_->close();
  signals.request_stop();
  log::info("agent", "stopped");
  return 0;
}

}  // namespace

int run_daemon(const Config& config, const Clock& clock, DaemonOptions options) {
  // Signals are taken synchronously by one thread; every other thread (and, after the
  // sandbox resets it, no child) has them blocked.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  ::signal(SIGPIPE, SIG_IGN);

  if (auto r = ensure_dir(config.agent.state_dir, 0700); !r) {
    log::error("agent", r.error().message);
    return 1;
  }
  if (auto r = ensure_dir(config.agent.state_dir / "work", 0700); !r) {
    log::error("agent", r.error().message);
    return 1;
  }
  auto key = Ed25519PrivateKey::load_or_create(config.agent.state_dir / "identity.key");
  if (!key) {
    log::error("agent", "identity: " + key.error().message);
    return 1;
  }
  // The same build and checks as a reload: what starts is what a SIGHUP would accept.
  std::string text;
  if (!options.config_file.empty()) {
    if (auto t = read_file(options.config_file, 1u << 20)) text = std::move(*t);
  }
  const char* creds = std::getenv("CREDENTIALS_DIRECTORY");
  auto state = build_state(config, StateInputs{clock, creds != nullptr ? creds : "", text, nullptr});
  if (!state) {
    log::error("agent", state.error().message);
    // As before reloads existed: the catalog and the secret store are "cannot start" (1),
    // the rest (issuers, API key file, profiles, CAs) is bad configuration (2).
    const auto& m = state.error().message;
    return m.rfind("runbooks:", 0) == 0 || m.rfind("secrets:", 0) == 0 ? 1 : 2;
  }
  auto spool_key = load_spool_key(config.agent.spool_key_file, config.agent.state_dir / "spool.key");
  if (!spool_key) {
    log::error("agent", spool_key.error().message);
    return 1;
  }
  // Fail closed: a spool that does not authenticate is not silently discarded or
  // re-used; the operator decides (docs/spool.md, "Recovery").
  auto spool = Spool::open(SpoolOptions{.dir = config.agent.state_dir / "spool",
                                        .key = *spool_key,
                                        .max_bytes = config.agent.spool_max_bytes});
  if (!spool) {
    log::error("agent", "spool: " + spool.error().message);
    return 1;
  }
  const Spool& spool_ref = **spool;
  Daemon daemon(config, clock, std::move(*key), std::move(*state), std::move(*spool), std::move(options));
  // Declared after the daemon: it stops before the spool it reports on goes away.
  auto listener = start_metrics_listener(config, spool_ref);
  if (!listener) {
    // Observability, not a control: a local user who holds the port (or the socket's
    // path) first must not be able to keep the agent from running runbooks.
    log::error("agent", listener.error().message + "; running without /healthz, /readyz and /metrics",
               {{"event", "metrics_listener_failed"}});
  } else if (*listener) {
    log::info("agent", "health and metrics on " + (*listener)->describe());
  }
  return daemon.run();
}

}  // namespace delegate::agent
