// Dispatch under group commit, against the real control plane: jobs submitted while
// several agents' long polls are parked are each leased exactly once, and a job leased
// in the same commit as its submission is requeued like any other when its agent dies.
#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "harness.hpp"
#include "sim_agent.hpp"

namespace delegate::testing {
namespace {

class Dispatch : public ::testing::Test {
 protected:
  void TearDown() override {
    if (HasFailure()) std::cerr << "---- control plane log ----\n" << cp.process().log_text();
  }
  TempDir tmp;
  ControlPlane cp{tmp.path / "cp", /*lease_s=*/2};
};

TEST_F(Dispatch, ConcurrentLongPollsNeverGetTheSameJob) {
  constexpr int kAgents = 4, kJobs = 40;
  std::vector<std::unique_ptr<SimAgent>> agents;
  for (int i = 0; i < kAgents; ++i) {
    agents.push_back(std::make_unique<SimAgent>(cp, "a" + std::to_string(i)));
    ASSERT_EQ(agents.back()->enroll().status, 201);
  }
  std::mutex mu;
  std::multimap<std::string, std::string> leased;  // job -> agent
  std::atomic<int> got{0};
  std::vector<std::thread> pollers;
  for (auto& a : agents) {
    pollers.emplace_back([&, agent = a.get()] {
      while (got < kJobs) {
        auto r = agent->acquire(/*wait_s=*/1);
        if (r.status != 200) continue;
        const auto id = Json::parse(r.body)["job"]["id"].get<std::string>();
        std::lock_guard lock(mu);
        leased.emplace(id, agent->id);
        ++got;
      }
    });
  }
  // Two submitters, so that submissions and acquires share batches in every order.
  std::vector<std::string> ids[2];
  std::thread s0([&] { for (int i = 0; i < kJobs / 2; ++i) ids[0].push_back(cp.submit(Json{{"runbook", "x"}})); });
  std::thread s1([&] { for (int i = 0; i < kJobs / 2; ++i) ids[1].push_back(cp.submit(Json{{"runbook", "x"}})); });
  s0.join();
  s1.join();
  for (auto& t : pollers) t.join();
  ASSERT_EQ(leased.size(), static_cast<std::size_t>(kJobs));
  for (const auto& list : ids) {
    for (const auto& id : list) {
      ASSERT_EQ(leased.count(id), 1u) << id;
      // The store agrees with what each agent was told.
      auto job = Json::parse(cp.admin_get("/v1/jobs/" + id).body);
      EXPECT_EQ(job["status"], "running");
      EXPECT_EQ(job["agent_id"], leased.find(id)->second);
    }
  }
}

TEST_F(Dispatch, AJobLeasedToAParkedPollIsRequeuedWhenItsAgentGoesSilent) {
  SimAgent first(cp, "first"), second(cp, "second");
  ASSERT_EQ(first.enroll().status, 201);
  ASSERT_EQ(second.enroll().status, 201);
  std::string job;
  // Whichever comes first, the poll (parked, then woken) or the submission, the job
  // goes to this poll.
  std::thread submit([&] { job = cp.submit(Json{{"runbook", "x"}}); });
  auto r = first.acquire(/*wait_s=*/20);
  submit.join();
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_EQ(Json::parse(r.body)["job"]["id"], job);
  // The first agent sends nothing more: after its 2 s lease the job is queued again and
  // goes to the other agent, once.
  std::string again;
  ASSERT_TRUE(eventually([&] {
    auto a = second.acquire(1);
    if (a.status == 200) again = Json::parse(a.body)["job"]["id"].get<std::string>();
    return !again.empty();
  }));
  EXPECT_EQ(again, job);
  auto view = Json::parse(cp.admin_get("/v1/jobs/" + job).body);
  EXPECT_EQ(view["agent_id"], second.id);
  EXPECT_EQ(view["attempts"], 2);
  EXPECT_EQ(first.acquire(0).status, 204);
}

}  // namespace
}  // namespace delegate::testing
