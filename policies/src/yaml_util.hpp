#pragma once
// Strict YAML helpers shared by the runbook and API-key parsers (internal to the
// library). yaml-cpp is permissive by default: it keeps duplicate keys, coerces
// quoted "60" to an integer and throws on type errors. These helpers reject what a
// careful operator would not have meant and turn every failure into a message
// naming the key path, so a typo never silently changes a security setting.
#include <charconv>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include <yaml-cpp/yaml.h>

#include <delegate/common/strict.hpp>

namespace delegate::policies::detail {

// Thrown only inside the parsers and caught at their public boundary.
struct YamlError {
  std::string message;
};

[[noreturn]] inline void yfail(const std::string& path, const std::string& msg) {
  throw YamlError{path.empty() ? msg : path + ": " + msg};
}

inline std::string ykey(const std::string& path, std::string_view key) {
  return path.empty() ? std::string(key) : path + "." + std::string(key);
}

inline std::string yindex(const std::string& path, std::size_t i) {
  return path + "[" + std::to_string(i) + "]";
}

// Keys of a mapping as plain strings. Documents come from parse_yaml_strict, which
// has already refused duplicate and non-scalar keys anywhere in the tree.
inline std::vector<std::string> ymap_keys(const YAML::Node& n, const std::string& path) {
  if (!n.IsMap()) yfail(path.empty() ? "document" : path, "must be a mapping");
  std::vector<std::string> keys;
  for (const auto& kv : n) {
    if (!kv.first.IsScalar()) yfail(path, "mapping keys must be plain strings");
    keys.push_back(kv.first.Scalar());
  }
  return keys;
}

// Requires a mapping whose keys are all in `allowed` (the common check, thrown).
inline void ycheck_keys(const YAML::Node& n, const std::string& path,
                        std::initializer_list<std::string_view> allowed) {
  if (auto r = yaml_only_keys(n, path, allowed); !r) throw YamlError{r.error().message};
}

inline std::string ystring(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar()) yfail(path, "must be a string");
  return n.Scalar();
}

// Plain (unquoted) scalars only: `timeout_s: "60"` is almost certainly a mistake.
inline bool ybool(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar() || n.Tag() == "!") yfail(path, "must be true or false");
  const std::string& s = n.Scalar();
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  yfail(path, "must be true or false");
}

inline std::int64_t yint(const YAML::Node& n, const std::string& path) {
  if (!n.IsScalar() || n.Tag() == "!") yfail(path, "must be an integer");
  const std::string& s = n.Scalar();
  std::int64_t v = 0;
  // Decimal only: no hex/octal/'+' spellings, so one value has one spelling.
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) yfail(path, "must be an integer");
  return v;
}

inline std::int64_t yint_range(const YAML::Node& n, const std::string& path, std::int64_t lo,
                               std::int64_t hi) {
  std::int64_t v = yint(n, path);
  if (v < lo || v > hi) {
    yfail(path, "must be between " + std::to_string(lo) + " and " + std::to_string(hi));
  }
  return v;
}

inline std::vector<std::string> ystring_list(const YAML::Node& n, const std::string& path,
                                             std::size_t max_items) {
  if (!n.IsSequence()) yfail(path, "must be a list of strings");
  if (n.size() > max_items) yfail(path, "more than " + std::to_string(max_items) + " items");
  std::vector<std::string> out;
  for (std::size_t i = 0; i < n.size(); ++i) out.push_back(ystring(n[i], yindex(path, i)));
  return out;
}

}  // namespace delegate::policies::detail
