// Leaves out devices whose name matches a regular expression. The verdict is
// cached per name: device names are few and stable, regex matching is not cheap.
#pragma once

#include <regex>
#include <string>
#include <unordered_map>

namespace nodeperf {

class DeviceFilter {
 public:
  // An empty pattern excludes nothing. The pattern was validated with the config.
  explicit DeviceFilter(const std::string& exclude_pattern) : enabled_(!exclude_pattern.empty()) {
    if (enabled_) exclude_ = std::regex(exclude_pattern, std::regex::ECMAScript | std::regex::optimize);
  }

  bool excluded(const std::string& device) {
    if (!enabled_) return false;
    if (verdicts_.size() > 4096) verdicts_.clear();  // bound it under device churn
    auto [it, inserted] = verdicts_.try_emplace(device, false);
    if (inserted) it->second = std::regex_search(device, exclude_);
    return it->second;
  }

 private:
  bool enabled_;
  std::regex exclude_;
  std::unordered_map<std::string, bool> verdicts_;
};

}  // namespace nodeperf
