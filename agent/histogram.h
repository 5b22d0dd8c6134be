// Latency histograms: the bucket layout shared with the BPF programs, and
// the cumulative + sliding-window histogram the agent keeps per series.
#pragma once

#include <linux/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "agent/metric_table.h"
#include "agent/snapshot.h"
#include "bpf/histogram.h"

namespace nodeperf {

// A bound of the classic histogram, with its `le` label value formatted once
// (by append_value) rather than on every tick.
struct ClassicBound {
  double seconds;
  uint32_t last_bucket;  // the last native bucket at or below the bound
  std::string le;
};

class BucketLayout {
 public:
  explicit BucketLayout(int schema = NP_HIST_DEFAULT_SCHEMA);

  int schema() const { return schema_; }
  // Finite buckets; index finite_buckets() is the overflow (+Inf) bucket.
  uint32_t finite_buckets() const { return finite_; }
  uint32_t slots() const { return finite_ + 1; }
  // floor(upper bound * 1e9) per bucket, padded with ~0: what the BPF side searches.
  const std::array<__u64, NP_HIST_TABLE>& thresholds_ns() const { return thresholds_; }
  uint32_t index(uint64_t ns) const { return np_bucket_index(thresholds_.data(), ns); }
  double upper_bound_seconds(uint32_t bucket) const;
  double lower_bound_seconds(uint32_t bucket) const;
  // The buckets ending at 2^k seconds, k = -20..8: the `le` bounds of the
  // classic histogram, the same whatever the schema.
  const std::vector<ClassicBound>& classic_bounds() const { return classic_; }

 private:
  int schema_;
  uint32_t finite_;
  std::array<__u64, NP_HIST_TABLE> thresholds_;
  std::vector<ClassicBound> classic_;
};

// Ticks in the sliding window of the *_window_seconds summaries.
inline size_t window_ticks(std::chrono::milliseconds window, std::chrono::milliseconds tick) {
  return static_cast<size_t>(window / tick);
}

// Cumulative counts since start, and the counts of the last `window` ticks.
class LatencyHistogram {
 public:
  LatencyHistogram(const BucketLayout& layout, size_t window_ticks);

  // This tick's new events in one bucket.
  void add(uint32_t bucket, uint64_t count, uint64_t sum_ns);
  // Closes the tick: its events enter the window, the oldest tick leaves it.
  void end_tick();

  uint64_t count() const { return count_; }
  double sum_seconds() const { return static_cast<double>(sum_ns_) * 1e-9; }
  uint64_t window_count() const { return window_count_; }
  double window_sum_seconds() const { return static_cast<double>(window_sum_ns_) * 1e-9; }
  const std::vector<uint64_t>& cumulative() const { return cumulative_; }
  // The q-quantile of the window: the geometric middle of the bucket that
  // holds it, so within a factor 2^(1/2^(schema+1)) of the true value
  // (+-4.4% at schema 3). NaN when the window is empty.
  double window_quantile(double q) const;
  // window_quantile of each of the ascending qs, in one pass over the buckets.
  void window_quantiles(std::span<const double> qs, std::span<double> out) const;
  bool idle_for_window() const { return window_count_ == 0; }

 private:
  struct Tick {
    std::vector<std::pair<uint32_t, uint64_t>> counts;
    uint64_t sum_ns = 0;
  };
  const BucketLayout* layout_;
  std::vector<uint64_t> cumulative_, window_;
  uint64_t count_ = 0, sum_ns_ = 0, window_count_ = 0, window_sum_ns_ = 0;
  std::vector<Tick> ring_;
  size_t head_ = 0;
  Tick current_;
};

// The two families of a latency metric: X_seconds (classic histogram) and
// X_window_seconds (summary of p50, p95, p99 over the window).
struct LatencyFamilies {
  const MetricInfo& histogram;
  const MetricInfo& window;
};

void emit_latency(SampleSink& out, const LatencyFamilies& families, std::span<const Label> labels,
                  const LatencyHistogram& h, const BucketLayout& layout);
// The summary alone: p50, p95, p99, _sum and _count over the window.
void emit_window_summary(SampleSink& out, const MetricInfo& window, std::span<const Label> labels,
                         const LatencyHistogram& h);

}  // namespace nodeperf
