// The daemon: one io_context runs the tick timer, the signal handlers and
// the HTTP server. Each tick runs every enabled collector and publishes an
// immutable snapshot; scrapes serve the last snapshot, the JSON API serves
// it and the recent ones kept in the history.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "agent/budget.h"
#include "agent/config.h"
#include "agent/history.h"
#include "agent/log.h"
#include "agent/snapshot.h"
#include "collectors/block_feed.h"
#include "collectors/collector.h"
#include "exporters/http_server.h"

namespace nodeperf {

class KubeletPods;

class Agent {
 public:
  // Binds the listen address; throws std::runtime_error if it cannot.
  // Without handle_signals, SIGTERM, SIGINT and SIGHUP are left to the
  // embedding program (nodeperf top runs an agent in-process), which stops
  // the agent with request_stop().
  Agent(Config config, std::string config_file, std::vector<FlagValue> flags, bool handle_signals = true);
  ~Agent();

  // Runs until SIGTERM, SIGINT or request_stop(); returns the process exit code.
  int run();
  // Stops run() as SIGTERM does; callable from any thread, before or during run().
  void request_stop();
  // The bound TCP port (the one picked for a listen address with port 0); any thread.
  uint16_t port() const;

 private:
  struct CollectorState {
    const CollectorFactory* factory;
    std::unique_ptr<Collector> collector;
    bool up = false;
    double duration_seconds = 0;
    LogLimiter limiter;
  };

  void build_collectors(bool keep_running);
  void share_kubelet();  // tells every collector the current kubelet client
  void tick();
  void schedule_tick();
  void on_signal(int signal);
  void stop();
  void reload();
  // TLS and authentication from config_.web_config_file. Throws ConfigError.
  HttpSecurity load_web_security();
  void reload_certificates_if_changed();
  void add_self_metrics(SampleSink& sink, size_t collected_series);
  // The tick option times the overhead budget's factor.
  std::chrono::milliseconds effective_tick() const;
  // Feeds this tick's CPU to the budget and applies a level change.
  void measure_budget();
  // Hands freed memory back to the kernel after the heap in use fell a lot.
  void return_freed_memory();
  // Counts and logs a level change from `before`; rebuilds the collectors if `rebuild`.
  void budget_level_changed(unsigned before, bool rebuild);
  void add_budget_metrics(SampleSink& sink) const;
  HttpResponse serve_metrics(const HttpRequest& request);
  HttpResponse serve_snapshot(const HttpRequest& request) const;
  HttpResponse serve_history() const;

  Config config_;
  std::string config_file_;
  std::vector<FlagValue> flags_;

  boost::asio::io_context io_;
  boost::asio::steady_timer timer_;
  boost::asio::signal_set signals_;
  HttpServer server_;
  uint16_t port_;  // kept: the listener is closed after a stop, and port() may be asked from any thread

  std::vector<CollectorState> collectors_;
  std::map<std::string, uint64_t, std::less<>> collector_errors_;  // kept across reloads
  std::shared_ptr<const Snapshot> snapshot_;
  std::unique_ptr<KubeletPods> kubelet_;  // names from the kubelet, when kubelet.url is set
  BlockFeed block_feed_;                  // the blockio collector's counts, for the volumes collector
  History history_;  // snapshot_'s values and the ones before, for the JSON API
  std::string hostname_;
  std::chrono::steady_clock::time_point next_tick_;
  std::chrono::steady_clock::time_point last_tick_done_;
  size_t heap_high_ = 0;  // the most heap in use at the end of a tick since the last trim

  // Modification times of the certificate, key and client CA files served
  // with, to pick up a rotation without a SIGHUP.
  std::string web_files_signature_;
  std::chrono::steady_clock::time_point web_files_checked_;

  BudgetController budget_;
  BpfRunTime bpf_time_;
  double process_cpu_last_ = 0;
  std::chrono::steady_clock::time_point budget_sampled_;
  uint64_t budget_ups_ = 0, budget_downs_ = 0;

  uint64_t scrapes_ = 0;
  uint64_t scrape_bytes_ = 0;
  double scrape_seconds_ = 0;
};

}  // namespace nodeperf
