#include "agent/budget.h"

#include <bpf/bpf.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <string>

namespace nodeperf {
namespace {

// First the kernel's per-event work: the high-rate probes count 1 event in
// 8 (bpf/sampling.h; every series stays, as an estimate). Then the tick,
// which divides the agent's own per-tick work. Then the high-rate probes
// stop (sched_switch and TCP events: their cost is paid in the kernel on
// every event, sampled or not), then the per-cgroup reader, whose cost
// grows with the pods on the node.
constexpr unsigned kSampleOneIn = 8;
constexpr std::string_view kHighRateProbes[] = {"runqueue", "tcp"};
constexpr std::string_view kCgroups[] = {"cgroups"};
constexpr BudgetLevel kLevels[] = {
    {1, 1, {}},
    {kSampleOneIn, 1, {}},
    {kSampleOneIn, 2, {}},
    {kSampleOneIn, 4, {}},
    {kSampleOneIn, 4, kHighRateProbes},
    {kSampleOneIn, 4, kCgroups},
};

}  // namespace

std::span<const BudgetLevel> budget_levels() { return kLevels; }

bool budget_drops(unsigned level, std::string_view collector) {
  for (unsigned l = 1; l <= level && l < std::size(kLevels); ++l) {
    if (std::find(kLevels[l].drop.begin(), kLevels[l].drop.end(), collector) != kLevels[l].drop.end()) return true;
  }
  return false;
}

BudgetController::BudgetController(double limit_ratio, std::chrono::milliseconds window) {
  configure(limit_ratio, window);
}

void BudgetController::configure(double limit_ratio, std::chrono::milliseconds window) {
  limit_ = limit_ratio;
  window_ = std::chrono::duration<double>(window).count();
  if (limit_ <= 0) level_ = 0;
  restart_window();
}

void BudgetController::restart_window() {
  samples_.clear();
  wall_ = cpu_ = 0;
  since_change_ = 0;
}

int BudgetController::add(double wall_seconds, double cpu_seconds) {
  if (wall_seconds <= 0) return 0;
  samples_.push_back({wall_seconds, std::max(0.0, cpu_seconds)});
  wall_ += wall_seconds;
  cpu_ += samples_.back().cpu;
  since_change_ += wall_seconds;
  // Keep the newest samples that cover the window.
  while (samples_.size() > 1 && wall_ - samples_.front().wall >= window_) {
    wall_ -= samples_.front().wall;
    cpu_ -= samples_.front().cpu;
    samples_.pop_front();
  }
  // A whole window measured at this level (or budget) before judging it.
  if (limit_ <= 0 || since_change_ < window_) return 0;
  double usage = usage_ratio();
  int move = 0;
  if (usage > limit_ && level_ + 1 < std::size(kLevels)) {
    move = 1;
  } else if (usage < limit_ * kRestoreShare && level_ > 0) {
    move = -1;
  }
  if (move != 0) {
    level_ = static_cast<unsigned>(static_cast<int>(level_) + move);
    moved_at_ = usage;
    restart_window();
  }
  return move;
}

double process_cpu_seconds() {
  timespec ts{};
  if (clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts) != 0) return 0;
  return static_cast<double>(ts.tv_sec) + static_cast<double>(ts.tv_nsec) * 1e-9;
}

double BpfRunTime::advance() {
  bool sysctl_on = false;
  {
    std::ifstream in("/proc/sys/kernel/bpf_stats_enabled");
    int on = 0;
    sysctl_on = (in >> on) && on != 0;
  }
  // The programs are the process's own "anon_inode:bpf-prog" descriptors.
  std::map<uint32_t, Counts> now;
  std::error_code ec;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd", ec)) {
    char target[64];
    ssize_t n = readlink(entry.path().c_str(), target, sizeof target - 1);
    if (n <= 0 || std::string_view(target, static_cast<size_t>(n)) != "anon_inode:bpf-prog") continue;
    int fd = 0;
    try {
      fd = std::stoi(entry.path().filename().string());
    } catch (const std::exception&) {
      continue;
    }
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0) now[info.id] = {info.run_time_ns, info.run_cnt};
  }
  uint64_t grown = 0;
  bool ran = false;
  for (auto [id, counts] : now) {
    auto it = last_.find(id);
    Counts before = it == last_.end() ? Counts{} : it->second;
    if (counts.run_time_ns > before.run_time_ns) grown += counts.run_time_ns - before.run_time_ns;
    ran = ran || counts.runs > before.runs;
  }
  last_ = std::move(now);
  // The sysctl reads 0 while another process holds BPF_ENABLE_STATS (bpftop,
  // bpftool prog profile): run counts that grow say the stats are on too.
  stats_enabled_ = sysctl_on || (ran && !first_);
  double seconds = first_ ? 0 : static_cast<double>(grown) * 1e-9;
  first_ = false;
  total_ += seconds;
  return seconds;
}

}  // namespace nodeperf
