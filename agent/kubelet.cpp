#include "agent/kubelet.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

namespace nodeperf {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

namespace {

constexpr MetricInfo kKubeletMetrics[] = {
    {"nodeperf_kubelet_up", MetricType::gauge, "", "kubelet /pods",
     "1 if the last request for the kubelet's pod list succeeded; while 0, pod, namespace and container "
     "names may be missing or stale (pod_uid and container_id labels still work)."},
    {"nodeperf_kubelet_last_refresh_timestamp_seconds", MetricType::gauge, "", "kubelet /pods",
     "Unix time of the last successful fetch of the kubelet's pod list (0 before the first)."},
    {"nodeperf_kubelet_refresh_errors_total", MetricType::counter, "reason", "kubelet /pods",
     "Failed requests for the kubelet's pod list, by reason: config, connect, timeout, tls, unauthorized, "
     "forbidden, http_status, bad_response."},
    {"nodeperf_kubelet_pods", MetricType::gauge, "", "kubelet /pods",
     "Pods in the cached pod list: the pods whose names are known."},
};
enum : size_t { kUp, kLastRefresh, kErrors, kPods };

// Every reason is exported from the start (at 0), so the series set is stable.
constexpr std::string_view kReasons[] = {"config", "connect", "timeout", "tls",
                                         "unauthorized", "forbidden", "http_status", "bad_response"};
constexpr size_t kReasonCount = std::size(kReasons);
enum Reason : size_t { kConfig, kConnect, kTimeout, kTls, kUnauthorized, kForbidden, kHttpStatus, kBadResponse };
static_assert(kBadResponse + 1 == kReasonCount);

constexpr size_t kMaxBodyBytes = 64 << 20;  // a full node's PodList is a few MB
constexpr size_t kMaxAsked = 4096;          // bounds asked_ on a node with churning unknown UIDs

std::string_view string_field(const nlohmann::json& object, const char* key) {
  if (!object.is_object()) return {};
  auto it = object.find(key);
  if (it == object.end() || !it->is_string()) return {};
  return it->get_ref<const std::string&>();
}

}  // namespace

std::optional<HttpsUrl> parse_https_url(std::string_view url) {
  constexpr std::string_view scheme = "https://";
  if (!url.starts_with(scheme)) return std::nullopt;
  url.remove_prefix(scheme.size());
  size_t slash = url.find('/');
  std::string_view authority = url.substr(0, slash);
  HttpsUrl out;
  out.target = slash == std::string_view::npos ? "/" : std::string(url.substr(slash));
  out.port = "443";
  if (authority.starts_with('[')) {
    size_t close = authority.find(']');
    if (close == std::string_view::npos) return std::nullopt;
    out.host = std::string(authority.substr(1, close - 1));
    std::string_view rest = authority.substr(close + 1);
    if (rest.starts_with(':')) {
      out.port = std::string(rest.substr(1));
    } else if (!rest.empty()) {
      return std::nullopt;
    }
  } else {
    size_t colon = authority.rfind(':');
    out.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) out.port = std::string(authority.substr(colon + 1));
  }
  if (out.host.empty() || out.port.empty() || out.port.find_first_not_of("0123456789") != std::string::npos) {
    return std::nullopt;
  }
  return out;
}

std::span<const MetricInfo> kubelet_metrics() { return kKubeletMetrics; }

std::string_view strip_runtime_prefix(std::string_view container_id) {
  size_t sep = container_id.find("://");
  return sep == std::string_view::npos ? container_id : container_id.substr(sep + 3);
}

std::optional<std::string> expand_node_name(std::string_view url, const char* node_name) {
  std::string out(url);
  for (std::string_view placeholder : {std::string_view("${NODE_NAME}"), std::string_view("$(NODE_NAME)")}) {
    for (size_t at; (at = out.find(placeholder)) != std::string::npos;) {
      if (node_name == nullptr || *node_name == '\0') return std::nullopt;
      out.replace(at, placeholder.size(), node_name);
    }
  }
  return out;
}

std::optional<PodNamesByUid> parse_pod_list(std::string_view text, std::string& error) {
  nlohmann::json root = nlohmann::json::parse(text.begin(), text.end(), nullptr, /*allow_exceptions=*/false);
  if (root.is_discarded()) {
    error = "not JSON";
    return std::nullopt;
  }
  if (!root.is_object()) {
    error = "not a PodList (a JSON object with an items array)";
    return std::nullopt;
  }
  auto items = root.find("items");
  if (items == root.end() || !(items->is_array() || items->is_null())) {
    error = "not a PodList (no items array)";
    return std::nullopt;
  }
  if (std::string_view kind = string_field(root, "kind"); !kind.empty() && kind != "PodList") {
    error = "kind is " + std::string(kind) + ", not PodList";
    return std::nullopt;
  }
  PodNamesByUid pods;
  if (items->is_null()) return pods;  // Go marshals an empty list as null
  for (const nlohmann::json& item : *items) {
    if (!item.is_object()) continue;
    auto metadata = item.find("metadata");
    if (metadata == item.end()) continue;
    std::string_view uid = string_field(*metadata, "uid");
    if (uid.empty()) continue;
    PodNames names;
    names.namespace_name = string_field(*metadata, "namespace");
    names.pod = string_field(*metadata, "name");
    if (auto status = item.find("status"); status != item.end() && status->is_object()) {
      for (const char* list : {"containerStatuses", "initContainerStatuses", "ephemeralContainerStatuses"}) {
        auto statuses = status->find(list);
        if (statuses == status->end() || !statuses->is_array()) continue;
        for (const nlohmann::json& c : *statuses) {
          std::string_view id = strip_runtime_prefix(string_field(c, "containerID"));
          std::string_view name = string_field(c, "name");
          if (id.empty() || name.empty()) continue;  // not started yet
          names.containers.emplace(std::string(id), PodContainer{std::string(name), std::string(string_field(c, "image"))});
        }
      }
    }
    if (auto spec = item.find("spec"); spec != item.end() && spec->is_object()) {
      auto volumes = spec->find("volumes");
      if (volumes != spec->end() && volumes->is_array()) {
        for (const nlohmann::json& v : *volumes) {
          std::string_view name = string_field(v, "name");
          if (name.empty()) continue;
          std::string_view claim;
          if (auto pvc = v.find("persistentVolumeClaim"); pvc != v.end()) claim = string_field(*pvc, "claimName");
          names.volume_claims.insert_or_assign(std::string(name), std::string(claim));
        }
      }
    }
    pods.insert_or_assign(std::string(uid), std::move(names));
  }
  return pods;
}

struct KubeletPods::Shared {
  std::atomic<bool> requested{false};  // a refresh is wanted before the periodic one
  std::atomic<uint64_t> generation{0};   // bumped on every publish
  std::mutex mutex;                      // held for swaps and counters only, never across I/O
  std::shared_ptr<const PodNamesByUid> published;
  bool up = false;
  double last_success_unix = 0;
  size_t pods = 0;
  uint64_t errors[kReasonCount] = {};
};

struct KubeletPods::Worker {
  std::shared_ptr<Shared> shared;
  std::string url;  // expanded, for log lines
  HttpsUrl parts;
  std::string ca_file, token_file;
  bool insecure;
  std::chrono::milliseconds timeout, interval;
  LogLimiter limiters[kReasonCount];
  LogLimiter token_limiter;
  Clock::time_point last_end{}, next_periodic{};
  unsigned failures = 0;
  bool was_up = false;

  asio::io_context io;
  asio::steady_timer wake{io};
  std::thread thread;

  Worker(std::shared_ptr<Shared> s, std::string u, HttpsUrl p, const Config& c)
      : shared(std::move(s)),
        url(std::move(u)),
        parts(std::move(p)),
        ca_file(c.kubelet_ca_file),
        token_file(c.kubelet_token_file),
        insecure(c.kubelet_insecure_skip_verify),
        timeout(c.kubelet_timeout),
        interval(c.kubelet_refresh_interval) {}

  void start() {
    next_periodic = Clock::now();
    asio::co_spawn(io, loop(), asio::detached);
    thread = std::thread([this] { io.run(); });
  }

  void stop() {
    io.stop();
    if (thread.joinable()) thread.join();
  }

  void request() {
    if (!shared->requested.exchange(true)) asio::post(io, [this] { wake.cancel(); });
  }

  asio::awaitable<void> loop() {
    for (;;) {
      auto due = next_periodic;
      if (shared->requested.load()) due = std::min(due, last_end + kMinInterval);
      if (due > Clock::now()) {
        error_code ec;
        wake.expires_at(due);
        co_await wake.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        continue;  // woken by request() or due: look again
      }
      shared->requested = false;
      bool ok = co_await refresh();
      last_end = Clock::now();
      failures = ok ? 0 : failures + 1;
      // After failures, retry sooner than the periodic refresh: 10 s, 20 s, 40 s, ... up to the interval.
      Clock::duration wait = interval;
      if (!ok) wait = std::min<Clock::duration>(interval, kMinInterval * (1u << std::min(failures - 1, 5u)));
      next_periodic = last_end + wait;
    }
  }

  std::string read_token() {
    if (token_file.empty()) return {};
    std::ifstream in(token_file);
    std::stringstream text;
    if (in) text << in.rdbuf();
    if (!in || in.bad()) {
      token_limiter.log(LogLevel::warn, "kubelet " + url + ": cannot read the bearer token file " + token_file +
                                            ": " + std::strerror(errno) + "; asking without a token");
      return {};
    }
    std::string token = text.str();
    while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
    return token;
  }

  void fail(Reason reason, const std::string& detail) {
    size_t pods;
    {
      std::lock_guard lock(shared->mutex);
      shared->up = false;
      ++shared->errors[reason];
      pods = shared->pods;
    }
    was_up = false;
    limiters[reason].log(LogLevel::warn, "kubelet " + url + ": " + detail + " (reason " +
                                             std::string(kReasons[reason]) + "); keeping the names of the " +
                                             std::to_string(pods) + " pods fetched before");
  }

  void succeed(PodNamesByUid pods) {
    size_t n = pods.size();
    auto cache = std::make_shared<const PodNamesByUid>(std::move(pods));
    double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    {
      std::lock_guard lock(shared->mutex);
      shared->published = std::move(cache);
      shared->up = true;
      shared->last_success_unix = now;
      shared->pods = n;
    }
    shared->generation.fetch_add(1);
    if (!was_up) log_info("kubelet " + url + ": pod list fetched, " + std::to_string(n) + " pods");
    was_up = true;
  }

  // One GET of the pod list, within the deadline; false if it failed (counted and logged).
  asio::awaitable<bool> refresh() {
    std::string token = read_token();
    auto deadline = Clock::now() + timeout;
    error_code ec;

    asio::ssl::context tls(asio::ssl::context::tls_client);
    if (insecure) {
      tls.set_verify_mode(asio::ssl::verify_none);
    } else {
      tls.set_verify_mode(asio::ssl::verify_peer);
      if (ca_file.empty()) {
        tls.set_default_verify_paths(ec);
      } else {
        tls.load_verify_file(ca_file, ec);  // read each time: a projected CA bundle can rotate
      }
      if (ec) {
        fail(kTls, "cannot load the CA " + (ca_file.empty() ? "store" : "file " + ca_file) + ": " + ec.message());
        co_return false;
      }
    }

    // The resolver has no timeout of its own: a timer cancels it.
    asio::ip::tcp::resolver resolver(io);
    asio::steady_timer resolve_timer(io);
    bool resolve_timed_out = false;
    resolve_timer.expires_at(deadline);
    resolve_timer.async_wait([&](error_code e) {
      if (e) return;
      resolve_timed_out = true;
      resolver.cancel();
    });
    auto endpoints = co_await resolver.async_resolve(parts.host, parts.port, asio::redirect_error(asio::use_awaitable, ec));
    resolve_timer.cancel();
    if (resolve_timed_out) {
      fail(kTimeout, "no answer within " + std::to_string(timeout.count()) + "ms resolving " + parts.host);
      co_return false;
    }
    if (ec) {
      fail(kConnect, "cannot resolve " + parts.host + ": " + ec.message());
      co_return false;
    }

    beast::ssl_stream<beast::tcp_stream> stream(io, tls);
    beast::get_lowest_layer(stream).expires_at(deadline);  // covers connect, handshake, write and read
    auto timed_out = [&](const char* stage) {
      fail(kTimeout, std::string("no answer within ") + std::to_string(timeout.count()) + "ms (" + stage +
                                "; kubelet.timeout)");
      return false;
    };

    co_await beast::get_lowest_layer(stream).async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout) co_return timed_out("connecting");
    if (ec) {
      fail(kConnect, "cannot connect: " + ec.message());
      co_return false;
    }

    error_code addr_ec;
    asio::ip::make_address(parts.host, addr_ec);
    if (addr_ec) SSL_set_tlsext_host_name(stream.native_handle(), parts.host.c_str());  // SNI takes names only
    if (!insecure) stream.set_verify_callback(asio::ssl::host_name_verification(parts.host));
    co_await stream.async_handshake(asio::ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout) co_return timed_out("TLS handshake");
    if (ec) {
      fail(kTls, "TLS handshake failed: " + ec.message() +
                            (insecure ? "" : " (kubelet.ca_file, or kubelet.insecure_skip_verify for a self-signed kubelet)"));
      co_return false;
    }

    http::request<http::empty_body> req(http::verb::get, parts.target, 11);
    req.set(http::field::host, parts.host.find(':') == std::string::npos ? parts.host : "[" + parts.host + "]");
    req.set(http::field::user_agent, "nodeperf/" NODEPERF_VERSION);
    req.set(http::field::accept, "application/json");
    req.set(http::field::connection, "close");
    if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
    co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout) co_return timed_out("sending the request");
    if (ec) {
      fail(kConnect, "cannot send the request: " + ec.message());
      co_return false;
    }

    beast::flat_buffer buffer;
    http::response_parser<http::string_body> parser;
    parser.body_limit(kMaxBodyBytes);
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec == beast::error::timeout) co_return timed_out("reading the response");
    if (ec == http::error::body_limit) {
      fail(kBadResponse, "response larger than " + std::to_string(kMaxBodyBytes >> 20) + " MiB");
      co_return false;
    }
    if (ec) {
      fail(kConnect, "cannot read the response: " + ec.message());
      co_return false;
    }
    beast::get_lowest_layer(stream).close();  // no TLS shutdown: it could only wait on the peer

    const auto& res = parser.get();
    unsigned status = res.result_int();
    if (status == 401) {
      fail(kUnauthorized, "HTTP 401: the bearer token " +
                                     (token.empty() ? std::string("is missing") : "from " + token_file + " was refused"));
      co_return false;
    }
    if (status == 403) {
      fail(kForbidden, "HTTP 403: the service account may not read nodes/proxy (see docs/kubernetes.md)");
      co_return false;
    }
    if (status != 200) {
      fail(kHttpStatus, "HTTP " + std::to_string(status) + " " + std::string(res.reason()));
      co_return false;
    }
    std::string error;
    std::optional<PodNamesByUid> pods = parse_pod_list(res.body(), error);
    if (!pods) {
      fail(kBadResponse, "bad pod list: " + error);
      co_return false;
    }
    succeed(std::move(*pods));
    co_return true;
  }
};

KubeletPods::KubeletPods(const Config& config) : shared_(std::make_shared<Shared>()) {
  std::optional<std::string> url = expand_node_name(config.kubelet_url, std::getenv("NODE_NAME"));
  std::optional<HttpsUrl> parts = url ? parse_https_url(*url) : std::nullopt;
  if (!parts) {
    shared_->errors[kConfig] = 1;
    log_error("kubelet " + config.kubelet_url + ": " +
              (url ? std::string("not an https:// URL") : "the URL names ${NODE_NAME} but NODE_NAME is not set (the "
                                                          "DaemonSet sets it from the downward API's spec.nodeName)") +
              "; pod names will be missing");
    return;
  }
  if (config.kubelet_insecure_skip_verify) {
    log_warn("kubelet.insecure_skip_verify is set: the certificate of " + *url +
             " is not checked, and the bearer token goes to whoever answers there");
  }
  worker_ = std::make_unique<Worker>(shared_, *url, std::move(*parts), config);
  worker_->start();
}

KubeletPods::~KubeletPods() {
  if (worker_) worker_->stop();
}

const PodNames* KubeletPods::find(std::string_view pod_uid) {
  if (uint64_t g = shared_->generation.load(); g != adopted_generation_) {
    std::shared_ptr<const PodNamesByUid> next;
    {
      std::lock_guard lock(shared_->mutex);
      next = shared_->published;
    }
    previous_ = std::exchange(current_, std::move(next));
    adopted_generation_ = g;
    std::erase_if(asked_, [&](const std::string& uid) { return current_->count(uid) != 0; });
  }
  if (current_) {
    if (auto it = current_->find(pod_uid); it != current_->end()) return &it->second;
  }
  if (worker_ && !asked_.contains(pod_uid)) {
    if (asked_.size() >= kMaxAsked) asked_.clear();
    asked_.emplace(pod_uid);
    worker_->request();
  }
  return nullptr;
}

void KubeletPods::emit_metrics(SampleSink& sink) const {
  std::lock_guard lock(shared_->mutex);
  sink.add(kKubeletMetrics[kUp], shared_->up ? 1 : 0);
  sink.add(kKubeletMetrics[kLastRefresh], shared_->last_success_unix);
  for (size_t r = 0; r < kReasonCount; ++r) {
    sink.add(kKubeletMetrics[kErrors], static_cast<double>(shared_->errors[r]), {{"reason", kReasons[r]}});
  }
  sink.add(kKubeletMetrics[kPods], static_cast<double>(shared_->pods));
}

}  // namespace nodeperf
