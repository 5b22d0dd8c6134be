#include "agent/history.h"

#include <algorithm>

#include "agent/snapshot.h"

namespace nodeperf {

size_t heap_block(size_t n) {
  if (n == 0) return 0;
  return std::max<size_t>(32, (n + 8 + 15) & ~size_t{15});
}

size_t HistoryEntry::bytes() const { return sizeof(HistoryEntry) + heap_block(values.capacity() * sizeof(double)); }

SeriesLayout::SeriesLayout(const Snapshot& snapshot) {
  series.reserve(snapshot.series());
  for (const nodeperf::Family& f : snapshot.families()) {  // not SeriesLayout::Family
    if (f.samples.empty()) continue;
    families.push_back({f.info, f.name, f.samples.size()});
    for (const Sample& s : f.samples) series.push_back({s.suffix, s.labels});
  }
  // A string's characters are on the heap past the short-string buffer.
  auto heap = [](const std::string& s) { return s.capacity() > 15 ? heap_block(s.capacity() + 1) : 0; };
  // The layout and its shared_ptr's control block (a vtable pointer and two
  // counts) are one block: History::add makes it with make_shared.
  bytes = heap_block(sizeof(*this) + 16) + heap_block(families.capacity() * sizeof(Family)) +
          heap_block(series.capacity() * sizeof(Series));
  for (const Family& f : families) bytes += heap(f.name);
  for (const Series& s : series) bytes += heap(s.labels);
}

bool SeriesLayout::matches(const Snapshot& snapshot) const {
  auto family = families.begin();
  auto one = series.begin();
  for (const nodeperf::Family& f : snapshot.families()) {  // not SeriesLayout::Family
    if (f.samples.empty()) continue;
    if (family == families.end() || family->info != f.info || family->name != f.name ||
        family->size != f.samples.size()) {
      return false;
    }
    ++family;
    for (const Sample& s : f.samples) {
      if (one->suffix != s.suffix || one->labels != s.labels) return false;
      ++one;
    }
  }
  return family == families.end();
}

double unix_seconds(std::chrono::system_clock::time_point t) {
  return std::chrono::duration<double>(t.time_since_epoch()).count();
}

size_t history_capacity(std::chrono::milliseconds history, std::chrono::milliseconds tick) {
  return std::max<size_t>(1, static_cast<size_t>(history / tick));
}

void History::set_capacity(size_t capacity) {
  capacity_ = capacity;
  trim();
}

void History::trim() {
  while (entries_.size() > capacity_ || (bytes_ > max_bytes_ && entries_.size() > 1)) {
    const HistoryEntry& oldest = entries_.front();
    bytes_ -= oldest.bytes();
    // Entries sharing a layout are consecutive: it goes with the last of them.
    if (entries_.size() == 1 || entries_[1].layout != oldest.layout) bytes_ -= oldest.layout->bytes;
    entries_.pop_front();
  }
}

void History::add(const Snapshot& snapshot) {
  HistoryEntry entry{snapshot.taken(), std::chrono::steady_clock::now(), nullptr, {}};
  entry.values.reserve(snapshot.series());
  for (const Family& f : snapshot.families()) {
    for (const Sample& s : f.samples) entry.values.push_back(s.value);
  }
  // Consecutive ticks almost always have the same series: share the layout.
  if (!entries_.empty() && entries_.back().layout->matches(snapshot)) {
    entry.layout = entries_.back().layout;
  } else {
    entry.layout = std::make_shared<const SeriesLayout>(snapshot);
    bytes_ += entry.layout->bytes;
  }
  bytes_ += entry.bytes();
  entries_.push_back(std::move(entry));
  trim();
}

const HistoryEntry& History::at_or_before(double unix_time) const {
  // An entry's own time finds it, even when the wall clock was stepped back
  // since and a newer entry has an earlier time (a client scrolling back
  // asks for times it read from responses).
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    if (unix_seconds(it->time) == unix_time) return *it;
  }
  // Else newest first, by position rather than by time: a wall clock
  // stepped back still finds the newest entry at or before unix_time.
  for (auto it = entries_.rbegin(); it != entries_.rend(); ++it) {
    if (unix_seconds(it->time) <= unix_time) return *it;
  }
  return entries_.front();
}

}  // namespace nodeperf
