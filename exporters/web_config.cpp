#include "exporters/web_config.h"

#include <openssl/ssl.h>
#include <yaml-cpp/yaml.h>

#include <strings.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include "agent/config.h"
#include "agent/yaml_load.h"

namespace nodeperf {
namespace {

namespace asio = boost::asio;

// Walks one mapping: every key must be handled by `on_key`, which returns
// false for a key it does not know. Duplicate and unknown keys fail.
void for_each_key(const std::string& file, const YAML::Node& map, const std::string& prefix,
                  const std::function<bool(const std::string& key, const YAML::Node& at, const YAML::Node& value)>& on_key) {
  std::set<std::string> seen;
  for (const auto& entry : map) {
    const YAML::Node& at = entry.first;
    if (!at.IsScalar()) yaml_fail_at(file, at, prefix.empty() ? "(key)" : prefix, "keys must be plain names");
    std::string name = at.Scalar();
    std::string key = prefix.empty() ? name : prefix + "." + name;
    if (!seen.insert(name).second) yaml_fail_at(file, at, key, "duplicate key");
    if (!on_key(name, at, entry.second)) yaml_fail_at(file, at, key, "unknown key");
  }
}

std::string scalar(const std::string& file, const YAML::Node& at, const YAML::Node& value, const std::string& key) {
  if (value.IsNull()) return {};
  if (!value.IsScalar()) yaml_fail_at(file, at, key, "expected a value, got " + std::string(yaml_node_kind(value)));
  return value.Scalar();
}

const YAML::Node& mapping(const std::string& file, const YAML::Node& at, const YAML::Node& value, const std::string& key) {
  if (!value.IsMap() && !value.IsNull()) {
    yaml_fail_at(file, at, key, "expected a mapping, got " + std::string(yaml_node_kind(value)));
  }
  return value;
}

bool boolean(const std::string& file, const YAML::Node& at, const YAML::Node& value, const std::string& key) {
  std::string v = scalar(file, at, value, key);
  if (v == "true") return true;
  if (v == "false") return false;
  yaml_fail_at(file, at, key, "must be true or false, got '" + v + "'");
}

// "500ms", "30s", "2m", "1h" (Prometheus durations, one unit), within [lo, hi].
std::chrono::milliseconds duration(const std::string& file, const YAML::Node& at, const YAML::Node& value,
                                   const std::string& key, std::chrono::milliseconds lo, std::chrono::milliseconds hi) {
  std::string v = scalar(file, at, value, key);
  unsigned long n = 0;
  auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
  std::string_view unit(end, v.data() + v.size() - end);
  long long scale = unit == "ms" ? 1 : unit == "s" ? 1000 : unit == "m" ? 60'000 : unit == "h" ? 3'600'000 : 0;
  if (ec != std::errc() || end == v.data() || scale == 0 || n > 1'000'000'000) {
    yaml_fail_at(file, at, key, "must be a duration such as 500ms, 30s, 2m or 1h, got '" + v + "'");
  }
  std::chrono::milliseconds d(static_cast<long long>(n) * scale);
  if (d < lo || d > hi) {
    yaml_fail_at(file, at, key, "must be between " + std::to_string(lo.count()) + "ms and " +
                                    std::to_string(hi.count()) + "ms, got " + v);
  }
  return d;
}

int tls_version(const std::string& file, const YAML::Node& at, const YAML::Node& value, const std::string& key) {
  std::string v = scalar(file, at, value, key);
  if (v == "TLS12") return TLS1_2_VERSION;
  if (v == "TLS13") return TLS1_3_VERSION;
  if (v == "TLS10" || v == "TLS11") yaml_fail_at(file, at, key, v + " is not supported (obsolete); use TLS12 or TLS13");
  yaml_fail_at(file, at, key, "must be TLS12 or TLS13, got '" + v + "'");
}

// A path as written, or resolved against the web config file's folder when relative.
std::string resolve(const std::string& file, const std::string& path) {
  if (path.empty() || path.front() == '/') return path;
  return (std::filesystem::path(file).parent_path() / path).string();
}

TlsServerConfig parse_tls(const std::string& file, const YAML::Node& key_at, const YAML::Node& map) {
  TlsServerConfig tls;
  std::string auth_type;
  const YAML::Node* auth_type_at = nullptr;
  YAML::Node auth_at;
  for_each_key(file, map, "tls_server_config", [&](const std::string& name, const YAML::Node& at, const YAML::Node& v) {
    std::string key = "tls_server_config." + name;
    if (name == "cert_file") {
      tls.cert_file = resolve(file, scalar(file, at, v, key));
    } else if (name == "key_file") {
      tls.key_file = resolve(file, scalar(file, at, v, key));
    } else if (name == "client_ca_file") {
      tls.client_ca_file = resolve(file, scalar(file, at, v, key));
    } else if (name == "client_auth_type") {
      auth_type = scalar(file, at, v, key);
      auth_at = at;
      auth_type_at = &auth_at;
    } else if (name == "min_version") {
      tls.min_version = tls_version(file, at, v, key);
    } else if (name == "max_version") {
      tls.max_version = tls_version(file, at, v, key);
    } else if (name == "prefer_server_cipher_suites") {
      boolean(file, at, v, key);  // OpenSSL's server preference is on: nothing to change
    } else if (name == "cipher_suites" || name == "curve_preferences") {
      if (!v.IsNull() && !(v.IsSequence() && v.size() == 0)) {
        yaml_fail_at(file, at, key, "not supported: nodeperf uses OpenSSL's defaults; leave it out");
      }
    } else if (name == "cert" || name == "key" || name == "client_allowed_sans") {
      yaml_fail_at(file, at, key, "not supported; use cert_file and key_file");
    } else {
      return false;
    }
    return true;
  });
  if (tls.cert_file.empty()) yaml_fail_at(file, key_at, "tls_server_config.cert_file", "missing: TLS needs a certificate");
  if (tls.key_file.empty()) yaml_fail_at(file, key_at, "tls_server_config.key_file", "missing: TLS needs a private key");
  static const std::pair<std::string_view, ClientAuth> types[] = {
      {"NoClientCert", ClientAuth::none},
      {"RequestClientCert", ClientAuth::request},
      {"RequireAnyClientCert", ClientAuth::require_any},
      {"VerifyClientCertIfGiven", ClientAuth::verify_if_given},
      {"RequireAndVerifyClientCert", ClientAuth::require_and_verify}};
  if (auth_type.empty()) {
    // exporter-toolkit's default: a client CA alone means verified client certificates.
    tls.client_auth = tls.client_ca_file.empty() ? ClientAuth::none : ClientAuth::require_and_verify;
  } else {
    auto it = std::find_if(std::begin(types), std::end(types), [&](const auto& t) { return t.first == auth_type; });
    if (it == std::end(types)) {
      yaml_fail_at(file, *auth_type_at, "tls_server_config.client_auth_type",
                   "must be NoClientCert, RequestClientCert, RequireAnyClientCert, VerifyClientCertIfGiven or "
                   "RequireAndVerifyClientCert, got '" + auth_type + "'");
    }
    tls.client_auth = it->second;
  }
  bool verifies = tls.client_auth == ClientAuth::verify_if_given || tls.client_auth == ClientAuth::require_and_verify;
  if (verifies && tls.client_ca_file.empty()) {
    yaml_fail_at(file, auth_type_at ? *auth_type_at : key_at, "tls_server_config.client_auth_type",
                 auth_type + " needs client_ca_file");
  }
  if (!verifies && !tls.client_ca_file.empty()) {
    yaml_fail_at(file, auth_type_at ? *auth_type_at : key_at, "tls_server_config.client_ca_file",
                 "set, but client_auth_type " + auth_type + " does not verify client certificates");
  }
  if (tls.max_version != 0 && tls.max_version < tls.min_version) {
    yaml_fail_at(file, key_at, "tls_server_config.max_version", "is older than min_version");
  }
  return tls;
}

KubernetesAuthConfig parse_kubernetes(const std::string& file, const YAML::Node& map) {
  KubernetesAuthConfig k;
  using std::chrono::milliseconds;
  for_each_key(file, map, "kubernetes_auth", [&](const std::string& name, const YAML::Node& at, const YAML::Node& v) {
    std::string key = "kubernetes_auth." + name;
    if (name == "api_server") {
      k.api_server = scalar(file, at, v, key);
      if (!k.api_server.starts_with("https://")) {
        yaml_fail_at(file, at, key, "must be an https:// URL, got '" + k.api_server + "'");
      }
      while (k.api_server.ends_with('/')) k.api_server.pop_back();
    } else if (name == "token_file") {
      k.token_file = resolve(file, scalar(file, at, v, key));
    } else if (name == "ca_file") {
      k.ca_file = resolve(file, scalar(file, at, v, key));
    } else if (name == "timeout") {
      k.timeout = duration(file, at, v, key, milliseconds(100), milliseconds(60'000));
    } else if (name == "cache_ttl") {
      k.cache_ttl = duration(file, at, v, key, milliseconds(0), milliseconds(3'600'000));
    } else if (name == "negative_cache_ttl") {
      k.negative_cache_ttl = duration(file, at, v, key, milliseconds(0), milliseconds(3'600'000));
    } else if (name == "authorize") {
      k.authorize = boolean(file, at, v, key);
    } else if (name == "cache_size") {
      std::string s = scalar(file, at, v, key);
      unsigned n = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
      if (ec != std::errc() || end != s.data() + s.size() || s.empty() || n < 1 || n > 1'000'000) {
        yaml_fail_at(file, at, key, "must be a whole number from 1 to 1000000, got '" + s + "'");
      }
      k.cache_size = n;
    } else {
      return false;
    }
    return true;
  });
  return k;
}

// Response headers exporter-toolkit allows in http_server_config.headers.
constexpr std::string_view kAllowedHeaders[] = {"Strict-Transport-Security", "X-Content-Type-Options",
                                                "X-Frame-Options", "X-XSS-Protection", "Content-Security-Policy"};

void parse_http(const std::string& file, const YAML::Node& map, WebConfig& out) {
  for_each_key(file, map, "http_server_config", [&](const std::string& name, const YAML::Node& at, const YAML::Node& v) {
    std::string key = "http_server_config." + name;
    if (name == "http2") {
      out.http2_requested = boolean(file, at, v, key);
    } else if (name == "headers") {
      for_each_key(file, mapping(file, at, v, key), key, [&](const std::string& header, const YAML::Node& hat,
                                                              const YAML::Node& hv) {
        auto allowed = std::find_if(std::begin(kAllowedHeaders), std::end(kAllowedHeaders), [&](std::string_view h) {
          return strcasecmp(std::string(h).c_str(), header.c_str()) == 0;
        });
        if (allowed == std::end(kAllowedHeaders)) {
          yaml_fail_at(file, hat, key + "." + header,
                       "not an allowed header (Strict-Transport-Security, X-Content-Type-Options, X-Frame-Options, "
                       "X-XSS-Protection, Content-Security-Policy)");
        }
        std::string value = scalar(file, hat, hv, key + "." + header);
        if (value.find_first_of("\r\n") != std::string::npos) yaml_fail_at(file, hat, key + "." + header, "a line break");
        out.headers.emplace_back(std::string(*allowed), value);
        return true;
      });
    } else {
      return false;
    }
    return true;
  });
}

}  // namespace

WebConfig parse_web_config(std::string_view text, const std::string& file) {
  YAML::Node root = load_yaml_document(text, file);
  WebConfig out;
  out.file = file;
  if (root.IsNull()) return out;  // an empty file: plain HTTP, no authentication
  if (!root.IsMap()) {
    yaml_fail_at(file, root, "(top level)", "expected a mapping of keys, got " + std::string(yaml_node_kind(root)));
  }
  for_each_key(file, root, "", [&](const std::string& name, const YAML::Node& at, const YAML::Node& v) {
    if (name == "tls_server_config") {
      if (!v.IsNull()) out.tls = parse_tls(file, at, mapping(file, at, v, name));
    } else if (name == "basic_auth_users") {
      for_each_key(file, mapping(file, at, v, name), name, [&](const std::string& user, const YAML::Node& uat,
                                                              const YAML::Node& uv) {
        std::string hash = scalar(file, uat, uv, name + "." + user);
        // bcrypt only, as exporter-toolkit: $2a$, $2b$ or $2y$, cost, 53 characters of salt and hash.
        bool bcrypt = hash.size() == 60 && hash[0] == '$' && hash[1] == '2' &&
                      (hash[2] == 'a' || hash[2] == 'b' || hash[2] == 'y') && hash[3] == '$';
        if (!bcrypt) yaml_fail_at(file, uat, name + "." + user, "not a bcrypt hash ($2y$10$... 60 characters)");
        if (user.find(':') != std::string::npos) yaml_fail_at(file, uat, name + "." + user, "a user name has no ':'");
        out.basic_auth_users.emplace(user, hash);
        return true;
      });
    } else if (name == "http_server_config") {
      parse_http(file, mapping(file, at, v, name), out);
    } else if (name == "kubernetes_auth") {
      out.kubernetes_auth = parse_kubernetes(file, mapping(file, at, v, name));
    } else {
      return false;
    }
    return true;
  });
  return out;
}

WebConfig load_web_config(const std::string& file) {
  std::error_code ec;
  if (!std::filesystem::is_regular_file(file, ec)) {
    throw ConfigError(file + ": cannot read the web config file: " +
                      (std::filesystem::exists(file, ec) ? "not a regular file" : "no such file"));
  }
  std::ifstream in(file, std::ios::binary);
  std::ostringstream text;
  if (in) text << in.rdbuf();
  if (!in || in.bad()) throw ConfigError(file + ": cannot read the web config file: " + std::strerror(errno));
  return parse_web_config(text.str(), file);
}

std::shared_ptr<asio::ssl::context> make_tls_context(const TlsServerConfig& tls, const std::string& web_config_file) {
  auto ctx = std::make_shared<asio::ssl::context>(asio::ssl::context::tls_server);
  auto fail = [&](const std::string& what, const std::string& path, const boost::system::error_code& ec) {
    throw ConfigError(web_config_file + ": tls_server_config: " + what + " " + path + ": " + ec.message());
  };
  boost::system::error_code ec;
  ctx->set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_compression |
                       asio::ssl::context::single_dh_use,
                   ec);
  ctx->use_certificate_chain_file(tls.cert_file, ec);
  if (ec) fail("cannot use the certificate", tls.cert_file, ec);
  ctx->use_private_key_file(tls.key_file, asio::ssl::context::pem, ec);
  if (ec) fail("cannot use the private key", tls.key_file, ec);
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    throw ConfigError(web_config_file + ": tls_server_config: the key in " + tls.key_file +
                      " does not match the certificate in " + tls.cert_file);
  }
  SSL_CTX_set_min_proto_version(ctx->native_handle(), tls.min_version);
  if (tls.max_version != 0) SSL_CTX_set_max_proto_version(ctx->native_handle(), tls.max_version);
  switch (tls.client_auth) {
    case ClientAuth::none:
      ctx->set_verify_mode(asio::ssl::verify_none);
      break;
    case ClientAuth::request:
    case ClientAuth::require_any:
      // Any certificate will do: asked for, not checked against a CA.
      ctx->set_verify_mode(asio::ssl::verify_peer | (tls.client_auth == ClientAuth::require_any
                                                         ? asio::ssl::verify_fail_if_no_peer_cert
                                                         : 0));
      ctx->set_verify_callback([](bool, asio::ssl::verify_context&) { return true; });
      break;
    case ClientAuth::verify_if_given:
    case ClientAuth::require_and_verify:
      ctx->load_verify_file(tls.client_ca_file, ec);
      if (ec) fail("cannot use the client CA file", tls.client_ca_file, ec);
      ctx->set_verify_mode(asio::ssl::verify_peer | (tls.client_auth == ClientAuth::require_and_verify
                                                         ? asio::ssl::verify_fail_if_no_peer_cert
                                                         : 0));
      break;
  }
  return ctx;
}

}  // namespace nodeperf
