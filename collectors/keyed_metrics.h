// For files of named values (meminfo, vmstat, snmp): finds the metric whose
// name embeds a key, e.g. "Active_anon" in nodeperf_memory_Active_anon_bytes.
// Keys without a metric are not exported, so the metric table stays the one
// list of what nodeperf exports.
#pragma once

#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "agent/metric_table.h"

namespace nodeperf {

class KeyedMetrics {
 public:
  // Key = metric name without `prefix` and without a trailing "_bytes".
  KeyedMetrics(std::span<const MetricInfo> metrics, std::string_view prefix) {
    for (const MetricInfo& m : metrics) {
      if (!m.name.starts_with(prefix)) continue;
      std::string_view key = m.name.substr(prefix.size());
      if (key.ends_with("_bytes")) key.remove_suffix(6);
      by_key_.emplace(key, &m);
    }
  }
  const MetricInfo* find(std::string_view key) const {
    auto it = by_key_.find(key);
    return it == by_key_.end() ? nullptr : it->second;
  }

 private:
  std::unordered_map<std::string_view, const MetricInfo*> by_key_;
};

}  // namespace nodeperf
