// HTTP requests: the input is the bytes a client sends on one connection.
// They are read as HttpServer::serve() reads them (a limited
// HttpRequestParser, one request after another while the client keeps the
// connection alive), but with Beast's synchronous http::read from memory
// instead of a socket; each read goes through HttpServer::answer() (error
// classification, routing, GET/HEAD only) and response_message(), and the
// response is serialized as serve() writes it. Not covered: the socket,
// timers and connection cap (tests/integration/test_http.py covers those).
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <cstdint>
#include <memory>
#include <string_view>

#include "exporters/http_server.h"

namespace {

namespace asio = boost::asio;
namespace http = boost::beast::http;
using namespace nodeperf;

// A SyncReadStream over the input, then end of stream; a SyncWriteStream that
// discards (and counts) what is written.
class MemoryStream {
 public:
  explicit MemoryStream(std::string_view in) : in_(in) {}
  using executor_type = asio::io_context::executor_type;

  template <class Buffers>
  size_t read_some(const Buffers& buffers, boost::system::error_code& ec) {
    if (in_.empty()) {
      ec = asio::error::eof;
      return 0;
    }
    ec = {};
    size_t n = asio::buffer_copy(buffers, asio::buffer(in_.data(), in_.size()));
    in_.remove_prefix(n);
    return n;
  }
  template <class Buffers>
  size_t read_some(const Buffers& buffers) {
    boost::system::error_code ec;
    size_t n = read_some(buffers, ec);
    if (ec) throw boost::system::system_error(ec);
    return n;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers, boost::system::error_code& ec) {
    ec = {};
    size_t n = asio::buffer_size(buffers);
    written += n;
    return n;
  }
  template <class Buffers>
  size_t write_some(const Buffers& buffers) {
    boost::system::error_code ec;
    return write_some(buffers, ec);
  }
  size_t written = 0;

 private:
  std::string_view in_;
};

struct Server {
  asio::io_context io;
  HttpLimits limits;  // the defaults the agent uses (web.max_request_bytes 8192)
  HttpServer server{io, "127.0.0.1:0", limits};  // bound once, never started
  std::shared_ptr<const std::string> body = std::make_shared<std::string>("metric 1\n");
  Server() {
    // Routes shaped like the agent's: one that reads headers and serves a
    // shared body without a copy, one that reads the query, a plain one.
    server.route("/metrics", [this](const HttpRequest& r) {
      HttpResponse res;
      auto it = r.headers.find(http::field::accept_encoding);
      if (it != r.headers.end() && it->value().find("gzip") != std::string_view::npos) res.content_encoding = "gzip";
      res.view = *body;
      res.keep_alive = body;
      return res;
    });
    server.route("/api/v1/snapshot", [](const HttpRequest& r) {
      return HttpResponse::text(r.query.empty() ? 200 : 400, std::string(r.query.substr(0, 64)), "application/json");
    });
    server.route("/", [](const HttpRequest&) { return HttpResponse::text(200, "index\n", "text/html"); });
  }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Server* s = new Server;  // outlives the fuzzer's exit
  MemoryStream stream(std::string_view(reinterpret_cast<const char*>(data), size));
  boost::beast::flat_buffer buffer;
  for (;;) {
    HttpRequestParser parser;
    limit_request_parser(parser, s->limits);
    boost::system::error_code ec;
    http::read(stream, buffer, parser, ec);
    std::optional<HttpAnswer> a = s->server.answer(ec, parser);
    if (!a) break;
    HttpResponseMessage out = response_message(*a);
    http::response_serializer<http::span_body<const char>> serializer(out);
    if (a->head) {
      serializer.split(true);
      http::write_header(stream, serializer, ec);
    } else {
      http::write(stream, serializer, ec);
    }
    if (ec || !a->keep_alive) break;
  }
  return 0;
}
