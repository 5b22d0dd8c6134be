// The Volumes screen's rows: the volumes collector's series (statvfs,
// mountinfo) and the block IO and file-system latency series, joined on
// (pod_uid, volume). Every family is indexed once by that key, so a node
// with hundreds of volumes costs one pass over each family, not one scan
// per cell.
#include <array>

#include "cli/top_model.h"

namespace nodeperf::top {
namespace {

using VolumeKey = std::pair<std::string, std::string>;  // (pod_uid, volume)

// The samples (no suffix) of one family, by volume.
using VolumeIndex = std::map<VolumeKey, std::vector<const RawSample*>>;

std::string label(const Labels& labels, std::string_view key) {
  auto it = labels.find(key);
  return it == labels.end() ? std::string() : it->second;
}

std::optional<VolumeKey> volume_key(const Labels& labels) {
  auto uid = labels.find("pod_uid");
  auto vol = labels.find("volume");
  if (uid == labels.end() || vol == labels.end()) return std::nullopt;
  return VolumeKey{uid->second, vol->second};
}

VolumeIndex index_family(const Snapshot& s, std::string_view name) {
  VolumeIndex out;
  const RawFamily* f = s.family(name);
  if (!f) return out;
  for (const RawSample& x : f->samples) {
    if (!x.suffix.empty()) continue;
    if (auto key = volume_key(x.labels)) out[*key].push_back(&x);
  }
  return out;
}

// The first sample of `key` whose labels have every pair of `match`; null if none.
const RawSample* find(const VolumeIndex& index, const VolumeKey& key, const Labels& match = {}) {
  auto it = index.find(key);
  if (it == index.end()) return nullptr;
  for (const RawSample* x : it->second) {
    bool all = true;
    for (const auto& [k, v] : match) all = all && label(x->labels, k) == v;
    if (all) return x;
  }
  return nullptr;
}

double value_of(const VolumeIndex& index, const VolumeKey& key, const Labels& match = {}) {
  const RawSample* x = find(index, key, match);
  return x ? x->value : kNaN;
}

// A family indexed in the newer snapshot and, for counters, the older one.
struct Indexed {
  VolumeIndex now, before;
};

Indexed index_both(const Snapshot& now, const Snapshot* before, std::string_view name) {
  return {index_family(now, name), before ? index_family(*before, name) : VolumeIndex{}};
}

double op_rate(const Indexed& f, const VolumeKey& key, const char* op, double elapsed) {
  Labels match{{"op", op}};
  return rate(value_of(f.before, key, match), value_of(f.now, key, match), elapsed);
}

Quantiles op_quantiles(const VolumeIndex& summary, const VolumeKey& key, const char* op) {
  auto q = [&](const char* which) { return value_of(summary, key, {{"op", op}, {"quantile", which}}); };
  return {q("0.5"), q("0.95"), q("0.99")};
}

bool has_quantiles(const Quantiles& q) { return !std::isnan(q.p50) || !std::isnan(q.p95) || !std::isnan(q.p99); }

// Names from whichever sample of the volume was found first: every volume
// series carries namespace, pod and persistentvolumeclaim when known.
void set_names(VolumeRow& row, const Labels& labels) {
  std::string pod = label(labels, "pod");
  row.pod = pod.empty() ? row.pod_uid.substr(0, 8) : label(labels, "namespace") + "/" + pod;
  std::string claim = label(labels, "persistentvolumeclaim");
  row.name = claim.empty() ? row.volume : claim;
  row.device = label(labels, "device");
}

std::string kind_of(const Labels& info, const std::string& device, bool fs_latency) {
  if (label(info, "kind") == "block") return "raw";
  if (fs_latency) return "fs";
  if (!device.empty()) return "block";
  std::string fstype = label(info, "fstype");
  return fstype == "tmpfs" || fstype == "ramfs" ? "mem" : "fs";
}

constexpr std::array kVolumeFamilies = {
    "nodeperf_volume_info",          "nodeperf_volume_capacity_bytes", "nodeperf_volume_used_bytes",
    "nodeperf_volume_stale",         "nodeperf_volume_io_ops_total",   "nodeperf_volume_io_latency_window_seconds",
    "nodeperf_volume_fs_latency_window_seconds",
};

}  // namespace

std::vector<VolumeRow> volume_rows(const Snapshot& now, const Snapshot* before, double elapsed) {
  std::map<VolumeKey, VolumeRow> rows;
  for (const char* name : kVolumeFamilies) {
    for (const auto& [key, samples] : index_family(now, name)) {
      VolumeRow& row = rows[key];
      if (!row.pod_uid.empty()) continue;
      row.pod_uid = key.first;
      row.volume = key.second;
      set_names(row, samples.front()->labels);
    }
  }
  if (rows.empty()) return {};

  VolumeIndex info = index_family(now, "nodeperf_volume_info");
  VolumeIndex capacity = index_family(now, "nodeperf_volume_capacity_bytes");
  VolumeIndex used = index_family(now, "nodeperf_volume_used_bytes");
  VolumeIndex stale = index_family(now, "nodeperf_volume_stale");
  VolumeIndex in_flight = index_family(now, "nodeperf_volume_io_in_flight");
  VolumeIndex block_latency = index_family(now, "nodeperf_volume_io_latency_window_seconds");
  VolumeIndex fs_latency = index_family(now, "nodeperf_volume_fs_latency_window_seconds");
  Indexed ops = index_both(now, before, "nodeperf_volume_io_ops_total");
  Indexed bytes = index_both(now, before, "nodeperf_volume_io_bytes_total");

  std::vector<VolumeRow> out;
  out.reserve(rows.size());
  for (auto& [key, row] : rows) {
    const RawSample* i = find(info, key);
    row.io = i ? label(i->labels, "io") : "";
    row.capacity = value_of(capacity, key);
    row.used = value_of(used, key);
    row.used_percent = row.capacity > 0 ? row.used / row.capacity * 100 : kNaN;
    row.stale = value_of(stale, key) == 1;
    row.reads = op_rate(ops, key, "read", elapsed);
    row.writes = op_rate(ops, key, "write", elapsed);
    row.read_bytes = op_rate(bytes, key, "read", elapsed);
    row.written_bytes = op_rate(bytes, key, "write", elapsed);
    row.read_latency = op_quantiles(block_latency, key, "read");
    row.write_latency = op_quantiles(block_latency, key, "write");
    bool from_fs = false;
    if (!has_quantiles(row.read_latency) && !has_quantiles(row.write_latency) && find(fs_latency, key)) {
      row.read_latency = op_quantiles(fs_latency, key, "read");
      row.write_latency = op_quantiles(fs_latency, key, "write");
      from_fs = true;
    }
    double r = value_of(in_flight, key, {{"op", "read"}}), w = value_of(in_flight, key, {{"op", "write"}});
    row.in_flight = std::isnan(r) ? w : (std::isnan(w) ? r : r + w);
    row.kind = kind_of(i ? i->labels : Labels{}, row.device, from_fs);
    out.push_back(std::move(row));
  }
  return out;
}

}  // namespace nodeperf::top
