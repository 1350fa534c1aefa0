#pragma once
// Parent-side preparation of a launch: everything that allocates or may fail happens
// here, before the clone, so the child only replays prepared values.
#include <sys/resource.h>

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>
#include <delegate/sandbox/launcher.hpp>

#include "child.hpp"
#include "unique_fd.hpp"

namespace delegate::sandbox::detail {

[[nodiscard]] std::string errno_message(const std::string& what, int err);
[[nodiscard]] bool has_nul(std::string_view s);

// Returns the absolute path to exec, or nullopt when there is none.
[[nodiscard]] std::optional<std::string> resolve_program(const std::string& name);

// Base environment (PATH, HOME = TMPDIR = workdir, LANG) plus `extra`; an extra entry
// replaces a base entry of the same name.
[[nodiscard]] Result<std::vector<std::string>> build_env(const std::vector<std::string>& extra,
                                                         const std::string& workdir);
[[nodiscard]] std::vector<char*> to_pointers(std::vector<std::string>& strings);

// `memory_via_rlimit`: no memory cgroup applies, so RLIMIT_AS carries the memory limit.
[[nodiscard]] std::array<RlimitSetting, 6> build_rlimits(const Limits& l, bool memory_via_rlimit);

struct Pipe {
  UniqueFd read;
  UniqueFd write;
};
[[nodiscard]] Result<Pipe> make_pipe();
[[nodiscard]] Result<UniqueFd> make_stdin(const std::string& data);
[[nodiscard]] int max_fd_bound();

}  // namespace delegate::sandbox::detail
