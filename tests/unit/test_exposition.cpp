// Exposition encoders (Prometheus text 0.0.4 and OpenMetrics 1.0.0), sample
// values, the compatibility names, the metric table, and gzip.
#include <zlib.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "agent/config.h"
#include "agent/metric_table.h"
#include "agent/snapshot.h"
#include "collectors/collector.h"
#include "exporters/exposition.h"
#include "exporters/gzip.h"

using namespace nodeperf;

namespace {

constexpr MetricInfo kRequests{"nodeperf_test_requests_total", MetricType::counter, "path", "test",
                               "Requests served; a \\ backslash,\na newline and \"quotes\".", true};
constexpr MetricInfo kTemperature{"nodeperf_test_temperature_celsius", MetricType::gauge, "", "test", "A gauge.",
                                  false};
constexpr MetricInfo kAaa{"nodeperf_test_aaa", MetricType::untyped, "", "test", "Untyped.", true};

const auto kTaken = std::chrono::system_clock::time_point(std::chrono::seconds(1700000000));

// Three families added out of name order; one label value needs escaping.
Snapshot test_snapshot(bool compat = false) {
  SampleSink sink;
  sink.add(kTemperature, -std::numeric_limits<double>::infinity());
  sink.add(kRequests, 42, {{"path", "/a\"b\\c\nd"}});
  sink.add(kRequests, 0.1, {{"path", "/"}});
  sink.add(kAaa, 1e-6);
  return Snapshot(std::move(sink), compat, kTaken);
}

std::string render(const Snapshot& snapshot, ExpositionFormat format) {
  std::string out;
  render_exposition(snapshot, format, out);
  return out;
}

std::string value_text(double v) {
  std::string out;
  append_value(out, v);
  return out;
}

std::string gunzip(std::string_view in) {
  z_stream zs{};
  REQUIRE(inflateInit2(&zs, 15 + 16) == Z_OK);  // gzip wrapper only
  zs.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(in.data()));
  zs.avail_in = static_cast<uInt>(in.size());
  std::string out;
  char buf[16384];
  int rc = Z_OK;
  do {
    zs.next_out = reinterpret_cast<Bytef*>(buf);
    zs.avail_out = sizeof buf;
    rc = inflate(&zs, Z_NO_FLUSH);
    INFO("inflate returned " << rc);
    REQUIRE((rc == Z_OK || rc == Z_STREAM_END));
    out.append(buf, sizeof buf - zs.avail_out);
  } while (rc != Z_STREAM_END);
  uInt left = zs.avail_in;
  inflateEnd(&zs);
  CHECK(left == 0);  // nothing after the gzip member
  return out;
}

// All collectors over the real-host fixture, in one snapshot.
Snapshot fixture_snapshot(bool compat = false) {
  Config config;
  config.host_root = std::string(NODEPERF_FIXTURES) + "/hostroot-normal";
  SampleSink sink;
  for (const CollectorFactory& f : collector_factories()) {
    if (f.bpf) continue;  // needs privileges: integration tests
    auto collector = f.make(config);
    INFO("collector " << f.name);
    CHECK(collector->collect(sink).kind == Status::Kind::ok);
  }
  return Snapshot(std::move(sink), compat, kTaken);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) lines.push_back(line);
  return lines;
}

bool valid_value(const std::string& v) {
  if (v == "+Inf" || v == "-Inf" || v == "NaN") return true;
  char* end = nullptr;
  std::strtod(v.c_str(), &end);
  return !v.empty() && end == v.c_str() + v.size();
}

// Checks the structure of a whole exposition: HELP then TYPE then samples per
// family, families sorted and not repeated, every sample line well formed.
void check_exposition(const std::string& text, ExpositionFormat format) {
  const bool om = format == ExpositionFormat::openmetrics;
  REQUIRE_FALSE(text.empty());
  CHECK(text.back() == '\n');
  static const std::regex help(R"(# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (.*))");
  static const std::regex type(R"(# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped|unknown))");
  static const std::regex sample(
      R"re(([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*"(,[a-zA-Z_][a-zA-Z0-9_]*="([^"\\\n]|\\[\\"n])*")*\})? (\S+))re");
  auto lines = lines_of(text);
  if (om) {
    REQUIRE_FALSE(lines.empty());
    CHECK(lines.back() == "# EOF");
    lines.pop_back();
  }
  std::string family, family_type, last_family;
  std::set<std::string> seen_families, seen_series;
  for (size_t i = 0; i < lines.size(); ++i) {
    const std::string& line = lines[i];
    INFO("line " << i + 1 << ": " << line);
    std::smatch m;
    if (std::regex_match(line, m, help)) {
      family = m[1];
      CHECK(seen_families.insert(family).second);
      REQUIRE(i + 1 < lines.size());
      std::smatch t;
      REQUIRE(std::regex_match(lines[i + 1], t, type));
      CHECK(t[1] == family);
      family_type = t[2];
      // Families are sorted by exposed name, which for an OpenMetrics
      // counter is the family name plus _total.
      std::string sort_key = om && family_type == "counter" ? family + "_total" : family;
      CHECK(last_family < sort_key);
      last_family = sort_key;
      CHECK(family_type != (om ? "untyped" : "unknown"));
      ++i;
    } else {
      REQUIRE(std::regex_match(line, m, sample));
      std::string name = m[1];
      if (family_type == "histogram" || family_type == "summary") {
        CHECK((name == family || name == family + "_bucket" || name == family + "_sum" || name == family + "_count"));
      } else {
        CHECK(name == (om && family_type == "counter" ? family + "_total" : family));
      }
      CHECK(valid_value(m[m.size() - 1]));
      CHECK(seen_series.insert(line.substr(0, line.rfind(' '))).second);
    }
  }
}

}  // namespace

// ---------------------------------------------------------------------------
// Prometheus text format 0.0.4

TEST_CASE("Prometheus text: HELP, TYPE, escaping and family order", "[exposition]") {
  Snapshot snapshot = test_snapshot();
  CHECK(render(snapshot, ExpositionFormat::prometheus_text) ==
        R"(# HELP nodeperf_test_aaa Untyped.
# TYPE nodeperf_test_aaa untyped
nodeperf_test_aaa 1e-06
# HELP nodeperf_test_requests_total Requests served; a \\ backslash,\na newline and "quotes".
# TYPE nodeperf_test_requests_total counter
nodeperf_test_requests_total{path="/a\"b\\c\nd"} 42
nodeperf_test_requests_total{path="/"} 0.1
# HELP nodeperf_test_temperature_celsius A gauge.
# TYPE nodeperf_test_temperature_celsius gauge
nodeperf_test_temperature_celsius -Inf
)");
}

TEST_CASE("OpenMetrics: counters named without _total, unknown type, # EOF", "[exposition]") {
  Snapshot snapshot = test_snapshot();
  CHECK(render(snapshot, ExpositionFormat::openmetrics) ==
        R"(# HELP nodeperf_test_aaa Untyped.
# TYPE nodeperf_test_aaa unknown
nodeperf_test_aaa 1e-06
# HELP nodeperf_test_requests Requests served; a \\ backslash,\na newline and \"quotes\".
# TYPE nodeperf_test_requests counter
nodeperf_test_requests_total{path="/a\"b\\c\nd"} 42
nodeperf_test_requests_total{path="/"} 0.1
# HELP nodeperf_test_temperature_celsius A gauge.
# TYPE nodeperf_test_temperature_celsius gauge
nodeperf_test_temperature_celsius -Inf
# EOF
)");
}

TEST_CASE("render_exposition appends, and an empty snapshot renders nothing but # EOF", "[exposition]") {
  SECTION("appends to what is there") {
    std::string out = "prefix\n";
    render_exposition(test_snapshot(), ExpositionFormat::prometheus_text, out);
    CHECK(out.starts_with("prefix\n# HELP nodeperf_test_aaa "));
  }
  SECTION("empty") {
    Snapshot empty(SampleSink{}, false, kTaken);
    CHECK(render(empty, ExpositionFormat::prometheus_text).empty());
    CHECK(render(empty, ExpositionFormat::openmetrics) == "# EOF\n");
  }
}

TEST_CASE("label values escape backslash, double quote and newline only", "[exposition][escaping]") {
  auto escaped = [](std::string_view v) {
    std::string out;
    append_escaped_label_value(out, v);
    return out;
  };
  CHECK(escaped("plain") == "plain");
  CHECK(escaped("a\\b") == R"(a\\b)");
  CHECK(escaped("a\"b") == R"(a\"b)");
  CHECK(escaped("a\nb") == R"(a\nb)");
  CHECK(escaped("\\n") == R"(\\n)");  // a backslash and an n, not a newline
  CHECK(escaped("tab\there") == "tab\there");
  CHECK(escaped("wlan-\xc3\xbc") == "wlan-\xc3\xbc");  // UTF-8 passes through
  CHECK(escaped("").empty());

  SECTION("the sink renders labels in the order given") {
    static constexpr MetricInfo kTwo{"nodeperf_test_two", MetricType::gauge, "a,b", "test", "Two labels."};
    SampleSink sink;
    sink.add(kTwo, 1, {{"b", "x\"y"}, {"a", "z"}});
    CHECK(sink.series() == 1);
    Snapshot s(std::move(sink), false, kTaken);
    REQUIRE(s.find("nodeperf_test_two"));
    CHECK(s.find("nodeperf_test_two")->samples[0].labels == R"(b="x\"y",a="z")");
  }
}

// ---------------------------------------------------------------------------
// Values

TEST_CASE("sample values: shortest round trip, integers plain, +Inf -Inf NaN", "[exposition][values]") {
  CHECK(value_text(0) == "0");
  CHECK(value_text(1) == "1");
  CHECK(value_text(42) == "42");
  CHECK(value_text(-3) == "-3");
  CHECK(value_text(512.0 * 2762906) == "1414607872");
  CHECK(value_text(123456789) == "123456789");
  CHECK(value_text(17179869184.0) == "17179869184");
  CHECK(value_text(9007199254740992.0) == "9007199254740992");  // 2^53
  CHECK(value_text(18446744073709551615.0) == "18446744073709551616");  // 2^64-1 as a double
  CHECK(value_text(0.1) == "0.1");
  CHECK(value_text(2.5) == "2.5");
  CHECK(value_text(4.63) == "4.63");
  CHECK(value_text(1e-6) == "1e-06");
  CHECK(value_text(std::numeric_limits<double>::infinity()) == "+Inf");
  CHECK(value_text(-std::numeric_limits<double>::infinity()) == "-Inf");
  CHECK(value_text(std::numeric_limits<double>::quiet_NaN()) == "NaN");

  SECTION("every finite value reads back exactly") {
    for (double v : {0.1, 1e-6, 1.0 / 3, 123.456, 92.54594, 1e6, 1e15, 1e300, 5e-324, -2.5,
                     std::numeric_limits<double>::max()}) {
      std::string text = value_text(v);
      INFO(text);
      CHECK(std::strtod(text.c_str(), nullptr) == v);
    }
  }
  SECTION("append_value appends") {
    std::string out = "x ";
    append_value(out, 7);
    CHECK(out == "x 7");
  }
}

// Values are the shortest decimal that reads back exactly, with an exponent
// when that is shorter: 1000000 is "1e+06", as the Go clients (node_exporter)
// write it too. Both forms are valid Prometheus and OpenMetrics numbers.
TEST_CASE("sample values: shortest exact form, as Go clients write it", "[exposition][values]") {
  CHECK(value_text(1e6) == "1e+06");
  CHECK(value_text(1e15) == "1e+15");
  CHECK(value_text(25219358720) == "25219358720");
}

// ---------------------------------------------------------------------------
// Compatibility names

TEST_CASE("compat mode renames nodeperf_ to node_ only where node_exporter has the metric", "[exposition][compat]") {
  SECTION("exposed_name") {
    CHECK(exposed_name(kRequests, false) == "nodeperf_test_requests_total");
    CHECK(exposed_name(kRequests, true) == "node_test_requests_total");
    CHECK(exposed_name(kTemperature, true) == "nodeperf_test_temperature_celsius");  // node_exporter = false
    static constexpr MetricInfo kProcess{"process_x_total", MetricType::counter, "", "test", "X.", true};
    CHECK(exposed_name(kProcess, true) == "process_x_total");  // no nodeperf_ prefix to replace
  }
  SECTION("the snapshot sorts by the exposed name") {
    Snapshot snapshot = test_snapshot(true);
    std::vector<std::string> names;
    for (const Family& f : snapshot.families()) names.push_back(f.name);
    CHECK(names ==
          std::vector<std::string>{"node_test_aaa", "node_test_requests_total", "nodeperf_test_temperature_celsius"});
    CHECK(snapshot.find("node_test_requests_total"));
    CHECK_FALSE(snapshot.find("nodeperf_test_requests_total"));
    CHECK(render(snapshot, ExpositionFormat::openmetrics).find("# TYPE node_test_requests counter\n"
                                                               "node_test_requests_total{path=") != std::string::npos);
  }
  SECTION("the real collectors") {
    Snapshot ours = fixture_snapshot(false);
    Snapshot compat = fixture_snapshot(true);
    CHECK(ours.series() == compat.series());
    CHECK(ours.families().size() == compat.families().size());
    for (const Family& f : compat.families()) {
      INFO(f.name);
      if (f.info->node_exporter && f.info->name.starts_with("nodeperf_")) {
        CHECK(f.name == "node_" + std::string(f.info->name.substr(9)));
      } else {
        CHECK(f.name == f.info->name);
      }
    }
    CHECK(compat.find("node_memory_MemTotal_bytes"));
    CHECK(compat.find("node_network_receive_bytes_total"));
    CHECK(compat.find("node_vmstat_pgfault"));
    CHECK(compat.find("nodeperf_disk_info"));
    CHECK(compat.find("process_open_fds"));
  }
}

// ---------------------------------------------------------------------------
// The whole exposition of real collectors

TEST_CASE("the exposition of every collector over a real host is well formed", "[exposition]") {
  Snapshot snapshot = fixture_snapshot();
  SECTION("Prometheus text") { check_exposition(render(snapshot, ExpositionFormat::prometheus_text), ExpositionFormat::prometheus_text); }
  SECTION("OpenMetrics") { check_exposition(render(snapshot, ExpositionFormat::openmetrics), ExpositionFormat::openmetrics); }
  SECTION("compat names") {
    Snapshot compat = fixture_snapshot(true);
    check_exposition(render(compat, ExpositionFormat::prometheus_text), ExpositionFormat::prometheus_text);
    check_exposition(render(compat, ExpositionFormat::openmetrics), ExpositionFormat::openmetrics);
  }
  SECTION("the malformed tree's odd interface names") {
    Config config;
    config.host_root = std::string(NODEPERF_FIXTURES) + "/hostroot-malformed";
    SampleSink sink;
    for (const CollectorFactory& f : collector_factories()) {
      if (!f.bpf) f.make(config)->collect(sink);
    }
    Snapshot odd(std::move(sink), false, kTaken);
    std::string text = render(odd, ExpositionFormat::prometheus_text);
    check_exposition(text, ExpositionFormat::prometheus_text);
    CHECK(text.find("nodeperf_network_receive_bytes_total{device=\"we\\\"ird\\\\nic\"} 1\n") != std::string::npos);
  }
}

TEST_CASE("Snapshot::find, series and cached bodies", "[exposition][snapshot]") {
  Snapshot snapshot = test_snapshot();
  CHECK(snapshot.series() == 4);
  CHECK(snapshot.taken() == kTaken);
  REQUIRE(snapshot.find("nodeperf_test_requests_total"));
  CHECK(snapshot.find("nodeperf_test_requests_total")->samples.size() == 2);
  CHECK(snapshot.find("nodeperf_test_requests_total")->samples[0].value == 42);  // collection order kept
  CHECK_FALSE(snapshot.find("nodeperf_test"));
  CHECK_FALSE(snapshot.find("zzz"));
  CHECK_FALSE(snapshot.find(""));

  const std::string& text = snapshot.body(Snapshot::Body::prometheus_text);
  CHECK(text == render(snapshot, ExpositionFormat::prometheus_text));
  CHECK(&snapshot.body(Snapshot::Body::prometheus_text) == &text);  // rendered once
  CHECK(snapshot.body(Snapshot::Body::openmetrics) == render(snapshot, ExpositionFormat::openmetrics));
  CHECK(gunzip(snapshot.body(Snapshot::Body::prometheus_text_gzip)) == text);
  CHECK(gunzip(snapshot.body(Snapshot::Body::openmetrics_gzip)) == snapshot.body(Snapshot::Body::openmetrics));
}

// ---------------------------------------------------------------------------
// The metric table

TEST_CASE("the metric table is valid for both formats", "[exposition][metadata]") {
  static const std::regex metric_name("[a-zA-Z_:][a-zA-Z0-9_:]*");
  static const std::regex label_name("[a-zA-Z_][a-zA-Z0-9_]*");
  std::set<std::string> names;
  auto metrics = all_metrics();
  CHECK(metrics.size() > 100);
  for (const MetricInfo* m : metrics) {
    std::string name(m->name);
    INFO(name);
    CHECK(names.insert(name).second);
    CHECK(std::regex_match(name, metric_name));
    CHECK_FALSE(m->help.empty());
    CHECK_FALSE(m->source.empty());
    // OpenMetrics names a counter's samples <family>_total.
    if (m->type == MetricType::counter) CHECK(name.ends_with("_total"));
    std::string_view labels = m->labels;
    while (!labels.empty()) {
      size_t comma = labels.find(',');
      std::string key(labels.substr(0, comma));
      INFO("label " << key);
      CHECK(std::regex_match(key, label_name));
      CHECK_FALSE(key.starts_with("__"));
      labels = comma == std::string_view::npos ? std::string_view() : labels.substr(comma + 1);
    }
  }
  SECTION("compat names do not collide") {
    std::set<std::string> compat;
    for (const MetricInfo* m : metrics) CHECK(compat.insert(exposed_name(*m, true)).second);
  }
  SECTION("type names") {
    CHECK(type_name(MetricType::counter) == "counter");
    CHECK(type_name(MetricType::gauge) == "gauge");
    CHECK(type_name(MetricType::untyped) == "untyped");
  }
}

// ---------------------------------------------------------------------------
// gzip

TEST_CASE("gzip round-trips through zlib's inflate", "[exposition][gzip]") {
  SECTION("empty input") { CHECK(gunzip(gzip("")).empty()); }
  SECTION("short text, with the gzip magic") {
    std::string z = gzip("hello, nodeperf\n");
    REQUIRE(z.size() > 10);
    CHECK(static_cast<unsigned char>(z[0]) == 0x1f);
    CHECK(static_cast<unsigned char>(z[1]) == 0x8b);
    CHECK(static_cast<unsigned char>(z[2]) == 8);  // deflate
    CHECK(gunzip(z) == "hello, nodeperf\n");
  }
  SECTION("a large body at every level, smaller than the input") {
    std::string text;
    for (int i = 0; i < 50000; ++i) {
      text += "nodeperf_disk_read_bytes_total{device=\"vd" + std::to_string(i % 97) + "\"} " +
              std::to_string(i * 7919) + "\n";
    }
    for (int level = 1; level <= 9; ++level) {
      INFO("level " << level);
      std::string z = gzip(text, level);
      CHECK(z.size() < text.size() / 4);
      CHECK(gunzip(z) == text);
    }
  }
  SECTION("binary bytes, including NUL") {
    std::string bytes;
    for (int i = 0; i < 70000; ++i) bytes += static_cast<char>((i * 131) % 256);
    CHECK(gunzip(gzip(bytes)) == bytes);
  }
}
