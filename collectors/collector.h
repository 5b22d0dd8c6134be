// The extension point: one collector per source. A collector reads its
// source once per tick and adds samples to the sink; it never sees HTTP.
#pragma once

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "agent/metric_table.h"
#include "agent/snapshot.h"

namespace nodeperf {

struct Config;
class KubeletPods;
struct BlockFeed;

// The outcome of one collection. "partial": some lines or files were bad and
// skipped, the rest was emitted. "failed": nothing could be read.
struct Status {
  enum class Kind { ok, partial, failed };
  Kind kind = Kind::ok;
  std::string error;  // one line naming the file at fault

  static Status ok() { return {}; }
  static Status partial(std::string e) { return {Kind::partial, std::move(e)}; }
  static Status failed(std::string e) { return {Kind::failed, std::move(e)}; }
};

class Collector {
 public:
  virtual ~Collector() = default;
  virtual Status collect(SampleSink& out) = 0;
  // The agent's kubelet client (names for pod UIDs), or null when there is
  // none; the agent calls this again, with null first, before it replaces it.
  virtual void use_kubelet(KubeletPods*) {}
  // The agent's block IO feed (collectors/block_feed.h), for the blockio
  // collector to fill and later ones to read; set once, before the first tick.
  virtual void use_block_feed(BlockFeed*) {}
  // The overhead budget's sampling (agent/budget.h): a probe with high-rate
  // events counts 1 of them in `one_in` (a power of two; 1: every event)
  // and scales what it drains back up. Called after every (re)build.
  virtual void sample(unsigned /*one_in*/) {}
};

struct CollectorFactory {
  std::string_view name;         // the X of --collector.X
  std::string_view description;  // one line, for --help and docs
  std::span<const MetricInfo> metrics;
  std::unique_ptr<Collector> (*make)(const Config& config);
  bool bpf = false;  // loads BPF programs: checked by --probe.check, needs privileges
};

// Every collector nodeperf has, in registration order.
std::span<const CollectorFactory> collector_factories();

// Records the first problem met while parsing, counts the rest, and turns it
// into a Status at the end. Messages are prefixed with the file they are
// about, when the collector names it.
class Problems {
 public:
  explicit Problems(std::string file = {}) : file_(std::move(file)) {}
  void add(std::string what) {
    if (count_++ == 0) first_ = file_.empty() ? std::move(what) : file_ + ": " + what;
  }
  Status status() const {
    if (count_ == 0) return Status::ok();
    std::string e = first_;
    if (count_ > 1) e += " (and " + std::to_string(count_ - 1) + " more)";
    return Status::partial(std::move(e));
  }

 private:
  std::string file_;
  std::string first_;
  size_t count_ = 0;
};

}  // namespace nodeperf
