// The JSON API's encoder (strings, numbers, labels, whole documents), the
// history ring behind it (wrap-around, shared layouts, ?time lookup), and
// the Agent as nodeperf top embeds it.
#include <catch2/catch.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <chrono>
#include <csignal>
#include <limits>
#include <malloc.h>
#include <memory>
#include <string>
#include <thread>

#include "agent/agent.h"
#include "agent/history.h"
#include "agent/snapshot.h"
#include "exporters/json.h"

using namespace nodeperf;

namespace {

constexpr MetricInfo kRequests{"nodeperf_test_requests_total", MetricType::counter, "path", "test",
                               "Requests \"served\".", false};
constexpr MetricInfo kLatency{"nodeperf_test_latency_seconds", MetricType::histogram, "op", "test", "Latency.",
                              false};
constexpr MetricInfo kGauge{"nodeperf_test_gauge", MetricType::gauge, "", "test", "A gauge.", false};

std::string json_string(std::string_view s) {
  std::string out;
  append_json_string(out, s);
  return out;
}

std::string json_number(double v) {
  std::string out;
  append_json_number(out, v);
  return out;
}

std::string json_labels(std::initializer_list<Label> labels) {
  std::string rendered, out;
  append_labels(rendered, std::span<const Label>(labels.begin(), labels.size()));
  append_json_labels(out, rendered);
  return out;
}

std::chrono::system_clock::time_point at(double unix_seconds) {
  return std::chrono::system_clock::time_point(
      std::chrono::duration_cast<std::chrono::system_clock::duration>(std::chrono::duration<double>(unix_seconds)));
}

// A snapshot at `time` whose request counter is `value`; `path` names its one series.
Snapshot snapshot(double time, double value, std::string_view path = "/") {
  SampleSink sink;
  sink.add(kRequests, value, {{"path", path}});
  return Snapshot(std::move(sink), false, at(time));
}

}  // namespace

TEST_CASE("JSON strings escape quotes, backslashes and control characters") {
  CHECK(json_string("plain") == "\"plain\"");
  CHECK(json_string("a\"b\\c") == "\"a\\\"b\\\\c\"");
  CHECK(json_string("line\nnext\ttab\r") == "\"line\\u000anext\\u0009tab\\u000d\"");
  CHECK(json_string(std::string_view("\x00\x1f\x7f", 3)) == "\"\\u0000\\u001f\x7f\"");
  CHECK(json_string("") == "\"\"");
}

TEST_CASE("JSON strings pass UTF-8 through and replace invalid bytes") {
  CHECK(json_string("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80") == "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
  const std::string fffd = "\xef\xbf\xbd";
  CHECK(json_string("a\xff" "b") == "\"a" + fffd + "b\"");           // never valid
  CHECK(json_string("\xc3") == "\"" + fffd + "\"");                   // cut short
  CHECK(json_string("\xc0\xaf") == "\"" + fffd + fffd + "\"");        // overlong
  CHECK(json_string("\xed\xa0\x80") == "\"" + fffd + fffd + fffd + "\"");  // a surrogate
  CHECK(json_string("\xf4\x90\x80\x80") == "\"" + fffd + fffd + fffd + fffd + "\"");  // past U+10FFFF
}

TEST_CASE("JSON numbers round-trip; NaN and infinities are null") {
  CHECK(json_number(0) == "0");
  CHECK(json_number(42) == "42");
  CHECK(json_number(0.1) == "0.1");
  CHECK(json_number(-2.5e-7) == "-2.5e-07");
  CHECK(json_number(1764366000.123) == "1764366000.123");
  CHECK(std::stod(json_number(1.0 / 3)) == 1.0 / 3);
  CHECK(json_number(std::numeric_limits<double>::quiet_NaN()) == "null");
  CHECK(json_number(std::numeric_limits<double>::infinity()) == "null");
  CHECK(json_number(-std::numeric_limits<double>::infinity()) == "null");
}

TEST_CASE("Rendered labels become a JSON object of plain strings") {
  CHECK(json_labels({}) == "{}");
  CHECK(json_labels({{"cpu", "0"}, {"mode", "user"}}) == "{\"cpu\":\"0\",\"mode\":\"user\"}");
  // Exposition escapes (\\ \" \n) undone, JSON escapes applied.
  CHECK(json_labels({{"path", "/a\"b\\c\nd"}, {"le", "+Inf"}}) ==
        "{\"path\":\"/a\\\"b\\\\c\\u000ad\",\"le\":\"+Inf\"}");
  CHECK(json_labels({{"name", "caf\xc3\xa9,x=\"y\""}}) == "{\"name\":\"caf\xc3\xa9,x=\\\"y\\\"\"}");
  CHECK(json_labels({{"empty", ""}, {"k", "\\"}}) == "{\"empty\":\"\",\"k\":\"\\\\\"}");
}

TEST_CASE("A snapshot document lists families by name with suffixes, labels and values") {
  SampleSink sink;
  sink.add(kRequests, 3, {{"path", "/x"}});
  sink.add(kGauge, 1);
  const Label bucket[] = {{"op", "read"}, {"le", "+Inf"}}, sum[] = {{"op", "read"}};
  sink.add(kLatency, 2, bucket, "_bucket");
  sink.add(kLatency, std::numeric_limits<double>::quiet_NaN(), sum, "_sum");
  History history(1);
  history.add(Snapshot(std::move(sink), false, at(1700000000.5)));
  std::string out;
  render_snapshot_json(history.newest(), 0.25, "node-\"1\"", out);
  std::string monotonic;  // when it was added, on the steady clock
  append_json_number(monotonic, std::chrono::duration<double>(history.newest().steady.time_since_epoch()).count());
  CHECK(out ==
        "{\"time\":1700000000.5,\"monotonic\":" + monotonic + ",\"tick_seconds\":0.25,\"hostname\":\"node-\\\"1\\\"\",\"families\":[\n"
        "{\"name\":\"nodeperf_test_gauge\",\"type\":\"gauge\",\"help\":\"A gauge.\",\"samples\":["
        "{\"labels\":{},\"value\":1}]},\n"
        "{\"name\":\"nodeperf_test_latency_seconds\",\"type\":\"histogram\",\"help\":\"Latency.\",\"samples\":["
        "{\"suffix\":\"_bucket\",\"labels\":{\"op\":\"read\",\"le\":\"+Inf\"},\"value\":2},"
        "{\"suffix\":\"_sum\",\"labels\":{\"op\":\"read\"},\"value\":null}]},\n"
        "{\"name\":\"nodeperf_test_requests_total\",\"type\":\"counter\",\"help\":\"Requests \\\"served\\\".\","
        "\"samples\":[{\"labels\":{\"path\":\"/x\"},\"value\":3}]}\n"
        "]}\n");
}

TEST_CASE("The history document") {
  History history(3);
  std::string out;
  render_history_json(history, 1, out);
  CHECK(out == "{\"oldest\":null,\"newest\":null,\"count\":0,\"tick_seconds\":1}\n");
  history.add(snapshot(100.5, 1));
  history.add(snapshot(101.5, 2));
  out.clear();
  render_history_json(history, 1, out);
  CHECK(out == "{\"oldest\":100.5,\"newest\":101.5,\"count\":2,\"tick_seconds\":1}\n");
}

TEST_CASE("History capacity is history / tick, at least 1") {
  using std::chrono::milliseconds;
  CHECK(history_capacity(milliseconds(600'000), milliseconds(1000)) == 600);
  CHECK(history_capacity(milliseconds(600'000), milliseconds(100)) == 6000);
  CHECK(history_capacity(milliseconds(0), milliseconds(1000)) == 1);
  CHECK(history_capacity(milliseconds(1500), milliseconds(1000)) == 1);
  CHECK(history_capacity(milliseconds(2500), milliseconds(1000)) == 2);
}

TEST_CASE("The history ring keeps the newest entries and drops the oldest") {
  History history(3);
  CHECK(history.empty());
  for (int i = 0; i < 5; ++i) history.add(snapshot(100 + i, i));
  REQUIRE(history.size() == 3);
  CHECK(unix_seconds(history.oldest().time) == 102);
  CHECK(history.oldest().values == std::vector<double>{2});
  CHECK(unix_seconds(history.newest().time) == 104);
  CHECK(history.newest().values == std::vector<double>{4});

  history.set_capacity(1);  // a reload that shortens the history
  REQUIRE(history.size() == 1);
  CHECK(unix_seconds(history.newest().time) == 104);
  history.add(snapshot(105, 5));
  CHECK(history.size() == 1);
  CHECK(unix_seconds(history.oldest().time) == 105);
}

TEST_CASE("The history ring keeps its values under the byte cap, and always the newest") {
  // Room for three one-series entries and the layout they share.
  const HistoryEntry one{at(0), {}, nullptr, {0.0}};
  History history(100, SeriesLayout(snapshot(0, 0)).bytes + 3 * one.bytes());
  for (int i = 0; i < 5; ++i) history.add(snapshot(100 + i, i));
  REQUIRE(history.size() == 3);
  CHECK(unix_seconds(history.oldest().time) == 102);

  History tiny(100, 1);  // smaller than one entry: the newest stays
  tiny.add(snapshot(100, 0));
  tiny.add(snapshot(101, 1));
  REQUIRE(tiny.size() == 1);
  CHECK(unix_seconds(tiny.newest().time) == 101);
}

TEST_CASE("Layouts count against the byte cap too, each once") {
  // Series that change every tick (cgroup churn) make a layout per entry:
  // about 12 times the values' bytes here, and uncounted they let the
  // history grow far past the cap.
  History same(100, 16 * 1024), changing(100, 16 * 1024);
  for (int i = 0; i < 100; ++i) {
    same.add(snapshot(100 + i, i, "/kubepods/burstable/pod0123"));
    changing.add(snapshot(100 + i, i, "/kubepods/burstable/pod" + std::to_string(1000 + i)));
  }
  CHECK(same.size() == 100);  // one layout, shared
  REQUIRE(changing.size() < 100);
  CHECK(unix_seconds(changing.newest().time) == 199);
  size_t held = 0;  // what the kept entries hold, each layout once
  const SeriesLayout* last = nullptr;
  for (double t = unix_seconds(changing.oldest().time); t <= 199; ++t) {
    const HistoryEntry& e = changing.at_or_before(t);
    held += e.bytes() + (e.layout.get() != last ? e.layout->bytes : 0);
    last = e.layout.get();
    CHECK(e.layout->bytes > e.layout->series[0].labels.size());
  }
  CHECK(held <= 16 * 1024);
  CHECK(held == changing.bytes());
}

TEST_CASE("The history's bytes are what its entries hold on the heap") {
#if defined(__SANITIZE_ADDRESS__)
  WARN("skipped: the sanitizers' allocator is not glibc's malloc");
#else
  // Cgroup churn: 20 cgroups of 11 series each, one of them new every tick,
  // so every entry has its own layout of label strings of 40-60 characters.
  // Before the history counted malloc's headers and rounding, it held 10%
  // more than it counted here.
  auto churning = [](int tick) {
    SampleSink sink;
    for (int c = 0; c < 20; ++c) {
      std::string cgroup = "/kubepods/burstable/pod" + std::to_string(c == 0 ? 1000 + tick : c);
      for (const char* le : {"0.001", "0.002", "0.004", "0.008", "0.016", "0.032", "0.064", "0.128", "+Inf"}) {
        const Label labels[] = {{"op", "read"}, {"cgroup", cgroup}, {"le", le}};
        sink.add(kLatency, tick, labels, "_bucket");
      }
      sink.add(kRequests, tick, {{"path", cgroup}});
      sink.add(kGauge, tick, {{"cgroup", cgroup}});
    }
    return Snapshot(std::move(sink), false, at(tick));
  };
  auto heap_in_use = [] {
    struct mallinfo2 m = mallinfo2();
    return m.uordblks + m.hblkhd;
  };
  const size_t before = heap_in_use();
  auto history = std::make_unique<History>(200, size_t{1} << 30);
  for (int tick = 0; tick < 200; ++tick) history->add(churning(tick));
  const double held = static_cast<double>(heap_in_use() - before);
  REQUIRE(history->size() == 200);
  INFO("counted " << history->bytes() << " bytes, heap in use grew by " << held);
  CHECK(held >= 0.97 * static_cast<double>(history->bytes()));
  CHECK(held <= 1.03 * static_cast<double>(history->bytes()));
#endif
}

TEST_CASE("Consecutive entries with the same series share one layout") {
  History history(10);
  history.add(snapshot(100, 1, "/a"));
  history.add(snapshot(101, 2, "/a"));
  history.add(snapshot(102, 3, "/b"));  // a label changed: a new layout
  history.add(snapshot(103, 4, "/b"));
  auto layout = [&](double t) { return history.at_or_before(t).layout; };
  CHECK(layout(100) == layout(101));
  CHECK(layout(101) != layout(102));
  CHECK(layout(102) == layout(103));
  CHECK(layout(100)->series[0].labels == "path=\"/a\"");
  CHECK(layout(103)->series[0].labels == "path=\"/b\"");
  CHECK(layout(100).use_count() == 3);  // two entries and this copy

  // A family gaining a series, or a new family, also changes the layout.
  SampleSink more;
  more.add(kRequests, 5, {{"path", "/b"}});
  more.add(kRequests, 6, {{"path", "/c"}});
  history.add(Snapshot(std::move(more), false, at(104)));
  CHECK(layout(104) != layout(103));
  CHECK(layout(104)->series.size() == 2);
  CHECK(history.newest().values == std::vector<double>{5, 6});
  history.add(snapshot(105, 7, "/b"));
  CHECK(layout(105) != layout(104));
  CHECK(layout(105)->series.size() == 1);
}

TEST_CASE("?time finds the newest entry at or before it, else the oldest") {
  History history(5);
  for (double t : {100.25, 101.25, 102.25, 103.25}) history.add(snapshot(t, t));
  CHECK(history.at_or_before(102.25).values[0] == 102.25);  // at
  CHECK(history.at_or_before(102.9).values[0] == 102.25);   // between: the one before
  CHECK(history.at_or_before(1e12).values[0] == 103.25);    // after the newest
  CHECK(history.at_or_before(100.25).values[0] == 100.25);  // the oldest, exactly
  CHECK(history.at_or_before(50).values[0] == 100.25);      // before the oldest: the oldest
  CHECK(history.at_or_before(-1e300).values[0] == 100.25);

  // A time as the API prints it finds its own entry again.
  double now = unix_seconds(std::chrono::system_clock::now());
  history.add(snapshot(now, 42));
  std::string printed;
  append_json_number(printed, unix_seconds(history.newest().time));
  CHECK(history.at_or_before(std::stod(printed)).values[0] == 42);
}

TEST_CASE("?time across wall clock steps: an entry's own time finds it; otherwise the newest taken at or before") {
  // Snapshot times are the wall clock, which NTP (or an operator) may step
  // while the agent runs; the ticks themselves run on the monotonic clock,
  // so entries keep coming, one per tick, whatever their stamps say.
  History history(10);
  for (double t : {100.5, 101.5, 102.5}) history.add(snapshot(t, t));
  for (double t : {50.5, 51.5}) history.add(snapshot(t, t));    // stepped back 52 s
  for (double t : {200.5, 201.5}) history.add(snapshot(t, t));  // then forward
  REQUIRE(history.size() == 7);
  // A time read back from a response finds that entry, before or after a step.
  for (double t : {100.5, 101.5, 102.5, 50.5, 51.5, 200.5, 201.5}) CHECK(history.at_or_before(t).values[0] == t);
  CHECK(history.at_or_before(150).values[0] == 51.5);  // the newest taken with a time at or before
  CHECK(history.at_or_before(51).values[0] == 50.5);
  CHECK(history.at_or_before(1e12).values[0] == 201.5);
  CHECK(history.at_or_before(10).values[0] == 100.5);  // before every entry: the oldest
}

TEST_CASE("An embedded agent: port 0, no signal handlers, request_stop from another thread") {
  Config config;
  config.host_root = NODEPERF_FIXTURES "/hostroot-normal";
  config.listen_address = "127.0.0.1:0";
  config.log_level = LogLevel::error;
  for (auto& [name, enabled] : config.collectors) enabled = name == "cpu";
  // The handler stays what it was (Catch2's own, here).
  struct sigaction before {}, after {};
  sigaction(SIGTERM, nullptr, &before);
  Agent agent(config, "", {}, false);
  const uint16_t port = agent.port();
  REQUIRE(port != 0);
  sigaction(SIGTERM, nullptr, &after);
  CHECK(after.sa_handler == before.sa_handler);

  int code = -1;
  std::thread loop([&] { code = agent.run(); });
  namespace asio = boost::asio;
  asio::io_context io;
  asio::ip::tcp::socket socket(io);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(socket, asio::buffer(std::string("GET /api/v1/history HTTP/1.0\r\n\r\n")));
  std::string response;
  boost::system::error_code ec;
  asio::read(socket, asio::dynamic_buffer(response), ec);  // to the end: HTTP/1.0 closes
  CHECK(response.starts_with("HTTP/1.1 200"));
  CHECK(response.find("\"tick_seconds\":1}") != std::string::npos);

  agent.request_stop();
  loop.join();
  CHECK(code == 0);
  CHECK(agent.port() == port);  // still known after the stop
}

TEST_CASE("request_stop before run makes run return at once") {
  Config config;
  config.listen_address = "127.0.0.1:0";
  config.log_level = LogLevel::error;
  for (auto& [name, enabled] : config.collectors) enabled = false;
  Agent agent(config, "", {}, false);
  agent.request_stop();
  CHECK(agent.run() == 0);
}
