// The web config file (--web.config.file): TLS and authentication for the
// HTTP endpoint, in the format of node_exporter's (Prometheus
// exporter-toolkit's): tls_server_config, basic_auth_users and
// http_server_config, plus our kubernetes_auth block for service-account
// bearer tokens checked with a TokenReview. docs/operations.md describes it.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace nodeperf {

// tls_server_config.client_auth_type, as Go's crypto/tls names them.
enum class ClientAuth { none, request, require_any, verify_if_given, require_and_verify };

struct TlsServerConfig {
  std::string cert_file, key_file;  // relative paths are resolved against the web config file's folder
  ClientAuth client_auth = ClientAuth::none;
  std::string client_ca_file;
  int min_version = 0x0303;  // TLS 1.2, OpenSSL's TLS1_2_VERSION
  int max_version = 0;       // 0: the newest OpenSSL has
};

struct KubernetesAuthConfig {
  std::string api_server = "https://kubernetes.default.svc";
  std::string token_file = "/var/run/secrets/kubernetes.io/serviceaccount/token";
  std::string ca_file = "/var/run/secrets/kubernetes.io/serviceaccount/ca.crt";
  std::chrono::milliseconds timeout{5000};             // one TokenReview, connect to last byte
  std::chrono::milliseconds cache_ttl{120'000};        // an accepted token
  std::chrono::milliseconds negative_cache_ttl{10'000};  // a rejected token
  unsigned cache_size = 1024;                          // verdicts remembered, accepted or not
  bool authorize = true;  // a SubjectAccessReview after the TokenReview: get on the request's path
};

struct WebConfig {
  std::string file;  // where it was read from, for log lines
  std::optional<TlsServerConfig> tls;
  std::map<std::string, std::string, std::less<>> basic_auth_users;  // user -> bcrypt hash
  std::optional<KubernetesAuthConfig> kubernetes_auth;
  std::vector<std::pair<std::string, std::string>> headers;  // http_server_config.headers, on every response
  bool http2_requested = false;  // http_server_config.http2: true; served as HTTP/1.1 (logged)

  bool needs_auth() const { return !basic_auth_users.empty() || kubernetes_auth.has_value(); }
};

// Parses the text of a web config file; `file` names it in errors and
// anchors relative paths. Throws ConfigError: one line naming the file,
// the line and the key at fault.
WebConfig parse_web_config(std::string_view text, const std::string& file);

// Reads and parses the file. Throws ConfigError.
WebConfig load_web_config(const std::string& file);

// The server's TLS context: certificate and key (read now), client
// certificate policy, protocol versions. Throws ConfigError naming the file
// that cannot be read or used.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(const TlsServerConfig& tls, const std::string& web_config_file);

}  // namespace nodeperf
