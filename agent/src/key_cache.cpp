#include <delegate/agent/key_cache.hpp>

#include <delegate/common/log.hpp>

namespace delegate::agent {

std::shared_ptr<const policies::ApiKeyStore> ApiKeyCache::current() {
  std::lock_guard lock(mu_);
  struct stat st {};
  bool exists = !file_.empty() && ::stat(file_.c_str(), &st) == 0;
  bool changed = !loaded_ || (exists ? (st.st_mtim.tv_sec != mtime_.tv_sec || st.st_mtim.tv_nsec != mtime_.tv_nsec ||
                                        st.st_size != size_ || st.st_ino != inode_)
                                     : size_ != -1);
  if (!changed) return store_;
  loaded_ = true;
  mtime_ = exists ? st.st_mtim : timespec{};
  size_ = exists ? st.st_size : -1;
  inode_ = exists ? st.st_ino : 0;
  if (file_.empty()) {
    store_ = std::make_shared<policies::ApiKeyStore>();
    return store_;
  }
  auto loaded = policies::ApiKeyStore::load(file_);
  if (!loaded) {
    log::error("agent", "API key file unusable, denying all API keys: " + loaded.error().message);
    store_ = std::make_shared<policies::ApiKeyStore>();
  } else {
    store_ = std::make_shared<policies::ApiKeyStore>(std::move(*loaded));
  }
  return store_;
}

}  // namespace delegate::agent
