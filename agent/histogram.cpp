#include "agent/histogram.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <stdexcept>

#include "exporters/exposition.h"

namespace nodeperf {

BucketLayout::BucketLayout(int schema) : schema_(schema) {
  if (schema < 0 || schema > NP_HIST_MAX_SCHEMA) {
    throw std::invalid_argument("histogram schema must be 0 to " + std::to_string(NP_HIST_MAX_SCHEMA));
  }
  const uint32_t per_octave = 1u << schema;
  finite_ = static_cast<uint32_t>(NP_HIST_MAX_LOG2 - NP_HIST_MIN_LOG2) * per_octave;
  thresholds_.fill(~0ull);
  for (uint32_t i = 0; i < finite_; ++i) {
    // floor(2^e * 1e9): long double carries 64 bits of mantissa, and the
    // unit test checks every entry with exact integer arithmetic.
    long double e = static_cast<long double>(NP_HIST_MIN_LOG2) + static_cast<long double>(i + 1) / per_octave;
    thresholds_[i] = static_cast<uint64_t>(std::floor(std::exp2(e) * 1e9L));
  }
  for (int k = -20; k <= NP_HIST_MAX_LOG2; ++k) {
    classic_.emplace_back(std::ldexp(1.0, k), static_cast<uint32_t>(k - NP_HIST_MIN_LOG2) * per_octave - 1);
  }
}

double BucketLayout::upper_bound_seconds(uint32_t bucket) const {
  if (bucket >= finite_) return std::numeric_limits<double>::infinity();
  return std::exp2(NP_HIST_MIN_LOG2 + static_cast<double>(bucket + 1) / (1u << schema_));
}

double BucketLayout::lower_bound_seconds(uint32_t bucket) const {
  if (bucket == 0) return 0;
  return upper_bound_seconds(bucket - 1);
}

LatencyHistogram::LatencyHistogram(const BucketLayout& layout, size_t window_ticks)
    : layout_(&layout),
      cumulative_(layout.slots()),
      window_(layout.slots()),
      ring_(std::max<size_t>(window_ticks, 1)) {}

void LatencyHistogram::add(uint32_t bucket, uint64_t count, uint64_t sum_ns) {
  if (count == 0) return;
  if (bucket >= cumulative_.size()) bucket = static_cast<uint32_t>(cumulative_.size() - 1);
  cumulative_[bucket] += count;
  count_ += count;
  sum_ns_ += sum_ns;
  current_.counts.emplace_back(bucket, count);
  current_.sum_ns += sum_ns;
}

void LatencyHistogram::end_tick() {
  Tick& oldest = ring_[head_];
  for (auto [bucket, n] : oldest.counts) {
    window_[bucket] -= n;
    window_count_ -= n;
  }
  window_sum_ns_ -= oldest.sum_ns;
  for (auto [bucket, n] : current_.counts) {
    window_[bucket] += n;
    window_count_ += n;
  }
  window_sum_ns_ += current_.sum_ns;
  oldest = std::move(current_);
  current_ = Tick{};
  head_ = (head_ + 1) % ring_.size();
}

double LatencyHistogram::window_quantile(double q) const {
  if (window_count_ == 0) return std::numeric_limits<double>::quiet_NaN();
  // The rank of the quantile among the window's events, 1-based.
  auto rank = static_cast<uint64_t>(std::ceil(q * static_cast<double>(window_count_)));
  rank = std::clamp<uint64_t>(rank, 1, window_count_);
  uint64_t seen = 0;
  for (uint32_t b = 0; b < window_.size(); ++b) {
    seen += window_[b];
    if (seen < rank) continue;
    double upper = layout_->upper_bound_seconds(b);
    if (std::isinf(upper)) return layout_->lower_bound_seconds(b);  // past 256 s: say 256 s
    double lower = b == 0 ? upper / std::exp2(1.0 / (1u << layout_->schema())) : layout_->lower_bound_seconds(b);
    return std::sqrt(lower * upper);
  }
  return std::numeric_limits<double>::quiet_NaN();
}

void emit_latency(SampleSink& out, const LatencyFamilies& families, std::span<const Label> labels,
                  const LatencyHistogram& h, const BucketLayout& layout) {
  std::vector<Label> with(labels.begin(), labels.end());
  with.push_back({});
  // Classic histogram: cumulative counts at every power of two.
  const auto& counts = h.cumulative();
  uint64_t running = 0;
  uint32_t next = 0;
  std::string le;
  for (auto [bound, last] : layout.classic_bounds()) {
    while (next <= last) running += counts[next++];
    le.clear();
    append_value(le, bound);
    with.back() = {"le", le};
    out.add(families.histogram, static_cast<double>(running), with, "_bucket");
  }
  with.back() = {"le", "+Inf"};
  out.add(families.histogram, static_cast<double>(h.count()), with, "_bucket");
  out.add(families.histogram, h.sum_seconds(), labels, "_sum");
  out.add(families.histogram, static_cast<double>(h.count()), labels, "_count");
  emit_window_summary(out, families.window, labels, h);
}

void emit_window_summary(SampleSink& out, const MetricInfo& window, std::span<const Label> labels,
                         const LatencyHistogram& h) {
  std::vector<Label> with(labels.begin(), labels.end());
  with.push_back({});
  static constexpr std::pair<double, std::string_view> kQuantiles[] = {{0.5, "0.5"}, {0.95, "0.95"}, {0.99, "0.99"}};
  for (auto [q, name] : kQuantiles) {
    with.back() = {"quantile", name};
    out.add(window, h.window_quantile(q), with);
  }
  out.add(window, h.window_sum_seconds(), labels, "_sum");
  out.add(window, static_cast<double>(h.window_count()), labels, "_count");
}

}  // namespace nodeperf
