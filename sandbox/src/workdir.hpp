#pragma once
// Private to the sandbox library: the step's fresh working directory.
#include <filesystem>

#include <delegate/common/error.hpp>

namespace delegate::sandbox::detail {

// mkdtemp below `parent` (mode 0700).
[[nodiscard]] Result<std::filesystem::path> make_workdir(const std::filesystem::path& parent);

// Removes `dir` and everything below it without ever following a symlink: the tree was
// written by untrusted code, which may still be racing us (an escaped grandchild), so
// every step goes through openat/unlinkat relative to an already-opened directory.
[[nodiscard]] Result<void> remove_tree(const std::filesystem::path& dir);

}  // namespace delegate::sandbox::detail
