#include "agent/agent.h"

#include <malloc.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <csignal>
#include <filesystem>
#include <optional>

#include "agent/kubelet.h"
#include "collectors/bpf_probe.h"
#include "exporters/exposition.h"
#include "exporters/json.h"
#include "exporters/web_config.h"

namespace nodeperf {

namespace asio = boost::asio;
using Clock = std::chrono::steady_clock;

namespace {

HttpLimits limits_of(const Config& c) { return {c.max_connections, c.idle_timeout, c.max_request_bytes}; }

// True if an Accept-Encoding header allows gzip (and does not say q=0).
bool accepts_gzip(std::string_view header) {
  while (!header.empty()) {
    size_t comma = header.find(',');
    std::string_view item = header.substr(0, comma);
    header = comma == std::string_view::npos ? std::string_view() : header.substr(comma + 1);
    size_t semi = item.find(';');
    std::string_view coding = item.substr(0, semi);
    while (!coding.empty() && coding.front() == ' ') coding.remove_prefix(1);
    while (!coding.empty() && coding.back() == ' ') coding.remove_suffix(1);
    if (coding != "gzip" && coding != "*") continue;
    std::string_view params = semi == std::string_view::npos ? std::string_view() : item.substr(semi);
    bool refused = params.find("q=0") != std::string_view::npos && params.find("q=0.") == std::string_view::npos;
    if (!refused) return true;
  }
  return false;
}

constexpr std::string_view kIndexPage =
    "<!DOCTYPE html>\n<html><head><title>nodeperf</title></head><body>\n"
    "<h1>nodeperf</h1>\n<p>Node performance agent, version " NODEPERF_VERSION ".</p>\n<ul>\n"
    "<li><a href=\"/metrics\">/metrics</a>: Prometheus exposition</li>\n"
    "<li><a href=\"/healthz\">/healthz</a>: liveness (the tick loop is running)</li>\n"
    "<li><a href=\"/readyz\">/readyz</a>: readiness (a first snapshot exists)</li>\n"
    "<li><a href=\"/api/v1/snapshot\">/api/v1/snapshot</a>: the newest snapshot as JSON; "
    "?time=T (Unix seconds) for an older one</li>\n"
    "<li><a href=\"/api/v1/history\">/api/v1/history</a>: the times the history holds (JSON)</li>\n"
    "</ul>\n</body></html>\n";

// True if two configurations build the same collectors (only toggles may differ).
bool same_collector_settings(const Config& a, const Config& b) {
  return a.host_root == b.host_root && a.tick == b.tick && a.histogram_schema == b.histogram_schema &&
         a.histogram_window == b.histogram_window && a.diskstats_device_exclude == b.diskstats_device_exclude &&
         a.netdev_device_exclude == b.netdev_device_exclude && a.cgroups_include == b.cgroups_include &&
         a.cgroups_exclude == b.cgroups_exclude && a.cgroups_max_depth == b.cgroups_max_depth &&
         a.cgroups_max == b.cgroups_max && a.cgroups_max_io_series == b.cgroups_max_io_series &&
         a.cadvisor_compat == b.cadvisor_compat && a.volumes_fs_latency == b.volumes_fs_latency;
}

// The value of the first `name` parameter of a query string ("" for a bare
// name); no percent-decoding, as the API's parameters are plain numbers.
std::optional<std::string_view> query_param(std::string_view query, std::string_view name) {
  while (!query.empty()) {
    size_t amp = query.find('&');
    std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    size_t eq = item.find('=');
    if (item.substr(0, eq) == name) return eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
  }
  return std::nullopt;
}

std::optional<double> parse_unix_seconds(std::string_view text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (text.empty() || ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) return std::nullopt;
  return v;
}

// A client's text quoted back in a one-line error: printable ASCII only, capped.
std::string printable(std::string_view text) {
  std::string out;
  for (char c : text.substr(0, 64)) out += c >= 0x20 && c < 0x7f ? c : '?';
  return text.size() > 64 ? out + "..." : out;
}

// The modification times of a web config's certificate files, as one string
// that changes when any of them does ("" without TLS).
std::string certificate_signature(const WebConfig& web) {
  if (!web.tls) return {};
  std::string out;
  for (const std::string* f : {&web.tls->cert_file, &web.tls->key_file, &web.tls->client_ca_file}) {
    std::error_code ec;
    auto t = std::filesystem::last_write_time(*f, ec);
    out += ec ? "-" : std::to_string(t.time_since_epoch().count());
    out += ';';
  }
  return out;
}

std::string host_name() {
  char name[256] = {};
  return gethostname(name, sizeof name - 1) == 0 ? name : "";
}

}  // namespace

Agent::Agent(Config config, std::string config_file, std::vector<FlagValue> flags, bool handle_signals)
    : config_(std::move(config)),
      config_file_(std::move(config_file)),
      flags_(std::move(flags)),
      timer_(io_),
      signals_(io_),
      server_(io_, config_.listen_address, limits_of(config_)),
      port_(server_.local_endpoint().port()),
      history_(history_capacity(config_.history, config_.tick)),
      hostname_(host_name()),
      budget_(config_.budget_cpu_percent / 100, config_.budget_window) {
  // Without them the set stays empty: its wait never completes and stop() cancels it.
  if (handle_signals) {
    signals_.add(SIGINT);
    signals_.add(SIGTERM);
    signals_.add(SIGHUP);
  }
  set_log_level(config_.log_level);
  build_collectors(false);
  if (!config_.kubelet_url.empty()) kubelet_ = std::make_unique<KubeletPods>(config_);
  share_kubelet();
  server_.route("/metrics", [this](const HttpRequest& r) { return serve_metrics(r); });
  server_.set_security(load_web_security());
  // Probes stay open when the web config asks for authentication: the
  // kubelet's probes cannot send credentials, and they tell nothing but "ok".
  server_.route("/healthz", [this](const HttpRequest&) {
    // Alive while ticks keep happening; a stuck loop fails liveness.
    auto limit = std::max<Clock::duration>(std::chrono::seconds(10), 5 * effective_tick());
    if (Clock::now() - last_tick_done_ > limit && snapshot_) {
      return HttpResponse::text(503, "tick loop stalled\n");
    }
    return HttpResponse::text(200, "ok\n");
  }, /*open=*/true);
  server_.route("/readyz", [this](const HttpRequest&) {
    if (!snapshot_) return HttpResponse::text(503, "no snapshot yet\n");
    return HttpResponse::text(200, "ok\n");
  }, /*open=*/true);
  server_.route("/api/v1/snapshot", [this](const HttpRequest& r) { return serve_snapshot(r); });
  server_.route("/api/v1/history", [this](const HttpRequest&) { return serve_history(); });
  server_.route("/", [](const HttpRequest&) {
    return HttpResponse::text(200, std::string(kIndexPage), "text/html; charset=utf-8");
  });
}

Agent::~Agent() = default;

void Agent::build_collectors(bool keep_running) {
  // Collectors that stay enabled keep running across a reload: probes stay
  // attached and histograms keep their counts.
  std::vector<CollectorState> next;
  for (const CollectorFactory& f : collector_factories()) {
    if (!config_.enabled(f.name) || budget_drops(budget_.level(), f.name)) continue;
    auto running = std::find_if(collectors_.begin(), collectors_.end(),
                                [&](const CollectorState& c) { return c.factory == &f; });
    if (keep_running && running != collectors_.end()) {
      next.push_back(std::move(*running));
    } else {
      next.push_back(CollectorState{&f, f.make(config_), false, 0, LogLimiter()});
      next.back().collector->use_block_feed(&block_feed_);
    }
  }
  collectors_ = std::move(next);
  for (CollectorState& c : collectors_) c.collector->sample(budget_levels()[budget_.level()].sample_one_in);
  release_kernel_btf();
}

void Agent::share_kubelet() {
  for (CollectorState& c : collectors_) c.collector->use_kubelet(kubelet_.get());
}

int Agent::run() {
  auto ep = server_.local_endpoint();
  std::string host = ep.address().to_string();
  if (ep.address().is_v6()) host = "[" + host + "]";
  log_info("listening on " + host + ":" + std::to_string(ep.port()) + " (tick " +
           std::to_string(config_.tick.count()) + "ms, " + std::to_string(collectors_.size()) + " collectors)");
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (!ec) on_signal(sig);
  });
  server_.start();
  next_tick_ = Clock::now();
  budget_sampled_ = next_tick_;  // start-up (loading the probes) is not counted
  process_cpu_last_ = process_cpu_seconds();
  asio::post(io_, [this] { tick(); });
  io_.run();
  log_info("stopped");
  return 0;
}

void Agent::on_signal(int sig) {
  if (sig == SIGHUP) {
    reload();
    signals_.async_wait([this](const boost::system::error_code& ec, int s) {
      if (!ec) on_signal(s);
    });
    return;
  }
  log_info(std::string("received ") + (sig == SIGTERM ? "SIGTERM" : "SIGINT") + ", stopping");
  stop();
}

void Agent::stop() {
  server_.stop();
  timer_.cancel();
  signals_.cancel();
  io_.stop();
}

void Agent::request_stop() {
  asio::post(io_, [this] { stop(); });
}

uint16_t Agent::port() const { return port_; }

void Agent::reload() {
  Config next;
  try {
    next = build_config(config_file_, flags_);
  } catch (const std::exception& e) {
    log_error(std::string("reload rejected, keeping the running config: ") + e.what());
    return;
  }
  if (next.listen_address != config_.listen_address) {
    log_warn("web.listen_address changes need a restart; still serving on " + config_.listen_address);
    next.listen_address = config_.listen_address;
  }
  auto tick_before = effective_tick();
  unsigned level_before = budget_.level();
  bool keep = same_collector_settings(config_, next);
  bool kubelet_changed = next.kubelet_url != config_.kubelet_url || next.kubelet_ca_file != config_.kubelet_ca_file ||
                         next.kubelet_token_file != config_.kubelet_token_file ||
                         next.kubelet_insecure_skip_verify != config_.kubelet_insecure_skip_verify ||
                         next.kubelet_timeout != config_.kubelet_timeout ||
                         next.kubelet_refresh_interval != config_.kubelet_refresh_interval;
  if (!keep) log_info("collector settings changed: every collector restarts (histograms start again)");
  bool budget_changed =
      next.budget_cpu_percent != config_.budget_cpu_percent || next.budget_window != config_.budget_window;
  config_ = std::move(next);
  if (budget_changed) budget_.configure(config_.budget_cpu_percent / 100, config_.budget_window);
  budget_level_changed(level_before, false);  // build_collectors below applies it
  bool tick_changed = effective_tick() != tick_before;
  set_log_level(config_.log_level);
  server_.set_limits(limits_of(config_));
  try {
    server_.set_security(load_web_security());  // certificates are read again
  } catch (const std::exception& e) {
    // build_config checked the file; it changed since.
    log_error(std::string("web config reload rejected, keeping the running one: ") + e.what());
  }
  history_.set_capacity(history_capacity(config_.history, config_.tick));
  if (kubelet_changed) {
    for (CollectorState& c : collectors_) c.collector->use_kubelet(nullptr);
    kubelet_.reset();  // stops its thread at once, even mid-request
    if (!config_.kubelet_url.empty()) kubelet_ = std::make_unique<KubeletPods>(config_);
  }
  build_collectors(keep);
  share_kubelet();
  if (tick_changed) {  // take the new interval from now on
    next_tick_ = Clock::now() + effective_tick();
    timer_.expires_at(next_tick_);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (!ec) tick();
    });
  }
  log_info("configuration reloaded" + (config_file_.empty() ? std::string() : " from " + config_file_));
}

HttpSecurity Agent::load_web_security() {
  HttpSecurity security;
  web_files_checked_ = Clock::now();
  if (config_.web_config_file.empty()) {
    web_files_signature_.clear();
    return security;
  }
  WebConfig web = load_web_config(config_.web_config_file);
  if (web.tls) security.tls = make_tls_context(*web.tls, config_.web_config_file);
  if (web.needs_auth()) security.auth = std::make_shared<WebAuth>(web, io_, server_.auth_executor());
  security.headers = web.headers;
  if (web.http2_requested) log_info(config_.web_config_file + ": http_server_config.http2 ignored: nodeperf serves HTTP/1.1");
  web_files_signature_ = certificate_signature(web);
  return security;
}

void Agent::reload_certificates_if_changed() {
  if (web_files_signature_.empty() || Clock::now() - web_files_checked_ < std::chrono::seconds(5)) return;
  web_files_checked_ = Clock::now();
  std::string signature;
  try {
    signature = certificate_signature(load_web_config(config_.web_config_file));
    if (signature == web_files_signature_) return;
    server_.set_security(load_web_security());
    log_info("certificate files changed: " + config_.web_config_file + " read again");
  } catch (const std::exception& e) {
    if (!signature.empty()) web_files_signature_ = signature;  // said once per change
    log_error(std::string("certificate files changed but cannot be used, keeping the running ones: ") + e.what());
  }
}

void Agent::tick() {
  SampleSink sink;
  for (CollectorState& c : collectors_) {
    auto start = Clock::now();
    Status status;
    try {
      status = c.collector->collect(sink);
    } catch (const std::exception& e) {
      status = Status::failed(std::string("unexpected error: ") + e.what());
    }
    c.duration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
    c.up = status.kind != Status::Kind::failed;
    if (status.kind != Status::Kind::ok) {
      ++collector_errors_[std::string(c.factory->name)];
      c.limiter.log(LogLevel::warn, "collector " + std::string(c.factory->name) + ": " + status.error);
    }
  }
  measure_budget();
  add_self_metrics(sink, sink.series());
  snapshot_ = std::make_shared<const Snapshot>(std::move(sink), config_.node_exporter_compat,
                                               std::chrono::system_clock::now());
  history_.add(*snapshot_);
  return_freed_memory();
  last_tick_done_ = Clock::now();
  reload_certificates_if_changed();
  schedule_tick();
}

void Agent::return_freed_memory() {
#ifdef __GLIBC__
  // glibc's malloc returns freed memory to the kernel only from the top of
  // its heap: after a spike of series (thousands of cgroups for a few ticks)
  // the snapshots, the history and the collectors' state free most of what
  // they took, but what the newer entries sit above stays resident. Measured
  // (docs/hardening.md, Soak): 30,000 series for 10 s, then 2.8 MiB in use
  // and 34 MiB resident for good; 12.6 MiB after one malloc_trim(0). So once
  // the heap in use has fallen by an eighth of its high (and 4 MiB) since
  // the last trim, trim: mallinfo2 costs microseconds a tick, a trim 0.5-9 ms,
  // and it runs only after such a fall (twice after that spike), not every tick.
  struct mallinfo2 m = mallinfo2();
  const size_t in_use = m.uordblks + m.hblkhd;
  heap_high_ = std::max(heap_high_, in_use);
  if (heap_high_ - in_use < std::max<size_t>(4 << 20, heap_high_ / 8)) return;
  auto start = Clock::now();
  malloc_trim(0);
  log_debug("heap in use fell from " + std::to_string(heap_high_ >> 20) + " to " + std::to_string(in_use >> 20) +
            " MiB: malloc_trim took " +
            std::to_string(std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - start).count()) + " us");
  heap_high_ = in_use;
#endif
}

void Agent::schedule_tick() {
  // Fixed rate: the next tick is one interval after the last one was due; a
  // tick that overran skips the slots it missed rather than bunching up.
  next_tick_ += effective_tick();
  if (auto now = Clock::now(); next_tick_ <= now) next_tick_ = now + effective_tick();
  timer_.expires_at(next_tick_);
  timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) tick();
  });
}

void Agent::add_self_metrics(SampleSink& sink, size_t collected_series) {
  namespace m = agent_metric;
  auto table = agent_metrics();
  sink.add(table[m::build_info], 1,
           {{"version", NODEPERF_VERSION}, {"revision", NODEPERF_REVISION}, {"compiler", "gcc " __VERSION__}});
  for (const CollectorState& c : collectors_) sink.add(table[m::collector_up], c.up ? 1 : 0, {{"collector", c.factory->name}});
  for (const CollectorState& c : collectors_) {
    sink.add(table[m::collector_duration], c.duration_seconds, {{"collector", c.factory->name}});
  }
  for (const CollectorState& c : collectors_) {
    auto it = collector_errors_.find(c.factory->name);
    sink.add(table[m::collector_errors], it == collector_errors_.end() ? 0.0 : static_cast<double>(it->second),
             {{"collector", c.factory->name}});
  }
  sink.add(table[m::scrapes], static_cast<double>(scrapes_));
  sink.add(table[m::scrape_bytes], static_cast<double>(scrape_bytes_));
  sink.add(table[m::scrape_duration], scrape_seconds_);
  const HttpStats& http = server_.stats();
  for (auto [code, n] : http.responses_by_code) {
    sink.add(table[m::http_requests], static_cast<double>(n), {{"code", std::to_string(code)}});
  }
  sink.add(table[m::http_connections_open], static_cast<double>(http.connections_open));
  sink.add(table[m::http_connections_evicted], static_cast<double>(http.connections_evicted));
  for (AuthVerdict v : kAuthFailureReasons) {
    auto it = http.auth_failures.find(v);
    sink.add(table[m::http_auth_failures], it == http.auth_failures.end() ? 0.0 : static_cast<double>(it->second),
             {{"reason", verdict_reason(v)}});
  }
  sink.add(table[m::http_tls_handshake_failures], static_cast<double>(http.tls_handshake_failures));
  sink.add(table[m::snapshot_series], static_cast<double>(collected_series));
  add_budget_metrics(sink);
  if (kubelet_) kubelet_->emit_metrics(sink);
}

std::chrono::milliseconds Agent::effective_tick() const {
  return config_.tick * budget_levels()[budget_.level()].tick_factor;
}

void Agent::measure_budget() {
  auto now = Clock::now();
  double process = process_cpu_seconds();
  double bpf = bpf_time_.advance();
  double wall = std::chrono::duration<double>(now - budget_sampled_).count();
  double used = process - process_cpu_last_ + bpf;  // bpf: 0 while the kernel does not count
  budget_sampled_ = now;
  process_cpu_last_ = process;
  unsigned before = budget_.level();
  if (budget_.add(wall, used) != 0) budget_level_changed(before, true);
}

void Agent::budget_level_changed(unsigned before, bool rebuild) {
  unsigned level = budget_.level();
  if (level == before) return;
  ++(level > before ? budget_ups_ : budget_downs_);
  if (rebuild) {
    build_collectors(true);
    share_kubelet();
  }
  std::string stopped;
  for (const CollectorFactory& f : collector_factories()) {
    if (!config_.enabled(f.name) || !budget_drops(level, f.name)) continue;
    stopped += (stopped.empty() ? "" : ", ") + std::string(f.name);
  }
  auto percent = [](double ratio) {
    char text[32];
    std::snprintf(text, sizeof text, "%.2f%%", ratio * 100);
    return std::string(text);
  };
  std::string why = !rebuild ? (budget_.limit_ratio() <= 0 ? "budget turned off" : "budget changed")
                             : "CPU " + percent(budget_.moved_at_usage()) + " of a core over the window, " +
                                   (level > before ? "budget " : "under half the budget ") +
                                   percent(budget_.limit_ratio());
  unsigned one_in = budget_levels()[level].sample_one_in;
  log_info("overhead budget: level " + std::to_string(before) + " -> " + std::to_string(level) + " (" + why +
           "): " + (one_in > 1 ? "sampling 1 in " + std::to_string(one_in) + ", " : std::string()) + "tick " +
           std::to_string(effective_tick().count()) + "ms" + (stopped.empty() ? std::string() : ", stopped: " + stopped));
}

void Agent::add_budget_metrics(SampleSink& sink) const {
  namespace m = agent_metric;
  auto table = agent_metrics();
  sink.add(table[m::budget_cpu], process_cpu_seconds(), {{"source", "process"}});
  sink.add(table[m::budget_cpu], bpf_time_.total_seconds(), {{"source", "bpf"}});
  sink.add(table[m::budget_bpf_stats], bpf_time_.stats_enabled() ? 1 : 0);
  sink.add(table[m::budget_limit], budget_.limit_ratio());
  sink.add(table[m::budget_usage], budget_.usage_ratio());
  sink.add(table[m::budget_level], budget_.level());
  sink.add(table[m::budget_sampling], 1.0 / budget_levels()[budget_.level()].sample_one_in);
  sink.add(table[m::budget_tick], std::chrono::duration<double>(effective_tick()).count());
  for (const BudgetLevel& l : budget_levels()) {
    for (std::string_view name : l.drop) {
      if (!config_.enabled(name)) continue;
      sink.add(table[m::budget_dropped], budget_drops(budget_.level(), name) ? 1 : 0, {{"collector", name}});
    }
  }
  sink.add(table[m::budget_changes], static_cast<double>(budget_ups_), {{"direction", "up"}});
  sink.add(table[m::budget_changes], static_cast<double>(budget_downs_), {{"direction", "down"}});
}

HttpResponse Agent::serve_metrics(const HttpRequest& request) {
  auto start = Clock::now();
  if (!snapshot_) return HttpResponse::text(503, "no snapshot yet\n");
  auto header = [&](boost::beast::http::field f) {
    auto it = request.headers.find(f);
    return it == request.headers.end() ? std::string_view() : std::string_view(it->value());
  };
  bool om = header(boost::beast::http::field::accept).find("application/openmetrics-text") != std::string_view::npos;
  bool gz = accepts_gzip(header(boost::beast::http::field::accept_encoding));
  using Body = Snapshot::Body;
  Body which = om ? (gz ? Body::openmetrics_gzip : Body::openmetrics)
                  : (gz ? Body::prometheus_text_gzip : Body::prometheus_text);
  HttpResponse res;
  res.content_type = std::string(om ? kOpenMetricsContentType : kPrometheusTextContentType);
  if (gz) res.content_encoding = "gzip";
  res.view = snapshot_->body(which);
  res.keep_alive = snapshot_;
  ++scrapes_;
  scrape_bytes_ += res.view.size();
  scrape_seconds_ += std::chrono::duration<double>(Clock::now() - start).count();
  return res;
}

HttpResponse Agent::serve_snapshot(const HttpRequest& request) const {
  const HistoryEntry* entry = history_.empty() ? nullptr : &history_.newest();
  if (auto text = query_param(request.query, "time")) {
    std::optional<double> time = parse_unix_seconds(*text);
    if (!time) {
      return HttpResponse::text(400, "400 bad request: parameter time must be Unix seconds such as 1764366000.5, got '" +
                                         printable(*text) + "'\n");
    }
    if (entry) entry = &history_.at_or_before(*time);
  }
  if (!entry) return HttpResponse::text(503, "no snapshot yet\n");
  HttpResponse res;
  res.content_type = "application/json";
  render_snapshot_json(*entry, std::chrono::duration<double>(effective_tick()).count(), hostname_, res.body);
  return res;
}

HttpResponse Agent::serve_history() const {
  HttpResponse res;
  res.content_type = "application/json";
  render_history_json(history_, std::chrono::duration<double>(effective_tick()).count(), res.body);
  return res;
}

}  // namespace nodeperf
