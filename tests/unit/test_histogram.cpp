// The bucket layout and the histogram engine. The thresholds are checked with
// exact integer arithmetic, not floating point: floor(2^e * 1e9) = T exactly
// when T^n <= 2^(n e) * 10^(9n) < (T+1)^n, with n = 2^schema.
#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <random>

#include "agent/histogram.h"
#include "exporters/exposition.h"

namespace {

// Just enough of an unsigned big integer for the check above.
struct BigUint {
  std::vector<uint32_t> limbs{1};
  void mul(uint64_t m) {
    unsigned __int128 carry = 0;
    for (uint32_t& l : limbs) {
      unsigned __int128 v = static_cast<unsigned __int128>(l) * m + carry;
      l = static_cast<uint32_t>(v);
      carry = v >> 32;
    }
    while (carry) {
      limbs.push_back(static_cast<uint32_t>(carry));
      carry >>= 32;
    }
  }
  friend bool operator<=(const BigUint& a, const BigUint& b) {
    if (a.limbs.size() != b.limbs.size()) return a.limbs.size() < b.limbs.size();
    for (size_t i = a.limbs.size(); i-- > 0;) {
      if (a.limbs[i] != b.limbs[i]) return a.limbs[i] < b.limbs[i];
    }
    return true;
  }
};

BigUint power(uint64_t base, unsigned exp) {
  BigUint b;
  for (unsigned i = 0; i < exp; ++i) b.mul(base);
  return b;
}

}  // namespace

TEST_CASE("bucket thresholds are floor(bound * 1e9), exactly") {
  for (int schema = 0; schema <= NP_HIST_MAX_SCHEMA; ++schema) {
    nodeperf::BucketLayout layout(schema);
    const unsigned n = 1u << schema;
    REQUIRE(layout.finite_buckets() == (NP_HIST_MAX_LOG2 - NP_HIST_MIN_LOG2) * n);
    REQUIRE(layout.finite_buckets() < NP_HIST_TABLE);  // room for the ~0 padding
    for (uint32_t i = 0; i < layout.finite_buckets(); ++i) {
      uint64_t t = layout.thresholds_ns()[i];
      // bound^n = 2^k * 10^(9n), k = n * MIN + i + 1
      int k = static_cast<int>(n) * NP_HIST_MIN_LOG2 + static_cast<int>(i) + 1;
      BigUint x = power(10, 9 * n), lo = power(t, n), hi = power(t + 1, n);
      if (k >= 0) {
        for (int j = 0; j < k; ++j) x.mul(2);
      } else {
        for (int j = 0; j < -k; ++j) {
          lo.mul(2);
          hi.mul(2);
        }
      }
      INFO("schema " << schema << " bucket " << i << " threshold " << t);
      CHECK(lo <= x);
      CHECK_FALSE(hi <= x);
    }
    for (size_t i = layout.finite_buckets(); i < NP_HIST_TABLE; ++i) CHECK(layout.thresholds_ns()[i] == ~0ull);
  }
}

TEST_CASE("bucket index: boundaries, 0, 1, u64 max, monotonic") {
  nodeperf::BucketLayout layout(3);
  const auto& t = layout.thresholds_ns();
  CHECK(layout.index(0) == 0);
  CHECK(layout.index(1) == 0);
  CHECK(layout.index(t[0]) == 0);
  CHECK(layout.index(~0ull) == layout.finite_buckets());
  for (uint32_t i = 0; i < layout.finite_buckets(); ++i) {
    INFO("bucket " << i);
    CHECK(layout.index(t[i]) == i);      // upper bounds are inclusive, as in Prometheus
    CHECK(layout.index(t[i] + 1) == i + 1);
    if (i > 0) CHECK(layout.index(t[i - 1] + 1) == i);
  }
  // Powers of two of a second land exactly on the classic le bounds.
  CHECK(layout.index(1'000'000'000) == layout.classic_bounds()[20].last_bucket);
  CHECK(layout.index(1'000'000'001) == layout.classic_bounds()[20].last_bucket + 1);
  CHECK(layout.classic_bounds()[20].seconds == 1.0);
  std::mt19937_64 rng(42);
  uint64_t prev_value = 0;
  uint32_t prev_index = 0;
  std::vector<uint64_t> values(20000);
  for (auto& v : values) v = rng() >> (rng() % 64);
  std::sort(values.begin(), values.end());
  for (uint64_t v : values) {
    uint32_t i = layout.index(v);
    CHECK(i >= prev_index);
    if (v > prev_value) prev_index = i;
    prev_value = v;
    // The value is inside its bucket's bounds, in seconds.
    double s = static_cast<double>(v) * 1e-9;
    if (i < layout.finite_buckets()) CHECK(s <= layout.upper_bound_seconds(i) * (1 + 1e-12));
    if (i > 0) CHECK(s > layout.lower_bound_seconds(i) * (1 - 1e-12));
  }
}

TEST_CASE("classic le text is formatted once, as append_value would") {
  for (int schema = 0; schema <= NP_HIST_MAX_SCHEMA; ++schema) {
    nodeperf::BucketLayout layout(schema);
    REQUIRE(layout.classic_bounds().size() == 29);  // 2^-20 .. 2^8 s
    for (const nodeperf::ClassicBound& b : layout.classic_bounds()) {
      std::string expected;
      nodeperf::append_value(expected, b.seconds);
      INFO("schema " << schema << " le " << b.seconds);
      CHECK(b.le == expected);
      CHECK(layout.upper_bound_seconds(b.last_bucket) == b.seconds);
    }
  }
}

TEST_CASE("window: events stay for window ticks, cumulative forever") {
  nodeperf::BucketLayout layout(3);
  nodeperf::LatencyHistogram h(layout, 3);
  h.add(layout.index(1000), 5, 5000);
  h.end_tick();
  CHECK(h.window_count() == 5);
  CHECK(h.count() == 5);
  h.end_tick();
  h.end_tick();
  CHECK(h.window_count() == 5);
  h.end_tick();  // the first tick leaves a 3-tick window
  CHECK(h.window_count() == 0);
  CHECK(std::isnan(h.window_quantile(0.5)));
  CHECK(h.count() == 5);
  CHECK(h.sum_seconds() == Approx(5e-6));
  CHECK(h.cumulative()[layout.index(1000)] == 5);
}

TEST_CASE("window quantiles are within the schema's error bound") {
  for (int schema : {2, 3, 4}) {
    nodeperf::BucketLayout layout(schema);
    nodeperf::LatencyHistogram h(layout, 10);
    std::mt19937_64 rng(schema);
    std::lognormal_distribution<double> dist(std::log(200e3), 1.5);  // ns, heavy tail
    std::vector<uint64_t> events(50000);
    for (auto& e : events) {
      e = static_cast<uint64_t>(dist(rng)) + 1;
      h.add(layout.index(e), 1, e);
    }
    h.end_tick();
    std::sort(events.begin(), events.end());
    const double bound = std::exp2(1.0 / (1u << (schema + 1)));  // half a bucket, geometrically
    for (double q : {0.5, 0.95, 0.99}) {
      auto rank = static_cast<size_t>(std::ceil(q * static_cast<double>(events.size())));
      double exact = static_cast<double>(events[rank - 1]) * 1e-9;
      double got = h.window_quantile(q);
      INFO("schema " << schema << " q " << q << " exact " << exact << " got " << got);
      CHECK(got / exact <= bound * (1 + 1e-9));
      CHECK(exact / got <= bound * (1 + 1e-9));
    }
    // One pass for several quantiles gives what one pass each gives.
    const double qs[] = {0.0, 0.5, 0.95, 0.99, 1.0};
    double got[std::size(qs)];
    h.window_quantiles(qs, got);
    for (size_t i = 0; i < std::size(qs); ++i) CHECK(got[i] == h.window_quantile(qs[i]));
  }
}

TEST_CASE("classic histogram buckets are cumulative counts at powers of two") {
  nodeperf::BucketLayout layout(3);
  nodeperf::LatencyHistogram h(layout, 60);
  for (uint64_t ns : {500ull, 1'000'000'000ull, 1'000'000'001ull, 3'000'000'000ull, 1'000'000'000'000ull}) {
    h.add(layout.index(ns), 1, ns);
  }
  h.end_tick();
  static constexpr nodeperf::MetricInfo hist{"x_seconds", nodeperf::MetricType::histogram, "", "", "h."};
  static constexpr nodeperf::MetricInfo window{"x_window_seconds", nodeperf::MetricType::summary, "", "", "w."};
  nodeperf::SampleSink sink;
  nodeperf::emit_latency(sink, {hist, window}, {}, h, layout);
  nodeperf::Snapshot snap(std::move(sink), false, {});
  const nodeperf::Family* f = snap.find("x_seconds");
  REQUIRE(f);
  auto bucket = [&](std::string_view le) {
    for (const auto& s : f->samples) {
      if (s.suffix == "_bucket" && s.labels == "le=\"" + std::string(le) + "\"") return s.value;
    }
    FAIL("no bucket le=" << le);
    return -1.0;
  };
  CHECK(bucket("9.5367431640625e-07") == 1);  // 500 ns
  CHECK(bucket("1") == 2);                    // 1 s is inside le="1"
  CHECK(bucket("2") == 3);
  CHECK(bucket("4") == 4);
  CHECK(bucket("256") == 4);  // 1000 s is past the last bound
  CHECK(bucket("+Inf") == 5);
  const nodeperf::Family* w = snap.find("x_window_seconds");
  REQUIRE(w);
  CHECK(w->samples.size() == 5);  // three quantiles, _sum, _count
}

TEST_CASE("histogram and summary labels render as SampleSink::add renders them") {
  nodeperf::BucketLayout layout(3);
  nodeperf::LatencyHistogram h(layout, 60);
  h.add(layout.index(2000), 3, 6000);
  h.end_tick();
  static constexpr nodeperf::MetricInfo hist{"x_seconds", nodeperf::MetricType::histogram, "", "", "h."};
  static constexpr nodeperf::MetricInfo window{"x_window_seconds", nodeperf::MetricType::summary, "", "", "w."};
  const nodeperf::Label labels[] = {{"device", "a\"b\\c"}, {"op", "read"}};  // values that need escaping
  nodeperf::SampleSink sink;
  nodeperf::emit_latency(sink, {hist, window}, labels, h, layout);
  nodeperf::Snapshot snap(std::move(sink), false, {});
  // What the samples looked like when every one went through add() with its own labels.
  std::vector<std::string> expected;
  auto expect = [&](std::initializer_list<nodeperf::Label> extra) {
    std::vector<nodeperf::Label> all(std::begin(labels), std::end(labels));
    all.insert(all.end(), extra);
    expected.emplace_back();
    nodeperf::append_labels(expected.back(), all);
  };
  for (const auto& b : layout.classic_bounds()) expect({{"le", b.le}});
  expect({{"le", "+Inf"}});
  expect({});  // _sum
  expect({});  // _count
  const nodeperf::Family* f = snap.find("x_seconds");
  REQUIRE(f);
  REQUIRE(f->samples.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) CHECK(f->samples[i].labels == expected[i]);
  CHECK(f->samples.front().labels == R"(device="a\"b\\c",op="read",le="9.5367431640625e-07")");
  const nodeperf::Family* w = snap.find("x_window_seconds");
  REQUIRE(w);
  expected.clear();
  for (const char* q : {"0.5", "0.95", "0.99"}) expect({{"quantile", q}});
  expect({});  // _sum
  expect({});  // _count
  REQUIRE(w->samples.size() == expected.size());
  for (size_t i = 0; i < expected.size(); ++i) CHECK(w->samples[i].labels == expected[i]);
}
