#pragma once
// Seccomp profiles in the OCI / Docker JSON format, as plain data. Parsing is pure (no
// libseccomp, no file system) so it can be fuzzed; SeccompProgram::compile turns a
// profile into BPF. The accepted subset and its semantics are in docs/seccomp.md.
#include <compare>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <delegate/common/error.hpp>

namespace delegate::sandbox::seccomp {

// SCMP_ACT_KILL is an alias of kill_thread, as in libseccomp.
enum class Action { allow, errno_ret, kill_thread, kill_process, trap, log };

enum class Cmp { ne, lt, le, eq, ge, gt, masked_eq };

struct Verdict {
  Action action = Action::errno_ret;
  std::uint16_t errno_ret = 0;  // only for errno_ret: 1..4095
  friend bool operator==(const Verdict&, const Verdict&) = default;
};

struct Arg {
  unsigned index = 0;  // 0..5
  Cmp op = Cmp::eq;
  std::uint64_t value = 0;      // for masked_eq: the mask
  std::uint64_t value_two = 0;  // for masked_eq: the value compared with (arg & mask)
  friend bool operator==(const Arg&, const Arg&) = default;
};

struct KernelVersion {
  unsigned major = 0;
  unsigned minor = 0;
  friend auto operator<=>(const KernelVersion&, const KernelVersion&) = default;
};

// Docker's "includes" / "excludes" of a syscalls[] entry.
struct Selector {
  std::vector<std::string> caps;
  std::vector<std::string> arches;
  std::optional<KernelVersion> min_kernel;
  [[nodiscard]] bool empty() const { return caps.empty() && arches.empty() && !min_kernel; }
  friend bool operator==(const Selector&, const Selector&) = default;
};

struct Rule {
  std::size_t entry = 0;     // position in syscalls[], for error messages
  bool legacy_name = false;  // written as "name": "x" rather than "names": [...]
  std::vector<std::string> names;
  Verdict verdict;
  std::vector<Arg> args;  // ANDed; at most one per argument index
  Selector includes;
  Selector excludes;

  // "syscalls[3].names[1]" (or "syscalls[3].name"), for messages about one name.
  [[nodiscard]] std::string where(std::size_t name_index) const;
  friend bool operator==(const Rule&, const Rule&) = default;
};

struct Profile {
  std::string source;  // file name shown in error messages
  Verdict default_verdict;
  std::vector<std::string> architectures;  // SCMP_ARCH_*: validated, informational only
  std::vector<Rule> syscalls;
  // Same meaning and spelling (comments aside): what the parser kept of a document.
  friend bool operator==(const Profile&, const Profile&) = default;
};

// What includes/excludes are evaluated against. A step never holds capabilities.
struct Host {
  std::vector<std::string> arches;  // names of the native ABI, e.g. {"amd64", "x86_64"}
  KernelVersion kernel;
};

inline constexpr std::size_t kMaxProfileBytes = 1u << 20;
inline constexpr std::size_t kMaxEntries = 1024;
inline constexpr std::size_t kMaxNames = 4096;  // over all entries

// Parses and validates one profile. Errors are one line naming the offending member,
// e.g. `seccomp profile x.json: syscalls[12].args[0].op: unknown operator "SCMP_CMP_XX"`.
// Syscall names are checked for syntax only here; compile() checks them against
// libseccomp's table.
[[nodiscard]] Result<Profile> parse_profile(std::string_view json, std::string_view source_name);

// A builtin name (default, network, strict) or a path (anything containing '/').
[[nodiscard]] Result<Profile> load_profile(std::string_view name_or_path);

// The embedded JSON of a builtin profile; nullopt for an unknown name.
[[nodiscard]] std::optional<std::string_view> builtin_profile(std::string_view name);

[[nodiscard]] Host current_host();

// Whether an entry takes part in the filter on `host` (includes/excludes).
[[nodiscard]] bool rule_applies(const Rule& rule, const Host& host);

}  // namespace delegate::sandbox::seccomp
