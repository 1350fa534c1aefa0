#include <delegate/agent/daemon.hpp>

#include <pthread.h>
#include <signal.h>

#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>

#include <delegate/agent/backoff.hpp>
#include <delegate/agent/cp_client.hpp>
#include <delegate/agent/job_runner.hpp>
#include <delegate/agent/key_cache.hpp>
#include <delegate/agent/oauth_setup.hpp>
#include <delegate/agent/session.hpp>
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

class Daemon {
 public:
  Daemon(const Config& config, const Clock& clock, Ed25519PrivateKey key, policies::Catalog catalog,
         std::unique_ptr<OAuthSetup> oauth)
      : config_(config),
        clock_(clock),
        key_(std::move(key)),
        catalog_(std::move(catalog)),
        oauth_(std::move(oauth)),
        session_(config_, key_),
        client_options_{config_.control_plane.url, config_.control_plane.ca_file},
        uploader_(session_, client_options_),
        api_keys_(config_.auth.api_keys_file) {}

  int run();

 private:
  void signal_loop(std::stop_token stop);
  void heartbeat_loop(std::stop_token stop);
  void acquire_loop();
  void start_job(Json raw, std::string agent_id);
  void job_thread(Json raw, policies::Job job, std::string agent_id, std::shared_ptr<JobControl> control);
  void complete(const JobResult& result);
  // Sleeps up to `d`, waking early when stopping.
  void pause(std::chrono::milliseconds d);
  void shutdown();
  // Joins threads of finished jobs so a long-lived agent does not accumulate them.
  void reap();

  const Config& config_;
  const Clock& clock_;
  Ed25519PrivateKey key_;
  policies::Catalog catalog_;
  std::unique_ptr<OAuthSetup> oauth_;
  Session session_;
  ClientOptions client_options_;
  Uploader uploader_;
  ApiKeyCache api_keys_;
  FilterCache filters_;

  std::atomic<bool> stopping_{false};
  std::atomic<bool> hb_abort_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<std::string, std::shared_ptr<JobControl>> running_;
  std::map<std::string, std::jthread> job_threads_;
  std::vector<std::string> finished_;  // job threads that ended and can be joined
};

void Daemon::signal_loop(std::stop_token stop) {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
  while (!stop.stop_requested()) {
    timespec ts{0, 200'000'000};
    int sig = sigtimedwait(&set, nullptr, &ts);
    if (sig == SIGTERM || sig == SIGINT) {
      if (!stopping_.exchange(true)) {
        log::info("agent", std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + ": stopping");
      }
      { std::lock_guard lock(mu_); }  // see heartbeat stop: no lost wake-up
      cv_.notify_all();
    }
  }
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
        log::info("agent", "control plane cancelled job " + it->first);
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
  RunnerDeps deps{key_, clock_, std::move(agent_id), catalog_, api_keys_.current(),
                  policies::AuthorizerOptions{.allow_inline = config_.agent.allow_inline, .oauth = oauth_->verifier()},
                  uploader_,
                  config_.agent.state_dir / "work",
                  filters_};
  JobResult result = run_job(raw, job, deps, *control);
  complete(result);
  uploader_.forget(job.id);
  {
    std::lock_guard lock(mu_);
    running_.erase(job.id);
    finished_.push_back(job.id);
  }
  cv_.notify_all();
}

void Daemon::complete(const JobResult& r) {
  // The log must be in the store before the job is reported complete.
  const auto ack_deadline = Clock_::now() + (stopping_ ? std::chrono::seconds(10) : std::chrono::seconds(600));
  if (!uploader_.wait_acked(r.job_id, r.last_seq, ack_deadline)) {
    log::error("agent", "records of job " + r.job_id + " not acknowledged; completion not reported");
    return;
  }
  CpClient client(client_options_, &hb_abort_);
  Backoff backoff(std::chrono::milliseconds(200), std::chrono::seconds(10), random_seed());
  for (int attempt = 0; attempt < 8; ++attempt) {
    auto creds = session_.credentials(client);
    if (creds) {
      auto res = client.post("/v1/jobs/" + r.job_id + "/complete",
                             Json{{"status", r.status}, {"last_seq", r.last_seq}, {"last_hash", r.last_hash}},
                             creds->token, std::chrono::seconds(30));
      if (res && res->status == 200) return;
      if (res && res->status == 401) session_.invalidate(*creds);
      if (res && (res->status == 404 || res->status == 409 || res->status == 400)) {
        log::error("agent", "control plane refused completion of job " + r.job_id + ": HTTP " +
                                std::to_string(res->status) + " " + res->body.substr(0, 200));
        return;
      }
      if (!res) log::warn("agent", "completion of job " + r.job_id + " failed: " + res.error().message);
    }
    std::this_thread::sleep_for(backoff.next());
  }
  log::error("agent", "giving up reporting completion of job " + r.job_id);
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
    if (!creds) {
      if (stopping_) break;
      log::error("agent", "cannot register with the control plane: " + creds.error().message);
      pause(backoff.next());
      continue;
    }
    auto res = client.post("/v1/agents/" + creds->agent_id + "/jobs/acquire",
                           Json{{"capacity", capacity}, {"wait_s", config_.agent.poll_wait_s}}, creds->token,
                           std::chrono::seconds(config_.agent.poll_wait_s + 15));
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
  std::unique_lock lock(mu_);
  if (!running_.empty()) {
    log::info("agent", "waiting up to " + std::to_string(config_.agent.shutdown_grace_s) + " s for " +
                           std::to_string(running_.size()) + " running job(s)");
  }
  bool drained = cv_.wait_for(lock, std::chrono::seconds(config_.agent.shutdown_grace_s), [&] { return running_.empty(); });
  if (!drained) {
    log::warn("agent", "grace period over: interrupting " + std::to_string(running_.size()) + " job(s)");
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
  log::info("agent", "starting " + config_.agent.name + " (" + std::to_string(catalog_.size()) + " runbooks, concurrency " +
                         std::to_string(config_.agent.concurrency) + ")");
  std::jthread uploader([this](std::stop_token st) { uploader_.run(st); });
  std::jthread heartbeat([this](std::stop_token st) { heartbeat_loop(st); });
  acquire_loop();
  shutdown();
  hb_abort_ = true;
  {
    // Under the lock, so the heartbeat thread cannot miss the stop between its
    // predicate check and its wait.
    std::lock_guard lock(mu_);
    heartbeat.request_stop();
  }
  cv_.notify_all();
  heartbeat.join();
  uploader_.set_drain_deadline(Clock_::now() + std::chrono::seconds(10));
  uploader.request_stop();
  uploader.join();
  signals.request_stop();
  log::info("agent", "stopped");
  return 0;
}

}  // namespace

int run_daemon(const Config& config, const Clock& clock) {
  // Signals are taken synchronously by one thread; every other thread (and, after the
  // sandbox resets it, no child) has them blocked.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGTERM);
  sigaddset(&set, SIGINT);
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
  auto catalog = policies::Catalog::load_dir(config.runbooks_dir);
  if (!catalog) {
    log::error("agent", "runbooks: " + catalog.error().message);
    return 1;
  }
  auto oauth = OAuthSetup::create(config, clock, /*with_replay=*/true);
  if (!oauth) {
    log::error("agent", oauth.error().message);
    return 2;
  }
  Daemon daemon(config, clock, std::move(*key), std::move(*catalog), std::move(*oauth));
  return daemon.run();
}

}  // namespace delegate::agent
