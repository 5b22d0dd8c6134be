// A small HTTP/1.1 server for the agent's endpoints, on the agent's
// io_context. GET and HEAD only; bounded request size; an idle deadline on
// every read and write; a hard cap on open connections that evicts the
// longest idle one (or, when none is idle, the one whose response has been
// stalled longest), so idle, slow or non-reading clients cannot lock
// scrapers out.
#pragma once

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/fields.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/span_body.hpp>
#include <chrono>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "exporters/web_auth.h"

namespace nodeperf {

struct HttpRequest {
  std::string_view target;  // path without the query string
  std::string_view query;   // after the '?', empty if none
  const boost::beast::http::fields& headers;
};

struct HttpResponse {
  unsigned status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string content_encoding;  // "gzip" or empty
  std::string body;              // used when view is empty
  std::string_view view;         // a body owned by keep_alive, served without a copy
  std::shared_ptr<const void> keep_alive;
  std::vector<std::pair<std::string, std::string>> headers;  // more header fields
  std::string_view payload() const { return view.data() ? view : std::string_view(body); }

  static HttpResponse text(unsigned status, std::string body,
                           std::string content_type = "text/plain; charset=utf-8") {
    HttpResponse r;
    r.status = status;
    r.body = std::move(body);
    r.content_type = std::move(content_type);
    return r;
  }
};

using HttpHandler = std::function<HttpResponse(const HttpRequest&)>;

struct HttpLimits {
  unsigned max_connections = 64;
  std::chrono::milliseconds idle_timeout{30'000};
  unsigned max_request_bytes = 8192;
};

// The parser every request is read with, and the limits the server sets on it.
using HttpRequestParser = boost::beast::http::request_parser<boost::beast::http::empty_body>;
void limit_request_parser(HttpRequestParser& parser, const HttpLimits& limits);

// What the server sends for one request read.
struct HttpAnswer {
  HttpResponse response;
  bool keep_alive = false;
  bool head = false;  // HEAD: the headers GET would send, without the body
};
using HttpResponseMessage = boost::beast::http::response<boost::beast::http::span_body<const char>>;
// The response message for an answer; its body points into answer.response.
HttpResponseMessage response_message(const HttpAnswer& answer);

struct HttpStats {
  std::map<unsigned, uint64_t> responses_by_code;
  uint64_t connections_open = 0;
  uint64_t connections_evicted = 0;
  std::map<AuthVerdict, uint64_t> auth_failures;
  uint64_t tls_handshake_failures = 0;
};

// TLS and authentication from the web config file (exporters/web_config.h);
// all empty: plain HTTP, no authentication.
struct HttpSecurity {
  std::shared_ptr<boost::asio::ssl::context> tls;  // new connections use the newest
  std::shared_ptr<WebAuth> auth;                   // checks every route not marked open
  std::vector<std::pair<std::string, std::string>> headers;  // on every response
};

class HttpServer {
 public:
  // Binds now, so a bad or busy address fails at start-up. Throws std::runtime_error.
  HttpServer(boost::asio::io_context& io, const std::string& listen_address, HttpLimits limits);
  ~HttpServer();

  // `open`: served without authentication even when the web config asks for it.
  void route(std::string path, HttpHandler handler, bool open = false);
  void start();
  void stop();  // closes the listener and every connection
  void set_limits(HttpLimits limits) { limits_ = limits; }
  // Takes effect for new connections (TLS) and new requests (authentication).
  void set_security(HttpSecurity security) { security_ = std::move(security); }
  // The thread that runs slow authentication checks (bcrypt, TokenReview) off the loop.
  boost::asio::any_io_executor auth_executor();
  boost::asio::ip::tcp::endpoint local_endpoint() const;
  const HttpStats& stats() const { return stats_; }

  // The answer to one read of a request with a limited HttpRequestParser:
  // `ec` is the read's outcome. Counted in stats(). nullopt when there is
  // nothing to answer (closed, idle too long, evicted). Besides serve(),
  // fuzz/fuzz_http.cpp calls it, on requests read from memory.
  std::optional<HttpAnswer> answer(const boost::system::error_code& ec, const HttpRequestParser& parser);

 private:
  struct Connection;
  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> serve(std::shared_ptr<Connection> conn);
  template <class Stream>
  boost::asio::awaitable<void> serve_requests(std::shared_ptr<Connection> conn, Stream& stream);
  boost::asio::awaitable<AuthVerdict> authenticate(std::shared_ptr<WebAuth> auth, std::string_view authorization,
                                                   std::string_view path);
  bool needs_auth(std::string_view target) const;
  HttpResponse respond(boost::beast::http::verb method, std::string_view target,
                       const boost::beast::http::fields& headers);
  void make_room();

  boost::asio::io_context& io_;
  boost::asio::ip::tcp::acceptor acceptor_;
  HttpLimits limits_;
  struct Route {
    HttpHandler handler;
    bool open;
  };
  std::map<std::string, Route, std::less<>> routes_;
  HttpSecurity security_;
  std::unique_ptr<boost::asio::thread_pool> auth_worker_;  // made when first asked for
  std::list<std::shared_ptr<Connection>> connections_;
  HttpStats stats_;
  bool stopped_ = false;
};

// Parses "host:port", "[v6]:port" or ":port" (all addresses).
boost::asio::ip::tcp::endpoint resolve_listen_address(const std::string& address);

}  // namespace nodeperf
