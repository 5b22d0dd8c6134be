#include "agent/log.h"

#include <atomic>
#include <cstdio>
#include <ctime>

namespace nodeperf {
namespace {

LogLevel g_level = LogLevel::info;
std::atomic<std::FILE*> g_output{stderr};

std::string_view level_name(LogLevel level) {
  switch (level) {
    case LogLevel::debug: return "debug";
    case LogLevel::info: return "info";
    case LogLevel::warn: return "warn";
    case LogLevel::error: return "error";
  }
  return "?";
}

}  // namespace

void set_log_level(LogLevel level) { g_level = level; }
void set_log_output(std::FILE* out) { g_output = out; }
bool log_enabled(LogLevel level) { return level >= g_level; }

void log(LogLevel level, std::string_view message) {
  std::FILE* out = g_output;
  if (!log_enabled(level) || !out) return;
  timespec now{};
  clock_gettime(CLOCK_REALTIME, &now);
  tm utc{};
  gmtime_r(&now.tv_sec, &utc);
  char stamp[32];
  strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &utc);
  std::string line;
  line.reserve(message.size() + 64);
  line.append("ts=").append(stamp);
  char millis[24];
  std::snprintf(millis, sizeof millis, ".%03ldZ", now.tv_nsec / 1000000);
  line.append(millis).append(" level=").append(level_name(level)).append(" msg=\"");
  for (char c : message) {
    if (c == '"' || c == '\\') line.push_back('\\');
    line.push_back(c == '\n' ? ' ' : c);
  }
  line.append("\"\n");
  std::fwrite(line.data(), 1, line.size(), out);
}

void LogLimiter::log(LogLevel level, std::string_view message) {
  auto now = std::chrono::steady_clock::now();
  if (logged_once_ && now - last_ < interval_) {
    ++suppressed_;
    return;
  }
  std::string text(message);
  if (suppressed_ > 0) {
    text += " (" + std::to_string(suppressed_) + " similar messages suppressed)";
  }
  nodeperf::log(level, text);
  logged_once_ = true;
  last_ = now;
  suppressed_ = 0;
}

}  // namespace nodeperf
