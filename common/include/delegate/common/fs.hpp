#pragma once
#include <cstddef>
#include <filesystem>
#include <string>
#include <string_view>

#include <delegate/common/error.hpp>

namespace delegate {

// Reads a whole file, refusing files larger than max_bytes (untrusted input is capped
// before it is parsed).
[[nodiscard]] Result<std::string> read_file(const std::filesystem::path& path,
                                            std::size_t max_bytes = 16u << 20);

// Writes via a temporary file in the same directory, fsync, rename, fsync(dir): a crash
// leaves either the old or the new content, never a torn file.
[[nodiscard]] Result<void> write_file_atomic(const std::filesystem::path& path,
                                             std::string_view data, unsigned mode = 0600);

// Creates the directory (and parents) with the given mode if missing.
[[nodiscard]] Result<void> ensure_dir(const std::filesystem::path& path, unsigned mode = 0700);

// Reads a secret (token) file: trimmed, non-empty, refused if group/other readable.
[[nodiscard]] Result<std::string> read_secret_file(const std::filesystem::path& path);

}  // namespace delegate
