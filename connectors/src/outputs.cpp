#include <delegate/connectors/outputs.hpp>

#include <algorithm>
#include <charconv>
#include <optional>

#include <delegate/common/strict.hpp>

namespace delegate::connectors {
namespace {

// Output values go into signed JSON records and other programs' argv: reject what is
// not UTF-8 instead of letting the record writer replace or refuse it later.
bool valid_utf8(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    std::size_t len = 0;
    std::uint32_t cp = 0;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xe0) == 0xc0) {
      len = 2, cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
      len = 3, cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
      len = 4, cp = c & 0x07;
    } else {
      return false;
    }
    if (i + len > s.size()) return false;
    for (std::size_t k = 1; k < len; ++k) {
      const auto cc = static_cast<unsigned char>(s[i + k]);
      if ((cc & 0xc0) != 0x80) return false;
      cp = (cp << 6) | (cc & 0x3f);
    }
    // Overlong forms, surrogates and values past U+10FFFF are not UTF-8.
    if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff ||
        (cp >= 0xd800 && cp <= 0xdfff)) {
      return false;
    }
    i += len;
  }
  return true;
}

// The line form's text becomes the declared type with one spelling per value:
// decimal integers without '+' or spaces, and exactly "true" / "false".
Result<Json> typed(const std::string& what, policies::ParamType type, const std::string& text) {
  switch (type) {
    case policies::ParamType::string: return Json(text);
    case policies::ParamType::integer: {
      std::int64_t v = 0;
      auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
      if (text.empty() || ec != std::errc() || p != text.data() + text.size()) {
        return fail(Errc::invalid_argument, what + " is not a decimal integer");
      }
      return Json(v);
    }
    case policies::ParamType::boolean:
      if (text == "true") return Json(true);
      if (text == "false") return Json(false);
      return fail(Errc::invalid_argument, what + " is not true or false");
  }
  return fail(Errc::internal, what + " has an unknown type");
}

}  // namespace

OutputCapture::OutputCapture(const policies::Step& step) : step_(step) {
  for (const auto& [name, spec] : step.outputs) {
    switch (spec.source) {
      case policies::OutputSource::line: lines_.push_back({name, &spec, {}, 0, false}); break;
      case policies::OutputSource::json: wants_json_ = true; break;
    }
  }
}

void OutputCapture::feed(std::string_view chunk) {
  if (step_.outputs.empty()) return;
  while (!chunk.empty()) {
    const auto nl = chunk.find('\n');
    const auto part = chunk.substr(0, nl);
    const std::size_t room = kMaxOutputJsonLine + 1 - std::min(cur_.size(), kMaxOutputJsonLine + 1);
    cur_.append(part.substr(0, room));
    if (part.size() > room) cur_overlong_ = true;
    if (nl == std::string_view::npos) return;
    end_line();
    chunk.remove_prefix(nl + 1);
  }
}

void OutputCapture::end_line() {
  if (cur_.size() > kMaxOutputJsonLine) cur_overlong_ = true;
  if (!cur_overlong_ && !cur_.empty() && cur_.back() == '\r') cur_.pop_back();
  for (auto& slot : lines_) {
    const auto& prefix = slot.spec->selector;
    if (!cur_.starts_with(prefix)) continue;
    ++slot.matches;
    const std::size_t len = cur_.size() - prefix.size();
    slot.overlong = cur_overlong_ || len > policies::kMaxOutputValueBytes;
    slot.value = slot.overlong ? std::string() : cur_.substr(prefix.size());
  }
  if (wants_json_ && (!cur_.empty() || cur_overlong_)) {
    last_overlong_ = cur_overlong_;
    last_ = cur_overlong_ ? std::string() : cur_;
  }
  cur_.clear();
  cur_overlong_ = false;
}

Result<Json> OutputCapture::finish(bool stdout_truncated) {
  if (!cur_.empty() || cur_overlong_) end_line();  // a last line without '\n'
  if (step_.outputs.empty()) return Json::object();
  const std::string step = printable(step_.name);
  if (stdout_truncated) {
    return fail(Errc::invalid_argument, "outputs of step " + step +
                                            " cannot be read: its output was cut at the sandbox's output limit");
  }
  std::optional<Json> doc;
  Json out = Json::object();
  for (const auto& [name, spec] : step_.outputs) {
    const std::string what = "output " + step + "." + name;
    Json raw;
    switch (spec.source) {
      case policies::OutputSource::line: {
        const auto slot = std::find_if(lines_.begin(), lines_.end(), [&](const LineSlot& s) { return s.name == name; });
        if (slot->matches == 0) {
          return fail(Errc::not_found, what + ": no stdout line starts with \"" + printable(spec.selector) + "\"");
        }
        if (slot->matches > 1) {
          return fail(Errc::invalid_argument, what + ": " + std::to_string(slot->matches) +
                                                  " stdout lines start with \"" + printable(spec.selector) +
                                                  "\" (exactly one must)");
        }
        if (slot->overlong) {
          return fail(Errc::too_large,
                      what + " is longer than " + std::to_string(policies::kMaxOutputValueBytes) + " bytes");
        }
        if (!valid_utf8(slot->value)) return fail(Errc::invalid_argument, what + " is not valid UTF-8");
        auto v = typed(what, spec.value.type, slot->value);
        if (!v) return std::unexpected(v.error());
        raw = std::move(*v);
        break;
      }
      case policies::OutputSource::json: {
        if (!doc) {
          if (last_overlong_) {
            return fail(Errc::too_large, what + ": the last stdout line is longer than " +
                                             std::to_string(kMaxOutputJsonLine) + " bytes");
          }
          if (last_.empty()) return fail(Errc::not_found, what + ": the step printed no JSON line on stdout");
          // The strict reader: duplicate keys, invalid UTF-8 and deep nesting are refused.
          auto parsed = parse_json_strict(last_, JsonLimits{.max_bytes = kMaxOutputJsonLine, .max_depth = 32});
          if (!parsed) {
            return fail(Errc::parse, what + ": the last stdout line is not a JSON document: " + parsed.error().message);
          }
          doc = std::move(*parsed);
        }
        try {
          const Json::json_pointer ptr(spec.selector);
          if (!doc->contains(ptr)) {
            return fail(Errc::not_found, what + ": nothing at " + printable(spec.selector) + " in the JSON line");
          }
          raw = doc->at(ptr);
        } catch (const Json::exception&) {
          return fail(Errc::not_found, what + ": nothing at " + printable(spec.selector) + " in the JSON line");
        }
        break;
      }
    }
    auto v = policies::check_output(step_.name, name, spec, raw);
    if (!v) return std::unexpected(v.error());
    out[name] = std::move(*v);
  }
  return out;
}

}  // namespace delegate::connectors
