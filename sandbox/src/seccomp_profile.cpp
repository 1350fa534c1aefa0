#include <delegate/sandbox/seccomp_profile.hpp>

#include <sys/utsname.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <initializer_list>
#include <set>
#include <span>

#include <delegate/common/fs.hpp>
#include <delegate/common/json.hpp>

#include "builtin_profiles.hpp"

namespace delegate::sandbox::seccomp {
namespace {

// Architecture names libseccomp accepts in "architectures" / "archMap". The filter is
// only ever built for the native ABI; these are validated so that a typo is an error.
constexpr std::string_view kScmpArches[] = {
    "SCMP_ARCH_X86",     "SCMP_ARCH_X86_64",    "SCMP_ARCH_X32",      "SCMP_ARCH_ARM",
    "SCMP_ARCH_AARCH64", "SCMP_ARCH_LOONGARCH64", "SCMP_ARCH_M68K",   "SCMP_ARCH_MIPS",
    "SCMP_ARCH_MIPS64",  "SCMP_ARCH_MIPS64N32", "SCMP_ARCH_MIPSEL",   "SCMP_ARCH_MIPSEL64",
    "SCMP_ARCH_MIPSEL64N32", "SCMP_ARCH_PPC",   "SCMP_ARCH_PPC64",    "SCMP_ARCH_PPC64LE",
    "SCMP_ARCH_S390",    "SCMP_ARCH_S390X",     "SCMP_ARCH_PARISC",   "SCMP_ARCH_PARISC64",
    "SCMP_ARCH_RISCV64", "SCMP_ARCH_SH",        "SCMP_ARCH_SHEB",
};

// Docker's "includes"/"excludes" arches use Go's GOARCH names (plus a few aliases).
constexpr std::string_view kDockerArches[] = {
    "386",    "x86",    "amd64",    "x86_64",  "x32",    "arm",     "arm64",   "aarch64",
    "mips",   "mipsle", "mips64",   "mips64le", "mips64n32", "mips64len32", "ppc", "ppc64",
    "ppc64le", "s390",  "s390x",    "riscv64", "loong64", "parisc", "parisc64", "m68k", "sh",
};

constexpr std::size_t kMaxListItems = 64;  // architectures, caps, arches
constexpr std::size_t kMaxNameLength = 64;
constexpr std::uint64_t kMaxErrno = 4095;  // the kernel's MAX_ERRNO

bool contains(std::span<const std::string_view> set, std::string_view s) {
  return std::find(set.begin(), set.end(), s) != set.end();
}

// Untrusted text in an error message: bounded, one line, printable.
std::string quote(std::string_view s) {
  std::string out = "\"";
  for (std::size_t i = 0; i < s.size() && i < 64; ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c < 0x20 || c >= 0x7f) {
      constexpr char hex[] = "0123456789abcdef";
      out += "\\x";
      out += hex[c >> 4];
      out += hex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > 64) out += "...";
  return out + "\"";
}

std::string index_path(std::string_view parent, std::string_view member, std::size_t i) {
  return std::string(parent) + (parent.empty() ? "" : ".") + std::string(member) + "[" +
         std::to_string(i) + "]";
}

std::string member_path(std::string_view parent, std::string_view member) {
  return parent.empty() ? std::string(member) : std::string(parent) + "." + std::string(member);
}

class Parser {
 public:
  explicit Parser(std::string_view source) : source_(source) {}

  std::unexpected<Error> error(std::string_view where, const std::string& what,
                               Errc code = Errc::parse) const {
    return fail(code, "seccomp profile " + source_ + ": " + std::string(where) +
                          (where.empty() ? "" : ": ") + what);
  }

  Result<Profile> parse(std::string_view text);

 private:
  Result<void> check_members(const Json& obj, std::string_view where,
                             std::initializer_list<std::string_view> allowed) const;
  // nullptr when absent or null (Go's encoder writes empty optional members as null).
  static const Json* optional(const Json& obj, const char* key) {
    auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  }
  Result<const Json*> typed(const Json& obj, const char* key, std::string_view where,
                            Json::value_t type, bool required) const;
  Result<std::string> string_value(const Json& v, std::string_view where) const;
  Result<std::uint64_t> unsigned_value(const Json& v, std::string_view where) const;
  Result<std::vector<std::string>> string_list(const Json& obj, const char* key,
                                               std::string_view where,
                                               std::span<const std::string_view> allowed) const;
  Result<Action> action(const Json& v, std::string_view where) const;
  Result<std::uint16_t> errno_value(const Json& v, std::string_view where) const;
  Result<Verdict> verdict(const Json& obj, std::string_view where, const char* action_key,
                          const char* errno_key) const;
  Result<void> architectures(const Json& top, Profile& out) const;
  Result<Selector> selector(const Json& entry, const char* key, std::string_view where) const;
  Result<std::vector<Arg>> args(const Json& entry, std::string_view where) const;
  Result<Rule> rule(const Json& entry, std::size_t index, std::size_t& names_total) const;

  std::string source_;
};

Result<void> Parser::check_members(const Json& obj, std::string_view where,
                                   std::initializer_list<std::string_view> allowed) const {
  for (const auto& [key, _] : obj.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) == allowed.end()) {
      return error(where.empty() ? std::string_view("top level") : where,
                   "unknown member " + quote(key));
    }
  }
  return ok();
}

Result<const Json*> Parser::typed(const Json& obj, const char* key, std::string_view where,
                                  Json::value_t type, bool required) const {
  const Json* v = optional(obj, key);
  const std::string path = member_path(where, key);
  if (v == nullptr) {
    if (required) return error(path, "missing");
    return nullptr;
  }
  if (v->type() != type) {
    const char* want = type == Json::value_t::string  ? "a string"
                       : type == Json::value_t::array ? "an array"
                                                      : "an object";
    return error(path, std::string("must be ") + want + ", not " + v->type_name());
  }
  return v;
}

Result<std::string> Parser::string_value(const Json& v, std::string_view where) const {
  if (!v.is_string()) return error(where, std::string("must be a string, not ") + v.type_name());
  return v.get<std::string>();
}

Result<std::uint64_t> Parser::unsigned_value(const Json& v, std::string_view where) const {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer()) {
    // Non-negative integers always parse as unsigned; this one is negative.
    return error(where, "must not be negative");
  }
  return error(where, std::string("must be a non-negative integer, not ") +
                          (v.is_number_float() ? "a fraction" : v.type_name()));
}

Result<std::vector<std::string>> Parser::string_list(
    const Json& obj, const char* key, std::string_view where,
    std::span<const std::string_view> allowed) const {
  std::vector<std::string> out;
  auto list = typed(obj, key, where, Json::value_t::array, false);
  if (!list) return std::unexpected(list.error());
  if (*list == nullptr) return out;
  if ((*list)->size() > kMaxListItems) {
    return error(member_path(where, key), "more than " + std::to_string(kMaxListItems) + " items");
  }
  for (std::size_t i = 0; i < (*list)->size(); ++i) {
    const std::string path = index_path(where, key, i);
    auto s = string_value((**list)[i], path);
    if (!s) return std::unexpected(s.error());
    if (!allowed.empty() && !contains(allowed, *s)) return error(path, "unknown value " + quote(*s));
    out.push_back(std::move(*s));
  }
  return out;
}

Result<Action> Parser::action(const Json& v, std::string_view where) const {
  auto s = string_value(v, where);
  if (!s) return std::unexpected(s.error());
  if (*s == "SCMP_ACT_ALLOW") return Action::allow;
  if (*s == "SCMP_ACT_ERRNO") return Action::errno_ret;
  if (*s == "SCMP_ACT_KILL" || *s == "SCMP_ACT_KILL_THREAD") return Action::kill_thread;
  if (*s == "SCMP_ACT_KILL_PROCESS") return Action::kill_process;
  if (*s == "SCMP_ACT_TRAP") return Action::trap;
  if (*s == "SCMP_ACT_LOG") return Action::log;
  if (*s == "SCMP_ACT_NOTIFY" || *s == "SCMP_ACT_TRACE") {
    // Both hand the decision to another process, which a step sandbox does not have.
    return error(where, "action " + quote(*s) + " is not supported");
  }
  return error(where, "unknown action " + quote(*s));
}

Result<std::uint16_t> Parser::errno_value(const Json& v, std::string_view where) const {
  auto n = unsigned_value(v, where);
  if (!n) return std::unexpected(n.error());
  // 0 would make a denied call look successful.
  if (*n == 0 || *n > kMaxErrno) return error(where, "must be an errno between 1 and 4095");
  return static_cast<std::uint16_t>(*n);
}

Result<Verdict> Parser::verdict(const Json& obj, std::string_view where, const char* action_key,
                                const char* errno_key) const {
  auto a = typed(obj, action_key, where, Json::value_t::string, true);
  if (!a) return std::unexpected(a.error());
  auto act = action(**a, member_path(where, action_key));
  if (!act) return std::unexpected(act.error());
  Verdict out{*act, 0};
  const Json* e = optional(obj, errno_key);
  if (e != nullptr && *act != Action::errno_ret) {
    return error(member_path(where, errno_key), "only allowed with SCMP_ACT_ERRNO");
  }
  if (*act == Action::errno_ret) {
    out.errno_ret = 1;  // EPERM when not given, as runc does
    if (e != nullptr) {
      auto n = errno_value(*e, member_path(where, errno_key));
      if (!n) return std::unexpected(n.error());
      out.errno_ret = *n;
    }
  }
  return out;
}

Result<void> Parser::architectures(const Json& top, Profile& out) const {
  auto arches = string_list(top, "architectures", "", kScmpArches);
  if (!arches) return std::unexpected(arches.error());
  out.architectures = std::move(*arches);
  auto map = typed(top, "archMap", "", Json::value_t::array, false);
  if (!map) return std::unexpected(map.error());
  if (*map == nullptr) return ok();
  if ((*map)->size() > kMaxListItems) return error("archMap", "too many items");
  for (std::size_t i = 0; i < (*map)->size(); ++i) {
    const std::string path = index_path("", "archMap", i);
    const Json& item = (**map)[i];
    if (!item.is_object()) return error(path, std::string("must be an object, not ") + item.type_name());
    if (auto r = check_members(item, path, {"architecture", "subArchitectures"}); !r) return r;
    auto arch = typed(item, "architecture", path, Json::value_t::string, true);
    if (!arch) return std::unexpected(arch.error());
    auto name = string_value(**arch, member_path(path, "architecture"));
    if (!name) return std::unexpected(name.error());
    if (!contains(kScmpArches, *name)) {
      return error(member_path(path, "architecture"), "unknown architecture " + quote(*name));
    }
    auto subs = string_list(item, "subArchitectures", path, kScmpArches);
    if (!subs) return std::unexpected(subs.error());
    if (out.architectures.size() + 1 + subs->size() > 4 * kMaxListItems) {
      return error(path, "too many architectures");
    }
    out.architectures.push_back(std::move(*name));
    for (auto& s : *subs) out.architectures.push_back(std::move(s));
  }
  return ok();
}

// "major.minor", as Docker writes minKernel.
std::optional<KernelVersion> parse_kernel_version(std::string_view s) {
  const auto dot = s.find('.');
  if (dot == std::string_view::npos || dot == 0 || dot + 1 == s.size() || s.size() > 11) {
    return std::nullopt;
  }
  KernelVersion v;
  const auto a = std::from_chars(s.data(), s.data() + dot, v.major);
  const auto b = std::from_chars(s.data() + dot + 1, s.data() + s.size(), v.minor);
  if (a.ec != std::errc{} || a.ptr != s.data() + dot || b.ec != std::errc{} ||
      b.ptr != s.data() + s.size()) {
    return std::nullopt;
  }
  return v;
}

Result<Selector> Parser::selector(const Json& entry, const char* key, std::string_view where) const {
  Selector out;
  auto obj = typed(entry, key, where, Json::value_t::object, false);
  if (!obj) return std::unexpected(obj.error());
  if (*obj == nullptr) return out;
  const std::string path = member_path(where, key);
  if (auto r = check_members(**obj, path, {"caps", "arches", "minKernel"}); !r) {
    return std::unexpected(r.error());
  }
  auto caps = string_list(**obj, "caps", path, {});
  if (!caps) return std::unexpected(caps.error());
  for (std::size_t i = 0; i < caps->size(); ++i) {
    const std::string& c = (*caps)[i];
    const bool well_formed =
        c.size() > 4 && c.size() <= 32 && c.starts_with("CAP_") &&
        std::all_of(c.begin() + 4, c.end(), [](char ch) { return (ch >= 'A' && ch <= 'Z') || ch == '_'; });
    if (!well_formed) return error(index_path(path, "caps", i), "not a capability name: " + quote(c));
  }
  out.caps = std::move(*caps);
  auto arches = string_list(**obj, "arches", path, kDockerArches);
  if (!arches) return std::unexpected(arches.error());
  out.arches = std::move(*arches);
  auto mk = typed(**obj, "minKernel", path, Json::value_t::string, false);
  if (!mk) return std::unexpected(mk.error());
  if (*mk != nullptr) {
    const auto text = (*mk)->get<std::string>();
    out.min_kernel = parse_kernel_version(text);
    if (!out.min_kernel) {
      return error(member_path(path, "minKernel"), "must be \"major.minor\", not " + quote(text));
    }
  }
  return out;
}

Result<std::vector<Arg>> Parser::args(const Json& entry, std::string_view where) const {
  std::vector<Arg> out;
  auto list = typed(entry, "args", where, Json::value_t::array, false);
  if (!list) return std::unexpected(list.error());
  if (*list == nullptr) return out;
  // One comparison per argument (see below), so six at most.
  if ((*list)->size() > 6) return error(member_path(where, "args"), "more than 6 comparisons");
  for (std::size_t i = 0; i < (*list)->size(); ++i) {
    const std::string path = index_path(where, "args", i);
    const Json& item = (**list)[i];
    if (!item.is_object()) return error(path, std::string("must be an object, not ") + item.type_name());
    if (auto r = check_members(item, path, {"index", "value", "valueTwo", "op"}); !r) {
      return std::unexpected(r.error());
    }
    Arg a;
    for (const char* required : {"index", "value", "op"}) {
      if (optional(item, required) == nullptr) return error(member_path(path, required), "missing");
    }
    auto index = unsigned_value(item["index"], member_path(path, "index"));
    if (!index) return std::unexpected(index.error());
    if (*index > 5) return error(member_path(path, "index"), "must be 0..5, not " + std::to_string(*index));
    a.index = static_cast<unsigned>(*index);
    // libseccomp refuses two comparisons of one argument in one rule; rejecting here
    // gives a clear message instead of a compile-time EINVAL.
    for (const Arg& prev : out) {
      if (prev.index == a.index) {
        return error(member_path(path, "index"),
                     "second comparison of argument " + std::to_string(a.index) +
                         " in one entry (libseccomp cannot AND them; use SCMP_CMP_MASKED_EQ "
                         "or separate entries)");
      }
    }
    auto value = unsigned_value(item["value"], member_path(path, "value"));
    if (!value) return std::unexpected(value.error());
    a.value = *value;
    if (const Json* two = optional(item, "valueTwo"); two != nullptr) {
      auto v2 = unsigned_value(*two, member_path(path, "valueTwo"));
      if (!v2) return std::unexpected(v2.error());
      a.value_two = *v2;
    }
    auto op = string_value(item["op"], member_path(path, "op"));
    if (!op) return std::unexpected(op.error());
    if (*op == "SCMP_CMP_NE") a.op = Cmp::ne;
    else if (*op == "SCMP_CMP_LT") a.op = Cmp::lt;
    else if (*op == "SCMP_CMP_LE") a.op = Cmp::le;
    else if (*op == "SCMP_CMP_EQ") a.op = Cmp::eq;
    else if (*op == "SCMP_CMP_GE") a.op = Cmp::ge;
    else if (*op == "SCMP_CMP_GT") a.op = Cmp::gt;
    else if (*op == "SCMP_CMP_MASKED_EQ") a.op = Cmp::masked_eq;
    else return error(member_path(path, "op"), "unknown operator " + quote(*op));
    if (a.op == Cmp::masked_eq) {
      // A swapped mask and value is the classic mistake: the rule could never match.
      if ((a.value_two & ~a.value) != 0) {
        return error(path, "valueTwo has bits outside the mask in value; it can never match");
      }
    } else if (a.value_two != 0) {
      return error(member_path(path, "valueTwo"), "only meaningful with SCMP_CMP_MASKED_EQ");
    }
    out.push_back(a);
  }
  return out;
}

bool valid_syscall_name(std::string_view n) {
  return !n.empty() && n.size() <= kMaxNameLength &&
         std::all_of(n.begin(), n.end(), [](char c) {
           return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
         });
}

Result<Rule> Parser::rule(const Json& entry, std::size_t index, std::size_t& names_total) const {
  const std::string where = index_path("", "syscalls", index);
  if (!entry.is_object()) return error(where, std::string("must be an object, not ") + entry.type_name());
  if (auto r = check_members(entry, where, {"names", "name", "action", "errnoRet", "args", "comment",
                                            "includes", "excludes"});
      !r) {
    return std::unexpected(r.error());
  }
  Rule out;
  out.entry = index;
  const Json* names = optional(entry, "names");
  const Json* name = optional(entry, "name");
  if ((names == nullptr) == (name == nullptr)) {
    return error(where, "needs exactly one of \"names\" and \"name\"");
  }
  if (name != nullptr) {
    out.legacy_name = true;
    auto s = string_value(*name, member_path(where, "name"));
    if (!s) return std::unexpected(s.error());
    out.names.push_back(std::move(*s));
  } else {
    if (!names->is_array()) {
      return error(member_path(where, "names"), std::string("must be an array, not ") + names->type_name());
    }
    if (names->empty()) return error(member_path(where, "names"), "must not be empty");
    if (names->size() > kMaxNames) return error(member_path(where, "names"), "too many names");
    for (std::size_t i = 0; i < names->size(); ++i) {
      auto s = string_value((*names)[i], index_path(where, "names", i));
      if (!s) return std::unexpected(s.error());
      out.names.push_back(std::move(*s));
    }
  }
  names_total += out.names.size();
  if (names_total > kMaxNames) {
    return error(where, "more than " + std::to_string(kMaxNames) + " syscall names in the profile",
                 Errc::too_large);
  }
  std::set<std::string_view> seen;
  for (std::size_t i = 0; i < out.names.size(); ++i) {
    if (!valid_syscall_name(out.names[i])) return error(out.where(i), "invalid syscall name " + quote(out.names[i]));
    if (!seen.insert(out.names[i]).second) return error(out.where(i), "duplicate syscall name " + quote(out.names[i]));
  }
  auto v = verdict(entry, where, "action", "errnoRet");
  if (!v) return std::unexpected(v.error());
  out.verdict = *v;
  auto a = args(entry, where);
  if (!a) return std::unexpected(a.error());
  out.args = std::move(*a);
  if (auto c = typed(entry, "comment", where, Json::value_t::string, false); !c) {
    return std::unexpected(c.error());
  }
  auto inc = selector(entry, "includes", where);
  if (!inc) return std::unexpected(inc.error());
  out.includes = std::move(*inc);
  auto exc = selector(entry, "excludes", where);
  if (!exc) return std::unexpected(exc.error());
  out.excludes = std::move(*exc);
  return out;
}

Result<Profile> Parser::parse(std::string_view text) {
  if (text.size() > kMaxProfileBytes) {
    return error("", "larger than " + std::to_string(kMaxProfileBytes) + " bytes", Errc::too_large);
  }
  auto doc = parse_json_strict(text, JsonLimits{.max_bytes = kMaxProfileBytes, .max_depth = 8});
  if (!doc) return error("", doc.error().message, doc.error().code);
  const Json& top = *doc;
  if (!top.is_object()) return error("", std::string("must be a JSON object, not ") + top.type_name());
  if (auto r = check_members(top, "", {"defaultAction", "defaultErrnoRet", "architectures", "archMap",
                                       "syscalls", "flags", "listenerPath", "listenerMetadata"});
      !r) {
    return std::unexpected(r.error());
  }
  Profile out;
  out.source = source_;
  auto dv = verdict(top, "", "defaultAction", "defaultErrnoRet");
  if (!dv) return std::unexpected(dv.error());
  out.default_verdict = *dv;
  if (auto r = architectures(top, out); !r) return std::unexpected(r.error());

  // Filter flags need seccomp(2); the filter is installed with prctl() and no flags.
  auto flags = typed(top, "flags", "", Json::value_t::array, false);
  if (!flags) return std::unexpected(flags.error());
  if (*flags != nullptr && !(*flags)->empty()) return error("flags", "filter flags are not supported");
  // No SCMP_ACT_NOTIFY, hence no listener.
  for (const char* key : {"listenerPath", "listenerMetadata"}) {
    auto s = typed(top, key, "", Json::value_t::string, false);
    if (!s) return std::unexpected(s.error());
    if (*s != nullptr && !(*s)->get_ref<const std::string&>().empty()) {
      return error(key, "seccomp notification listeners are not supported");
    }
  }

  auto syscalls = typed(top, "syscalls", "", Json::value_t::array, false);
  if (!syscalls) return std::unexpected(syscalls.error());
  if (*syscalls == nullptr) return out;
  if ((*syscalls)->size() > kMaxEntries) {
    return error("syscalls", "more than " + std::to_string(kMaxEntries) + " entries", Errc::too_large);
  }
  std::size_t names_total = 0;
  for (std::size_t i = 0; i < (*syscalls)->size(); ++i) {
    auto r = rule((**syscalls)[i], i, names_total);
    if (!r) return std::unexpected(r.error());
    out.syscalls.push_back(std::move(*r));
  }
  return out;
}

}  // namespace

std::string Rule::where(std::size_t name_index) const {
  const std::string entry_path = index_path("", "syscalls", entry);
  return legacy_name ? entry_path + ".name" : index_path(entry_path, "names", name_index);
}

Result<Profile> parse_profile(std::string_view json, std::string_view source_name) {
  return Parser(source_name).parse(json);
}

std::optional<std::string_view> builtin_profile(std::string_view name) {
  for (const detail::BuiltinProfile& b : detail::builtin_profiles()) {
    if (b.name == name) return b.json;
  }
  return std::nullopt;
}

Result<Profile> load_profile(std::string_view name_or_path) {
  if (name_or_path.find('/') != std::string_view::npos) {
    const std::string path(name_or_path);
    auto text = read_file(path, kMaxProfileBytes);
    if (!text) return fail(text.error().code, "seccomp profile: " + text.error().message);
    return parse_profile(*text, path);
  }
  if (auto json = builtin_profile(name_or_path)) {
    return parse_profile(*json, std::string(name_or_path) + ".json");
  }
  std::string names;
  for (const detail::BuiltinProfile& b : detail::builtin_profiles()) names += (names.empty() ? "" : ", ") + std::string(b.name);
  return fail(Errc::invalid_argument, "unknown seccomp profile " + quote(name_or_path) +
                                          " (builtin profiles: " + names +
                                          "; a profile file is given as a path containing '/')");
}

Host current_host() {
  Host h;
#if defined(__x86_64__)
  h.arches = {"amd64", "x86_64"};
#elif defined(__aarch64__)
  h.arches = {"arm64", "aarch64"};
#elif defined(__i386__)
  h.arches = {"386", "x86"};
#elif defined(__arm__)
  h.arches = {"arm"};
#elif defined(__powerpc64__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
  h.arches = {"ppc64le"};
#elif defined(__s390x__)
  h.arches = {"s390x"};
#elif defined(__riscv) && __riscv_xlen == 64
  h.arches = {"riscv64"};
#elif defined(__loongarch64)
  h.arches = {"loong64"};
#endif
  struct utsname u {};
  if (::uname(&u) == 0) {
    // "6.1.0-18-amd64" → 6.1
    const char* end = u.release + std::strlen(u.release);
    KernelVersion v;
    const auto major = std::from_chars(u.release, end, v.major);
    if (major.ec == std::errc{} && major.ptr < end && *major.ptr == '.' &&
        std::from_chars(major.ptr + 1, end, v.minor).ec == std::errc{}) {
      h.kernel = v;
    }
  }
  return h;
}

bool rule_applies(const Rule& rule, const Host& host) {
  const auto native = [&](const std::vector<std::string>& arches) {
    return std::any_of(arches.begin(), arches.end(), [&](const std::string& a) {
      return std::find(host.arches.begin(), host.arches.end(), a) != host.arches.end();
    });
  };
  // A step holds no capabilities: "includes.caps" never holds, "excludes.caps" never
  // excludes. Both pick the restrictive branch of Docker's profile.
  if (!rule.includes.caps.empty()) return false;
  if (!rule.includes.arches.empty() && !native(rule.includes.arches)) return false;
  if (rule.includes.min_kernel && host.kernel < *rule.includes.min_kernel) return false;
  if (!rule.excludes.arches.empty() && native(rule.excludes.arches)) return false;
  if (rule.excludes.min_kernel && host.kernel >= *rule.excludes.min_kernel) return false;
  return true;
}

}  // namespace delegate::sandbox::seccomp
