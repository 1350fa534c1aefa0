#pragma once
#include <stdlib.h>

#include <filesystem>
#include <string>

#include <gtest/gtest.h>

#include <delegate/common/fs.hpp>
#include <delegate/common/time.hpp>

namespace delegate::policies::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "delegate-policies-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  [[nodiscard]] std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

  void write(const std::string& name, const std::string& content, unsigned mode = 0600) const {
    auto r = write_file_atomic(path_ / name, content, mode);
    ASSERT_TRUE(r.has_value()) << r.error().message;
  }

 private:
  std::filesystem::path path_;
};

inline TimePoint at(const char* rfc3339) {
  auto t = parse_rfc3339(rfc3339);
  EXPECT_TRUE(t.has_value()) << rfc3339;
  return t.value_or(TimePoint{});
}

inline std::filesystem::path shipped_runbooks_dir() {
  return DELEGATE_RUNBOOKS_DIR;
}

}  // namespace delegate::policies::testing
