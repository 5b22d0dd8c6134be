#include "exporters/web_auth.h"

#include <crypt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <cctype>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "agent/kubelet.h"
#include "agent/log.h"

namespace nodeperf {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using Clock = std::chrono::steady_clock;

std::string_view verdict_reason(AuthVerdict v) {
  switch (v) {
    case AuthVerdict::allowed: return "allowed";
    case AuthVerdict::missing: return "missing";
    case AuthVerdict::bad_credentials: return "bad_credentials";
    case AuthVerdict::token_rejected: return "token_rejected";
    case AuthVerdict::forbidden: return "forbidden";
    case AuthVerdict::unavailable: return "unavailable";
    case AuthVerdict::busy: return "busy";
  }
  return "unknown";
}

Digest sha256(std::string_view a, std::string_view b) {
  Digest out{};
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_DigestInit_ex(ctx, EVP_sha256(), nullptr);
  EVP_DigestUpdate(ctx, a.data(), a.size());
  EVP_DigestUpdate(ctx, "\0", 1);  // ("ab", "c") and ("a", "bc") differ
  EVP_DigestUpdate(ctx, b.data(), b.size());
  unsigned int n = 0;
  EVP_DigestFinal_ex(ctx, out.data(), &n);
  EVP_MD_CTX_free(ctx);
  return out;
}

std::optional<AuthVerdict> VerdictCache::find(const Digest& key, Clock::time_point now) const {
  auto it = entries_.find(key);
  if (it == entries_.end() || it->second.expires <= now) return std::nullopt;
  return it->second.verdict;
}

void VerdictCache::put(const Digest& key, AuthVerdict verdict, Clock::time_point expires, Clock::time_point now) {
  if (capacity_ == 0 || expires <= now) return;
  if (entries_.size() >= capacity_ && !entries_.contains(key)) {
    std::erase_if(entries_, [&](const auto& e) { return e.second.expires <= now; });
    if (entries_.size() >= capacity_) {
      auto soonest = entries_.begin();
      for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (it->second.expires < soonest->second.expires) soonest = it;
      }
      entries_.erase(soonest);
    }
  }
  entries_.insert_or_assign(key, Entry{verdict, expires});
}

bool bcrypt_matches(const std::string& hash, const std::string& password) {
  auto data = std::make_unique<crypt_data>();
  const char* out = crypt_rn(password.c_str(), hash.c_str(), data.get(), sizeof(crypt_data));
  if (out == nullptr) return false;
  size_t n = std::strlen(out);
  return n == hash.size() && CRYPTO_memcmp(out, hash.data(), n) == 0;
}

namespace {

std::optional<std::string> base64_decode(std::string_view in) {
  auto value = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  std::string out;
  unsigned bits = 0, acc = 0;
  for (char c : in) {
    int v = value(c);
    if (v < 0) return std::nullopt;
    acc = (acc << 6) | static_cast<unsigned>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  if (bits >= 6) return std::nullopt;  // a lone sixth of a byte
  return out;
}

// The scheme's credentials of an Authorization header ("Basic x" -> "x"), case-insensitive scheme.
std::optional<std::string_view> credentials(std::string_view header, std::string_view scheme) {
  if (header.size() <= scheme.size() || header[scheme.size()] != ' ') return std::nullopt;
  for (size_t i = 0; i < scheme.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(header[i])) != std::tolower(static_cast<unsigned char>(scheme[i]))) {
      return std::nullopt;
    }
  }
  std::string_view rest = header.substr(scheme.size() + 1);
  while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
  while (!rest.empty() && rest.back() == ' ') rest.remove_suffix(1);
  if (rest.empty()) return std::nullopt;
  return rest;
}

std::string read_token(const std::string& file) {
  std::ifstream in(file);
  std::stringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) return {};
  std::string token = text.str();
  while (!token.empty() && std::isspace(static_cast<unsigned char>(token.back()))) token.pop_back();
  return token;
}

constexpr auto kBasicTtl = std::chrono::minutes(5);
constexpr auto kBasicNegativeTtl = std::chrono::seconds(10);
LogLimiter token_review_log;  // one line per 10 minutes when the API server cannot be asked

// One POST of `body` to the API server, on the worker's executor, within
// `deadline`: the answer's JSON object, or nullopt with `error` set.
asio::awaitable<std::optional<nlohmann::json>> api_post(const KubernetesAuthConfig& k, const std::string& api_path,
                                                        const nlohmann::json& body, const std::string& own_token,
                                                        Clock::time_point deadline, std::string& error) {
  std::optional<HttpsUrl> url = parse_https_url(k.api_server + api_path);
  if (!url) {
    error = "not an https:// URL";
    co_return std::nullopt;
  }
  auto executor = co_await asio::this_coro::executor;
  boost::system::error_code ec;
  asio::ssl::context tls(asio::ssl::context::tls_client);
  tls.set_verify_mode(asio::ssl::verify_peer);
  tls.load_verify_file(k.ca_file, ec);  // read each time: the CA bundle can rotate
  if (ec) {
    error = "cannot load the CA file " + k.ca_file + ": " + ec.message();
    co_return std::nullopt;
  }

  asio::ip::tcp::resolver resolver(executor);
  asio::steady_timer resolve_timer(executor);
  resolve_timer.expires_at(deadline);
  resolve_timer.async_wait([&](boost::system::error_code e) {
    if (!e) resolver.cancel();
  });
  auto endpoints = co_await resolver.async_resolve(url->host, url->port, asio::redirect_error(asio::use_awaitable, ec));
  resolve_timer.cancel();
  if (ec) {
    error = "cannot resolve " + url->host + ": " + ec.message();
    co_return std::nullopt;
  }

  beast::ssl_stream<beast::tcp_stream> stream(executor, tls);
  beast::get_lowest_layer(stream).expires_at(deadline);  // connect, handshake, write and read
  auto failed = [&](const char* stage) {
    error = std::string(stage) + ": " + (ec == beast::error::timeout ? "no answer within kubernetes_auth.timeout" : ec.message());
  };
  co_await beast::get_lowest_layer(stream).async_connect(endpoints, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    failed("connecting");
    co_return std::nullopt;
  }
  boost::system::error_code addr_ec;
  asio::ip::make_address(url->host, addr_ec);
  if (addr_ec) SSL_set_tlsext_host_name(stream.native_handle(), url->host.c_str());
  stream.set_verify_callback(asio::ssl::host_name_verification(url->host));
  co_await stream.async_handshake(asio::ssl::stream_base::client, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    failed("TLS handshake");
    co_return std::nullopt;
  }

  http::request<http::string_body> req(http::verb::post, url->target, 11);
  req.set(http::field::host, url->host.find(':') == std::string::npos ? url->host : "[" + url->host + "]");
  req.set(http::field::user_agent, "nodeperf/" NODEPERF_VERSION);
  req.set(http::field::content_type, "application/json");
  req.set(http::field::accept, "application/json");
  req.set(http::field::authorization, "Bearer " + own_token);
  req.set(http::field::connection, "close");
  req.body() = body.dump();
  req.prepare_payload();
  co_await http::async_write(stream, req, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    failed("sending");
    co_return std::nullopt;
  }
  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(1 << 20);
  co_await http::async_read(stream, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
  if (ec) {
    failed("reading the answer");
    co_return std::nullopt;
  }
  beast::get_lowest_layer(stream).close();  // no TLS shutdown: it could only wait on the peer

  unsigned status = parser.get().result_int();
  if (status != 200 && status != 201) {
    error = "HTTP " + std::to_string(status) +
            (status == 403 ? " (the agent's service account may not create it: see docs/operations.md)" : "");
    co_return std::nullopt;
  }
  nlohmann::json answer = nlohmann::json::parse(parser.get().body(), nullptr, /*allow_exceptions=*/false);
  if (!answer.is_object() || !answer.contains("status") || !answer["status"].is_object()) {
    error = "the answer has no status object";
    co_return std::nullopt;
  }
  co_return std::move(answer["status"]);
}

bool true_field(const nlohmann::json& object, const char* key) {
  auto it = object.find(key);
  return it != object.end() && it->is_boolean() && it->get<bool>();
}

// A TokenReview, then (with `authorize`) a SubjectAccessReview of the user it
// names for `get` on the non-resource URL `path`, as kube-rbac-proxy does.
// Runs on the worker's executor; one deadline covers both. Returns allowed,
// token_rejected, forbidden or unavailable (logged at a bounded rate).
asio::awaitable<AuthVerdict> review(KubernetesAuthConfig k, std::string token, std::string path) {
  auto unavailable = [&](const std::string& review, const std::string& what) {
    token_review_log.log(LogLevel::warn, "kubernetes_auth: " + review + " at " + k.api_server + " failed: " + what +
                                             "; bearer tokens without a cached verdict get 401 meanwhile");
    return AuthVerdict::unavailable;
  };
  std::string own_token = read_token(k.token_file);
  if (own_token.empty()) co_return unavailable("TokenReview", "cannot read the service-account token " + k.token_file);
  auto deadline = Clock::now() + k.timeout;
  std::string error;
  nlohmann::json token_review = {{"apiVersion", "authentication.k8s.io/v1"},
                                 {"kind", "TokenReview"},
                                 {"spec", {{"token", token}}}};
  std::optional<nlohmann::json> status =
      co_await api_post(k, "/apis/authentication.k8s.io/v1/tokenreviews", token_review, own_token, deadline, error);
  if (!status) co_return unavailable("TokenReview", error);
  if (!true_field(*status, "authenticated")) co_return AuthVerdict::token_rejected;
  if (!k.authorize) co_return AuthVerdict::allowed;

  nlohmann::json user = status->value("user", nlohmann::json::object());
  if (!user.is_object()) user = nlohmann::json::object();
  nlohmann::json spec = {{"nonResourceAttributes", {{"path", path}, {"verb", "get"}}}};
  for (const char* key : {"username", "uid", "groups", "extra"}) {
    if (user.contains(key)) spec[std::string(key) == "username" ? "user" : key] = user[key];
  }
  nlohmann::json access_review = {{"apiVersion", "authorization.k8s.io/v1"},
                                  {"kind", "SubjectAccessReview"},
                                  {"spec", std::move(spec)}};
  status = co_await api_post(k, "/apis/authorization.k8s.io/v1/subjectaccessreviews", access_review, own_token,
                             deadline, error);
  if (!status) co_return unavailable("SubjectAccessReview", error);
  co_return true_field(*status, "allowed") ? AuthVerdict::allowed : AuthVerdict::forbidden;
}

}  // namespace

std::optional<std::pair<std::string, std::string>> parse_basic_authorization(std::string_view header) {
  std::optional<std::string_view> creds = credentials(header, "Basic");
  if (!creds) return std::nullopt;
  std::optional<std::string> text = base64_decode(*creds);
  if (!text) return std::nullopt;
  size_t colon = text->find(':');
  if (colon == std::string::npos) return std::nullopt;
  return std::pair{text->substr(0, colon), text->substr(colon + 1)};
}

WebAuth::WebAuth(const WebConfig& config, asio::io_context& loop, asio::any_io_executor worker)
    : users_(config.basic_auth_users),
      kubernetes_(config.kubernetes_auth),
      loop_(loop),
      worker_(std::move(worker)),
      token_cache_(kubernetes_ ? kubernetes_->cache_size : 0),
      alive_(std::make_shared<bool>(true)) {}

WebAuth::~WebAuth() { *alive_ = false; }

std::optional<AuthVerdict> WebAuth::check(std::string_view authorization, std::string_view path,
                                          std::function<void(AuthVerdict)> done) {
  if (!users_.empty() && credentials(authorization, "Basic")) return check_basic(authorization, done);
  if (kubernetes_) {
    if (auto token = credentials(authorization, "Bearer")) return check_bearer(*token, path, done);
  }
  return AuthVerdict::missing;
}

std::optional<AuthVerdict> WebAuth::check_basic(std::string_view header, std::function<void(AuthVerdict)>& done) {
  auto creds = parse_basic_authorization(header);
  if (!creds) return AuthVerdict::bad_credentials;
  auto& [user, password] = *creds;
  Digest key = sha256(user, password);
  if (auto known = basic_cache_.find(key, Clock::now())) return *known;
  if (pending_ >= kMaxPending) return AuthVerdict::busy;
  ++pending_;
  // An unknown user is checked against a real hash all the same, so the
  // answer takes as long as for a known user with a wrong password.
  auto it = users_.find(user);
  bool known_user = it != users_.end();
  std::string hash = known_user ? it->second : users_.begin()->second;
  asio::post(worker_, [this, alive = alive_, &loop = loop_, hash, password = std::move(password), known_user, key,
                       done = std::move(done)]() mutable {
    bool ok = bcrypt_matches(hash, password) && known_user;
    asio::post(loop, [this, alive, ok, key, done = std::move(done)] {
      if (*alive) {
        --pending_;
        auto now = Clock::now();
        basic_cache_.put(key, ok ? AuthVerdict::allowed : AuthVerdict::bad_credentials,
                         now + (ok ? Clock::duration(kBasicTtl) : Clock::duration(kBasicNegativeTtl)), now);
      }
      done(ok ? AuthVerdict::allowed : AuthVerdict::bad_credentials);
    });
  });
  return std::nullopt;
}

std::optional<AuthVerdict> WebAuth::check_bearer(std::string_view token, std::string_view path,
                                                 std::function<void(AuthVerdict)>& done) {
  // With authorize, the verdict depends on the path too.
  Digest key = sha256(token, kubernetes_->authorize ? path : std::string_view());
  if (auto known = token_cache_.find(key, Clock::now())) return *known;
  if (pending_ >= kMaxPending) return AuthVerdict::busy;
  ++pending_;
  asio::co_spawn(worker_, review(*kubernetes_, std::string(token), std::string(path)),
                 [this, alive = alive_, &loop = loop_, key, done = std::move(done)](std::exception_ptr e,
                                                                                    AuthVerdict v) mutable {
                   if (e) v = AuthVerdict::unavailable;
                   asio::post(loop, [this, alive, v, key, done = std::move(done)] {
                     if (*alive) {
                       --pending_;
                       auto now = Clock::now();
                       // An API server that could not be asked is not remembered: the next request asks again.
                       if (v != AuthVerdict::unavailable) {
                         auto ttl = v == AuthVerdict::allowed ? kubernetes_->cache_ttl : kubernetes_->negative_cache_ttl;
                         token_cache_.put(key, v, now + ttl, now);
                       }
                     }
                     done(v);
                   });
                 });
  return std::nullopt;
}

}  // namespace nodeperf
