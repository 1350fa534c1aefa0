#pragma once
// The API key file, re-read whenever it changes on disk so that `api-key revoke`
// takes effect on the next job without restarting the agent.
#include <sys/stat.h>

#include <filesystem>
#include <memory>
#include <mutex>

#include <delegate/policies/api_keys.hpp>

namespace delegate::agent {

class ApiKeyCache {
 public:
  explicit ApiKeyCache(std::filesystem::path file) : file_(std::move(file)) {}

  // A file that becomes unreadable or malformed yields an empty store (every API key
  // is then unknown): fail closed, and say so in the log.
  [[nodiscard]] std::shared_ptr<const policies::ApiKeyStore> current();

 private:
  std::filesystem::path file_;
  std::mutex mu_;
  std::shared_ptr<const policies::ApiKeyStore> store_;
  struct timespec mtime_ {};
  off_t size_ = -1;
  ino_t inode_ = 0;
  bool loaded_ = false;
};

}  // namespace delegate::agent
