// The OCI/Docker profile parser: every error class, with the offending member named,
// and robustness against truncated and bit-flipped input.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <utility>
#include <vector>
#include <string_view>

#include <delegate/sandbox/seccomp.hpp>
#include <delegate/sandbox/seccomp_profile.hpp>

namespace delegate::sandbox::seccomp {
namespace {

std::string error_of(std::string_view json) {
  auto p = parse_profile(json, "t.json");
  return p ? std::string("<parsed>") : p.error().message;
}

// A profile with one syscalls[] entry, spliced in.
std::string with_entry(std::string_view entry) {
  return R"({"defaultAction": "SCMP_ACT_ERRNO", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW"}, )" +
         std::string(entry) + "]}";
}

struct ErrorCase {
  std::string json;
  const char* message;  // the whole expected message after "seccomp profile t.json: "
};

TEST(SeccompProfileParse, EachErrorNamesTheOffendingMember) {
  const ErrorCase cases[] = {
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultActoin": 1})", R"(top level: unknown member "defaultActoin")"},
      {R"({"syscalls": []})", "defaultAction: missing"},
      {R"({"defaultAction": 1})", "defaultAction: must be a string, not number"},
      {R"({"defaultAction": "SCMP_ACT_PERMIT"})", R"(defaultAction: unknown action "SCMP_ACT_PERMIT")"},
      {R"({"defaultAction": "SCMP_ACT_NOTIFY"})", R"(defaultAction: action "SCMP_ACT_NOTIFY" is not supported)"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultErrnoRet": 1})", "defaultErrnoRet: only allowed with SCMP_ACT_ERRNO"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 0})", "defaultErrnoRet: must be an errno between 1 and 4095"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 4096})", "defaultErrnoRet: must be an errno between 1 and 4095"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_65"]})", R"(architectures[0]: unknown value "SCMP_ARCH_X86_65")"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["x32"]}]})", R"(archMap[0].subArchitectures[0]: unknown value "x32")"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "archMap": [{"arch": "SCMP_ARCH_X86_64"}]})", R"(archMap[0]: unknown member "arch")"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "flags": ["SECCOMP_FILTER_FLAG_LOG"]})", "flags: filter flags are not supported"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"})", "listenerPath: seccomp notification listeners are not supported"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": {}})", "syscalls: must be an array, not object"},
      {R"([])", "must be a JSON object, not array"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "comments": ""})"), R"(syscalls[1]: unknown member "comments")"},
      {with_entry(R"({"names": "write", "action": "SCMP_ACT_ALLOW"})"), "syscalls[1].names: must be an array, not string"},
      {with_entry(R"({"names": [], "action": "SCMP_ACT_ALLOW"})"), "syscalls[1].names: must not be empty"},
      {with_entry(R"({"action": "SCMP_ACT_ALLOW"})"), R"(syscalls[1]: needs exactly one of "names" and "name")"},
      {with_entry(R"({"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"})"), R"(syscalls[1]: needs exactly one of "names" and "name")"},
      {with_entry(R"({"names": ["write", 7], "action": "SCMP_ACT_ALLOW"})"), "syscalls[1].names[1]: must be a string, not number"},
      {with_entry(R"({"names": ["write", "Write!"], "action": "SCMP_ACT_ALLOW"})"), R"(syscalls[1].names[1]: invalid syscall name "Write!")"},
      {with_entry(R"({"names": ["write", "write"], "action": "SCMP_ACT_ALLOW"})"), R"(syscalls[1].names[1]: duplicate syscall name "write")"},
      {with_entry(R"({"names": ["write"]})"), "syscalls[1].action: missing"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_TRACE"})"), R"(syscalls[1].action: action "SCMP_ACT_TRACE" is not supported)"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_KILLL"})"), R"(syscalls[1].action: unknown action "SCMP_ACT_KILLL")"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_KILL", "errnoRet": 1})"), "syscalls[1].errnoRet: only allowed with SCMP_ACT_ERRNO"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ERRNO", "errnoRet": "EPERM"})"), "syscalls[1].errnoRet: must be a non-negative integer, not string"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "comment": 3})"), "syscalls[1].comment: must be a string, not number"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ", "valueThree": 0}]})"), R"(syscalls[1].args[0]: unknown member "valueThree")"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 6, "value": 1, "op": "SCMP_CMP_EQ"}]})"), "syscalls[1].args[0].index: must be 0..5, not 6"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": -1, "op": "SCMP_CMP_EQ"}]})"), "syscalls[1].args[0].value: must not be negative"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1.5, "op": "SCMP_CMP_EQ"}]})"), "syscalls[1].args[0].value: must be a non-negative integer, not a fraction"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "op": "SCMP_CMP_EQ"}]})"), "syscalls[1].args[0].value: missing"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQUAL"}]})"), R"(syscalls[1].args[0].op: unknown operator "SCMP_CMP_EQUAL")"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "valueTwo": 1, "op": "SCMP_CMP_EQ"}]})"), "syscalls[1].args[0].valueTwo: only meaningful with SCMP_CMP_MASKED_EQ"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 0, "value": 1, "valueTwo": 2, "op": "SCMP_CMP_MASKED_EQ"}]})"), "syscalls[1].args[0]: valueTwo has bits outside the mask in value; it can never match"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "args": [{"index": 2, "value": 1, "op": "SCMP_CMP_GT"}, {"index": 2, "value": 9, "op": "SCMP_CMP_LT"}]})"), "syscalls[1].args[1].index: second comparison of argument 2 in one entry (libseccomp cannot AND them; use SCMP_CMP_MASKED_EQ or separate entries)"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["SYS_ADMIN"]}})"), R"(syscalls[1].includes.caps[0]: not a capability name: "SYS_ADMIN")"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "excludes": {"arches": ["x86-64"]}})"), R"(syscalls[1].excludes.arches[0]: unknown value "x86-64")"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4"}})"), R"(syscalls[1].includes.minKernel: must be "major.minor", not "4")"},
      {with_entry(R"({"names": ["write"], "action": "SCMP_ACT_ALLOW", "includes": {"kernel": "4.8"}})"), R"(syscalls[1].includes: unknown member "kernel")"},
      {with_entry(R"("write")"), "syscalls[1]: must be an object, not string"},
  };
  for (const ErrorCase& c : cases) {
    EXPECT_EQ(error_of(c.json), std::string("seccomp profile t.json: ") + c.message) << c.json;
  }
}

TEST(SeccompProfileParse, JsonLevelErrors) {
  auto dup = parse_profile(R"({"defaultAction": "SCMP_ACT_ALLOW", "defaultAction": "SCMP_ACT_KILL"})", "t.json");
  ASSERT_FALSE(dup);
  EXPECT_EQ(dup.error().code, Errc::parse);
  EXPECT_NE(dup.error().message.find("duplicate key defaultAction"), std::string::npos) << dup.error().message;
  EXPECT_TRUE(dup.error().message.starts_with("seccomp profile t.json: ")) << dup.error().message;
  auto nested = parse_profile(
      R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["read"], "action": "SCMP_ACT_ALLOW", "action": "SCMP_ACT_KILL"}]})",
      "t.json");
  ASSERT_FALSE(nested);
  EXPECT_NE(nested.error().message.find("duplicate key syscalls[0].action"), std::string::npos) << nested.error().message;

  auto truncated = parse_profile(R"({"defaultAction": "SCMP_ACT_AL)", "t.json");
  ASSERT_FALSE(truncated);
  EXPECT_EQ(truncated.error().code, Errc::parse);

  const std::string big = R"({"defaultAction": "SCMP_ACT_ALLOW", "x": ")" + std::string(kMaxProfileBytes, 'a') + "\"}";
  auto oversize = parse_profile(big, "t.json");
  ASSERT_FALSE(oversize);
  EXPECT_EQ(oversize.error().code, Errc::too_large);

  std::string many = R"({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [)";
  for (std::size_t i = 0; i <= kMaxEntries; ++i) many += std::string(i ? "," : "") + R"({"name": "read", "action": "SCMP_ACT_LOG"})";
  auto too_many = parse_profile(many + "]}", "t.json");
  ASSERT_FALSE(too_many);
  EXPECT_EQ(too_many.error().code, Errc::too_large);
}

// Docker's own style: nulls for empty members, empty includes/excludes, archMap, the
// legacy "name", comments.
TEST(SeccompProfileParse, DockerStyleProfile) {
  auto p = parse_profile(R"({
    "defaultAction": "SCMP_ACT_ERRNO", "defaultErrnoRet": 38,
    "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]}],
    "architectures": null, "flags": [], "listenerPath": "", "listenerMetadata": "",
    "syscalls": [
      {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW", "args": null, "comment": "",
       "includes": {}, "excludes": {}},
      {"name": "clone", "action": "SCMP_ACT_ALLOW",
       "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
       "excludes": {"caps": ["CAP_SYS_ADMIN"], "arches": ["s390", "s390x"]}},
      {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
      {"names": ["getpid"], "action": "SCMP_ACT_ERRNO"},
      {"names": ["kill"], "action": "SCMP_ACT_KILL_PROCESS", "args": [{"index": 1, "value": 18446744073709551615, "op": "SCMP_CMP_EQ"}]}
    ]})",
                         "docker.json");
  ASSERT_TRUE(p) << p.error().message;
  EXPECT_EQ(p->source, "docker.json");
  EXPECT_EQ(p->default_verdict, (Verdict{Action::errno_ret, 38}));
  EXPECT_EQ(p->architectures.size(), 3u);
  ASSERT_EQ(p->syscalls.size(), 5u);
  EXPECT_EQ(p->syscalls[0].names, (std::vector<std::string>{"read", "write"}));
  EXPECT_EQ(p->syscalls[0].where(1), "syscalls[0].names[1]");
  EXPECT_TRUE(p->syscalls[1].legacy_name);
  EXPECT_EQ(p->syscalls[1].where(0), "syscalls[1].name");
  EXPECT_EQ(p->syscalls[1].args[0], (Arg{0, Cmp::masked_eq, 2114060288u, 0}));
  EXPECT_EQ(p->syscalls[2].includes.min_kernel, (KernelVersion{4, 8}));
  // A missing errnoRet is EPERM, as in runc; defaultErrnoRet is for the default only.
  EXPECT_EQ(p->syscalls[3].verdict, (Verdict{Action::errno_ret, 1}));
  EXPECT_EQ(p->syscalls[4].args[0].value, ~std::uint64_t{0});
}

TEST(SeccompProfileParse, IncludesAndExcludes) {
  Rule r;
  const Host amd64_6_1{{"amd64", "x86_64"}, {6, 1}};
  EXPECT_TRUE(rule_applies(r, amd64_6_1));
  r.includes.caps = {"CAP_SYS_ADMIN"};
  EXPECT_FALSE(rule_applies(r, amd64_6_1)) << "a step holds no capabilities";
  r = Rule{};
  r.excludes.caps = {"CAP_SYS_ADMIN"};
  EXPECT_TRUE(rule_applies(r, amd64_6_1)) << "so a capability never excludes an entry";
  r = Rule{};
  r.includes.arches = {"s390", "s390x"};
  EXPECT_FALSE(rule_applies(r, amd64_6_1));
  r.includes.arches = {"amd64", "x32"};
  EXPECT_TRUE(rule_applies(r, amd64_6_1));
  r = Rule{};
  r.excludes.arches = {"amd64"};
  EXPECT_FALSE(rule_applies(r, amd64_6_1));
  EXPECT_TRUE(rule_applies(r, Host{{"arm64", "aarch64"}, {6, 1}}));
  r = Rule{};
  r.includes.min_kernel = KernelVersion{6, 2};
  EXPECT_FALSE(rule_applies(r, amd64_6_1));
  EXPECT_TRUE(rule_applies(r, Host{{"amd64"}, {6, 2}}));
  EXPECT_TRUE(rule_applies(r, Host{{"amd64"}, {10, 0}}));
  r = Rule{};
  r.excludes.min_kernel = KernelVersion{4, 8};
  EXPECT_FALSE(rule_applies(r, amd64_6_1));
  EXPECT_TRUE(rule_applies(r, Host{{"amd64"}, {4, 4}}));
}

TEST(SeccompProfileParse, CurrentHostIsKnown) {
  const Host h = current_host();
  EXPECT_GE(h.kernel, (KernelVersion{4, 14}));  // SECCOMP_RET_KILL_PROCESS exists since 4.14
#if defined(__x86_64__)
  EXPECT_EQ(h.arches, (std::vector<std::string>{"amd64", "x86_64"}));
#endif
}

TEST(SeccompProfileParse, BuiltinProfilesParseAndEveryNameIsKnownToLibseccomp) {
  for (const char* name : {"default", "network", "strict"}) {
    auto json = builtin_profile(name);
    ASSERT_TRUE(json) << name;
    auto p = parse_profile(*json, name);
    ASSERT_TRUE(p) << p.error().message;
    EXPECT_EQ(p->default_verdict, (Verdict{Action::errno_ret, 1})) << "an allow list";
    auto prog = SeccompProgram::compile(*p, SeccompOptions{});
    EXPECT_TRUE(prog) << prog.error().message;
  }
  EXPECT_FALSE(builtin_profile("permissive"));
}

TEST(SeccompProfileParse, UnknownSyscallNameIsRejectedAtCompile) {
  auto p = parse_profile(with_entry(R"({"names": ["write", "getpid", "fooo"], "action": "SCMP_ACT_ALLOW"})"), "default.json");
  ASSERT_TRUE(p) << p.error().message;  // syntax is fine; the table lookup is libseccomp's
  auto prog = SeccompProgram::compile(*p, SeccompOptions{});
  ASSERT_FALSE(prog);
  EXPECT_EQ(prog.error().message, R"(seccomp profile default.json: syscalls[1].names[2]: unknown syscall "fooo")");
  // Also in an entry that does not apply on this host: a typo must not hide there.
  p = parse_profile(with_entry(R"({"name": "fooo", "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}})"), "x.json");
  ASSERT_TRUE(p);
  prog = SeccompProgram::compile(*p, SeccompOptions{});
  ASSERT_FALSE(prog);
  EXPECT_EQ(prog.error().message, R"(seccomp profile x.json: syscalls[1].name: unknown syscall "fooo")");
  // Known to libseccomp, absent on this architecture: fine.
  p = parse_profile(with_entry(R"({"names": ["s390_pci_mmio_read"], "action": "SCMP_ACT_ALLOW"})"), "x.json");
  ASSERT_TRUE(p);
  EXPECT_TRUE(SeccompProgram::compile(*p, SeccompOptions{}));
}

// Whatever the damage, the parser answers with a profile or a one-line error.
void expect_clean_error(const std::string& m, const std::string& what) {
  EXPECT_TRUE(m.starts_with("seccomp profile default.json: ")) << what << ": " << m;
  EXPECT_EQ(m.find('\n'), std::string::npos) << what << ": " << m;
  EXPECT_LT(m.size(), 400u) << what;
}

void expect_clean(std::string_view text, const std::string& what) {
  auto p = parse_profile(text, "default.json");
  if (!p) expect_clean_error(p.error().message, what);
}

TEST(SeccompProfileParse, EveryTruncationOfDefaultJson) {
  const std::string_view json = *builtin_profile("default");
  for (std::size_t n = 0; n < json.size(); ++n) expect_clean(json.substr(0, n), "length " + std::to_string(n));
  EXPECT_TRUE(parse_profile(json, "default.json"));
}

// Byte ranges of the "comment" values: free text, the only place a flip may be neutral.
std::vector<std::pair<std::size_t, std::size_t>> comment_ranges(const std::string& json) {
  std::vector<std::pair<std::size_t, std::size_t>> out;
  for (auto pos = json.find("\"comment\""); pos != std::string::npos; pos = json.find("\"comment\"", pos + 1)) {
    const auto open = json.find('"', json.find(':', pos) + 1);
    const auto close = json.find('"', open + 1);
    out.emplace_back(open + 1, close);
  }
  return out;
}

TEST(SeccompProfileParse, BitFlipsInDefaultJson) {
  const std::string original(*builtin_profile("default"));
  auto base = parse_profile(original, "default.json");
  ASSERT_TRUE(base);
  const auto comments = comment_ranges(original);
  ASSERT_FALSE(comments.empty());
  std::string json = original;
  std::size_t parsed = 0, refused = 0;
  // One flip per byte, the bit position rotating, so every position is exercised across
  // the file at an eighth of the cost of all eight.
  for (std::size_t i = 0; i < json.size(); ++i) {
    const bool in_comment = std::any_of(comments.begin(), comments.end(),
                                        [&](const auto& r) { return i >= r.first && i < r.second; });
    for (const unsigned bit : {static_cast<unsigned>(i % 8)}) {
      json[i] = static_cast<char>(original[i] ^ (1u << bit));
      const std::string what = "byte " + std::to_string(i) + " bit " + std::to_string(bit);
      // A damaged profile that still parses must not be silently read as the original:
      // outside free text, what the parser kept differs from the undamaged profile.
      auto p = parse_profile(json, "default.json");
      if (p) {
        ++parsed;
        if (!in_comment) {
          EXPECT_FALSE(*p == *base) << what << ": the damage was ignored";
        }
      } else {
        ++refused;
        expect_clean_error(p.error().message, what);
      }
      json[i] = original[i];
    }
  }
  // Both outcomes were exercised (names are checked for syntax only until compile, so
  // many flips inside them parse).
  EXPECT_GT(refused, 0u);
  EXPECT_GT(parsed, 0u);
}

}  // namespace
}  // namespace delegate::sandbox::seccomp
