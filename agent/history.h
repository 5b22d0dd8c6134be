// The recent snapshots, for the JSON API (`nodeperf top` scrolls back
// through them): a bounded ring of the last `history` of ticks. An entry
// holds the time and the values only; the list of series (names, help,
// labels) is one shared SeriesLayout for as long as it does not change, so
// an entry costs 8 bytes per series plus a small constant. The values and
// the layouts are also capped in bytes, so a node with many series, or with
// series that change every tick (cgroup churn), keeps a shorter history
// rather than a larger agent.
#pragma once

#include <chrono>
#include <deque>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "agent/metric_table.h"

namespace nodeperf {

class Snapshot;

// The series of a snapshot in exposition order; families without samples
// are left out, as /metrics leaves them out.
struct SeriesLayout {
  struct Family {
    const MetricInfo* info;
    std::string name;  // the exposed name
    size_t size;       // how many of `series` belong to it, after the previous family's
  };
  struct Series {
    std::string_view suffix;  // a string literal, as in Sample
    std::string labels;       // rendered, as in Sample
  };
  std::vector<Family> families;
  std::vector<Series> series;
  size_t bytes = 0;  // its heap blocks (as heap_block counts them): counted against the history's cap

  explicit SeriesLayout(const Snapshot& snapshot);
  bool matches(const Snapshot& snapshot) const;  // same series in the same order
};

struct HistoryEntry {
  std::chrono::system_clock::time_point time;
  // When it was added, on the steady clock: what a client takes the time
  // between two entries from (the wall clock can be stepped).
  std::chrono::steady_clock::time_point steady;
  std::shared_ptr<const SeriesLayout> layout;
  std::vector<double> values;  // values[i] is the value of layout->series[i]

  size_t bytes() const;  // memory it holds without its layout (its slot in the deque and its values), about
};

// What a heap block of n bytes takes from glibc's malloc on 64-bit: n and an
// 8-byte header, in steps of 16, 32 at least (0 for no block). The history
// counts blocks so: counting n alone, entries with a layout each (cgroup
// churn) and label strings of 40-60 characters held 10-16% more than it
// counted, and the byte cap bound less than it said.
size_t heap_block(size_t n);

// Seconds since the Unix epoch, as the API writes and reads times. Lookups
// compare in this form, so a time read back from a response finds its entry.
double unix_seconds(std::chrono::system_clock::time_point t);

// Entries kept for `history` at one per `tick`: history / tick, at least 1.
size_t history_capacity(std::chrono::milliseconds history, std::chrono::milliseconds tick);

// The cap on the history's values and layouts: 32 MiB is 10 minutes at 1 s of 7,000
// series, or about 2 minutes of 30,000 (1,000 containers).
constexpr size_t kHistoryMaxBytes = 32 << 20;

class History {
 public:
  explicit History(size_t capacity, size_t max_bytes = kHistoryMaxBytes) : capacity_(capacity), max_bytes_(max_bytes) {}

  void set_capacity(size_t capacity);  // drops the oldest entries past it
  void add(const Snapshot& snapshot);  // drops the oldest entry when full

  bool empty() const { return entries_.empty(); }
  size_t size() const { return entries_.size(); }
  size_t bytes() const { return bytes_; }  // what counts against the byte cap
  // Only when not empty:
  const HistoryEntry& oldest() const { return entries_.front(); }
  const HistoryEntry& newest() const { return entries_.back(); }
  // The newest entry whose time is exactly `unix_time` (a time read back
  // from a response finds its entry, across wall clock steps); else the
  // newest taken with a time at or before it; else the oldest.
  const HistoryEntry& at_or_before(double unix_time) const;

 private:
  void trim();  // drops the oldest entries past the capacity or the byte cap (never the newest)

  size_t capacity_;
  size_t max_bytes_;
  size_t bytes_ = 0;                  // of the entries and their layouts, each layout once
  std::deque<HistoryEntry> entries_;  // oldest first
};

}  // namespace nodeperf
