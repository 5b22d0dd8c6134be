// nodeperf top without a terminal: units and widths, rates and counter
// resets, the model from two fixture snapshots (tests/fixtures/top), and the
// renderer's screens at 80x24 and 120x40.
#include <catch2/catch.hpp>

#include <fstream>
#include <sstream>

#include "cli/top_format.h"
#include "cli/top_model.h"
#include "cli/top_view.h"

using namespace nodeperf::top;

namespace {

Snapshot fixture(const char* name) {
  std::ifstream in(std::string(NODEPERF_FIXTURES) + "/top/" + name);
  std::stringstream text;
  text << in.rdbuf();
  return parse_snapshot(text.str());
}

std::string joined(const std::vector<Line>& lines) {
  std::string out;
  for (const Line& l : lines) out += l.text + "\n";
  return out;
}

bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

}  // namespace

TEST_CASE("formatters keep their width and pick the unit") {
  CHECK(format_bytes(512) == "  512B");
  CHECK(format_bytes(1536) == "  1.5K");
  CHECK(format_bytes(8.0 * (1 << 30)) == "  8.0G");
  CHECK(format_bytes(300.0 * (1 << 20)) == "  300M");
  CHECK(format_byte_rate(1048576) == "  1.0M");
  CHECK(format_rate(0.5) == "   0.5");
  CHECK(format_rate(12345) == " 12.3k");
  CHECK(format_rate(3) == "     3");
  CHECK(format_percent(42.25) == " 42.2%");  // printf rounds half to even on the binary value
  CHECK(format_percent(100) == "  100%");
  CHECK(format_duration(0.000012) == "  12us");
  CHECK(format_duration(0.0034) == " 3.4ms");
  CHECK(format_duration(2) == "  2.0s");
  CHECK(format_duration(850e-9) == " 850ns");
  CHECK(format_duration(0.0009999) == " 1.0ms");
  CHECK(format_age(125) == "2m05s");
  for (double v : {0.0, 1e-9, 0.5, 999.0, 1e6, 1e15, -3.0, kNaN}) {
    CHECK(format_bytes(v).size() == 6);
    CHECK(format_rate(v).size() == 6);
    CHECK(format_percent(v).size() == 6);
    CHECK(format_duration(v).size() == 6);
  }
  CHECK(format_rate(kNaN) == "     -");
  CHECK(pad_right("abcdef", 3) == "abc");
}

TEST_CASE("rates need two samples and skip counter resets") {
  CHECK(rate(100, 150, 2) == 25);
  CHECK(std::isnan(rate(150, 100, 2)));  // reset
  CHECK(std::isnan(rate(kNaN, 100, 2)));  // first sample
  CHECK(std::isnan(rate(100, 150, 0)));
}

TEST_CASE("the model from two snapshots") {
  Snapshot before = fixture("before.json"), now = fixture("now.json");
  REQUIRE(now.hostname == "node-17");
  Model m = build_model(now, &before);
  CHECK(m.elapsed == Approx(1));
  const NodeFigures& n = m.node;
  CHECK(n.total.busy == Approx(40));
  CHECK(n.total.user == Approx(30));
  REQUIRE(n.cpus.size() == 2);
  CHECK(n.cpus[0].busy == Approx(70));
  CHECK(n.cpus[0].iowait == Approx(10));
  CHECK(n.cpus[1].busy == Approx(10));
  CHECK(n.load1 == Approx(0.52));
  CHECK(n.mem_total == Approx(8.0 * (1 << 30)));
  CHECK(n.mem_cache == Approx(1.5 * (1 << 30)));
  CHECK(n.context_switches == Approx(12345));
  CHECK(n.cpu_some == Approx(5));
  CHECK(n.io_some == Approx(20));
  CHECK(n.io_full == Approx(10));
  CHECK(n.runqueue.p99 == Approx(4e-5));
  CHECK(n.tcp_retransmits == Approx(3));
  CHECK(n.tcp_rtt.p99 == Approx(1e-3));

  REQUIRE(m.disks.size() == 1);
  const DiskRow& d = m.disks[0];
  CHECK(d.reads == Approx(100));
  CHECK(d.writes == Approx(250));
  CHECK(d.read_bytes == Approx(1048576));
  CHECK(d.utilisation == Approx(50));
  CHECK(d.read_latency.p99 == Approx(0.0039));
  CHECK(std::isnan(d.write_latency.p99));  // null in the JSON

  REQUIRE(m.nets.size() == 2);
  CHECK(m.nets[0].device == "eth0");
  CHECK(m.nets[0].rx_bytes == Approx(524288));
  CHECK(m.nets[0].drops == Approx(2));
  CHECK(std::isnan(m.nets[1].rx_bytes));  // lo's counter went backwards: skipped
  CHECK(m.nets[1].rx_packets == Approx(0));

  REQUIRE(m.cgroups.size() == 2);
  CHECK(!m.kubernetes);
  CHECK(m.cgroups[1].cgroup == "/user.slice");
  CHECK(m.cgroups[1].runqueue_p99 == Approx(8e-5));
  CHECK(m.cgroups[1].retransmits == Approx(2));
  CHECK(std::isnan(m.cgroups[1].cpu));  // no cgroups collector yet
  CHECK(std::isnan(m.cgroups[0].retransmits));

  Model first = build_model(now, nullptr);  // one snapshot: gauges, no rates
  CHECK(first.node.load1 == Approx(0.52));
  CHECK(std::isnan(first.node.total.busy));
  CHECK(std::isnan(first.disks[0].reads));
}

TEST_CASE("rates take the time between snapshots from the agent's steady clock") {
  Snapshot before = fixture("before.json"), now = fixture("now.json");
  before.monotonic = 5000;
  now.monotonic = 5001;
  now.time = before.time - 3599;  // the wall clock stepped back an hour between them
  Model m = build_model(now, &before);
  CHECK(m.elapsed == Approx(1));
  CHECK(m.node.total.busy == Approx(40));
  CHECK(m.disks[0].reads == Approx(100));
  now.monotonic = kNaN;  // an agent without it: the wall clock, as before
  now.time = before.time + 2;
  CHECK(build_model(now, &before).elapsed == Approx(2));
  CHECK(seconds_between(before, now) == Approx(2));
}

TEST_CASE("histogram differences and their quantiles") {
  Snapshot before = fixture("before.json"), now = fixture("now.json");
  auto d = histogram_delta(now, &before, "nodeperf_disk_io_latency_seconds", {{"device", "vda"}, {"op", "read"}});
  REQUIRE(d);
  REQUIRE(d->buckets.size() == 5);
  CHECK(d->count == 125);
  CHECK(d->buckets[0].count == 50);
  CHECK(d->buckets[1].count == 50);
  CHECK(d->buckets[2].count == 20);
  CHECK(d->buckets[3].count == 5);
  CHECK(d->sum == Approx(0.17));
  // rank 62.5 lies 12.5/50 into (2^-10, 2^-9]; rank 123.75 lies 3.75/5 into (2^-8, 2^-7]
  CHECK(quantile(*d, 0.5) == Approx(0.0009765625 * 1.25));
  CHECK(quantile(*d, 0.99) == Approx(0.00390625 * 1.75));

  auto both = histogram_delta(now, &before, "nodeperf_disk_io_latency_seconds", {{"device", "vda"}});
  REQUIRE(both);
  CHECK(both->count == 135);  // read and write summed

  auto reset = histogram_delta(before, &now, "nodeperf_disk_io_latency_seconds", {{"device", "vda"}, {"op", "read"}});
  CHECK(!reset);
  CHECK(!histogram_delta(now, &before, "nodeperf_no_such_seconds", {}));
  CHECK(std::isnan(quantile(Distribution{}, 0.5)));

  auto targets = latency_targets(now);
  REQUIRE(targets.size() == 5);  // run queue, vda read, vda write, two cgroups
  CHECK(targets[0].title == "node run queue");
  CHECK(targets[1].title == "disk vda read latency");
  CHECK(targets[3].histogram.empty());
  CHECK(contains(targets[3].title, "/system.slice/ssh.service"));
}

TEST_CASE("bad JSON is a ParseError") {
  CHECK_THROWS_AS(parse_snapshot("{"), ParseError);
  CHECK_THROWS_AS(parse_snapshot("{\"time\": 1}"), ParseError);
  HistoryInfo h = parse_history(R"({"oldest": 10.5, "newest": 70.5, "count": 61, "tick_seconds": 1})");
  CHECK(h.count == 61);
  CHECK(h.newest - h.oldest == Approx(60));
}

TEST_CASE("every screen renders at 80x24 and 120x40") {
  Snapshot before = fixture("before.json"), now = fixture("now.json");
  Model m = build_model(now, &before);
  LatencyDetail detail;
  detail.targets = latency_targets(now);
  detail.tick = histogram_delta(now, &before, "nodeperf_runqueue_latency_seconds", {});
  detail.window = histogram_delta(now, nullptr, "nodeperf_runqueue_latency_seconds", {});
  detail.agent = summary_quantiles(now, "nodeperf_runqueue_latency_window_seconds", {});
  for (auto [w, h] : {std::pair{80, 24}, std::pair{120, 40}}) {
    INFO(w << "x" << h);
    ViewState state;
    for (Screen screen : {Screen::overview, Screen::cgroups, Screen::latency}) {
      state.screen = screen;
      std::vector<Line> lines = render(m, detail, state, w, h);
      REQUIRE(lines.size() == static_cast<size_t>(h));
      for (const Line& l : lines) CHECK(l.text.size() == static_cast<size_t>(w));
      std::string text = joined(lines);
      CHECK(contains(text, "nodeperf top - node-17"));
      CHECK(contains(lines.back().text, "q:quit"));
      if (screen == Screen::overview) {
        CHECK(contains(text, "CPU   ["));
        CHECK(contains(text, "cpu0  ["));
        CHECK(contains(text, " 70.0%"));
        CHECK(contains(text, "Load   0.52"));
        CHECK(contains(text, "Mem   ["));
        CHECK(contains(text, "used  4.0G of  8.0G"));
        CHECK(contains(text, "Swap  ["));
        CHECK(contains(text, "PSI   some/full  cpu  5.0%"));
        CHECK(contains(text, "Runq  p50 5.0us"));
        CHECK(contains(text, "retrans     3/s"));
        CHECK(contains(text, "vda"));
        CHECK(contains(text, "eth0"));
        CHECK(contains(text, " 50.0%"));  // vda utilisation
      } else if (screen == Screen::cgroups) {
        CHECK(contains(text, "Cgroups: 2"));
        CHECK(contains(text, "*CPU%"));
        CHECK(contains(text, "/user.slice"));
        CHECK(contains(text, "80us"));
      } else {
        CHECK(contains(text, "Latency: node run queue"));
        CHECK(contains(text, "Last tick: 200 events"));
        CHECK(contains(text, "Window (1m00s): 400 events"));
        CHECK(contains(text, "<p50"));
        CHECK(contains(text, "<p99"));
      }
    }
  }
}

TEST_CASE("sort, filter and the summary-only latency target") {
  Snapshot before = fixture("before.json"), now = fixture("now.json");
  Model m = build_model(now, &before);
  ViewState state;
  state.sort = Column::runqueue;
  auto rows = visible_cgroups(m, state);
  REQUIRE(rows.size() == 2);
  CHECK(rows[0]->cgroup == "/user.slice");  // 80us before 30us
  state.sort = Column::name;
  CHECK(visible_cgroups(m, state)[0]->cgroup == "/system.slice/ssh.service");
  state.sort = Column::retransmits;  // blanks sort last
  CHECK(visible_cgroups(m, state)[0]->cgroup == "/user.slice");
  state.filter = "ssh";
  rows = visible_cgroups(m, state);
  REQUIRE(rows.size() == 1);

  LatencyDetail detail;
  detail.targets = latency_targets(now);
  state.screen = Screen::latency;
  REQUIRE(visible_targets(detail, state).size() == 1);
  detail.agent = summary_quantiles(now, detail.targets[3].summary, detail.targets[3].labels);
  std::string text = joined(render(m, detail, state, 80, 24));
  CHECK(contains(text, "Only a summary"));
  CHECK(contains(text, " p99 |"));
  CHECK(contains(text, "30us"));

  state.help = true;
  CHECK(contains(joined(render(m, detail, state, 80, 24)), "left/right"));
}

TEST_CASE("batch rendering has every line and no key bar") {
  Snapshot before = fixture("before.json"), now = fixture("now.json");
  Model m = build_model(now, &before);
  ViewState state;
  std::vector<Line> lines = render(m, LatencyDetail{}, state, 120, 0);
  CHECK(!contains(joined(lines), "q:quit"));
  CHECK(contains(joined(lines), "eth0"));
  CHECK(render(m, LatencyDetail{}, state, 40, 2).size() == 3);  // too small: still title, one line, key bar
}

// tests/fixtures/top/volumes_*.json: five volumes two seconds apart (README there).
TEST_CASE("volume rows: names, usage, rates, quantiles, stale, kinds") {
  Snapshot before = fixture("volumes_before.json"), now = fixture("volumes_now.json");
  Model m = build_model(now, &before);
  REQUIRE(m.volumes.size() == 5);
  auto row = [&](const std::string& volume) -> const VolumeRow& {
    for (const VolumeRow& v : m.volumes) {
      if (v.volume == volume) return v;
    }
    FAIL("no row for " << volume);
    throw 0;
  };
  const VolumeRow& a = row("pv-alpha");
  CHECK(a.pod == "shop/db-0");
  CHECK(a.name == "data-db-0");  // the claim's name over the PV's
  CHECK(a.device == "sdb");
  CHECK(a.kind == "block");
  CHECK(a.io == "exclusive");
  CHECK(a.used_percent == Approx(25));
  CHECK(a.reads == Approx(25));              // (150 - 100) / 2 s
  CHECK(a.writes == Approx(10));             // (30 - 10) / 2 s
  CHECK(a.read_bytes == Approx(102400));     // (614400 - 409600) / 2 s
  CHECK(a.written_bytes == Approx(40960));   // (122880 - 40960) / 2 s
  CHECK(a.read_latency.p99 == Approx(0.004));
  CHECK(a.read_latency.p50 == Approx(0.001));
  CHECK(a.write_latency.p99 == Approx(0.008));
  CHECK(a.in_flight == Approx(5));  // read 2 + write 3
  CHECK(!a.stale);

  const VolumeRow& b = row("pv-beta");
  CHECK(b.pod == "7d3c2b1a");  // no pod name: the UID's first 8 characters
  CHECK(b.name == "pv-beta");
  CHECK(std::isnan(b.reads));  // 500 -> 400: a reset, no rate
  CHECK(b.writes == Approx(50));
  CHECK(b.used_percent == Approx(97));
  CHECK(std::isnan(b.in_flight));  // io=cgroup: no in-flight series
  CHECK(std::isnan(b.read_latency.p99));

  const VolumeRow& nfs = row("nfs-share");
  CHECK(nfs.kind == "fs");
  CHECK(nfs.device.empty());
  CHECK(nfs.read_latency.p99 == Approx(0.02));  // file-system call latency
  CHECK(nfs.write_latency.p99 == Approx(0.05));
  CHECK(std::isnan(nfs.reads));

  const VolumeRow& hung = row("pv-hung");
  CHECK(hung.stale);
  CHECK(std::isnan(hung.used_percent));

  const VolumeRow& raw = row("pv-raw");
  CHECK(raw.kind == "raw");
  CHECK(raw.capacity == Approx(32 << 20));
  CHECK(std::isnan(raw.used_percent));          // capacity only
  CHECK(std::isnan(raw.read_latency.p99));      // null quantiles
  CHECK(raw.reads == 0);

  Model first = build_model(now, nullptr);  // one snapshot: no rates
  REQUIRE(first.volumes.size() == 5);
  for (const VolumeRow& v : first.volumes) CHECK(std::isnan(v.reads));
  CHECK(build_model(fixture("now.json"), nullptr).volumes.empty());
}

TEST_CASE("volumes screen: order, filter, stale mark, widths, empty state") {
  Snapshot before = fixture("volumes_before.json"), now = fixture("volumes_now.json");
  Model m = build_model(now, &before);
  ViewState state;
  state.screen = Screen::volumes;
  auto rows = visible_volumes(m, state);
  REQUIRE(rows.size() == 5);
  CHECK(rows[0]->volume == "pv-hung");   // stale first
  CHECK(rows[1]->volume == "pv-beta");   // 50 IOPS
  CHECK(rows[2]->volume == "pv-alpha");  // 35 IOPS
  CHECK(rows[3]->volume == "pv-raw");    // 0 IOPS, then by pod and name
  CHECK(rows[4]->volume == "nfs-share");

  for (auto [w, h] : {std::pair{80, 24}, std::pair{120, 40}}) {
    INFO(w << "x" << h);
    std::vector<Line> lines = render(m, LatencyDetail{}, state, w, h);
    REQUIRE(lines.size() == static_cast<size_t>(h));
    for (const Line& l : lines) CHECK(l.text.size() == static_cast<size_t>(w));
    std::string text = joined(lines);
    CHECK(contains(text, "Volumes: 5, 1 STALE"));
    CHECK(contains(text, "POD"));
    CHECK(contains(text, "R p99  W p99"));
    CHECK(contains(lines.back().text, "[4 Volumes]"));
    CHECK(contains(lines.back().text, "q:quit"));
    CHECK(contains(text, "shop/db-0"));
    CHECK(contains(text, "data-db-0"));
    CHECK(contains(text, "  STALE"));
    CHECK(contains(text, " 25.0%"));
    CHECK(contains(text, "  4.0ms  8.0ms"));  // pv-alpha's block p99s
    CHECK(contains(text, "   20ms   50ms"));  // nfs-share's file-system p99s
    CHECK(lines[3].hint == Hint::selected);   // the first row, pv-hung
    CHECK(contains(lines[3].text, "pv-hung"));
    CHECK(lines[4].hint == Hint::critical);   // pv-beta 97% used
    CHECK(contains(text, "DEVICE") == (w >= 100));
    CHECK(contains(text, "INFL") == (w >= 100));
  }
  std::string wide = joined(render(m, LatencyDetail{}, state, 120, 0));
  CHECK(contains(wide, "sdb       block   25.0%     25     10   100K  40.0K  4.0ms  8.0ms    5"));
  CHECK(contains(wide, "sdc       block   97.0%      -     50"));  // pv-beta's read counter was reset
  CHECK(contains(wide, "-         fs      10.0%      -      -"));  // nfs-share: no block device, no block IO

  state.filter = "db-0";
  CHECK(visible_volumes(m, state).size() == 2);  // both volumes of shop/db-0
  state.filter = "pv-raw";
  CHECK(visible_volumes(m, state).size() == 1);

  state.filter.clear();
  Model empty = build_model(fixture("now.json"), nullptr);
  std::string text = joined(render(empty, LatencyDetail{}, state, 80, 24));
  CHECK(contains(text, "Volumes: 0"));
  CHECK(contains(text, "(no volumes"));
}
