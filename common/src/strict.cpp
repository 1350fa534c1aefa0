#include <delegate/common/strict.hpp>

#include <set>
#include <vector>

namespace delegate {
namespace {

struct YamlWalk {
  const YamlLimits& limits;
  std::size_t nodes = 0;
  std::string error;

  bool fail_with(std::string msg) {
    error = std::move(msg);
    return false;
  }

  bool walk(const YAML::Node& n, const std::string& path, std::size_t depth) {
    if (++nodes > limits.max_nodes) {
      return fail_with("document has more than " + std::to_string(limits.max_nodes) +
                       " nodes (aliases count each time they are used)");
    }
    if (depth > limits.max_depth) {
      return fail_with((path.empty() ? std::string("document") : path) + ": nesting deeper than " +
                       std::to_string(limits.max_depth));
    }
    switch (n.Type()) {
      case YAML::NodeType::Undefined:
      case YAML::NodeType::Null:
      case YAML::NodeType::Scalar:
        return true;
      case YAML::NodeType::Sequence: {
        std::size_t i = 0;
        for (const auto& item : n) {
          if (!walk(item, path + "[" + std::to_string(i++) + "]", depth + 1)) return false;
        }
        return true;
      }
      case YAML::NodeType::Map: {
        std::set<std::string> seen;
        for (const auto& kv : n) {
          if (!kv.first.IsScalar()) {
            return fail_with((path.empty() ? std::string("document") : path) +
                             ": mapping keys must be plain strings");
          }
          const std::string& k = kv.first.Scalar();
          const std::string where = key_path(path, printable(k));
          if (!seen.insert(k).second) return fail_with("duplicate key " + where);
          if (!walk(kv.second, where, depth + 1)) return false;
        }
        return true;
      }
    }
    return fail_with("unknown YAML node type");
  }
};

template <class List>
bool allowed_key(std::string_view key, const List& allowed) {
  for (std::string_view a : allowed) {
    if (a == key) return true;
  }
  return false;
}

template <class List>
Result<void> only_members(const Json& obj, std::string_view path, const List& allowed) {
  if (!obj.is_object()) {
    return fail(Errc::parse, (path.empty() ? std::string("document") : std::string(path)) + ": must be an object");
  }
  for (const auto& [key, value] : obj.items()) {
    (void)value;
    if (!allowed_key(key, allowed)) return fail(Errc::parse, key_path(path, printable(key)) + ": unknown key");
  }
  return ok();
}

}  // namespace

std::string key_path(std::string_view path, std::string_view key) {
  if (path.empty()) return std::string(key);
  std::string out(path);
  out += '.';
  out += key;
  return out;
}

std::string printable(std::string_view s, std::size_t max) {
  std::string out;
  out.reserve(std::min(s.size(), max) + 3);
  for (char c : s.substr(0, max)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > max) out += "...";
  return out;
}

std::string dump_safe(const Json& j, int indent) {
  return j.dump(indent, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
}

Result<YAML::Node> parse_yaml_strict(std::string_view text, YamlLimits limits) {
  if (text.size() > limits.max_bytes) {
    return fail(Errc::too_large, "YAML document of " + std::to_string(text.size()) +
                                     " bytes exceeds the limit of " + std::to_string(limits.max_bytes));
  }
  YAML::Node root;
  try {
    root = YAML::Load(std::string(text));
  } catch (const YAML::Exception& e) {
    return fail(Errc::parse, std::string("invalid YAML: ") + printable(e.what(), 200));
  } catch (const std::exception& e) {
    return fail(Errc::parse, std::string("invalid YAML: ") + printable(e.what(), 200));
  }
  YamlWalk w{limits};
  try {
    if (!w.walk(root, "", 0)) return fail(Errc::parse, w.error);
  } catch (const YAML::Exception& e) {
    return fail(Errc::parse, std::string("invalid YAML: ") + printable(e.what(), 200));
  }
  return root;
}

Result<void> json_only_members(const Json& obj, std::string_view path,
                               std::initializer_list<std::string_view> allowed) {
  return only_members(obj, path, allowed);
}

Result<void> json_only_members(const Json& obj, std::string_view path, std::span<const char* const> allowed) {
  return only_members(obj, path, allowed);
}

Result<void> yaml_only_keys(const YAML::Node& map, std::string_view path,
                            std::initializer_list<std::string_view> allowed) {
  if (!map.IsMap()) {
    return fail(Errc::parse, (path.empty() ? std::string("document") : std::string(path)) + ": must be a mapping");
  }
  for (const auto& kv : map) {
    if (!kv.first.IsScalar()) {
      return fail(Errc::parse, (path.empty() ? std::string("document") : std::string(path)) +
                                   ": mapping keys must be plain strings");
    }
    if (!allowed_key(kv.first.Scalar(), allowed)) {
      return fail(Errc::parse, key_path(path, printable(kv.first.Scalar())) + ": unknown key");
    }
  }
  return ok();
}

}  // namespace delegate
