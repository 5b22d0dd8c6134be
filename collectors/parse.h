// Small, allocation-free helpers for the line formats of procfs.
#pragma once

#include <charconv>
#include <cmath>
#include <cstdint>
#include <optional>
#include <string_view>

namespace nodeperf {

// Splits text into lines; the last line may lack its newline.
class Lines {
 public:
  explicit Lines(std::string_view text) : rest_(text) {}
  bool next(std::string_view& line) {
    if (rest_.empty()) return false;
    size_t nl = rest_.find('\n');
    line = rest_.substr(0, nl);
    rest_ = nl == std::string_view::npos ? std::string_view() : rest_.substr(nl + 1);
    return true;
  }

 private:
  std::string_view rest_;
};

// Splits a line into fields separated by runs of spaces or tabs. A plain
// loop: find_first_of(" \t") calls memchr once per character, and this is
// the inner loop of every parser.
class Fields {
 public:
  explicit Fields(std::string_view line) : rest_(line) {}
  bool next(std::string_view& field) {
    const char* p = rest_.data();
    const char* end = p + rest_.size();
    while (p != end && is_blank(*p)) ++p;
    if (p == end) {
      rest_ = {};
      return false;
    }
    const char* start = p;
    while (p != end && !is_blank(*p)) ++p;
    field = std::string_view(start, static_cast<size_t>(p - start));
    rest_ = std::string_view(p, static_cast<size_t>(end - p));
    return true;
  }
  std::string_view rest() const { return rest_; }

 private:
  static bool is_blank(char c) { return c == ' ' || c == '\t'; }
  std::string_view rest_;
};

// The whole field as an unsigned decimal, or nullopt (sign, junk, overflow).
inline std::optional<uint64_t> parse_u64(std::string_view s) {
  uint64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return v;
}

// The whole field as a finite decimal number, or nullopt.
inline std::optional<double> parse_double(std::string_view s) {
  double v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v, std::chars_format::fixed);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty() || !std::isfinite(v)) return std::nullopt;
  return v;
}

inline std::string_view trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return {};
  size_t e = s.find_last_not_of(" \t");
  return s.substr(b, e - b + 1);
}

}  // namespace nodeperf
