#include "cli/top_model.h"

#include <algorithm>
#include <cmath>
#include <nlohmann/json.hpp>

namespace nodeperf::top {
namespace {

using nlohmann::json;

bool includes(const Labels& labels, const Labels& match) {
  for (const auto& [k, v] : match) {
    auto it = labels.find(k);
    if (it == labels.end() || it->second != v) return false;
  }
  return true;
}

double number_or_nan(const json& j) { return j.is_number() ? j.get<double>() : kNaN; }

double parse_le(const std::string& le) {
  if (le == "+Inf") return std::numeric_limits<double>::infinity();
  try {
    return std::stod(le);
  } catch (const std::exception&) {
    return kNaN;
  }
}

double percent_rate(double before, double after, double seconds) { return rate(before, after, seconds) * 100; }

// Cumulative bucket counts by le, summed over the matching series.
std::map<double, double> cumulative_buckets(const Snapshot& s, std::string_view name, const Labels& match) {
  std::map<double, double> out;
  const RawFamily* f = s.family(name);
  if (!f) return out;
  for (const RawSample& x : f->samples) {
    if (x.suffix != "_bucket" || !includes(x.labels, match)) continue;
    auto le = x.labels.find("le");
    if (le == x.labels.end()) continue;
    double bound = parse_le(le->second);
    if (!std::isnan(bound)) out[bound] += x.value;
  }
  return out;
}

double summed(const Snapshot& s, std::string_view name, const Labels& match, std::string_view suffix) {
  const RawFamily* f = s.family(name);
  double total = 0;
  if (!f) return kNaN;
  for (const RawSample& x : f->samples) {
    if (x.suffix == suffix && includes(x.labels, match)) total += x.value;
  }
  return total;
}

// CPU usage from the mode counters of one cpu ("" for all of them).
CpuUsage cpu_usage(const Snapshot& now, const Snapshot* before, const std::string& cpu) {
  CpuUsage u;
  u.cpu = cpu.empty() ? "all" : cpu;
  if (!before) return u;
  const RawFamily* f = now.family("nodeperf_cpu_seconds_total");
  const RawFamily* g = before->family("nodeperf_cpu_seconds_total");
  if (!f || !g) return u;
  // Differences per cpu and mode first: summing the counters before
  // subtracting would turn rounding into negative deltas.
  std::map<std::pair<std::string, std::string>, double> old;
  for (const RawSample& x : g->samples) {
    auto c = x.labels.find("cpu");
    auto m = x.labels.find("mode");
    if (c != x.labels.end() && m != x.labels.end()) old[{c->second, m->second}] = x.value;
  }
  std::map<std::string, double> delta;  // by mode
  double total = 0;
  for (const RawSample& x : f->samples) {
    auto c = x.labels.find("cpu");
    auto m = x.labels.find("mode");
    if (c == x.labels.end() || m == x.labels.end() || (!cpu.empty() && c->second != cpu)) continue;
    auto it = old.find({c->second, m->second});
    if (it == old.end()) continue;  // a CPU that came online in between
    double d = x.value - it->second;
    if (d < 0) return u;  // a reset
    delta[m->second] += d;
    total += d;
  }
  if (total <= 0) return u;
  auto pct = [&](std::initializer_list<const char*> modes) {
    double sum = 0;
    for (const char* m : modes) sum += delta[m];
    return sum / total * 100;
  };
  u.user = pct({"user", "nice"});
  u.system = pct({"system", "irq", "softirq"});
  u.iowait = pct({"iowait"});
  u.steal = pct({"steal"});
  u.busy = 100 - pct({"idle", "iowait"});
  return u;
}

// The per-cgroup metrics top knows about: the cgroups collector's and the
// eBPF probes' per-cgroup series, joined on the `cgroup` label.
enum class Kind { percent_of_time, gauge, byte_rate, p99, per_second };
struct CgroupMetric {
  const char* name;
  double CgroupRow::*column;
  Kind kind;
};
constexpr CgroupMetric kCgroupMetrics[] = {
    {"nodeperf_cgroup_cpu_usage_seconds_total", &CgroupRow::cpu, Kind::percent_of_time},
    {"nodeperf_cgroup_cpu_throttled_seconds_total", &CgroupRow::throttled, Kind::percent_of_time},
    {"nodeperf_cgroup_memory_working_set_bytes", &CgroupRow::memory, Kind::gauge},
    {"nodeperf_cgroup_io_read_bytes_total", &CgroupRow::io, Kind::byte_rate},
    {"nodeperf_cgroup_io_written_bytes_total", &CgroupRow::io, Kind::byte_rate},
    {"nodeperf_cgroup_runqueue_latency_window_seconds", &CgroupRow::runqueue_p99, Kind::p99},
    {"nodeperf_cgroup_disk_io_latency_window_seconds", &CgroupRow::disk_p99, Kind::p99},
    {"nodeperf_cgroup_tcp_rtt_window_seconds", &CgroupRow::rtt_p99, Kind::p99},
    {"nodeperf_cgroup_tcp_retransmits_total", &CgroupRow::retransmits, Kind::per_second},
};

std::string display_name(const Labels& labels, const std::string& cgroup) {
  auto get = [&](const char* k) {
    auto it = labels.find(k);
    return it == labels.end() ? std::string() : it->second;
  };
  std::string pod = get("pod");
  if (pod.empty()) return cgroup;
  std::string name = get("namespace") + "/" + pod;
  if (std::string c = get("container"); !c.empty()) name += "/" + c;
  return name;
}

std::vector<CgroupRow> cgroup_rows(const Snapshot& now, const Snapshot* before, double elapsed, bool& kubernetes) {
  std::map<std::string, CgroupRow> rows;
  for (const CgroupMetric& m : kCgroupMetrics) {
    const RawFamily* f = now.family(m.name);
    if (!f) continue;
    for (const RawSample& x : f->samples) {
      auto cg = x.labels.find("cgroup");
      if (cg == x.labels.end() || !x.suffix.empty()) continue;
      if (m.kind == Kind::p99) {
        auto q = x.labels.find("quantile");
        if (q == x.labels.end() || q->second != "0.99") continue;
      }
      CgroupRow& row = rows[cg->second];
      if (row.cgroup.empty()) {
        row.cgroup = cg->second;
        row.name = display_name(x.labels, cg->second);
        kubernetes = kubernetes || x.labels.count("pod");
      }
      double v = kNaN;
      switch (m.kind) {
        case Kind::gauge:
        case Kind::p99: v = x.value; break;
        case Kind::percent_of_time:
        case Kind::byte_rate:
        case Kind::per_second: {
          if (!before) break;
          Labels match = x.labels;
          v = rate(before->value(m.name, match), x.value, elapsed);
          if (m.kind == Kind::percent_of_time) v *= 100;
          break;
        }
      }
      double& cell = row.*m.column;
      cell = std::isnan(cell) ? v : (std::isnan(v) ? cell : cell + v);
    }
  }
  std::vector<CgroupRow> out;
  out.reserve(rows.size());
  for (auto& [k, row] : rows) out.push_back(std::move(row));
  return out;
}

}  // namespace

const RawFamily* Snapshot::family(std::string_view name) const {
  auto it = families.find(name);
  return it == families.end() ? nullptr : &it->second;
}

double Snapshot::value(std::string_view name, const Labels& match, std::string_view suffix) const {
  const RawFamily* f = family(name);
  if (!f) return kNaN;
  for (const RawSample& x : f->samples) {
    if (x.suffix == suffix && includes(x.labels, match)) return x.value;
  }
  return kNaN;
}

std::map<std::string, double> Snapshot::by_label(std::string_view name, std::string_view label,
                                                 const Labels& match) const {
  std::map<std::string, double> out;
  const RawFamily* f = family(name);
  if (!f) return out;
  for (const RawSample& x : f->samples) {
    auto it = x.labels.find(label);
    if (x.suffix.empty() && it != x.labels.end() && includes(x.labels, match)) out[it->second] += x.value;
  }
  return out;
}

Snapshot parse_snapshot(std::string_view text) {
  try {
    json doc = json::parse(text);
    Snapshot s;
    s.time = doc.at("time").get<double>();
    if (doc.contains("monotonic") && doc["monotonic"].is_number()) s.monotonic = doc["monotonic"].get<double>();
    s.tick_seconds = doc.value("tick_seconds", 1.0);
    s.hostname = doc.value("hostname", std::string());
    for (const json& f : doc.at("families")) {
      RawFamily fam;
      fam.name = f.at("name").get<std::string>();
      fam.type = f.value("type", std::string("untyped"));
      const json& samples = f.at("samples");
      fam.samples.reserve(samples.size());
      for (const json& x : samples) {
        RawSample sample;
        if (auto l = x.find("labels"); l != x.end()) {
          for (const auto& [k, v] : l->items()) sample.labels.emplace(k, v.get<std::string>());
        }
        sample.suffix = x.value("suffix", std::string());
        sample.value = number_or_nan(x.at("value"));
        fam.samples.push_back(std::move(sample));
      }
      std::string name = fam.name;
      s.families.emplace(std::move(name), std::move(fam));
    }
    return s;
  } catch (const json::exception& e) {
    throw ParseError(std::string("bad snapshot JSON: ") + e.what());
  }
}

HistoryInfo parse_history(std::string_view text) {
  try {
    json doc = json::parse(text);
    HistoryInfo h;
    h.oldest = number_or_nan(doc.at("oldest"));
    h.newest = number_or_nan(doc.at("newest"));
    h.count = doc.value("count", size_t{0});
    h.tick_seconds = doc.value("tick_seconds", 1.0);
    return h;
  } catch (const json::exception& e) {
    throw ParseError(std::string("bad history JSON: ") + e.what());
  }
}

double rate(double before, double after, double seconds) {
  if (std::isnan(before) || std::isnan(after) || !(seconds > 0) || after < before) return kNaN;
  return (after - before) / seconds;
}

Quantiles summary_quantiles(const Snapshot& s, std::string_view name, const Labels& match) {
  auto q = [&](const char* which) {
    Labels m = match;
    m["quantile"] = which;
    return s.value(name, m);
  };
  return {q("0.5"), q("0.95"), q("0.99")};
}

std::optional<Distribution> histogram_delta(const Snapshot& now, const Snapshot* before, std::string_view name,
                                            const Labels& match) {
  std::map<double, double> a = cumulative_buckets(now, name, match);
  if (a.empty()) return std::nullopt;
  std::map<double, double> b;
  if (before) b = cumulative_buckets(*before, name, match);
  Distribution d;
  double previous = 0;
  for (auto [le, cumulative] : a) {
    auto old = b.find(le);
    double c = cumulative - (old == b.end() ? 0 : old->second);
    if (c < previous) return std::nullopt;  // a reset: no meaningful difference
    d.buckets.push_back({le, c - previous});
    previous = c;
  }
  d.count = previous;
  double sum_now = summed(now, name, match, "_sum");
  double sum_before = before ? summed(*before, name, match, "_sum") : 0;
  d.sum = std::isnan(sum_before) ? sum_now : sum_now - sum_before;
  return d;
}

double quantile(const Distribution& d, double q) {
  if (!(d.count > 0)) return kNaN;
  double rank = q * d.count;
  double below = 0, lower = 0;
  for (const Bucket& b : d.buckets) {
    if (below + b.count >= rank && b.count > 0) {
      if (std::isinf(b.le)) return lower;
      return lower + (b.le - lower) * (rank - below) / b.count;
    }
    below += b.count;
    lower = std::isinf(b.le) ? lower : b.le;
  }
  return lower;
}

double seconds_between(const Snapshot& older, const Snapshot& newer) {
  if (std::isfinite(older.monotonic) && std::isfinite(newer.monotonic)) return newer.monotonic - older.monotonic;
  return newer.time - older.time;
}

Model build_model(const Snapshot& now, const Snapshot* before) {
  Model m;
  m.hostname = now.hostname;
  m.time = now.time;
  m.tick_seconds = now.tick_seconds;
  double dt = before ? seconds_between(*before, now) : kNaN;
  m.elapsed = dt;
  auto counter_rate = [&](std::string_view name, const Labels& match = {}) {
    return before ? rate(before->value(name, match), now.value(name, match), dt) : kNaN;
  };

  NodeFigures& n = m.node;
  n.total = cpu_usage(now, before, "");
  std::vector<std::string> cpus;
  for (auto& [cpu, v] : now.by_label("nodeperf_cpu_seconds_total", "cpu", {{"mode", "idle"}})) cpus.push_back(cpu);
  std::sort(cpus.begin(), cpus.end(), [](const std::string& a, const std::string& b) {
    return a.size() != b.size() ? a.size() < b.size() : a < b;  // 2 before 10
  });
  for (const std::string& cpu : cpus) n.cpus.push_back(cpu_usage(now, before, cpu));
  n.load1 = now.value("nodeperf_load1");
  n.load5 = now.value("nodeperf_load5");
  n.load15 = now.value("nodeperf_load15");
  n.procs_running = now.value("nodeperf_procs_running");
  n.procs_blocked = now.value("nodeperf_procs_blocked");
  n.context_switches = counter_rate("nodeperf_context_switches_total");
  n.mem_total = now.value("nodeperf_memory_MemTotal_bytes");
  n.mem_available = now.value("nodeperf_memory_MemAvailable_bytes");
  n.mem_cache = now.value("nodeperf_memory_Cached_bytes") + now.value("nodeperf_memory_Buffers_bytes");
  n.swap_total = now.value("nodeperf_memory_SwapTotal_bytes");
  n.swap_free = now.value("nodeperf_memory_SwapFree_bytes");
  if (before) {
    auto psi = [&](const char* name) {
      return percent_rate(before->value(name), now.value(name), dt);
    };
    n.cpu_some = psi("nodeperf_pressure_cpu_waiting_seconds_total");
    n.cpu_full = psi("nodeperf_pressure_cpu_stalled_seconds_total");
    n.memory_some = psi("nodeperf_pressure_memory_waiting_seconds_total");
    n.memory_full = psi("nodeperf_pressure_memory_stalled_seconds_total");
    n.io_some = psi("nodeperf_pressure_io_waiting_seconds_total");
    n.io_full = psi("nodeperf_pressure_io_stalled_seconds_total");
  }
  n.runqueue = summary_quantiles(now, "nodeperf_runqueue_latency_window_seconds", {});
  n.tcp_rtt = summary_quantiles(now, "nodeperf_tcp_rtt_window_seconds", {});
  n.tcp_connect = summary_quantiles(now, "nodeperf_tcp_connect_latency_window_seconds", {});
  n.tcp_retransmits = counter_rate("nodeperf_netstat_Tcp_RetransSegs");
  n.tcp_out_segments = counter_rate("nodeperf_netstat_Tcp_OutSegs");
  n.tcp_established = now.value("nodeperf_netstat_Tcp_CurrEstab");

  for (auto& [dev, v] : now.by_label("nodeperf_disk_reads_completed_total", "device")) {
    DiskRow d;
    d.device = dev;
    Labels l{{"device", dev}};
    d.reads = counter_rate("nodeperf_disk_reads_completed_total", l);
    d.writes = counter_rate("nodeperf_disk_writes_completed_total", l);
    d.read_bytes = counter_rate("nodeperf_disk_read_bytes_total", l);
    d.written_bytes = counter_rate("nodeperf_disk_written_bytes_total", l);
    d.utilisation = counter_rate("nodeperf_disk_io_time_seconds_total", l) * 100;
    d.read_latency = summary_quantiles(now, "nodeperf_disk_io_latency_window_seconds", {{"device", dev}, {"op", "read"}});
    d.write_latency =
        summary_quantiles(now, "nodeperf_disk_io_latency_window_seconds", {{"device", dev}, {"op", "write"}});
    m.disks.push_back(std::move(d));
  }
  for (auto& [dev, v] : now.by_label("nodeperf_network_receive_bytes_total", "device")) {
    NetRow r;
    r.device = dev;
    Labels l{{"device", dev}};
    r.rx_bytes = counter_rate("nodeperf_network_receive_bytes_total", l);
    r.tx_bytes = counter_rate("nodeperf_network_transmit_bytes_total", l);
    r.rx_packets = counter_rate("nodeperf_network_receive_packets_total", l);
    r.tx_packets = counter_rate("nodeperf_network_transmit_packets_total", l);
    r.drops = counter_rate("nodeperf_network_receive_drop_total", l) + counter_rate("nodeperf_network_transmit_drop_total", l);
    r.errors = counter_rate("nodeperf_network_receive_errs_total", l) + counter_rate("nodeperf_network_transmit_errs_total", l);
    m.nets.push_back(std::move(r));
  }
  m.cgroups = cgroup_rows(now, before, dt, m.kubernetes);
  m.volumes = volume_rows(now, before, dt);
  return m;
}

std::vector<LatencyTarget> latency_targets(const Snapshot& s) {
  std::vector<LatencyTarget> out;
  auto node = [&](const char* title, const char* base) {
    std::string h = std::string(base) + "_seconds";
    if (s.family(h)) out.push_back({title, h, std::string(base) + "_window_seconds", {}});
  };
  node("node run queue", "nodeperf_runqueue_latency");
  node("node tcp rtt", "nodeperf_tcp_rtt");
  node("node tcp connect", "nodeperf_tcp_connect_latency");
  for (const char* what : {"latency", "queue"}) {
    std::string base = std::string("nodeperf_disk_io_") + what;
    const RawFamily* f = s.family(base + "_seconds");
    if (!f) continue;
    for (const RawSample& x : f->samples) {
      if (x.suffix != "_count") continue;
      auto dev = x.labels.find("device");
      auto op = x.labels.find("op");
      if (dev == x.labels.end() || op == x.labels.end()) continue;
      out.push_back({"disk " + dev->second + " " + op->second + " " + what, base + "_seconds", base + "_window_seconds",
                     {{"device", dev->second}, {"op", op->second}}});
    }
  }
  for (const char* base : {"nodeperf_cgroup_runqueue_latency", "nodeperf_cgroup_disk_io_latency", "nodeperf_cgroup_tcp_rtt"}) {
    std::string summary = std::string(base) + "_window_seconds";
    std::string what = base + std::string_view("nodeperf_cgroup_").size();
    std::replace(what.begin(), what.end(), '_', ' ');
    for (auto& [cg, v] : s.by_label(summary, "cgroup", {{"quantile", "0.99"}})) {
      out.push_back({"cgroup " + cg + " " + what, "", summary, {{"cgroup", cg}}});
    }
  }
  return out;
}

}  // namespace nodeperf::top
