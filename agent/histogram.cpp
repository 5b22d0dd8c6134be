#include "agent/histogram.h"

#include <algorithm>
#include <cmath>
#include <iterator>
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
    ClassicBound b{std::ldexp(1.0, k), static_cast<uint32_t>(k - NP_HIST_MIN_LOG2) * per_octave - 1, {}};
    append_value(b.le, b.seconds);
    classic_.push_back(std::move(b));
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
  double result;
  window_quantiles({&q, 1}, {&result, 1});
  return result;
}

void LatencyHistogram::window_quantiles(std::span<const double> qs, std::span<double> out) const {
  std::fill(out.begin(), out.end(), std::numeric_limits<double>::quiet_NaN());
  if (window_count_ == 0) return;
  auto middle = [&](uint32_t b) {
    double upper = layout_->upper_bound_seconds(b);
    if (std::isinf(upper)) return layout_->lower_bound_seconds(b);  // past 256 s: say 256 s
    double lower = b == 0 ? upper / std::exp2(1.0 / (1u << layout_->schema())) : layout_->lower_bound_seconds(b);
    return std::sqrt(lower * upper);
  };
  uint64_t seen = 0;  // events in buckets [0, b)
  uint32_t b = 0;
  for (size_t i = 0; i < qs.size(); ++i) {
    // The rank of the quantile among the window's events, 1-based.
    auto rank = static_cast<uint64_t>(std::ceil(qs[i] * static_cast<double>(window_count_)));
    rank = std::clamp<uint64_t>(rank, 1, window_count_);
    while (seen < rank && b < window_.size()) seen += window_[b++];
    if (seen < rank) return;  // cannot happen: the buckets add up to window_count_
    out[i] = middle(b - 1);
  }
}

namespace {

// `rendered` (a series' labels, maybe none) and one more label whose value
// needs no escaping, in one allocation.
std::string plus_label(std::string_view rendered, std::string_view key, std::string_view value) {
  std::string s;
  s.reserve(rendered.size() + key.size() + value.size() + 4);
  if (!rendered.empty()) s.append(rendered) += ',';
  s.append(key).append("=\"").append(value) += '"';
  return s;
}

// The summary, with the series' labels rendered by the caller.
void emit_summary_rendered(SampleSink& out, const MetricInfo& window, std::string rendered, const LatencyHistogram& h) {
  static constexpr double kQuantiles[] = {0.5, 0.95, 0.99};
  static constexpr std::string_view kNames[] = {"0.5", "0.95", "0.99"};
  double values[std::size(kQuantiles)];
  h.window_quantiles(kQuantiles, values);
  for (size_t i = 0; i < std::size(kQuantiles); ++i) {
    out.add_rendered(window, values[i], plus_label(rendered, "quantile", kNames[i]));
  }
  out.add_rendered(window, h.window_sum_seconds(), rendered, "_sum");
  out.add_rendered(window, static_cast<double>(h.window_count()), std::move(rendered), "_count");
}

}  // namespace

void emit_latency(SampleSink& out, const LatencyFamilies& families, std::span<const Label> labels,
                  const LatencyHistogram& h, const BucketLayout& layout) {
  std::string rendered;
  append_labels(rendered, labels);
  // Classic histogram: cumulative counts at every power of two.
  const auto& counts = h.cumulative();
  uint64_t running = 0;
  uint32_t next = 0;
  for (const ClassicBound& b : layout.classic_bounds()) {
    while (next <= b.last_bucket) running += counts[next++];
    out.add_rendered(families.histogram, static_cast<double>(running), plus_label(rendered, "le", b.le), "_bucket");
  }
  out.add_rendered(families.histogram, static_cast<double>(h.count()), plus_label(rendered, "le", "+Inf"), "_bucket");
  out.add_rendered(families.histogram, h.sum_seconds(), rendered, "_sum");
  out.add_rendered(families.histogram, static_cast<double>(h.count()), rendered, "_count");
  emit_summary_rendered(out, families.window, std::move(rendered), h);
}

void emit_window_summary(SampleSink& out, const MetricInfo& window, std::span<const Label> labels,
                         const LatencyHistogram& h) {
  std::string rendered;
  append_labels(rendered, labels);
  emit_summary_rendered(out, window, std::move(rendered), h);
}

}  // namespace nodeperf
