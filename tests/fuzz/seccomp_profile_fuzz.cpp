// libFuzzer target: the OCI/Docker seccomp profile parser (user-supplied profile files).
// Parsing is pure; a profile that parses also has its includes/excludes evaluated.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include <delegate/sandbox/seccomp_profile.hpp>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace sc = delegate::sandbox::seccomp;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto profile = sc::parse_profile(text, "fuzz.json");
  if (profile) {
    const sc::Host host{{"amd64", "x86_64"}, {6, 1}};
    for (const sc::Rule& rule : profile->syscalls) {
      (void)sc::rule_applies(rule, host);
      for (std::size_t i = 0; i < rule.names.size(); ++i) (void)rule.where(i);
    }
  }
  return 0;
}
