#include <delegate/common/log.hpp>

#include <sys/stat.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <string>

#include <delegate/common/time.hpp>

namespace delegate::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::atomic<Format> g_format{Format::text};
std::mutex g_mu;

// Length of the well-formed UTF-8 sequence at s[i] (RFC 3629: no overlongs, no
// surrogates, nothing above U+10FFFF), or 0 when the bytes there are not one.
std::size_t utf8_len(std::string_view s, std::size_t i) {
  const auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  const auto cont = [&](std::size_t k) { return i + k < s.size() && (b(k) & 0xC0) == 0x80; };
  if (c < 0x80) return 1;
  if (c >= 0xC2 && c <= 0xDF) return cont(1) ? 2 : 0;
  if (c >= 0xE0 && c <= 0xEF) {
    if (!cont(1) || !cont(2)) return 0;
    if (c == 0xE0 && b(1) < 0xA0) return 0;   // overlong
    if (c == 0xED && b(1) >= 0xA0) return 0;  // surrogate
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4) {
    if (!cont(1) || !cont(2) || !cont(3)) return 0;
    if (c == 0xF0 && b(1) < 0x90) return 0;  // overlong
    if (c == 0xF4 && b(1) >= 0x90) return 0;  // above U+10FFFF
    return 4;
  }
  return 0;
}

// JSON string contents: control characters as \u00XX, invalid UTF-8 as U+FFFD, and
// U+2028/U+2029 escaped too (some readers take them for line ends).
void json_escape(std::string& out, std::string_view s) {
  static constexpr char kHex[] = "0123456789abcdef";
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = utf8_len(s, i);
    if (n == 0) {
      out += "\\ufffd";
      ++i;
      continue;
    }
    if (n == 1) {
      if (c == '"') out += "\\\"";
      else if (c == '\\') out += "\\\\";
      else if (c == '\n') out += "\\n";
      else if (c == '\r') out += "\\r";
      else if (c == '\t') out += "\\t";
      else if (c < 0x20 || c == 0x7f) {
        out += "\\u00";
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
      } else {
        out += static_cast<char>(c);
      }
    } else if (n == 3 && c == 0xE2 && static_cast<unsigned char>(s[i + 1]) == 0x80 &&
               (static_cast<unsigned char>(s[i + 2]) == 0xA8 || static_cast<unsigned char>(s[i + 2]) == 0xA9)) {
      out += static_cast<unsigned char>(s[i + 2]) == 0xA8 ? "\\u2028" : "\\u2029";
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
}

// Text: whatever a terminal or a log reader could take for a line end or a control
// becomes '?': C0 controls and DEL (newline included), invalid UTF-8 byte by byte, C1
// controls (U+0080..U+009F: NEL, CSI), U+2028/U+2029, and the bidi marks, embeddings,
// overrides and isolates that make a line read differently from what it holds. With
// `quoting`, '"' and '\\' are escaped as well.
void text_clean(std::string& out, std::string_view s, bool quoting = false) {
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = utf8_len(s, i);
    if (n == 0) {
      out += '?';
      ++i;
      continue;
    }
    bool hidden = false;
    if (n == 1) {
      hidden = c < 0x20 || c == 0x7f;
    } else if (n == 2) {
      hidden = c == 0xC2 && static_cast<unsigned char>(s[i + 1]) <= 0x9F;
    } else if (n == 3 && c == 0xE2) {
      const auto b1 = static_cast<unsigned char>(s[i + 1]);
      const auto b2 = static_cast<unsigned char>(s[i + 2]);
      hidden = (b1 == 0x80 && ((b2 >= 0x8E && b2 <= 0x8F) || (b2 >= 0xA8 && b2 <= 0xAE))) ||
               (b1 == 0x81 && b2 >= 0xA6 && b2 <= 0xA9);
    }
    if (hidden) {
      out += '?';
    } else {
      if (quoting && (c == '"' || c == '\\')) out += '\\';
      out.append(s.substr(i, n));
    }
    i += n;
  }
}

std::string field_name(std::string_view k) {
  std::string out;
  for (char c : k) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    out += ok ? c : '_';
  }
  if (out.empty()) out = "_";
  // The four envelope members are never overwritten by a field of the same name.
  if (out == "ts" || out == "level" || out == "component" || out == "msg") out = "field_" + out;
  return out;
}

// A text value is quoted when it would otherwise be ambiguous (logfmt style).
void text_value(std::string& out, std::string_view v) {
  const bool quote = v.empty() || v.find_first_of(" \"=\\") != std::string_view::npos;
  if (!quote) return text_clean(out, v);
  out += '"';
  text_clean(out, v, /*quoting=*/true);
  out += '"';
}

int syslog_priority(Level l) {
  switch (l) {
    case Level::debug: return 7;
    case Level::info: return 6;
    case Level::warn: return 4;
    case Level::error: return 3;
  }
  return 6;
}

// systemd sets JOURNAL_STREAM=<dev>:<ino> of the stream it connected to stderr.
bool stderr_is_journal() {
  const char* js = std::getenv("JOURNAL_STREAM");
  if (js == nullptr) return false;
  struct stat st {};
  if (::fstat(2, &st) != 0) return false;
  unsigned long long dev = 0, ino = 0;
  if (std::sscanf(js, "%llu:%llu", &dev, &ino) != 2) return false;
  return dev == static_cast<unsigned long long>(st.st_dev) && ino == static_cast<unsigned long long>(st.st_ino);
}
}  // namespace

std::string_view name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "?";
}

std::string_view name(Format f) {
  switch (f) {
    case Format::text: return "text";
    case Format::json: return "json";
  }
  return "?";
}

std::optional<Level> parse_level(std::string_view t) {
  for (Level l : {Level::debug, Level::info, Level::warn, Level::error}) {
    if (t == name(l)) return l;
  }
  return std::nullopt;
}

std::optional<Format> parse_format(std::string_view t) {
  for (Format f : {Format::text, Format::json}) {
    if (t == name(f)) return f;
  }
  return std::nullopt;
}

void set_level(Level level) { g_level = level; }
void set_format(Format format) { g_format = format; }
Level level() { return g_level.load(); }
Format format() { return g_format.load(); }

std::string format_line(Format format, std::chrono::system_clock::time_point ts, Level level,
                        std::string_view component, std::string_view message, Fields fields) {
  std::string line;
  switch (format) {
    case Format::text:
      line = format_rfc3339_ms(ts);
      line += ' ';
      line += name(level);
      line += ' ';
      text_clean(line, component);
      line += ": ";
      text_clean(line, message);
      for (const auto& [k, v] : fields) {
        line += ' ';
        line += field_name(k);
        line += '=';
        text_value(line, v);
      }
      break;
    case Format::json:
      line = "{\"ts\":\"" + format_rfc3339_ms(ts) + "\",\"level\":\"";
      line += name(level);
      line += "\",\"component\":\"";
      json_escape(line, component);
      line += "\",\"msg\":\"";
      json_escape(line, message);
      line += '"';
      for (const auto& [k, v] : fields) {
        line += ",\"" + field_name(k) + "\":\"";
        json_escape(line, v);
        line += '"';
      }
      line += '}';
      break;
  }
  line += '\n';
  return line;
}

void write(Level level, std::string_view component, std::string_view message, Fields fields) {
  if (level < g_level.load()) return;
  static const bool journal = stderr_is_journal();
  std::string line = format_line(g_format.load(), std::chrono::system_clock::now(), level, component, message, fields);
  if (journal) line = "<" + std::to_string(syslog_priority(level)) + ">" + line;
  std::lock_guard lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace delegate::log
