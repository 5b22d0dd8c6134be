#include "cli/top.h"

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <memory>
#include <optional>
#include <thread>

#include "agent/agent.h"
#include "agent/config.h"
#include "agent/log.h"
#include "cli/top_format.h"
#include "cli/top_model.h"
#include "cli/top_terminal.h"
#include "cli/top_view.h"
#include "collectors/bpf_probe.h"

namespace nodeperf::top {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

// ---- signals: handlers only set flags; the loop acts on them -------------

volatile std::sig_atomic_t g_stop = 0;
volatile std::sig_atomic_t g_resized = 0;

extern "C" void on_stop_signal(int) { g_stop = 1; }
extern "C" void on_winch(int) { g_resized = 1; }

void install_signal_flags(bool winch) {
  struct sigaction sa{};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
  if (winch) {
    sa.sa_handler = on_winch;
    sigaction(SIGWINCH, &sa, nullptr);
  }
}

// ---- options -------------------------------------------------------------

struct Options {
  std::string url = "http://127.0.0.1:19100";
  bool standalone = false;
  bool batch = false;
  long iterations = 0;  // 0: until stopped
  double delay = 1;     // seconds between refreshes
  double window = 60;   // seconds of the latency window distribution
  bool color = true;
  int width = 0;  // batch: 0 means $COLUMNS or 120
  std::string log_file;
  bool help = false;
};

double parse_seconds(const std::string& flag, const std::string& text) {
  try {
    size_t used = 0;
    double v = std::stod(text, &used);
    std::string unit = text.substr(used);
    if (unit == "ms") v /= 1000;
    else if (unit == "m") v *= 60;
    else if (!unit.empty() && unit != "s") throw std::invalid_argument(unit);
    if (!(v > 0) || v > 86400) throw std::out_of_range(text);
    return v;
  } catch (const std::exception&) {
    throw std::runtime_error("--" + flag + ": '" + text + "' is not a duration (1, 0.5s, 250ms, 2m)");
  }
}

long parse_count(const std::string& flag, const std::string& text) {
  char* end = nullptr;
  long n = std::strtol(text.c_str(), &end, 10);
  if (text.empty() || *end || n < 0 || n > 1000000) throw std::runtime_error(flag + ": '" + text + "' is not a count");
  return n;
}

Options parse_options(const std::vector<std::string>& args) {
  Options o;
  for (size_t i = 0; i < args.size(); ++i) {
    std::string a = args[i], value;
    bool has_value = false;
    if (a.starts_with("--") && a.find('=') != std::string::npos) {
      value = a.substr(a.find('=') + 1);
      a = a.substr(0, a.find('='));
      has_value = true;
    }
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= args.size()) throw std::runtime_error(a + " needs a value");
      return args[++i];
    };
    if (a == "-h" || a == "--help") o.help = true;
    else if (a == "--url") o.url = next();
    else if (a == "--standalone") o.standalone = true;
    else if (a == "--batch" || a == "-b") o.batch = true;
    else if (a == "--no-color") o.color = false;
    else if (a == "--delay" || a == "-d") o.delay = parse_seconds("delay", next());
    else if (a == "--window") o.window = parse_seconds("window", next());
    else if (a == "--log-file") o.log_file = next();
    else if (a == "--iterations" || a == "-n") o.iterations = parse_count(a, next());
    else if (a == "--width") o.width = static_cast<int>(parse_count(a, next()));
    else throw std::runtime_error("unknown argument '" + args[i] + "'");
  }
  if (const char* nc = std::getenv("NO_COLOR"); nc && *nc) o.color = false;
  return o;
}

// ---- HTTP: one kept-alive connection to the agent, with deadlines --------

struct Url {
  std::string host, port, path;  // path without a trailing slash
};

Url parse_url(std::string url) {
  if (url.starts_with("http://")) url = url.substr(7);
  else if (url.find("://") != std::string::npos) throw std::runtime_error("--url: only http:// is supported");
  Url u;
  size_t slash = url.find('/');
  u.path = slash == std::string::npos ? "" : url.substr(slash);
  while (!u.path.empty() && u.path.back() == '/') u.path.pop_back();
  std::string authority = url.substr(0, slash);
  size_t colon = authority.rfind(':');
  if (colon != std::string::npos && authority.find(']', colon) == std::string::npos) {
    u.host = authority.substr(0, colon);
    u.port = authority.substr(colon + 1);
  } else {
    u.host = authority;
    u.port = "80";
  }
  if (u.host.size() > 1 && u.host.front() == '[') u.host = u.host.substr(1, u.host.size() - 2);
  if (u.host.empty()) throw std::runtime_error("--url: no host in '" + url + "'");
  return u;
}

class AgentClient {
 public:
  explicit AgentClient(Url url) : url_(std::move(url)) {}

  // The body of a 200 answer; throws std::runtime_error otherwise.
  std::string get(const std::string& target) {
    for (int attempt = 0;; ++attempt) {
      try {
        return get_once(target);
      } catch (const beast::system_error& e) {
        stream_.reset();  // the agent closed an idle connection, or went away
        if (attempt == 1) throw std::runtime_error(e.code().message());
      }
    }
  }

 private:
  template <typename Start>
  void run(Start start) {
    beast::error_code ec;
    start([&ec](beast::error_code e, auto&&...) { ec = e; });
    io_.restart();
    io_.run();
    if (ec) throw beast::system_error(ec);
  }

  std::string get_once(const std::string& target) {
    constexpr auto kDeadline = std::chrono::seconds(3);
    if (!stream_) {
      asio::ip::tcp::resolver resolver(io_);
      auto endpoints = resolver.resolve(url_.host, url_.port);
      stream_.emplace(io_);
      stream_->expires_after(kDeadline);
      run([&](auto handler) { stream_->async_connect(endpoints, handler); });
    }
    http::request<http::empty_body> req{http::verb::get, url_.path + target, 11};
    req.set(http::field::host, url_.host);
    req.set(http::field::user_agent, "nodeperf-top");
    stream_->expires_after(kDeadline);
    run([&](auto handler) { http::async_write(*stream_, req, handler); });
    http::response_parser<http::string_body> parser;
    parser.body_limit(256u << 20);
    stream_->expires_after(kDeadline);
    run([&](auto handler) { http::async_read(*stream_, buffer_, parser, handler); });
    auto res = parser.release();
    if (!res.keep_alive()) stream_.reset();
    if (res.result_int() != 200) {
      std::string body = res.body().substr(0, res.body().find('\n'));
      throw std::runtime_error("HTTP " + std::to_string(res.result_int()) + " for " + target + ": " + body);
    }
    return std::move(res.body());
  }

  Url url_;
  asio::io_context io_;
  std::optional<beast::tcp_stream> stream_;
  beast::flat_buffer buffer_;
};

std::string time_query(double t) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "/api/v1/snapshot?time=%.3f", t);
  return buf;
}

// ---- the data side: snapshots, history position, the model --------------

class Feed {
 public:
  Feed(AgentClient& client, double window) : client_(client), window_(window) {}

  // Fetches what the current position needs. Throws std::runtime_error
  // when the agent does not answer; the last model stays.
  void refresh(bool want_window) {
    if (at_) {
      now_ = parse_snapshot(client_.get(time_query(*at_)));
      before_.reset();
    } else {
      Snapshot s = parse_snapshot(client_.get("/api/v1/snapshot"));
      double gap = now_ ? seconds_between(*now_, s) : 0;
      if (gap > 0 && gap < 10 * s.tick_seconds + 1) {
        before_ = std::move(now_);
      } else if (!now_ || s.time != now_->time) {
        before_.reset();  // first frame, or after a gap: ask for the one before
      }
      now_ = std::move(s);
    }
    if (!before_) {
      Snapshot b = parse_snapshot(client_.get(time_query(now_->time - 0.001)));
      if (seconds_between(b, *now_) > 0) before_ = std::move(b);
    }
    window_ago_.reset();
    if (want_window) {
      Snapshot w = parse_snapshot(client_.get(time_query(now_->time - window_)));
      if (seconds_between(w, *now_) > 0) window_ago_ = std::move(w);
    }
  }

  // Steps through the agent's history: -1 back, +1 forward; 0 back to live.
  void step(int direction) {
    if (!now_) return;
    if (direction == 0) {
      at_.reset();
      return;
    }
    history_ = parse_history(client_.get("/api/v1/history"));
    double target = direction < 0 ? now_->time - 0.001 : now_->time + 1.5 * now_->tick_seconds;
    if (direction > 0 && target >= history_.newest) {
      at_.reset();
    } else {
      at_ = std::max(target, history_.oldest);
    }
  }

  bool live() const { return !at_; }
  bool has_data() const { return now_.has_value(); }
  const Snapshot& now() const { return *now_; }
  const Snapshot* before() const { return before_ ? &*before_ : nullptr; }
  const Snapshot* window_ago() const { return window_ago_ ? &*window_ago_ : nullptr; }
  double window() const { return window_; }

  std::string where() const {
    if (!at_ || !now_) return "live";
    return "history -" + format_age(history_.newest - now_->time) + ", kept " +
           format_age(history_.newest - history_.oldest);
  }

 private:
  AgentClient& client_;
  double window_;
  std::optional<double> at_;  // the history position; empty: live
  HistoryInfo history_;
  std::optional<Snapshot> now_, before_, window_ago_;
};

LatencyDetail latency_detail(const Feed& feed, const ViewState& state) {
  LatencyDetail d;
  d.window_seconds = feed.window();
  d.targets = latency_targets(feed.now());
  std::vector<size_t> visible = visible_targets(d, state);
  if (visible.empty()) return d;
  const LatencyTarget& t = d.targets[visible[std::min(state.target, visible.size() - 1)]];
  d.agent = summary_quantiles(feed.now(), t.summary, t.labels);
  if (!t.histogram.empty()) {
    if (feed.before()) d.tick = histogram_delta(feed.now(), feed.before(), t.histogram, t.labels);
    if (feed.window_ago()) d.window = histogram_delta(feed.now(), feed.window_ago(), t.histogram, t.labels);
  }
  return d;
}

// ---- batch mode ----------------------------------------------------------

int run_batch(const Options& o, AgentClient& client) {
  Feed feed(client, o.window);
  int width = o.width;
  if (width <= 0) {
    const char* cols = std::getenv("COLUMNS");
    width = cols && std::atoi(cols) > 0 ? std::atoi(cols) : 120;
  }
  for (long i = 0; (o.iterations == 0 || i < o.iterations) && !g_stop; ++i) {
    if (i > 0) {
      auto until = Clock::now() + std::chrono::duration<double>(o.delay);
      while (Clock::now() < until && !g_stop) std::this_thread::sleep_for(std::chrono::milliseconds(50));
      if (g_stop) break;
    }
    ViewState state;
    try {
      feed.refresh(false);
    } catch (const std::exception& e) {
      if (!feed.has_data()) {
        std::cerr << "nodeperf top: no agent answers at " << o.url << ": " << e.what() << "\n";
        return 1;
      }
      state.status = "disconnected, retrying";
    }
    Model model = build_model(feed.now(), feed.before());
    LatencyDetail none;
    for (Screen screen : {Screen::overview, Screen::cgroups, Screen::volumes}) {
      if (screen == Screen::volumes && model.volumes.empty()) continue;  // hosts without Kubernetes volumes
      state.screen = screen;
      std::vector<Line> lines = render(model, none, state, width, 0);
      for (size_t l = screen == Screen::overview ? 0 : 1; l < lines.size(); ++l) {
        std::string& t = lines[l].text;
        t.erase(t.find_last_not_of(' ') + 1);
        std::cout << t << "\n";
      }
    }
    std::cout << std::endl;
  }
  return 0;
}

// ---- the terminal --------------------------------------------------------

constexpr std::pair<char, Column> kSortKeys[] = {
    {'n', Column::name}, {'c', Column::cpu},      {'t', Column::throttled}, {'m', Column::memory},
    {'i', Column::io},   {'r', Column::runqueue}, {'d', Column::disk},      {'p', Column::rtt},
    {'x', Column::retransmits},
};

// Applies a key; returns false to quit. `refetch` asks for new data now.
bool handle_key(int ch, ViewState& s, Feed& feed, const Model& model, bool& refetch) {
  if (s.editing_filter) {
    if (ch == kKeyEnter) s.editing_filter = false;
    else if (ch == kKeyEscape) s.editing_filter = false, s.filter.clear();
    else if (ch == kKeyBackspace && !s.filter.empty()) s.filter.pop_back();
    else if (ch >= 32 && ch < 127) s.filter.push_back(static_cast<char>(ch));
    s.selected = s.target = 0;
    return true;
  }
  if (s.help) {
    s.help = false;
    return ch != 'q';
  }
  switch (ch) {
    case 'q': return false;
    case '?': s.help = true; break;
    case '1': s.screen = Screen::overview; break;
    case '2': s.screen = Screen::cgroups; break;
    case '3': s.screen = Screen::latency; refetch = true; break;
    case '4': s.screen = Screen::volumes; s.selected = 0; break;
    case '\t': s.screen = static_cast<Screen>((static_cast<int>(s.screen) + 1) % kScreens); refetch = true; break;
    case '/': s.editing_filter = true; break;
    case ' ': s.paused = !s.paused; break;
    case 's': s.sort = static_cast<Column>((static_cast<int>(s.sort) + 1) % static_cast<int>(Column::count)); break;
    case kKeyUp:
      if ((s.screen == Screen::cgroups || s.screen == Screen::volumes) && s.selected > 0) --s.selected;
      if (s.screen == Screen::latency && s.target > 0) --s.target, refetch = true;
      break;
    case kKeyDown:
      if (s.screen == Screen::cgroups || s.screen == Screen::volumes) ++s.selected;
      if (s.screen == Screen::latency) ++s.target, refetch = true;
      break;
    case kKeyEnter:
      if (s.screen == Screen::cgroups) {
        auto rows = visible_cgroups(model, s);
        if (s.selected < rows.size()) {
          s.filter = rows[s.selected]->cgroup;  // its targets are the ones titled with the path
          s.target = 0;
          s.screen = Screen::latency;
          refetch = true;
        }
      }
      break;
    case kKeyLeft: feed.step(-1); refetch = true; break;
    case kKeyRight: feed.step(+1); refetch = true; break;
    case kKeyEnd: feed.step(0); refetch = true; break;
    default:
      if (s.screen == Screen::cgroups) {
        for (auto [key, column] : kSortKeys) {
          if (ch == key) s.sort = column;
        }
      }
  }
  return true;
}

int run_interactive(const Options& o, AgentClient& client) {
  Feed feed(client, o.window);
  ViewState state;
  try {
    feed.refresh(false);
  } catch (const std::exception& e) {
    std::cerr << "nodeperf top: no agent answers at " << o.url << " (" << e.what()
              << ").\nStart one with 'nodeperf agent', point at another with --url, or run the collectors in "
                 "this process with 'nodeperf top --standalone'.\n";
    return 1;
  }
  install_signal_flags(true);
  Terminal term(o.color);
  auto next_fetch = Clock::now();
  bool refetch = false;
  Model model;
  while (!g_stop) {
    if (g_resized) {
      g_resized = 0;
      term.resized();
    }
    bool due = Clock::now() >= next_fetch && !state.paused && feed.live();
    if (due || refetch) {
      try {
        feed.refresh(state.screen == Screen::latency);
        state.status.clear();
      } catch (const std::exception& e) {
        state.status = "disconnected, retrying";
      }
      next_fetch = Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(o.delay));
      refetch = false;
    }
    state.where = feed.where();
    model = build_model(feed.now(), feed.before());
    LatencyDetail detail;
    if (state.screen == Screen::latency) detail = latency_detail(feed, state);
    if (state.screen == Screen::cgroups) {
      size_t rows = visible_cgroups(model, state).size();
      if (state.selected >= rows) state.selected = rows ? rows - 1 : 0;
    }
    if (state.screen == Screen::volumes) {
      size_t rows = visible_volumes(model, state).size();
      if (state.selected >= rows) state.selected = rows ? rows - 1 : 0;
    }
    if (state.screen == Screen::latency) {
      size_t n = visible_targets(detail, state).size();
      if (state.target >= n) state.target = n ? n - 1 : 0;
    }
    term.paint(render(model, detail, state, term.width(), term.height()));
    int ch = term.read_key();
    // kKeyResize is curses echoing our own resizeterm(): the SIGWINCH flag already did the work.
    if (ch != kNoKey && ch != kKeyResize) {
      try {
        if (!handle_key(ch, state, feed, model, refetch)) break;
      } catch (const std::exception& e) {
        state.status = "disconnected, retrying";
      }
    }
  }
  return 0;
}

// ---- --standalone: an agent in this process, read over loopback ----------

class InProcessAgent {
 public:
  explicit InProcessAgent(const Options& o) {
    if (!o.batch || !o.log_file.empty()) {
      std::FILE* out = o.log_file.empty() ? nullptr : std::fopen(o.log_file.c_str(), "a");
      if (!o.log_file.empty() && !out) throw std::runtime_error("--log-file: cannot open " + o.log_file);
      log_file_ = out;
      set_log_output(out);  // keep the agent's lines off the screen
    }
    route_libbpf_logs();
    Config config = build_config("", {{"web.listen-address", "127.0.0.1:0"}});
    agent_ = std::make_unique<Agent>(std::move(config), "", std::vector<FlagValue>{}, false);
    thread_ = std::thread([this] { agent_->run(); });
  }
  ~InProcessAgent() {
    agent_->request_stop();
    thread_.join();
    set_log_output(stderr);
    if (log_file_) std::fclose(log_file_);
  }
  InProcessAgent(const InProcessAgent&) = delete;
  InProcessAgent& operator=(const InProcessAgent&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(agent_->port()); }

  // Waits (bounded) for the first snapshot, so the first frame has data.
  void wait_ready(AgentClient& client) {
    for (int i = 0; i < 100 && !g_stop; ++i) {
      try {
        client.get("/readyz");
        return;
      } catch (const std::exception&) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      }
    }
  }

 private:
  std::FILE* log_file_ = nullptr;
  std::unique_ptr<Agent> agent_;
  std::thread thread_;
};

}  // namespace

std::string top_help() {
  return "Usage: nodeperf top [--url URL | --standalone] [--batch [--iterations N]] [flags]\n\n"
         "A live view of the node from an agent's JSON API: CPUs, memory, pressure, disks,\n"
         "interfaces, cgroups (pods), latency distributions, Kubernetes volumes, and the agent's\n"
         "recent history.\n\n"
         "  --url URL          the agent to read (default http://127.0.0.1:19100)\n"
         "  --standalone       run the collectors in this process instead (the eBPF ones too\n"
         "                     when privileged); the agent's log goes to --log-file, or nowhere\n"
         "  --log-file PATH    where a --standalone agent logs (default: discarded; stderr in --batch)\n"
         "  --batch, -b        print plain-text frames to stdout instead of the terminal view\n"
         "  --iterations N, -n N  frames to print in --batch mode (default: until interrupted)\n"
         "  --delay D, -d D    time between refreshes: 1, 0.5s, 250ms (default 1s)\n"
         "  --window D         span of the latency screen's window distribution (default 60s)\n"
         "  --width N          columns of --batch frames (default $COLUMNS, else 120)\n"
         "  --no-color         monochrome (also when NO_COLOR is set)\n\n"
         "Keys: 1 2 3 4 or Tab switch screens, s or n c t m i r d p x sort, / filter, up/down select,\n"
         "Enter latency of the selected cgroup, left/right history, End live, space pause, ? help, q quit.\n"
         "See docs/top.md.\n";
}

int run_top(const std::vector<std::string>& args) {
  Options o;
  try {
    o = parse_options(args);
    if (o.help) {
      std::cout << top_help();
      return 0;
    }
    if (o.standalone) o.url.clear();
    else parse_url(o.url);
  } catch (const std::exception& e) {
    std::cerr << "nodeperf top: " << e.what() << "\n";
    return 2;
  }
  install_signal_flags(false);
  try {
    std::unique_ptr<InProcessAgent> local;
    if (o.standalone) {
      local = std::make_unique<InProcessAgent>(o);
      o.url = local->url();
    }
    AgentClient client(parse_url(o.url));
    if (local) local->wait_ready(client);
    return o.batch ? run_batch(o, client) : run_interactive(o, client);
  } catch (const std::exception& e) {
    std::cerr << "nodeperf top: " << e.what() << "\n";
    return 1;
  }
}

}  // namespace nodeperf::top
