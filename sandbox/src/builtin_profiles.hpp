#pragma once
// Private to the sandbox library: the profiles of policies/seccomp/, embedded at build
// time (builtin_profiles.cpp.in) so the agent needs no installed data files.
#include <span>
#include <string_view>

namespace delegate::sandbox::seccomp::detail {

struct BuiltinProfile {
  std::string_view name;  // "default", "network", "strict"
  std::string_view json;
};

[[nodiscard]] std::span<const BuiltinProfile> builtin_profiles() noexcept;

}  // namespace delegate::sandbox::seccomp::detail
