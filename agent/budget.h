// The overhead budget: the agent measures its own CPU (the process, and its
// BPF programs while kernel.bpf_stats_enabled=1) and, while the average over
// a window stays above the budget, degrades one level at a time; it restores
// one level at a time once the average stays under half the budget.
// BudgetController is the pure decision logic; the readers below measure.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <span>
#include <string_view>

namespace nodeperf {

// What a level does: the probes with high-rate events count 1 in
// sample_one_in of them (and scale back up), the tick is multiplied by
// tick_factor, and the collectors named in drop (and in every lower
// level's) are stopped.
struct BudgetLevel {
  unsigned sample_one_in;
  unsigned tick_factor;
  std::span<const std::string_view> drop;
};
// Level 0 (nothing degraded) to the last, in the order they are taken.
std::span<const BudgetLevel> budget_levels();
// True if `collector` is stopped at `level`.
bool budget_drops(unsigned level, std::string_view collector);

class BudgetController {
 public:
  // limit_ratio: CPU seconds per wall second allowed (0.05 = 5% of one
  // core); 0 turns the budget off (level 0 for good).
  BudgetController(double limit_ratio, std::chrono::milliseconds window);

  // A new budget (SIGHUP): keeps the level, starts a new window; off drops
  // to level 0 at once.
  void configure(double limit_ratio, std::chrono::milliseconds window);
  // One tick's figures: wall seconds since the last call and CPU seconds
  // used in them. Moves the level by at most one; returns the move (-1, 0, 1).
  int add(double wall_seconds, double cpu_seconds);

  unsigned level() const { return level_; }
  double limit_ratio() const { return limit_; }
  // CPU seconds per wall second over the window (0 before any sample).
  double usage_ratio() const { return wall_ > 0 ? cpu_ / wall_ : 0; }
  // The windowed average that made the last move (for the log line).
  double moved_at_usage() const { return moved_at_; }

  // Restore when the windowed average is under this share of the budget.
  static constexpr double kRestoreShare = 0.5;

 private:
  struct Sample {
    double wall, cpu;
  };
  void restart_window();

  double limit_;
  double window_;     // seconds
  unsigned level_ = 0;
  std::deque<Sample> samples_;
  double wall_ = 0, cpu_ = 0;  // sums over samples_
  double since_change_ = 0;    // wall seconds since the level (or the budget) last changed
  double moved_at_ = 0;
};

// CPU seconds the process has used, every thread (CLOCK_PROCESS_CPUTIME_ID).
double process_cpu_seconds();

// Run time of the BPF programs this process holds (its own probes), from
// bpf_prog_info, accumulated across programs loaded and unloaded.
class BpfRunTime {
 public:
  // Reads every program again; returns the seconds they ran since the last
  // call (0 on the first). The kernel counts only while BPF stats are on
  // (kernel.bpf_stats_enabled=1, or a BPF_ENABLE_STATS descriptor held).
  double advance();
  double total_seconds() const { return total_; }
  // True if the last advance() saw BPF stats on: the sysctl set, or run
  // counts growing (another process holding BPF_ENABLE_STATS).
  bool stats_enabled() const { return stats_enabled_; }

 private:
  struct Counts {
    uint64_t run_time_ns = 0, runs = 0;
  };
  std::map<uint32_t, Counts> last_;  // by program id
  double total_ = 0;
  bool first_ = true;
  bool stats_enabled_ = false;
};

}  // namespace nodeperf
