// The web config file (exporters/web_config.h): node_exporter's format plus
// kubernetes_auth; every bad input is one ConfigError line naming
// file:line and the key. And the pieces of authentication that need no
// network: bcrypt, the Authorization header, the verdict cache.
#include <catch2/catch.hpp>
#include <chrono>
#include <string>

#include "agent/config.h"
#include "exporters/web_auth.h"
#include "exporters/web_config.h"

using namespace nodeperf;
using Catch::Matchers::Contains;
using namespace std::chrono_literals;

namespace {

const std::string kFile = "/etc/nodeperf/web.yml";
const std::string kHash = "$2b$04$cSwPdt.EWTMfsAFxG2v6TOO91sUG86k9RPPmyofkME9sD90LyVSfW";  // "s3cret", cost 4

std::string error(const std::string& text) {
  try {
    parse_web_config(text, kFile);
  } catch (const ConfigError& e) {
    return e.what();
  }
  return "(no error)";
}

std::string at(int line) { return kFile + ":" + std::to_string(line) + ": "; }

}  // namespace

TEST_CASE("web config: node_exporter's format", "[web_config]") {
  WebConfig w = parse_web_config(
      "tls_server_config:\n"
      "  cert_file: tls/server.crt\n"
      "  key_file: /keys/server.key\n"
      "  client_ca_file: ca.crt\n"
      "  min_version: TLS13\n"
      "basic_auth_users:\n"
      "  prometheus: " + kHash + "\n"
      "http_server_config:\n"
      "  http2: true\n"
      "  headers:\n"
      "    X-Frame-Options: deny\n",
      kFile);
  REQUIRE(w.tls);
  CHECK(w.tls->cert_file == "/etc/nodeperf/tls/server.crt");  // relative to the web config's folder
  CHECK(w.tls->key_file == "/keys/server.key");
  CHECK(w.tls->client_ca_file == "/etc/nodeperf/ca.crt");
  CHECK(w.tls->client_auth == ClientAuth::require_and_verify);  // a client CA alone: verified, as exporter-toolkit
  CHECK(w.tls->min_version == 0x0304);
  CHECK(w.basic_auth_users.at("prometheus") == kHash);
  CHECK(w.http2_requested);
  REQUIRE(w.headers.size() == 1);
  CHECK(w.headers[0] == std::pair<std::string, std::string>{"X-Frame-Options", "deny"});
  CHECK(w.needs_auth());
  CHECK_FALSE(w.kubernetes_auth);
}

TEST_CASE("web config: empty and minimal files", "[web_config]") {
  WebConfig empty = parse_web_config("", kFile);
  CHECK_FALSE(empty.tls);
  CHECK_FALSE(empty.needs_auth());
  WebConfig tls = parse_web_config("tls_server_config:\n  cert_file: a.crt\n  key_file: a.key\n", kFile);
  REQUIRE(tls.tls);
  CHECK(tls.tls->client_auth == ClientAuth::none);
  CHECK(tls.tls->min_version == 0x0303);
  CHECK_FALSE(tls.needs_auth());
}

TEST_CASE("web config: kubernetes_auth", "[web_config]") {
  WebConfig d = parse_web_config("kubernetes_auth: {}\n", kFile);
  REQUIRE(d.kubernetes_auth);
  CHECK(d.kubernetes_auth->api_server == "https://kubernetes.default.svc");
  CHECK(d.kubernetes_auth->token_file == "/var/run/secrets/kubernetes.io/serviceaccount/token");
  CHECK(d.kubernetes_auth->cache_ttl == 2min);
  CHECK(d.kubernetes_auth->authorize);
  CHECK(d.needs_auth());
  WebConfig k = parse_web_config(
      "kubernetes_auth:\n  api_server: https://127.0.0.1:6443/\n  token_file: sa.token\n  ca_file: /ca.crt\n"
      "  timeout: 2s\n  cache_ttl: 1m\n  negative_cache_ttl: 0s\n  cache_size: 10\n  authorize: false\n",
      kFile);
  CHECK(k.kubernetes_auth->api_server == "https://127.0.0.1:6443");
  CHECK(k.kubernetes_auth->token_file == "/etc/nodeperf/sa.token");
  CHECK(k.kubernetes_auth->timeout == 2s);
  CHECK(k.kubernetes_auth->negative_cache_ttl == 0s);
  CHECK(k.kubernetes_auth->cache_size == 10);
  CHECK_FALSE(k.kubernetes_auth->authorize);
}

TEST_CASE("web config: every mistake is one line naming file, line and key", "[web_config][errors]") {
  CHECK(error("tls_server_config:\n  cert_file: a\n  key_file: b\n  cert_fille: c\n") ==
        at(4) + "tls_server_config.cert_fille: unknown key");
  CHECK(error("basic_auth_user:\n  a: b\n") == at(1) + "basic_auth_user: unknown key");
  CHECK(error("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: Always\n") ==
        at(4) +
            "tls_server_config.client_auth_type: must be NoClientCert, RequestClientCert, RequireAnyClientCert, "
            "VerifyClientCertIfGiven or RequireAndVerifyClientCert, got 'Always'");
  CHECK(error("tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireAndVerifyClientCert\n") ==
        at(4) + "tls_server_config.client_auth_type: RequireAndVerifyClientCert needs client_ca_file");
  CHECK(error("tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS11\n") ==
        at(4) + "tls_server_config.min_version: TLS11 is not supported (obsolete); use TLS12 or TLS13");
  CHECK(error("tls_server_config:\n  cert_file: a\n  key_file: b\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n") ==
        at(4) + "tls_server_config.cipher_suites: not supported: nodeperf uses OpenSSL's defaults; leave it out");
  CHECK(error("tls_server_config:\n  key_file: b\n") == at(1) + "tls_server_config.cert_file: missing: TLS needs a certificate");
  CHECK(error("basic_auth_users:\n  alice: plaintext\n") ==
        at(2) + "basic_auth_users.alice: not a bcrypt hash ($2y$10$... 60 characters)");
  CHECK(error("basic_auth_users:\n  alice: " + kHash + "\n  alice: " + kHash + "\n") ==
        at(3) + "basic_auth_users.alice: duplicate key");
  CHECK(error("basic_auth_users: [alice]\n") == at(1) + "basic_auth_users: expected a mapping, got a list");
  CHECK(error("http_server_config:\n  headers:\n    Server: x\n") ==
        at(3) +
            "http_server_config.headers.Server: not an allowed header (Strict-Transport-Security, "
            "X-Content-Type-Options, X-Frame-Options, X-XSS-Protection, Content-Security-Policy)");
  CHECK(error("http_server_config:\n  http2: yes please\n") ==
        at(2) + "http_server_config.http2: must be true or false, got 'yes please'");
  CHECK(error("kubernetes_auth:\n  api_server: http://10.0.0.1\n") ==
        at(2) + "kubernetes_auth.api_server: must be an https:// URL, got 'http://10.0.0.1'");
  CHECK(error("kubernetes_auth:\n  cache_ttl: forever\n") ==
        at(2) + "kubernetes_auth.cache_ttl: must be a duration such as 500ms, 30s, 2m or 1h, got 'forever'");
  CHECK(error("kubernetes_auth:\n  cache_size: 0\n") ==
        at(2) + "kubernetes_auth.cache_size: must be a whole number from 1 to 1000000, got '0'");
  CHECK(error("- a\n") == at(1) + "(top level): expected a mapping of keys, got a list");
  CHECK_THAT(error("tls_server_config:\n  cert_file: [\n"), Contains("YAML syntax error"));
  CHECK(error("tls_server_config: x\nbasic_auth_users:\n  a: b\n") ==
        at(1) + "tls_server_config: expected a mapping, got a value");
}

TEST_CASE("web config: unusable certificate files name the file", "[web_config][errors]") {
  TlsServerConfig tls;
  tls.cert_file = "/nonexistent/server.crt";
  tls.key_file = "/nonexistent/server.key";
  try {
    make_tls_context(tls, kFile);
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK_THAT(e.what(), Contains(kFile + ": tls_server_config: cannot use the certificate /nonexistent/server.crt"));
  }
  CHECK_THROWS_AS(load_web_config("/nonexistent/web.yml"), ConfigError);
}

TEST_CASE("web config: the option reads and checks the file", "[web_config][config]") {
  try {
    build_config("", {{"web.config.file", "/nonexistent/web.yml"}});
    FAIL("no error");
  } catch (const ConfigError& e) {
    CHECK(std::string(e.what()) ==
          "flag --web.config.file: /nonexistent/web.yml: cannot read the web config file: no such file");
  }
}

TEST_CASE("basic auth: header parsing and bcrypt", "[web_auth]") {
  auto creds = parse_basic_authorization("Basic YWxpY2U6czNjcmV0");  // alice:s3cret
  REQUIRE(creds);
  CHECK(creds->first == "alice");
  CHECK(creds->second == "s3cret");
  CHECK(parse_basic_authorization("basic YWxpY2U6czNjcmV0"));  // the scheme is case-insensitive
  CHECK(parse_basic_authorization("Basic YTo=")->second.empty());  // "a:"
  CHECK_FALSE(parse_basic_authorization("Basic YWxpY2U="));  // "alice": no colon
  CHECK_FALSE(parse_basic_authorization("Basic !!!"));
  CHECK_FALSE(parse_basic_authorization("Bearer abc"));
  CHECK_FALSE(parse_basic_authorization("Basic"));
  CHECK(bcrypt_matches(kHash, "s3cret"));
  CHECK_FALSE(bcrypt_matches(kHash, "s3cret "));
  CHECK_FALSE(bcrypt_matches(kHash, ""));
  CHECK_FALSE(bcrypt_matches("not a hash", "s3cret"));
}

TEST_CASE("verdict cache: expiry and bound", "[web_auth]") {
  using Clock = VerdictCache::Clock;
  auto t0 = Clock::now();
  VerdictCache cache(2);
  Digest a = sha256("user", "pw"), b = sha256("user", "pw2"), c = sha256("user:pw");
  CHECK(a != sha256("userp", "w"));  // the separator keeps the pairs apart
  cache.put(a, AuthVerdict::allowed, t0 + 10s, t0);
  cache.put(b, AuthVerdict::forbidden, t0 + 5s, t0);
  CHECK(cache.find(a, t0) == AuthVerdict::allowed);
  CHECK(cache.find(b, t0 + 4s) == AuthVerdict::forbidden);
  CHECK_FALSE(cache.find(b, t0 + 5s));  // expired
  cache.put(c, AuthVerdict::allowed, t0 + 20s, t0);  // full: b, expiring soonest, goes
  CHECK(cache.size() == 2);
  CHECK_FALSE(cache.find(b, t0));
  CHECK(cache.find(a, t0));
  CHECK(cache.find(c, t0));
}
