#include <delegate/common/log.hpp>

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include <delegate/common/time.hpp>

namespace delegate::log {
namespace {
std::atomic<Level> g_level{Level::info};
std::mutex g_mu;

const char* name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "?";
}
}  // namespace

void set_level(Level level) { g_level = level; }

void write(Level level, std::string_view component, std::string_view message) {
  if (level < g_level.load()) return;
  std::string line = format_rfc3339_ms(std::chrono::system_clock::now());
  line += ' ';
  line += name(level);
  line += ' ';
  line += component;
  line += ": ";
  // One event, one line: control characters from peer-supplied text cannot forge entries.
  for (char c : message) line += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  line += '\n';
  std::lock_guard lock(g_mu);
  std::fwrite(line.data(), 1, line.size(), stderr);
  std::fflush(stderr);
}

}  // namespace delegate::log
