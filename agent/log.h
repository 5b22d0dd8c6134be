// Logging: one logfmt line per event on stderr, which journald, kubectl logs
// and a terminal all read well.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <string_view>

namespace nodeperf {

enum class LogLevel { debug, info, warn, error };

void set_log_level(LogLevel level);
// Where log lines go: stderr by default; nullptr discards them (nodeperf top
// runs an agent in-process and keeps its lines off the screen).
void set_log_output(std::FILE* out);
bool log_enabled(LogLevel level);
void log(LogLevel level, std::string_view message);

inline void log_debug(std::string_view m) { log(LogLevel::debug, m); }
inline void log_info(std::string_view m) { log(LogLevel::info, m); }
inline void log_warn(std::string_view m) { log(LogLevel::warn, m); }
inline void log_error(std::string_view m) { log(LogLevel::error, m); }

// Lets a repeating problem through once per interval and counts what it held
// back, so a broken file read every tick cannot flood the log.
class LogLimiter {
 public:
  explicit LogLimiter(std::chrono::seconds interval = std::chrono::minutes(10)) : interval_(interval) {}
  void log(LogLevel level, std::string_view message);

 private:
  std::chrono::seconds interval_;
  std::chrono::steady_clock::time_point last_{};
  bool logged_once_ = false;
  unsigned long suppressed_ = 0;
};

}  // namespace nodeperf
