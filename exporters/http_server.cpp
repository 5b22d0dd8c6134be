#include "exporters/http_server.h"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <stdexcept>

#include "agent/log.h"

namespace nodeperf {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

struct HttpServer::Connection {
  Connection(tcp::socket socket, std::shared_ptr<asio::ssl::context> context)
      : stream(std::move(socket)), tls_context(std::move(context)) {
    if (tls_context) tls = std::make_unique<beast::ssl_stream<beast::tcp_stream&>>(stream, *tls_context);
  }
  beast::tcp_stream stream;
  std::shared_ptr<asio::ssl::context> tls_context;  // the one this connection was accepted with
  std::unique_ptr<beast::ssl_stream<beast::tcp_stream&>> tls;  // over `stream`, when serving TLS
  bool busy = false;  // between a complete request and the end of its response
  std::chrono::steady_clock::time_point busy_since;  // when busy: since its request was read
  std::chrono::steady_clock::time_point idle_since = std::chrono::steady_clock::now();
  std::list<std::shared_ptr<Connection>>::iterator self;
};

tcp::endpoint resolve_listen_address(const std::string& address) {
  size_t colon = address.rfind(':');
  if (colon == std::string::npos) throw std::runtime_error("listen address '" + address + "' has no port");
  std::string host = address.substr(0, colon);
  auto port = static_cast<unsigned short>(std::stoul(address.substr(colon + 1)));
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) return tcp::endpoint(tcp::v6(), port);  // dual-stack: every address
  boost::system::error_code ec;
  auto ip = asio::ip::make_address(host, ec);
  if (!ec) return tcp::endpoint(ip, port);
  asio::io_context io;
  tcp::resolver resolver(io);
  auto results = resolver.resolve(host, std::to_string(port), ec);
  if (ec || results.empty()) throw std::runtime_error("cannot resolve listen host '" + host + "': " + ec.message());
  return *results.begin();
}

HttpServer::HttpServer(asio::io_context& io, const std::string& listen_address, HttpLimits limits)
    : io_(io), acceptor_(io), limits_(limits) {
  tcp::endpoint endpoint = resolve_listen_address(listen_address);
  auto bind = [&](const tcp::endpoint& ep) {
    boost::system::error_code ec;
    acceptor_.open(ep.protocol(), ec);
    if (!ec && ep.address().is_v6() && ep.address().is_unspecified()) acceptor_.set_option(asio::ip::v6_only(false), ec);
    if (!ec) acceptor_.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec) acceptor_.bind(ep, ec);
    if (!ec) acceptor_.listen(asio::socket_base::max_listen_connections, ec);
    if (ec && acceptor_.is_open()) acceptor_.close();
    return ec;
  };
  boost::system::error_code ec = bind(endpoint);
  if (ec && endpoint.address().is_v6() && endpoint.address().is_unspecified()) {
    ec = bind(tcp::endpoint(tcp::v4(), endpoint.port()));  // a host without IPv6
  }
  if (ec) throw std::runtime_error("cannot listen on " + listen_address + ": " + ec.message());
}

HttpServer::~HttpServer() { stop(); }

void HttpServer::route(std::string path, HttpHandler handler, bool open) {
  routes_[std::move(path)] = Route{std::move(handler), open};
}

asio::any_io_executor HttpServer::auth_executor() {
  if (!auth_worker_) auth_worker_ = std::make_unique<asio::thread_pool>(1);
  return auth_worker_->get_executor();
}

tcp::endpoint HttpServer::local_endpoint() const { return acceptor_.local_endpoint(); }

void HttpServer::start() { asio::co_spawn(io_, accept_loop(), asio::detached); }

void HttpServer::stop() {
  if (stopped_) return;
  stopped_ = true;
  boost::system::error_code ec;
  acceptor_.close(ec);
  for (auto& conn : connections_) conn->stream.socket().close(ec);
}

void HttpServer::make_room() {
  // Close the connection that has waited longest for a request. If every
  // one is busy sending a response, close the one busy longest: a response
  // of a few MB takes milliseconds to send, so that is a client that does
  // not read (its socket buffers full), and without this a flood of them
  // would hold a socket each, past the cap, for the whole write deadline.
  std::shared_ptr<Connection> victim;
  for (auto& conn : connections_) {
    if (!conn->busy && (!victim || conn->idle_since < victim->idle_since)) victim = conn;
  }
  for (auto& conn : connections_) {
    if (victim && !victim->busy) break;
    if (conn->busy && (!victim || conn->busy_since < victim->busy_since)) victim = conn;
  }
  if (victim) {
    boost::system::error_code ec;
    victim->stream.socket().close(ec);
    ++stats_.connections_evicted;
  }
}

asio::awaitable<void> HttpServer::accept_loop() {
  bool failing = false;
  while (!stopped_) {
    boost::system::error_code ec;
    tcp::socket socket = co_await acceptor_.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      if (stopped_ || ec == asio::error::operation_aborted) co_return;
      // E.g. EMFILE: the client waits in the listen backlog. Retrying at
      // once would spin (the socket stays readable), so pause, and say it
      // once per spell of failures.
      if (!failing) log_warn("http: accept failed: " + ec.message() + " (retrying every 100 ms)");
      failing = true;
      asio::steady_timer pause(io_, std::chrono::milliseconds(100));
      co_await pause.async_wait(asio::redirect_error(asio::use_awaitable, ec));
      continue;
    }
    if (failing) log_info("http: accepting again");
    failing = false;
    // TLS sends the response's header and body as separate records: with
    // Nagle's algorithm the body would wait for the client's delayed ACK (40 ms).
    socket.set_option(tcp::no_delay(true), ec);
    if (connections_.size() >= limits_.max_connections) make_room();
    auto conn = std::make_shared<Connection>(std::move(socket), security_.tls);
    connections_.push_front(conn);
    conn->self = connections_.begin();
    stats_.connections_open = connections_.size();
    asio::co_spawn(io_, serve(conn), asio::detached);
  }
}

HttpResponse HttpServer::respond(http::verb method, std::string_view target, const http::fields& headers) {
  std::string_view query;
  if (size_t q = target.find('?'); q != std::string_view::npos) {
    query = target.substr(q + 1);
    target = target.substr(0, q);
  }
  auto route = routes_.find(target);
  if (route == routes_.end()) return HttpResponse::text(404, "404 page not found\n");
  if (method != http::verb::get && method != http::verb::head) {
    return HttpResponse::text(405, "405 method not allowed: use GET or HEAD\n");
  }
  return route->second.handler(HttpRequest{target, query, headers});
}

void limit_request_parser(HttpRequestParser& parser, const HttpLimits& limits) {
  parser.header_limit(limits.max_request_bytes);
  parser.body_limit(0);
}

std::optional<HttpAnswer> HttpServer::answer(const boost::system::error_code& ec, const HttpRequestParser& parser) {
  HttpAnswer a;
  if (!ec) {
    const auto& req = parser.get();
    a.head = req.method() == http::verb::head;
    a.response = respond(req.method(), req.target(), req);
    a.keep_alive = req.keep_alive();
  } else if (ec == http::error::header_limit) {
    a.response = HttpResponse::text(431, "431 request header fields too large\n");
  } else if (ec == http::error::body_limit || ec == http::error::unexpected_body) {
    a.response = HttpResponse::text(413, "413 request body not accepted\n");
  } else if (ec == http::error::end_of_stream || ec == beast::error::timeout ||
             ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
             ec == asio::error::eof) {
    return std::nullopt;  // closed, idle too long, or evicted: nothing to answer
  } else {
    a.response = HttpResponse::text(400, "400 bad request: " + ec.message() + "\n");
  }
  ++stats_.responses_by_code[a.response.status];
  return a;
}

HttpResponseMessage response_message(const HttpAnswer& answer) {
  const HttpResponse& res = answer.response;
  HttpResponseMessage out;
  out.version(11);
  out.result(res.status);
  out.set(http::field::server, "nodeperf");
  out.set(http::field::content_type, res.content_type);
  if (!res.content_encoding.empty()) out.set(http::field::content_encoding, res.content_encoding);
  for (const auto& [name, value] : res.headers) out.set(name, value);
  if (res.status == 405) out.set(http::field::allow, "GET, HEAD");
  std::string_view payload = res.payload();
  out.keep_alive(answer.keep_alive);
  if (answer.head) {
    out.content_length(payload.size());  // the size GET would send, and no body
  } else {
    out.body() = http::span_body<const char>::value_type(payload.data(), payload.size());
    out.prepare_payload();
  }
  return out;
}

bool HttpServer::needs_auth(std::string_view target) const {
  target = target.substr(0, target.find('?'));
  auto route = routes_.find(target);
  return route == routes_.end() || !route->second.open;  // a 404 is not told without credentials either
}

asio::awaitable<AuthVerdict> HttpServer::authenticate(std::shared_ptr<WebAuth> auth, std::string_view authorization,
                                                      std::string_view path) {
  // A check the cache cannot answer runs on the auth worker; its verdict
  // comes back to the loop and cancels this wait. The idle timeout bounds it.
  struct Wait {
    explicit Wait(asio::io_context& io) : timer(io) {}
    asio::steady_timer timer;
    std::optional<AuthVerdict> verdict;
  };
  auto wait = std::make_shared<Wait>(io_);
  std::optional<AuthVerdict> verdict = auth->check(authorization, path, [wait](AuthVerdict v) {
    wait->verdict = v;
    wait->timer.cancel();
  });
  if (verdict) co_return *verdict;
  wait->timer.expires_after(limits_.idle_timeout);
  boost::system::error_code ec;
  co_await wait->timer.async_wait(asio::redirect_error(asio::use_awaitable, ec));
  co_return wait->verdict.value_or(AuthVerdict::unavailable);
}

asio::awaitable<void> HttpServer::serve(std::shared_ptr<Connection> conn) {
  if (conn->tls) {
    // The handshake has the idle deadline too: a client that connects and
    // stalls, or sends half a ClientHello, is dropped like an idle one (and
    // can be evicted meanwhile: it is not busy). Plain HTTP gets a 400 that
    // says so, rather than an empty reply.
    conn->stream.expires_after(limits_.idle_timeout);
    boost::system::error_code ec;
    beast::flat_buffer hello;
    bool tls = co_await beast::async_detect_ssl(conn->stream, hello, asio::redirect_error(asio::use_awaitable, ec));
    if (!ec && !tls) {
      constexpr std::string_view reply =
          "HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 48\r\n"
          "Connection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";
      ++stats_.tls_handshake_failures;
      co_await asio::async_write(conn->stream, asio::buffer(reply.data(), reply.size()),
                                 asio::redirect_error(asio::use_awaitable, ec));
    } else {
      if (!ec) {
        size_t used = co_await conn->tls->async_handshake(asio::ssl::stream_base::server, hello.data(),
                                                          asio::redirect_error(asio::use_awaitable, ec));
        hello.consume(used);
      }
      if (!ec) {
        co_await serve_requests(conn, *conn->tls);
      } else if (!stopped_ && ec != asio::error::operation_aborted && ec != asio::error::bad_descriptor &&
                 !(ec == asio::error::eof && hello.size() == 0)) {
        ++stats_.tls_handshake_failures;  // not counted: evicted, stopped, or a TCP probe that sent nothing
        log_debug("http: TLS handshake failed: " + ec.message());
      }
    }
  } else {
    co_await serve_requests(conn, conn->stream);
  }
  boost::system::error_code ignored;
  conn->stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  conn->stream.socket().close(ignored);
  if (!stopped_) {
    connections_.erase(conn->self);
    stats_.connections_open = connections_.size();
  }
}

template <class Stream>
asio::awaitable<void> HttpServer::serve_requests(std::shared_ptr<Connection> conn, Stream& stream) {
  beast::flat_buffer buffer;
  for (;;) {
    HttpRequestParser parser;
    limit_request_parser(parser, limits_);
    conn->busy = false;
    conn->idle_since = std::chrono::steady_clock::now();
    conn->stream.expires_after(limits_.idle_timeout);
    boost::system::error_code ec;
    co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    conn->busy = true;
    conn->busy_since = std::chrono::steady_clock::now();

    std::optional<HttpAnswer> a;
    std::shared_ptr<WebAuth> auth = security_.auth;  // kept for the check, even if a reload replaces it
    if (!ec && auth && needs_auth(parser.get().target())) {
      auto header = parser.get().find(http::field::authorization);
      std::string_view authorization = header == parser.get().end() ? std::string_view() : header->value();
      std::string_view target = parser.get().target();
      AuthVerdict verdict = co_await authenticate(auth, authorization, target.substr(0, target.find('?')));
      if (stopped_) break;
      if (verdict != AuthVerdict::allowed) {
        ++stats_.auth_failures[verdict];
        a.emplace();
        if (verdict == AuthVerdict::busy) {
          a->response = HttpResponse::text(503, "503 too many authentication checks at once; retry\n");
          a->response.headers.emplace_back("Retry-After", "1");
        } else if (verdict == AuthVerdict::forbidden) {
          a->response = HttpResponse::text(403, "403 forbidden: the token's user may not get this path\n");
        } else {
          a->response = HttpResponse::text(401, "401 unauthorized\n");
          a->response.headers.emplace_back("WWW-Authenticate", auth->challenge());
        }
        a->keep_alive = parser.get().keep_alive();
        a->head = parser.get().method() == http::verb::head;
        ++stats_.responses_by_code[a->response.status];
      }
    }
    if (!a) a = answer(ec, parser);
    if (!a) break;
    for (const auto& h : security_.headers) a->response.headers.push_back(h);
    HttpResponseMessage out = response_message(*a);
    http::response_serializer<http::span_body<const char>> serializer(out);
    if (a->head) serializer.split(true);
    conn->stream.expires_after(limits_.idle_timeout);
    if (a->head) {
      co_await http::async_write_header(stream, serializer, asio::redirect_error(asio::use_awaitable, ec));
    } else {
      co_await http::async_write(stream, serializer, asio::redirect_error(asio::use_awaitable, ec));
    }
    if (ec || !a->keep_alive || stopped_) break;
  }
}

}  // namespace nodeperf
