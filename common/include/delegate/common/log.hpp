#pragma once
// The process's log: one event per line on stderr (docs/operations.md, "Logs").
//   text: "2026-11-28T20:00:00.123Z info agent: message job=j-1 step=fetch"
//   json: {"ts":"2026-11-28T20:00:00.123Z","level":"info","component":"agent","msg":"message","job":"j-1"}
// Whatever the bytes of a message or field (newlines, control characters, invalid UTF-8,
// quotes), an event is exactly one line: peer-supplied text cannot forge entries. Under
// journald (JOURNAL_STREAM names our stderr) each line starts with a syslog priority
// prefix "<N>", which journald strips and turns into the entry's priority.
// Callers never pass secrets; tokens and keys are logged only as fingerprints.
#include <chrono>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <utility>

namespace delegate::log {

enum class Level { debug, info, warn, error };
enum class Format { text, json };

// Structured fields of one event: name, value (names are [A-Za-z0-9_]; others are mapped
// to '_').
using Fields = std::initializer_list<std::pair<std::string_view, std::string_view>>;

void set_level(Level level);
void set_format(Format format);
[[nodiscard]] Level level();
[[nodiscard]] Format format();
[[nodiscard]] std::optional<Level> parse_level(std::string_view text);
[[nodiscard]] std::optional<Format> parse_format(std::string_view text);
[[nodiscard]] std::string_view name(Level level);
[[nodiscard]] std::string_view name(Format format);

void write(Level level, std::string_view component, std::string_view message, Fields fields = {});

// The line write() emits (without the journald prefix), newline included; for tests.
[[nodiscard]] std::string format_line(Format format, std::chrono::system_clock::time_point ts, Level level,
                                      std::string_view component, std::string_view message, Fields fields = {});

inline void debug(std::string_view c, std::string_view m, Fields f = {}) { write(Level::debug, c, m, f); }
inline void info(std::string_view c, std::string_view m, Fields f = {}) { write(Level::info, c, m, f); }
inline void warn(std::string_view c, std::string_view m, Fields f = {}) { write(Level::warn, c, m, f); }
inline void error(std::string_view c, std::string_view m, Fields f = {}) { write(Level::error, c, m, f); }

}  // namespace delegate::log
