// delegate-audit verify on whole exports: several files, any order, one verdict set.
#include "export_test_util.hpp"

#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

using namespace audit_test;

namespace {

class ExportCli : public ::testing::Test {
 protected:
  Ed25519PrivateKey key = key_from(1);
  Export ex = standard_export(key);
  std::filesystem::path dir;

  struct Run {
    int exit_code;
    std::string out;
  };

  void SetUp() override {
    dir = std::filesystem::path(::testing::TempDir()) /
          ("audit_export_cli_" + std::to_string(::getpid()) + "_" +
           ::testing::UnitTest::GetInstance()->current_test_info()->name());
    std::filesystem::create_directories(dir);
  }
  void TearDown() override { std::filesystem::remove_all(dir); }

  std::string write(const std::string& name, const std::string& content) {
    auto p = dir / name;
    std::ofstream(p, std::ios::binary) << content;
    return p.string();
  }
  // One file per stream, like an export directory.
  std::vector<std::string> write_export() {
    std::vector<std::string> files = {write("agent.jsonl", join(to_lines(ex.agent)))};
    for (const auto& [name, recs] : ex.jobs) files.push_back(write(name + ".jsonl", join(to_lines(recs))));
    return files;
  }
  // Arguments are test-controlled paths and base64 text: no shell metacharacters.
  Run verify(const std::vector<std::string>& files, const std::string& extra = "") {
    std::string cmd = std::string(DELEGATE_AUDIT_BIN) + " verify --public-key " + base64_encode(key.public_key()) + extra;
    for (const auto& f : files) cmd += " " + f;
    const auto out = dir / "stdout";
    cmd += " >" + out.string() + " 2>/dev/null </dev/null";
    const int status = std::system(cmd.c_str());
    std::ifstream in(out, std::ios::binary);
    return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, std::string(std::istreambuf_iterator<char>(in), {})};
  }
};

TEST_F(ExportCli, WholeExportInAnyFileOrder) {
  auto files = write_export();
  auto r = verify(files);
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_EQ(r.out, "OK _agent 4 records\nOK job_a 7 records\nOK job_b 7 records\nOK job_c 7 records\n");
  std::reverse(files.begin(), files.end());
  auto reversed = verify(files);
  EXPECT_EQ(reversed.exit_code, 0);
  EXPECT_EQ(reversed.out, "OK job_c 7 records\nOK job_b 7 records\nOK job_a 7 records\nOK _agent 4 records\n");
}

TEST_F(ExportCli, MissingJobIsNamed) {
  auto files = write_export();
  files.erase(files.begin() + 2);  // job_b.jsonl
  auto r = verify(files);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out,
            "TAMPERED job_b seq=6: job_missing: checkpoint at _agent seq=2 lists 7 records; the export holds none "
            "of them\n");
}

TEST_F(ExportCli, CheckpointChainBreakIsNamed) {
  ex.agent.erase(ex.agent.begin() + 1);
  auto r = verify(write_export());
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out.rfind("TAMPERED _agent seq=2: checkpoint_chain_broken: gap: ", 0), 0u) << r.out;
}

TEST_F(ExportCli, EmptyFileInTheExportIsTruncated) {
  auto files = write_export();
  files.push_back(write("empty.jsonl", ""));
  auto r = verify(files);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.out.find("truncated"), std::string::npos) << r.out;
}

TEST_F(ExportCli, HostileJobIdCannotForgeAVerdictLine) {
  // A record of another agent named to print a fake OK line; it is refused as foreign
  // and its id is printed escaped.
  FixedClock clock(base_time());
  auto other = key_from(3);
  ChainWriter w(other, clock, "agt_2", "x\nOK job_z 7 records");
  auto rec = w.append(Kind::job_received, Json::object());
  ASSERT_TRUE(rec);
  auto files = write_export();
  files.push_back(write("evil.jsonl", serialize(*rec) + "\n"));
  auto r = verify(files);
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_EQ(r.out.find("\nOK job_z"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.rfind("TAMPERED x\\x0aOK\\x20job_z\\x207\\x20records seq=0: foreign_record: ", 0), 0u) << r.out;
}

}  // namespace
