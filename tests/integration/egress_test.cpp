// Egress end to end: the real agent (root) and control plane, a step with
// sandbox.egress, curl inside the sandbox, and an HTTPS stand-in on the host's loopback.
// Through the agent's proxy the step reaches exactly the allowlisted host:port; a
// target not on the list gets 403; going around the proxy reaches nothing (not even the
// host's loopback services); without egress_allow_cidrs the loopback address an
// allowed name resolves to is refused; network: true needs the agent's policy. Every
// proxy attempt is a net.connect record in the job's verified export.
#include <gtest/gtest.h>

#include <signal.h>
#include <unistd.h>

#include <algorithm>

#include <delegate/common/encoding.hpp>

#include "fake_cp.hpp"
#include "harness.hpp"

namespace delegate::testing {
namespace {

std::vector<Json> of_kind(const std::vector<Json>& recs, const std::string& kind) {
  std::vector<Json> out;
  for (const auto& r : recs) {
    if (r["kind"] == kind) out.push_back(r["data"]);
  }
  return out;
}

std::string stream_of(const std::vector<Json>& recs, const std::string& stream) {
  std::string out;
  for (const auto& d : of_kind(recs, "output")) {
    if (d["stream"] != stream) continue;
    auto b = base64_decode(d["b64"].get<std::string>());
    if (b) out.append(b->begin(), b->end());
  }
  return out;
}

class Egress : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "egress needs a root agent";
    cp_ = std::make_unique<ControlPlane>(tmp_.path / "cp");
    cfg_ = cp_->dir() / "agent.yaml";
    base_cfg_ = read_text(cfg_);
    // Steps have a private /tmp: the CA goes where their read-only host view shows it.
    shared_ = "/var/tmp/delegate-egress-it-" + std::to_string(::getpid());
    fs::remove_all(shared_);
    fs::create_directories(shared_);
    fs::permissions(shared_, fs::perms::owner_all | fs::perms::others_read | fs::perms::others_exec |
                                 fs::perms::group_read | fs::perms::group_exec);
    fs::copy_file(cp_->dir() / "ca.pem", shared_ / "ca.pem");
    fs::permissions(shared_ / "ca.pem", fs::perms::owner_read | fs::perms::group_read | fs::perms::others_read);
    standin_ = std::make_unique<FakeControlPlane>(
        FakeControlPlane::Tls{cp_->dir() / "server.pem", cp_->dir() / "server.key"},
        [](const FakeRequest& r) { return FakeAnswer{.status = 200, .body = "standin-answer:" + r.target, .content_type = "text/plain"}; });
    port_ = std::to_string(standin_->port());
    const std::string curl = "/usr/bin/curl -sS --max-time 20 --cacert " + (shared_ / "ca.pem").string() + " ";
    // Each refusal next to its positive control, in one step.
    write_text(cp_->dir() / "runbooks" / "probe.yaml",
               "name: probe\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
               "  - name: probe\n    uses: script\n    with:\n      script: |\n"
               "        " + curl + "https://localhost:" + port_ + "/allowed; echo \" allowed-rc=$?\"\n"
               "        " + curl + "https://127.0.0.1:" + port_ + "/unlisted; echo \" unlisted-rc=$?\"\n"
               "        " + curl + "--noproxy '*' https://localhost:" + port_ + "/direct; echo \" direct-rc=$?\"\n"
               "        " + curl + "--noproxy '*' https://127.0.0.1:" + port_ + "/direct; echo \" direct-ip-rc=$?\"\n"
               "    sandbox: {timeout_s: 60, egress: [\"localhost:" + port_ + "\"]}\n");
    write_text(cp_->dir() / "runbooks" / "hostnet.yaml",
               "name: hostnet\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
               "  - name: shares-host-network\n    uses: command\n    with: {argv: [/bin/echo, hostnet-ran]}\n"
               "    sandbox: {network: true, timeout_s: 20}\n");
    auto key = run({Bins::agent(), "api-key", "create", "--config", cfg_.string(), "--id", "oncall", "--scope",
                    "runbooks:execute"});
    ASSERT_EQ(key.exit_code, 0) << key.err;
    key_ = key.out.substr(0, key.out.find('\n'));
    auto pub = run({Bins::agent(), "identity", "--config", cfg_.string()});
    ASSERT_EQ(pub.exit_code, 0) << pub.err;
    pubkey_ = pub.out.substr(0, pub.out.find('\n'));
  }
  void TearDown() override {
    if (HasFailure() && agent_) std::cerr << "---- agent log ----\n" << agent_->log_text();
    stop_agent();
    standin_.reset();
    std::error_code ec;
    if (!shared_.empty()) fs::remove_all(shared_, ec);
  }

  // (Re)starts the agent with these lines added to its sandbox: section.
  void start_agent(const std::string& sandbox_lines) {
    stop_agent();
    std::string text = base_cfg_;
    const auto at = text.find("sandbox:\n");
    ASSERT_NE(at, std::string::npos);
    text.insert(at + 9, sandbox_lines);
    write_text(cfg_, text, 0600);
    agent_ = std::make_unique<Process>(std::vector<std::string>{Bins::agent(), "run", "--config", cfg_.string()},
                                       cp_->dir() / ("agent-" + std::to_string(++starts_) + ".log"));
  }
  void stop_agent() {
    if (!agent_) return;
    agent_->signal(SIGTERM);
    agent_->wait(std::chrono::seconds(60));
    agent_.reset();
  }
  std::string submit(const std::string& runbook) {
    return cp_->submit(Json{{"runbook", runbook},
                            {"params", Json::object()},
                            {"authorization", {{"type", "api_key"}, {"key", key_}}}});
  }
  RunResult verify(const std::string& job_id) {
    auto file = tmp_.path / (job_id + ".jsonl");
    write_text(file, cp_->admin_get("/v1/jobs/" + job_id + "/records").body);
    return run({Bins::audit(), "verify", "--public-key", pubkey_, file.string()});
  }
  std::size_t standin_saw(const std::string& target) {
    auto reqs = standin_->requests();
    return static_cast<std::size_t>(
        std::count_if(reqs.begin(), reqs.end(), [&](const FakeRequest& r) { return r.target == target; }));
  }

  TempDir tmp_;
  std::unique_ptr<ControlPlane> cp_;
  std::unique_ptr<FakeControlPlane> standin_;
  std::unique_ptr<Process> agent_;
  fs::path cfg_, shared_;
  std::string base_cfg_, key_, pubkey_, port_;
  int starts_ = 0;
};

TEST_F(Egress, OnlyTheAllowlistedTargetIsReachableAndEveryAttemptIsRecorded) {
  start_agent("  egress_allow_cidrs: [127.0.0.0/8, \"::1/128\"]\n");
  const auto id = submit("probe");
  ASSERT_EQ(cp_->wait_final(id), "succeeded");
  const auto recs = cp_->records(id);
  const std::string out = stream_of(recs, "stdout");
  const std::string err = stream_of(recs, "stderr");
  // Through the proxy: the stand-in's answer (positive control for everything below).
  EXPECT_NE(out.find("standin-answer:/allowed allowed-rc=0"), std::string::npos) << out << err;
  EXPECT_EQ(standin_saw("/allowed"), 1u);
  // Not on the list (the same service by its address): 403, curl's CONNECT failure.
  EXPECT_NE(out.find("unlisted-rc=56"), std::string::npos) << out << err;
  EXPECT_NE(err.find("403"), std::string::npos) << err;
  EXPECT_EQ(standin_saw("/unlisted"), 0u);
  // Around the proxy: the step's namespace has no route to the host's loopback.
  EXPECT_NE(out.find("direct-rc=7"), std::string::npos) << out << err;
  EXPECT_NE(out.find("direct-ip-rc=7"), std::string::npos) << out << err;
  EXPECT_EQ(standin_saw("/direct"), 0u);

  const auto starts = of_kind(recs, "step.start");
  ASSERT_EQ(starts.size(), 1u);
  EXPECT_EQ(starts[0]["sandbox"]["egress"], Json::array({"localhost:" + port_}));
  EXPECT_EQ(starts[0]["sandbox"]["network"], false);
  const auto connects = of_kind(recs, "net.connect");
  ASSERT_EQ(connects.size(), 2u) << Json(connects).dump();
  EXPECT_EQ(connects[0], (Json{{"step", "probe"},
                               {"host", "localhost"},
                               {"port", standin_->port()},
                               {"address", "127.0.0.1"},
                               {"allowed", true},
                               {"reason", "allowed"}}));
  EXPECT_EQ(connects[1], (Json{{"step", "probe"},
                               {"host", "127.0.0.1"},
                               {"port", standin_->port()},
                               {"allowed", false},
                               {"reason", "not_in_allowlist"}}));
  auto v = verify(id);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

TEST_F(Egress, WithoutAllowCidrsTheLoopbackAddressOfAnAllowedNameIsRefused) {
  start_agent("");
  const auto id = submit("probe");
  ASSERT_EQ(cp_->wait_final(id), "succeeded");
  const auto recs = cp_->records(id);
  const std::string out = stream_of(recs, "stdout");
  EXPECT_NE(out.find("allowed-rc=56"), std::string::npos) << out << stream_of(recs, "stderr");
  EXPECT_EQ(standin_saw("/allowed"), 0u);
  const auto connects = of_kind(recs, "net.connect");
  ASSERT_GE(connects.size(), 1u);
  EXPECT_EQ(connects[0]["host"], "localhost");
  EXPECT_EQ(connects[0]["address"], "127.0.0.1");
  EXPECT_EQ(connects[0]["allowed"], false);
  EXPECT_EQ(connects[0]["reason"], "address_not_allowed");
  auto v = verify(id);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

TEST_F(Egress, AStepCannotFloodTheJobsLogWithConnectionAttempts) {
  // Every attempt is a signed, spooled record: a step that connects in a loop gets a
  // budget (256), one record saying it is spent, and refusals without records after it,
  // even for its allowed target.
  const std::string curl = "/usr/bin/curl -sS --max-time 10 -o /dev/null --cacert " + (shared_ / "ca.pem").string() + " ";
  write_text(cp_->dir() / "runbooks" / "flood.yaml",
             "name: flood\nauthorize: {scopes: [runbooks:execute]}\nsteps:\n"
             "  - name: flood\n    uses: script\n    with:\n      script: |\n"
             "        " + curl + "https://localhost:" + port_ + "/before; echo \" before-rc=$?\"\n"
             "        i=0; while [ $i -lt 300 ]; do " + curl + "https://127.0.0.1:" + port_ + "/x 2>/dev/null; i=$((i+1)); done\n"
             "        " + curl + "https://localhost:" + port_ + "/after; echo \" after-rc=$?\"\n"
             "    sandbox: {timeout_s: 300, egress: [\"localhost:" + port_ + "\"]}\n");
  start_agent("  egress_allow_cidrs: [127.0.0.0/8, \"::1/128\"]\n");
  const auto id = submit("flood");
  ASSERT_EQ(cp_->wait_final(id, std::chrono::seconds(300)), "succeeded");
  const auto recs = cp_->records(id);
  const std::string out = stream_of(recs, "stdout");
  EXPECT_NE(out.find("before-rc=0"), std::string::npos) << out;  // positive control
  EXPECT_EQ(standin_saw("/before"), 1u);
  EXPECT_NE(out.find("after-rc=56"), std::string::npos) << out;
  EXPECT_EQ(standin_saw("/after"), 0u);
  const auto connects = of_kind(recs, "net.connect");
  ASSERT_EQ(connects.size(), 257u);
  EXPECT_EQ(connects[0]["reason"], "allowed");
  EXPECT_EQ(connects[255]["reason"], "not_in_allowlist");
  EXPECT_EQ(connects[256]["reason"], "budget_exhausted");
  EXPECT_EQ(connects[256]["allowed"], false);
  auto v = verify(id);
  EXPECT_EQ(v.exit_code, 0) << v.out << v.err;
}

TEST_F(Egress, HostNetworkIsTheAgentsChoice) {
  start_agent("");
  const auto refused = submit("hostnet");
  ASSERT_EQ(cp_->wait_final(refused), "failed");
  auto recs = cp_->records(refused);
  auto ends = of_kind(recs, "step.end");
  ASSERT_EQ(ends.size(), 1u);
  EXPECT_EQ(ends[0]["status"], "setup_failed");
  EXPECT_NE(ends[0]["error"].get<std::string>().find("sandbox.allow_host_network"), std::string::npos) << ends[0].dump();
  EXPECT_TRUE(of_kind(recs, "output").empty());  // it never ran

  start_agent("  allow_host_network: true\n");
  const auto allowed = submit("hostnet");
  ASSERT_EQ(cp_->wait_final(allowed), "succeeded");
  EXPECT_EQ(stream_of(cp_->records(allowed), "stdout"), "hostnet-ran\n");
}

}  // namespace
}  // namespace delegate::testing
