#include "cli/top_format.h"

#include <cmath>
#include <cstdio>
#include <ctime>

namespace nodeperf::top {
namespace {

// One decimal below 100 (after scaling), none above: "1.5K", "12.3k", "512", "300M".
std::string scaled(double value, double base, const char* const* prefixes, int count, const char* unit) {
  int i = 0;
  double v = std::fabs(value);
  while (v >= 999.5 && i + 1 < count) {
    v /= base;
    ++i;
  }
  char buf[32];
  const char* sign = value < 0 ? "-" : "";
  if (v < 99.95 && (i > 0 || v != std::floor(v))) {
    std::snprintf(buf, sizeof buf, "%s%.1f%s%s", sign, v, prefixes[i], unit);
  } else {
    std::snprintf(buf, sizeof buf, "%s%.0f%s%s", sign, v, prefixes[i], unit);
  }
  return buf;
}

constexpr const char* kBinary[] = {"", "K", "M", "G", "T", "P"};
constexpr const char* kDecimal[] = {"", "k", "M", "G", "T", "P"};

}  // namespace

std::string pad_left(const std::string& s, int width) {
  if (width <= 0) return s;
  auto w = static_cast<size_t>(width);
  if (s.size() >= w) return s.substr(0, w);
  return std::string(w - s.size(), ' ') + s;
}

std::string pad_right(const std::string& s, int width) {
  if (width <= 0) return s;
  auto w = static_cast<size_t>(width);
  if (s.size() >= w) return s.substr(0, w);
  return s + std::string(w - s.size(), ' ');
}

std::string format_bytes(double bytes, int width) {
  if (!std::isfinite(bytes)) return pad_left("-", width);
  return pad_left(scaled(bytes, 1024, kBinary, 6, bytes < 999.5 ? "B" : ""), width);
}

std::string format_byte_rate(double bytes_per_second, int width) {
  if (!std::isfinite(bytes_per_second)) return pad_left("-", width);
  return pad_left(scaled(bytes_per_second, 1024, kBinary, 6, ""), width);
}

std::string format_rate(double per_second, int width) {
  if (!std::isfinite(per_second)) return pad_left("-", width);
  return pad_left(scaled(per_second, 1000, kDecimal, 6, ""), width);
}

std::string format_percent(double percent, int width) {
  if (!std::isfinite(percent)) return pad_left("-", width);
  char buf[32];
  if (std::fabs(percent) >= 99.95) {
    std::snprintf(buf, sizeof buf, "%.0f%%", percent);
  } else {
    std::snprintf(buf, sizeof buf, "%.1f%%", percent);
  }
  return pad_left(buf, width);
}

std::string format_duration(double seconds, int width) {
  if (!std::isfinite(seconds)) return pad_left("-", width);
  struct Unit {
    double scale;
    const char* name;
  };
  constexpr Unit kUnits[] = {{1e-9, "ns"}, {1e-6, "us"}, {1e-3, "ms"}, {1, "s"}};
  int i = 0;
  while (i + 1 < 4 && std::fabs(seconds) >= kUnits[i + 1].scale * 0.9995) ++i;
  double v = seconds / kUnits[i].scale;
  char buf[32];
  std::snprintf(buf, sizeof buf, std::fabs(v) < 9.95 && i > 0 ? "%.1f%s" : "%.0f%s", v, kUnits[i].name);
  return pad_left(buf, width);
}

std::string format_number(double value, int width) {
  if (!std::isfinite(value)) return pad_left("-", width);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", value);
  std::string s = buf;
  if (width > 0 && s.size() > static_cast<size_t>(width)) return format_rate(value, width);
  return pad_left(s, width);
}

std::string format_clock(double unix_seconds) {
  if (!std::isfinite(unix_seconds)) return "-";
  time_t t = static_cast<time_t>(unix_seconds);
  tm local{};
  localtime_r(&t, &local);
  char buf[32];
  strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &local);
  return buf;
}

std::string format_age(double seconds) {
  if (!std::isfinite(seconds)) return "-";
  long s = std::lround(std::fabs(seconds));
  char buf[32];
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%lds", s);
  } else if (s < 3600) {
    std::snprintf(buf, sizeof buf, "%ldm%02lds", s / 60, s % 60);
  } else {
    std::snprintf(buf, sizeof buf, "%ldh%02ldm", s / 3600, s / 60 % 60);
  }
  return buf;
}

}  // namespace nodeperf::top
