#include <delegate/common/json.hpp>

#include <string>
#include <vector>

#include <delegate/common/strict.hpp>

namespace delegate {
namespace {

// Builds the DOM like nlohmann's own SAX DOM parser, but refuses duplicate member
// names (naming the key path, as the YAML reader does) and excessive depth.
class StrictSax {
 public:
  explicit StrictSax(std::size_t max_depth) : max_depth_(max_depth) {}

  bool null() { return put(Json(nullptr)); }
  bool boolean(bool v) { return put(Json(v)); }
  bool number_integer(Json::number_integer_t v) { return put(Json(v)); }
  bool number_unsigned(Json::number_unsigned_t v) { return put(Json(v)); }
  bool number_float(Json::number_float_t v, const std::string&) { return put(Json(v)); }
  bool string(std::string& v) { return put(Json(std::move(v))); }
  bool binary(Json::binary_t&) { return fail_with("binary values are not JSON"); }

  bool start_object(std::size_t) { return open(Json::object()); }
  bool end_object() { return close(); }
  bool start_array(std::size_t) { return open(Json::array()); }
  bool end_array() { return close(); }

  bool key(std::string& k) {
    Json* obj = stack_.back();
    if (obj->contains(k)) return fail_with("duplicate key " + key_path(paths_.back(), printable(k)));
    pending_key_ = std::move(k);
    return true;
  }

  bool parse_error(std::size_t pos, const std::string&, const nlohmann::detail::exception& ex) {
    // nlohmann quotes the offending bytes; they may be anything, so keep the message
    // printable (it ends up in logs, audit details and JSON output).
    if (error_.empty()) error_ = "at byte " + std::to_string(pos) + ": " + printable(ex.what(), 200);
    return false;
  }

  Json result;
  std::string error_;

 private:
  bool fail_with(std::string msg) {
    error_ = std::move(msg);
    return false;
  }

  Json* place(Json value) {
    if (stack_.empty()) {
      result = std::move(value);
      return &result;
    }
    Json* top = stack_.back();
    if (top->is_array()) {
      top->push_back(std::move(value));
      return &top->back();
    }
    auto [it, inserted] = top->emplace(pending_key_, std::move(value));
    (void)inserted;
    return &it.value();
  }

  bool put(Json value) {
    place(std::move(value));
    return true;
  }

  bool open(Json container) {
    if (stack_.size() >= max_depth_) return fail_with("nesting deeper than " + std::to_string(max_depth_));
    paths_.push_back(child_path());
    stack_.push_back(place(std::move(container)));
    return true;
  }

  // Path of the value about to be placed, e.g. "sandbox.steps[2]".
  std::string child_path() const {
    if (stack_.empty()) return {};
    const Json* top = stack_.back();
    if (top->is_array()) return paths_.back() + "[" + std::to_string(top->size()) + "]";
    return key_path(paths_.back(), printable(pending_key_));
  }

  bool close() {
    stack_.pop_back();
    paths_.pop_back();
    return true;
  }

  std::size_t max_depth_;
  std::vector<Json*> stack_;
  std::vector<std::string> paths_;  // key path of each open container
  std::string pending_key_;
};

}  // namespace

Result<Json> parse_json_strict(std::string_view text, JsonLimits limits) {
  if (text.size() > limits.max_bytes) {
    return fail(Errc::too_large, "JSON document of " + std::to_string(text.size()) +
                                     " bytes exceeds the limit of " +
                                     std::to_string(limits.max_bytes));
  }
  StrictSax sax(limits.max_depth);
  bool ok_parse = false;
  try {
    ok_parse = Json::sax_parse(text.begin(), text.end(), &sax, nlohmann::detail::input_format_t::json,
                               /*strict=*/true);
  } catch (const std::exception& e) {
    return fail(Errc::parse, std::string("invalid JSON: ") + printable(e.what(), 200));
  }
  if (!ok_parse) {
    return fail(Errc::parse, "invalid JSON: " + (sax.error_.empty() ? "rejected" : sax.error_));
  }
  return std::move(sax.result);
}

Result<std::string> json_string(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) return fail(Errc::parse, std::string("missing member \"") + key + "\"");
  if (!it->is_string()) return fail(Errc::parse, std::string("member \"") + key + "\" must be a string");
  return it->get<std::string>();
}

Result<std::int64_t> json_int(const Json& obj, const char* key) {
  auto it = obj.find(key);
  if (it == obj.end()) return fail(Errc::parse, std::string("missing member \"") + key + "\"");
  if (it->is_number_unsigned()) {
    auto v = it->get<std::uint64_t>();
    if (v > static_cast<std::uint64_t>(INT64_MAX)) return fail(Errc::parse, std::string("member \"") + key + "\" out of range");
    return static_cast<std::int64_t>(v);
  }
  if (!it->is_number_integer()) return fail(Errc::parse, std::string("member \"") + key + "\" must be an integer");
  return it->get<std::int64_t>();
}

}  // namespace delegate
