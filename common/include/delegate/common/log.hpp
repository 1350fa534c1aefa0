#pragma once
// Minimal structured logger: one line per event on stderr,
// "2026-11-28T20:00:00.123Z level component: message". Callers never pass secrets;
// tokens and keys are logged only as fingerprints.
#include <string_view>

namespace delegate::log {

enum class Level { debug, info, warn, error };

void set_level(Level level);
void write(Level level, std::string_view component, std::string_view message);

inline void debug(std::string_view c, std::string_view m) { write(Level::debug, c, m); }
inline void info(std::string_view c, std::string_view m) { write(Level::info, c, m); }
inline void warn(std::string_view c, std::string_view m) { write(Level::warn, c, m); }
inline void error(std::string_view c, std::string_view m) { write(Level::error, c, m); }

}  // namespace delegate::log
