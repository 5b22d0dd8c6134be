#include "collectors/bpf_probe.h"

#include <bpf/btf.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <utility>

#include "agent/log.h"

#include "agent/metric_table.h"

namespace nodeperf {

ProbeError::ProbeError(std::string_view stage, int err)
    : std::runtime_error(std::string(stage) + " failed: " + std::strerror(err < 0 ? -err : err) +
                         (err == -EPERM || err == EPERM ? " (needs root, or CAP_BPF and CAP_PERFMON)" : "")) {}

namespace {

int libbpf_to_log(libbpf_print_level level, const char* format, va_list args) {
  if (level == LIBBPF_DEBUG || !log_enabled(LogLevel::debug)) return 0;
  char line[512];
  int n = vsnprintf(line, sizeof line, format, args);
  std::string_view text(line, n < 0 ? 0 : std::min<size_t>(static_cast<size_t>(n), sizeof line - 1));
  while (!text.empty() && text.back() == '\n') text.remove_suffix(1);
  log_debug("libbpf: " + std::string(text));
  return n;
}

// The kernel's BTF, parsed once for all the probes' questions at start-up
// and released after (it is several megabytes).
btf*& vmlinux_slot() {
  static btf* vmlinux = nullptr;
  return vmlinux;
}

const btf* vmlinux_btf() {
  btf*& slot = vmlinux_slot();
  if (!slot) slot = btf__load_vmlinux_btf();
  return slot;
}

}  // namespace

void route_libbpf_logs() { libbpf_set_print(libbpf_to_log); }

void release_kernel_btf() {
  btf*& slot = vmlinux_slot();
  btf__free(slot);
  slot = nullptr;
}

bool tracepoint_has_btf(const std::string& tracepoint) {
  return tracepoint_arg_count(tracepoint) >= 0;
}

bool tracepoints_have_btf(std::initializer_list<const char*> tracepoints) {
  for (const char* tp : tracepoints) {
    if (!tracepoint_has_btf(tp)) return false;
  }
  return true;
}

bool kernel_struct_has(const char* type, const char* member) {
  const btf* b = vmlinux_btf();
  int id = b ? btf__find_by_name_kind(b, type, BTF_KIND_STRUCT) : -1;
  if (id <= 0) return false;
  const btf_type* t = btf__type_by_id(b, id);
  const btf_member* m = btf_members(t);
  for (int i = 0; i < btf_vlen(t); ++i, ++m) {
    if (std::string_view(btf__name_by_offset(b, m->name_off)) == member) return true;
  }
  return false;
}

int tracepoint_arg_count(const std::string& tracepoint) {
  const btf* b = vmlinux_btf();
  if (!b) return -1;
  // typedef void (*btf_trace_X)(void *__data, args...);
  int id = btf__find_by_name_kind(b, ("btf_trace_" + tracepoint).c_str(), BTF_KIND_TYPEDEF);
  if (id <= 0) return -1;
  const btf_type* t = btf__type_by_id(b, btf__resolve_type(b, id));
  if (!t || !btf_is_ptr(t)) return -1;
  t = btf__type_by_id(b, t->type);
  if (!t || !btf_is_func_proto(t)) return -1;
  return btf_vlen(t) - 1;
}

void set_thresholds(volatile __u64* table, const BucketLayout& layout) {
  const auto& t = layout.thresholds_ns();
  for (size_t i = 0; i < t.size(); ++i) table[i] = t[i];
}

bool choose_programs(bool use_btf, std::initializer_list<bpf_program*> tp_btf,
                     std::initializer_list<bpf_program*> raw_tp) {
  // The raw_tp twins run only where tp_btf cannot attach, never on the
  // machines we test on; this makes them run there (docs/bpf.md).
  static const bool force_raw_tp = [] {
    const char* v = std::getenv("NODEPERF_BPF_ATTACH");
    return v && std::string_view(v) == "raw_tp";
  }();
  use_btf = use_btf && !force_raw_tp;
  for (bpf_program* p : tp_btf) bpf_program__set_autoload(p, use_btf);
  for (bpf_program* p : raw_tp) bpf_program__set_autoload(p, !use_btf);
  return use_btf;
}

AttachedPrograms::AttachedPrograms(std::string_view probe, bpf_object* object) : probe_(probe) {
  bpf_program* prog;
  bpf_object__for_each_program(prog, object) {
    if (!bpf_program__autoload(prog)) continue;
    bpf_link* link = bpf_program__attach(prog);
    if (!link) {
      int err = -errno;
      for (bpf_link* l : links_) bpf_link__destroy(l);
      throw ProbeError(std::string("attach ") + bpf_program__name(prog), err);
    }
    programs_.push_back(prog);
    links_.push_back(link);
  }
}

AttachedPrograms::~AttachedPrograms() {
  for (bpf_link* l : links_) bpf_link__destroy(l);
}

std::string AttachedPrograms::names() const {
  std::string out;
  for (bpf_program* p : programs_) out += (out.empty() ? "" : ", ") + std::string(bpf_program__name(p));
  return out;
}

void AttachedPrograms::emit_stats(SampleSink& out) const {
  namespace m = agent_metric;
  auto table = agent_metrics();
  for (size_t i = 0; i < programs_.size(); ++i) {
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(bpf_program__fd(programs_[i]), &info, &len) != 0) info = {};
    bpf_link_info link{};
    uint32_t link_len = sizeof link;
    bool attached = bpf_obj_get_info_by_fd(bpf_link__fd(links_[i]), &link, &link_len) == 0 && info.id != 0 &&
                    link.prog_id == info.id;
    Label labels[] = {{"probe", probe_}, {"program", bpf_program__name(programs_[i])}};
    out.add(table[m::bpf_program_attached], attached ? 1 : 0, labels);
    out.add(table[m::bpf_program_runs], static_cast<double>(info.run_cnt), labels);
    out.add(table[m::bpf_program_run_seconds], static_cast<double>(info.run_time_ns) * 1e-9, labels);
  }
}

void emit_map_drops(SampleSink& out, std::string_view probe, int drops_fd,
                    std::initializer_list<std::string_view> maps) {
  std::vector<uint64_t> per_cpu(static_cast<size_t>(libbpf_num_possible_cpus()));
  uint32_t slot = 0;
  for (std::string_view map : maps) {
    uint64_t sum = 0;
    if (bpf_map_lookup_elem(drops_fd, &slot, per_cpu.data()) == 0) {
      for (uint64_t v : per_cpu) sum += v;
    }
    Label labels[] = {{"probe", probe}, {"map", map}};
    out.add(agent_metrics()[agent_metric::bpf_map_drops], static_cast<double>(sum), labels);
    ++slot;
  }
}

void CgroupWindows::add(uint64_t cgroup_id, uint32_t bucket, uint64_t count, uint64_t sum_ns) {
  auto it = by_id_.find(cgroup_id);
  if (it == by_id_.end()) it = by_id_.emplace(cgroup_id, Entry{LatencyHistogram(*layout_, window_ticks_)}).first;
  it->second.histogram.add(bucket, count, sum_ns);
  it->second.fresh = true;
}

void CgroupWindows::emit(SampleSink& out, const MetricInfo& summary) {
  for (auto it = by_id_.begin(); it != by_id_.end();) {
    LatencyHistogram& histogram = it->second.histogram;
    histogram.end_tick();
    // A removed cgroup's series go at the next tick, as the cgroups
    // collector's do, even with events still in its window (a cgroup with
    // events this tick was there: only the quiet ones cost a stat); one
    // not known yet is kept (not shown) until it is, or until it is idle.
    bool fresh = std::exchange(it->second.fresh, false);
    if ((!fresh && paths_.gone(it->first)) || (histogram.idle_for_window() && paths_.path(it->first).empty())) {
      it = by_id_.erase(it);
      continue;
    }
    const std::string& path = paths_.path(it->first);
    Label labels[] = {{"cgroup", path}};
    if (!path.empty()) emit_window_summary(out, summary, labels, histogram);
    ++it;
  }
}

}  // namespace nodeperf
