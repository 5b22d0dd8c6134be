// The snapshot: every sample of one tick, immutable once published. Scrapes
// and views read a snapshot and never the sources, so their cost does not
// depend on what the node is doing.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/metric_table.h"

namespace nodeperf {

struct Label {
  std::string_view key;
  std::string_view value;
};

struct Sample {
  std::string labels;  // rendered and escaped: cpu="0",mode="user"
  double value;
  std::string_view suffix = {};  // "_bucket", "_sum", "_count" in histograms and summaries
};

struct Family {
  const MetricInfo* info;
  std::string name;  // the exposed name (depends on the compatibility mode)
  std::vector<Sample> samples;
};

// Appends the escaped form of a label value, as the text formats want it.
void append_escaped_label_value(std::string& out, std::string_view value);
// Appends labels as a Sample holds them: key="escaped value", comma-separated.
void append_labels(std::string& out, std::span<const Label> labels);

// Collects the samples of one tick. Collectors add to it; the agent turns it
// into a Snapshot.
class SampleSink {
 public:
  void add(const MetricInfo& metric, double value, std::initializer_list<Label> labels = {}) {
    add(metric, value, std::span<const Label>(labels.begin(), labels.size()));
  }
  // `suffix` must outlive the snapshot (a string literal).
  void add(const MetricInfo& metric, double value, std::span<const Label> labels, std::string_view suffix = {});
  // Labels already rendered as append_labels does: for samples that share
  // most of their labels, rendered once (histogram buckets).
  void add_rendered(const MetricInfo& metric, double value, std::string labels, std::string_view suffix = {});
  size_t series() const;

 private:
  friend class Snapshot;
  std::vector<Family> families_;
  // Index of the family per MetricInfo, for the common case of consecutive
  // samples of one metric.
  const MetricInfo* last_metric_ = nullptr;
  size_t last_index_ = 0;
};

class Snapshot {
 public:
  // Sorts families by exposed name; samples keep their collection order.
  Snapshot(SampleSink&& sink, bool node_exporter_compat, std::chrono::system_clock::time_point taken);

  const std::vector<Family>& families() const { return families_; }
  std::chrono::system_clock::time_point taken() const { return taken_; }
  const Family* find(std::string_view name) const;
  size_t series() const;

  // Rendered bodies are cached per snapshot: the first scrape of a tick
  // renders, later ones (several Prometheus replicas, top) reuse it. The
  // cache is filled from the event loop thread only.
  enum class Body { prometheus_text, openmetrics, prometheus_text_gzip, openmetrics_gzip, count };
  const std::string& body(Body which) const;

 private:
  std::vector<Family> families_;
  std::chrono::system_clock::time_point taken_;
  mutable std::optional<std::string> bodies_[static_cast<size_t>(Body::count)];
};

}  // namespace nodeperf
