#include "cli/top_view.h"

#include <algorithm>
#include <cstdio>
#include <tuple>

#include "cli/top_format.h"

namespace nodeperf::top {
namespace {

using Lines = std::vector<Line>;

Hint level_hint(double percent) {
  if (percent >= 95) return Hint::critical;
  if (percent >= 80) return Hint::warn;
  return Hint::normal;
}

double ratio(double part, double whole) { return whole > 0 ? part / whole : kNaN; }

std::string p50_p99(const Quantiles& q) {
  return format_duration(q.p50, 6) + "/" + pad_right(format_duration(q.p99, 0), 6);
}

std::string title_line(const Model& m, const ViewState& s) {
  std::string t = "nodeperf top - " + (m.hostname.empty() ? std::string("?") : m.hostname) + " - " +
                  format_clock(m.time) + " (" + (s.where.empty() ? "live" : s.where) + ")";
  if (s.paused) t += " paused";
  if (!s.status.empty()) t += " - " + s.status;
  return t;
}

// ---- overview ------------------------------------------------------------

void cpu_lines(const NodeFigures& n, int width, int max_rows, Lines& out) {
  const CpuUsage& t = n.total;
  int bw = std::clamp(width - 62, 10, 40);
  out.push_back({"CPU   [" + bar(t.busy / 100, bw) + "]" + format_percent(t.busy) + "  usr" +
                     format_percent(t.user) + " sys" + format_percent(t.system) + " iow" + format_percent(t.iowait) +
                     " steal" + format_percent(t.steal),
                 level_hint(t.busy)});
  const int cell = 26;  // "cpu12 [##########] 100.0%  "
  int per_row = std::max(1, width / cell);
  size_t i = 0;
  for (int row = 0; row < max_rows && i < n.cpus.size(); ++row) {
    std::string text;
    double worst = 0;
    for (int c = 0; c < per_row && i < n.cpus.size(); ++c, ++i) {
      const CpuUsage& u = n.cpus[i];
      text += pad_right("cpu" + u.cpu, 6) + "[" + bar(u.busy / 100, 10) + "]" + format_percent(u.busy) + "  ";
      if (u.busy > worst) worst = u.busy;
    }
    out.push_back({text, level_hint(worst)});
  }
  if (i < n.cpus.size()) out.push_back({"      (" + std::to_string(n.cpus.size() - i) + " more cpus)", Hint::dim});
}

void memory_lines(const NodeFigures& n, int width, Lines& out) {
  int bw = std::clamp(width - 62, 10, 40);
  double used = n.mem_total - n.mem_available;
  double pct = ratio(used, n.mem_total) * 100;
  out.push_back({"Mem   [" + bar(pct / 100, bw) + "]" + format_percent(pct) + "  used" + format_bytes(used) + " of" +
                     format_bytes(n.mem_total) + "  avail" + format_bytes(n.mem_available) + "  cache" +
                     format_bytes(n.mem_cache),
                 level_hint(pct)});
  double swap_used = n.swap_total - n.swap_free;
  double swap_pct = n.swap_total > 0 ? swap_used / n.swap_total * 100 : 0;
  out.push_back({"Swap  [" + bar(swap_pct / 100, bw) + "]" + format_percent(swap_pct) + "  used" +
                     format_bytes(swap_used) + " of" + format_bytes(n.swap_total),
                 level_hint(swap_pct)});
}

void overview(const Model& m, int width, int height, Lines& out) {
  const NodeFigures& n = m.node;
  int cpu_rows = height > 0 ? std::max(1, (height - 12) / 4) : 1 << 20;
  cpu_lines(n, width, cpu_rows, out);
  out.push_back({"Load " + format_number(n.load1) + format_number(n.load5) + format_number(n.load15) +
                 "   running" + format_rate(n.procs_running, 5) + "  blocked" + format_rate(n.procs_blocked, 5) +
                 "  ctxsw" + format_rate(n.context_switches) + "/s"});
  memory_lines(n, width, out);
  double worst_psi = std::max({n.cpu_some, n.memory_some, n.io_some, 0.0});
  out.push_back({"PSI   some/full  cpu" + format_percent(n.cpu_some) + "/" + format_percent(n.cpu_full, 0) +
                     "  memory" + format_percent(n.memory_some) + "/" + format_percent(n.memory_full, 0) + "  io" +
                     format_percent(n.io_some) + "/" + format_percent(n.io_full, 0),
                 worst_psi >= 10 ? Hint::warn : Hint::normal});
  out.push_back({"Runq  p50" + format_duration(n.runqueue.p50) + "  p95" + format_duration(n.runqueue.p95) +
                 "  p99" + format_duration(n.runqueue.p99)});
  out.push_back({"TCP   retrans" + format_rate(n.tcp_retransmits) + "/s  out" + format_rate(n.tcp_out_segments) +
                 " seg/s  estab" + format_rate(n.tcp_established, 6) + "  rtt p50/p99" + p50_p99(n.tcp_rtt) +
                 " connect p99" + format_duration(n.tcp_connect.p99)});

  out.push_back({pad_right("DISK", 12) + "    r/s    w/s  rB/s   wB/s   util  rd p50/p99     wr p50/p99", Hint::header});
  for (const DiskRow& d : m.disks) {
    out.push_back({pad_right(d.device, 12) + format_rate(d.reads, 7) + format_rate(d.writes, 7) +
                       format_byte_rate(d.read_bytes) + " " + format_byte_rate(d.written_bytes) + " " +
                       format_percent(d.utilisation) + " " + p50_p99(d.read_latency) + " " + p50_p99(d.write_latency),
                   level_hint(d.utilisation)});
  }
  if (m.disks.empty()) out.push_back({"  (no disks)", Hint::dim});
  out.push_back({pad_right("NET", 12) + "  rxB/s  txB/s  rxpk/s txpk/s drop/s  err/s", Hint::header});
  for (const NetRow& r : m.nets) {
    bool bad = r.drops > 0 || r.errors > 0;
    out.push_back({pad_right(r.device, 12) + " " + format_byte_rate(r.rx_bytes) + " " + format_byte_rate(r.tx_bytes) +
                       format_rate(r.rx_packets, 7) + format_rate(r.tx_packets, 7) + format_rate(r.drops, 7) +
                       format_rate(r.errors, 7),
                   bad ? Hint::warn : Hint::normal});
  }
}

// ---- cgroups -------------------------------------------------------------

struct ColumnSpec {
  const char* title;
  int width;
  char key;
};
constexpr ColumnSpec kColumns[] = {
    {"NAME", 0, 'n'},     {"CPU%", 7, 'c'},     {"THR%", 7, 't'},    {"MEM", 7, 'm'},         {"IO/s", 7, 'i'},
    {"RQ p99", 8, 'r'},   {"DISK p99", 9, 'd'}, {"RTT p99", 8, 'p'}, {"RETX/s", 7, 'x'},
};

double column_value(const CgroupRow& r, Column c) {
  switch (c) {
    case Column::cpu: return r.cpu;
    case Column::throttled: return r.throttled;
    case Column::memory: return r.memory;
    case Column::io: return r.io;
    case Column::runqueue: return r.runqueue_p99;
    case Column::disk: return r.disk_p99;
    case Column::rtt: return r.rtt_p99;
    case Column::retransmits: return r.retransmits;
    default: return kNaN;
  }
}

std::string cell(const CgroupRow& r, Column c, int w) {
  double v = column_value(r, c);
  switch (c) {
    case Column::cpu:
    case Column::throttled: return format_percent(v, w);
    case Column::memory: return format_bytes(v, w);
    case Column::io: return format_byte_rate(v, w);
    case Column::retransmits: return format_rate(v, w);
    default: return format_duration(v, w);
  }
}

// The tail of a long name is the informative part: "..ice/ssh.service".
std::string fit_name(const std::string& name, int width) {
  auto w = static_cast<size_t>(std::max(width, 3));
  if (name.size() <= w) return pad_right(name, width);
  return ".." + name.substr(name.size() - (w - 2));
}

void cgroups(const Model& m, const ViewState& s, int width, int height, Lines& out) {
  int fixed = 0;
  for (size_t c = 1; c < std::size(kColumns); ++c) fixed += kColumns[c].width;
  int name_width = std::max(12, width - fixed - 1);
  std::vector<const CgroupRow*> rows = visible_cgroups(m, s);
  out.push_back({std::string(m.kubernetes ? "Pods and containers" : "Cgroups") + ": " + std::to_string(rows.size()) +
                     (s.filter.empty() ? "" : " matching \"" + s.filter + "\"") + ", sorted by " +
                     kColumns[static_cast<int>(s.sort)].title + " (Enter: latency detail)",
                 Hint::dim});
  std::string header;
  for (size_t c = 0; c < std::size(kColumns); ++c) {
    std::string t = (static_cast<size_t>(s.sort) == c ? "*" : "") + std::string(kColumns[c].title);
    header += c == 0 ? pad_right(t, name_width) : pad_left(t, kColumns[c].width);
  }
  out.push_back({header, Hint::header});
  size_t room = height > 0 ? static_cast<size_t>(std::max(1, height - 5)) : rows.size();
  size_t first = s.selected >= room ? s.selected - room + 1 : 0;
  for (size_t i = first; i < rows.size() && i < first + room; ++i) {
    const CgroupRow& r = *rows[i];
    std::string text = fit_name(r.name, name_width);
    for (size_t c = 1; c < std::size(kColumns); ++c) text += cell(r, static_cast<Column>(c), kColumns[c].width);
    Hint hint = level_hint(r.throttled * 4);  // 25% throttled is already bad
    out.push_back({text, i == s.selected && height > 0 ? Hint::selected : hint});
  }
  if (rows.empty()) out.push_back({"  (no cgroups: the per-cgroup metrics are not exported here)", Hint::dim});
}

// ---- volumes -------------------------------------------------------------

// The fixed columns after POD and VOLUME; DEVICE and INFL go when narrow.
struct VolumeLayout {
  bool device = true, in_flight = true;
  int pod = 12, name = 12;
};

constexpr int kDeviceWidth = 10, kKindWidth = 6, kUsedWidth = 7, kRateWidth = 7, kInFlightWidth = 5;

VolumeLayout volume_layout(int width) {
  VolumeLayout l;
  l.device = l.in_flight = width >= 100;
  int fixed = kKindWidth + kUsedWidth + 6 * kRateWidth + (l.device ? kDeviceWidth : 0) +
              (l.in_flight ? kInFlightWidth : 0);
  int names = std::max(16, width - fixed - 2);
  l.pod = names * 11 / 20;
  l.name = names - l.pod;
  return l;
}

std::string volume_header(const VolumeLayout& l) {
  std::string h = pad_right("POD", l.pod) + " " + pad_right("VOLUME", l.name) + " ";
  if (l.device) h += pad_right("DEVICE", kDeviceWidth);
  h += pad_right("KIND", kKindWidth) + pad_left("USED%", kUsedWidth) + pad_left("R/s", kRateWidth) +
       pad_left("W/s", kRateWidth) + pad_left("RB/s", kRateWidth) + pad_left("WB/s", kRateWidth) +
       pad_left("R p99", kRateWidth) + pad_left("W p99", kRateWidth);
  if (l.in_flight) h += pad_left("INFL", kInFlightWidth);
  return h;
}

std::string volume_text(const VolumeRow& v, const VolumeLayout& l) {
  std::string t = fit_name(v.pod, l.pod) + " " + fit_name(v.name, l.name) + " ";
  if (l.device) t += pad_right(v.device.empty() ? "-" : v.device, kDeviceWidth - 1) + " ";
  t += pad_right(v.kind, kKindWidth);
  t += v.stale ? pad_left("STALE", kUsedWidth) : format_percent(v.used_percent, kUsedWidth);
  t += format_rate(v.reads, kRateWidth) + format_rate(v.writes, kRateWidth) +
       format_byte_rate(v.read_bytes, kRateWidth) + format_byte_rate(v.written_bytes, kRateWidth) +
       format_duration(v.read_latency.p99, kRateWidth) + format_duration(v.write_latency.p99, kRateWidth);
  if (l.in_flight) t += format_rate(v.in_flight, kInFlightWidth);
  return t;
}

void volumes(const Model& m, const ViewState& s, int width, int height, Lines& out) {
  std::vector<const VolumeRow*> rows = visible_volumes(m, s);
  size_t stale = 0;
  for (const VolumeRow* v : rows) stale += v->stale;
  out.push_back({"Volumes: " + std::to_string(rows.size()) +
                     (s.filter.empty() ? "" : " matching \"" + s.filter + "\"") +
                     (stale ? ", " + std::to_string(stale) + " STALE (hung mount)" : "") +
                     ", by IOPS; latency of kind fs: file-system calls",
                 stale ? Hint::critical : Hint::dim});
  VolumeLayout layout = volume_layout(width);
  out.push_back({volume_header(layout), Hint::header});
  size_t room = height > 0 ? static_cast<size_t>(std::max(1, height - 5)) : rows.size();
  size_t first = s.selected >= room ? s.selected - room + 1 : 0;
  for (size_t i = first; i < rows.size() && i < first + room; ++i) {
    const VolumeRow& v = *rows[i];
    Hint hint = v.stale ? Hint::critical : level_hint(v.used_percent);
    out.push_back({volume_text(v, layout), i == s.selected && height > 0 ? Hint::selected : hint});
  }
  if (rows.empty()) {
    out.push_back({s.filter.empty() ? "  (no volumes: no Kubernetes pod volume mounts found, see docs/volumes.md)"
                                    : "  (no volumes match)",
                   Hint::dim});
  }
}

// ---- latency -------------------------------------------------------------

// Merges adjacent buckets pairwise until at most `rows` remain.
std::vector<Bucket> fit_buckets(std::vector<Bucket> b, size_t rows) {
  for (int round = 0; round < 8 && b.size() > rows && rows > 0; ++round) {
    std::vector<Bucket> merged;
    for (size_t i = 0; i < b.size(); i += 2) {
      Bucket m = b[i];
      if (i + 1 < b.size()) m = {b[i + 1].le, b[i].count + b[i + 1].count};
      merged.push_back(m);
    }
    b = std::move(merged);
  }
  return b;
}

// The bucket range with events in either distribution, so both charts share rows.
std::pair<double, double> busy_range(const LatencyDetail& d) {
  double lo = std::numeric_limits<double>::infinity(), hi = 0;
  for (const auto* dist : {&d.tick, &d.window}) {
    if (!*dist) continue;
    double lower = 0;
    for (const Bucket& b : (*dist)->buckets) {
      if (b.count > 0) {
        lo = std::min(lo, lower);
        hi = std::max(hi, b.le);
      }
      lower = b.le;
    }
  }
  return {lo, hi};
}

void chart(const std::string& title, const std::optional<Distribution>& dist, std::pair<double, double> range,
           int width, size_t rows, Lines& out) {
  if (!dist) {
    out.push_back({title + ": no data (histogram absent, or reset in between)", Hint::header});
    return;
  }
  double mean = dist->count > 0 ? dist->sum / dist->count : kNaN;
  out.push_back({title + ": " + format_rate(dist->count, 0) + " events, mean" + format_duration(mean), Hint::header});
  if (!(dist->count > 0)) return;
  std::vector<Bucket> in_range;
  double lower = 0;
  for (const Bucket& b : dist->buckets) {
    if (b.le > range.first && lower < range.second) in_range.push_back(b);
    lower = b.le;
  }
  std::vector<Bucket> shown = fit_buckets(in_range, rows);
  double most = 0;
  for (const Bucket& b : shown) most = std::max(most, b.count);
  double q[3] = {quantile(*dist, 0.5), quantile(*dist, 0.95), quantile(*dist, 0.99)};
  const char* qname[3] = {"p50", "p95", "p99"};
  int bw = std::max(10, width - 32);
  double low = shown.empty() ? 0 : range.first;
  for (const Bucket& b : shown) {
    std::string marks;
    for (int i = 0; i < 3; ++i) {
      if (q[i] > low && q[i] <= b.le) marks += std::string(" <") + qname[i];
    }
    std::string le = std::isinf(b.le) ? "  +Inf" : format_duration(b.le);
    out.push_back({" <=" + le + " |" + pad_right(std::string(most > 0 ? static_cast<size_t>(b.count / most * bw + 0.5) : 0, '#'), bw) +
                       format_rate(b.count, 7) + marks,
                   marks.empty() ? Hint::normal : Hint::bar});
    low = b.le;
  }
}

void latency(const LatencyDetail& d, const ViewState& s, int width, int height, Lines& out) {
  std::vector<size_t> visible = visible_targets(d, s);
  if (visible.empty()) {
    out.push_back({"No latency data: the eBPF collectors are off or not permitted here (see nodeperf doctor).", Hint::dim});
    return;
  }
  size_t pos = std::min(s.target, visible.size() - 1);
  const LatencyTarget& t = d.targets[visible[pos]];
  out.push_back({"Latency: " + t.title + "   (" + std::to_string(pos + 1) + "/" + std::to_string(visible.size()) +
                     ", up/down to change)",
                 Hint::title});
  out.push_back({"Agent window quantiles: p50" + format_duration(d.agent.p50) + "  p95" + format_duration(d.agent.p95) +
                 "  p99" + format_duration(d.agent.p99)});
  if (t.histogram.empty()) {
    out.push_back({"Only a summary is exported for this target: its window quantiles.", Hint::dim});
    double top = std::max({d.agent.p50, d.agent.p95, d.agent.p99, 0.0});
    int bw = std::max(10, width - 20);
    const std::pair<const char*, double> qs[] = {{"p50", d.agent.p50}, {"p95", d.agent.p95}, {"p99", d.agent.p99}};
    for (auto [name, v] : qs) {
      out.push_back({std::string(" ") + name + " |" + bar(top > 0 ? v / top : 0, bw) + format_duration(v, 8), Hint::bar});
    }
    return;
  }
  size_t rows = height > 0 ? static_cast<size_t>(std::max(2, (height - 9) / 2)) : 64;
  auto range = busy_range(d);
  chart("Last tick", d.tick, range, width, rows, out);
  chart("Window (" + format_age(d.window_seconds) + ")", d.window, range, width, rows, out);
}

std::vector<Line> help_lines() {
  return {
      {"Keys", Hint::header},
      {"  1 2 3 4 / Tab  screens: overview, cgroups (pods), latency detail, volumes"},
      {"  s              next sort column (cgroups); n c t m i r d p x pick one"},
      {"  /              filter cgroups, latency targets and volumes by name (Enter keeps, Esc clears)"},
      {"  up/down        select a cgroup, volume or latency target; Enter on a cgroup: its latency"},
      {"  left/right     step back and forward through the agent's history"},
      {"  End            back to live"},
      {"  space          pause (keep this frame)"},
      {"  ?              this help; any key closes it"},
      {"  q              quit"},
      {""},
      {"Rates come from two snapshots of the agent and the time between them;"},
      {"a counter that went backwards shows '-'. '-' also marks a column no"},
      {"exported metric feeds yet. See docs/top.md.", Hint::normal},
  };
}

}  // namespace

std::string bar(double fraction, int width) {
  if (!(fraction > 0)) fraction = 0;
  fraction = std::min(fraction, 1.0);
  auto filled = static_cast<size_t>(fraction * width + 0.5);
  return std::string(filled, '#') + std::string(static_cast<size_t>(width) - filled, ' ');
}

std::vector<const CgroupRow*> visible_cgroups(const Model& model, const ViewState& state) {
  std::vector<const CgroupRow*> rows;
  for (const CgroupRow& r : model.cgroups) {
    if (state.filter.empty() || r.name.find(state.filter) != std::string::npos) rows.push_back(&r);
  }
  Column c = state.sort;
  std::stable_sort(rows.begin(), rows.end(), [c](const CgroupRow* a, const CgroupRow* b) {
    if (c == Column::name) return a->name < b->name;
    double x = column_value(*a, c), y = column_value(*b, c);
    if (std::isnan(x) != std::isnan(y)) return std::isnan(y);  // blanks last
    if (x != y && !std::isnan(x)) return x > y;
    return a->name < b->name;
  });
  return rows;
}

std::vector<const VolumeRow*> visible_volumes(const Model& model, const ViewState& state) {
  std::vector<const VolumeRow*> rows;
  for (const VolumeRow& v : model.volumes) {
    std::string names = v.pod + " " + v.name + " " + v.volume;
    if (state.filter.empty() || names.find(state.filter) != std::string::npos) rows.push_back(&v);
  }
  auto iops = [](const VolumeRow* v) {
    double r = std::isnan(v->reads) ? 0 : v->reads, w = std::isnan(v->writes) ? 0 : v->writes;
    return r + w;
  };
  std::stable_sort(rows.begin(), rows.end(), [&](const VolumeRow* a, const VolumeRow* b) {
    if (a->stale != b->stale) return a->stale;
    if (iops(a) != iops(b)) return iops(a) > iops(b);
    return std::tie(a->pod, a->name) < std::tie(b->pod, b->name);
  });
  return rows;
}

std::vector<size_t> visible_targets(const LatencyDetail& detail, const ViewState& state) {
  std::vector<size_t> out;
  for (size_t i = 0; i < detail.targets.size(); ++i) {
    if (state.filter.empty() || detail.targets[i].title.find(state.filter) != std::string::npos) out.push_back(i);
  }
  return out;
}

std::string key_bar(const ViewState& s, int width) {
  if (s.editing_filter) return "Filter: " + s.filter + "_   (Enter: keep, Esc: clear)";
  auto tab = [&](Screen screen, const char* name) {
    return s.screen == screen ? std::string("[") + name + "]" : std::string(" ") + name + " ";
  };
  std::string keys = tab(Screen::overview, "1 Overview") + tab(Screen::cgroups, "2 Cgroups") +
                     tab(Screen::latency, "3 Latency") + tab(Screen::volumes, "4 Volumes");
  return keys + (width >= 100 ? " s:sort /:filter ?:help spc:pause <-/->:history q:quit" : " s:sort /:filter ?:help q:quit");
}

std::vector<Line> render(const Model& model, const LatencyDetail& detail, const ViewState& state, int width,
                         int height) {
  if (height > 0 && height < 3) height = 3;  // title, one line, key bar
  Lines out;
  out.push_back({title_line(model, state), Hint::title});
  if (state.help) {
    for (Line& l : help_lines()) out.push_back(std::move(l));
  } else if (state.screen == Screen::overview) {
    overview(model, width, height, out);
  } else if (state.screen == Screen::cgroups) {
    cgroups(model, state, width, height, out);
  } else if (state.screen == Screen::volumes) {
    volumes(model, state, width, height, out);
  } else {
    latency(detail, state, width, height, out);
  }
  if (height <= 0) {
    for (Line& l : out) l.text = l.text.substr(0, static_cast<size_t>(std::max(width, 1)));
    return out;
  }
  auto h = static_cast<size_t>(height);
  if (out.size() > h - 1) {
    size_t hidden = out.size() - (h - 2);
    out.resize(h - 2);
    out.push_back({"  (" + std::to_string(hidden) + " more lines: enlarge the terminal)", Hint::dim});
  }
  out.resize(h - 1);
  out.push_back({key_bar(state, width), Hint::header});
  for (Line& l : out) l.text = pad_right(l.text, width);
  return out;
}

}  // namespace nodeperf::top
