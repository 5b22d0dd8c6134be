// Authentication of HTTP requests from the web config file: basic auth
// against bcrypt hashes, and Kubernetes bearer tokens checked with a
// TokenReview (and authorized with a SubjectAccessReview). Both are slow when not cached (bcrypt costs 50-250 ms of CPU,
// a TokenReview a round trip to the API server), so neither runs on the
// agent's loop: the loop looks in a bounded cache of recent verdicts, and on a
// miss hands the check to a worker thread and resumes the request when the
// verdict comes back (or when the deadline passes).
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/io_context.hpp>
#include <array>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "exporters/web_config.h"

namespace nodeperf {

enum class AuthVerdict {
  allowed,
  missing,          // no Authorization header, or a scheme we do not take
  bad_credentials,  // unknown user or wrong password
  token_rejected,   // the API server says the token is not authenticated
  forbidden,        // authenticated, but the SubjectAccessReview says no (403)
  unavailable,      // the API server could not be asked (down, timeout, error)
  busy,             // too many checks waiting already
};
std::string_view verdict_reason(AuthVerdict v);  // the label of nodeperf_http_auth_failures_total
inline constexpr AuthVerdict kAuthFailureReasons[] = {AuthVerdict::missing, AuthVerdict::bad_credentials,
                                                      AuthVerdict::token_rejected, AuthVerdict::forbidden,
                                                      AuthVerdict::unavailable, AuthVerdict::busy};

// A SHA-256 digest: cache keys, so no secret is kept in memory longer than a request.
using Digest = std::array<unsigned char, 32>;
Digest sha256(std::string_view a, std::string_view b = {});

// Verdicts remembered until they expire, at most `capacity` of them; when
// full, expired ones go first, then the one that would expire soonest.
class VerdictCache {
 public:
  using Clock = std::chrono::steady_clock;
  explicit VerdictCache(size_t capacity) : capacity_(capacity) {}
  std::optional<AuthVerdict> find(const Digest& key, Clock::time_point now) const;
  void put(const Digest& key, AuthVerdict verdict, Clock::time_point expires, Clock::time_point now);
  size_t size() const { return entries_.size(); }

 private:
  struct Entry {
    AuthVerdict verdict;
    Clock::time_point expires;
  };
  size_t capacity_;
  std::map<Digest, Entry> entries_;
};

// True if `password` hashes to the bcrypt `hash` (libxcrypt's crypt_rn); the
// comparison is constant-time. Slow on purpose: call it off the loop.
bool bcrypt_matches(const std::string& hash, const std::string& password);

// "Basic dXNlcjpwYXNz" -> ("user", "pass"); nullopt if malformed.
std::optional<std::pair<std::string, std::string>> parse_basic_authorization(std::string_view header);

class WebAuth {
 public:
  // `loop` is where `done` callbacks run; `worker` runs bcrypt and the
  // TokenReview requests (a thread of its own).
  WebAuth(const WebConfig& config, boost::asio::io_context& loop, boost::asio::any_io_executor worker);
  ~WebAuth();

  // Called on the loop with the request's Authorization header and path
  // (for the SubjectAccessReview). Returns the verdict at once when the
  // cache knows it (or nothing can be checked); otherwise nullopt, and
  // `done` is called later, on the loop, with it.
  std::optional<AuthVerdict> check(std::string_view authorization, std::string_view path,
                                   std::function<void(AuthVerdict)> done);

  // The WWW-Authenticate value of a 401: Basic when users are configured, else Bearer.
  std::string challenge() const { return users_.empty() ? "Bearer realm=\"nodeperf\"" : "Basic realm=\"nodeperf\""; }

  static constexpr unsigned kMaxPending = 32;  // checks waiting for the worker; past it: busy

 private:
  std::optional<AuthVerdict> check_basic(std::string_view header, std::function<void(AuthVerdict)>& done);
  std::optional<AuthVerdict> check_bearer(std::string_view token, std::string_view path,
                                          std::function<void(AuthVerdict)>& done);

  std::map<std::string, std::string, std::less<>> users_;
  std::optional<KubernetesAuthConfig> kubernetes_;
  boost::asio::io_context& loop_;
  boost::asio::any_io_executor worker_;
  VerdictCache basic_cache_{256};
  VerdictCache token_cache_;
  std::shared_ptr<bool> alive_;  // false once destroyed: late verdicts are dropped, not cached
  unsigned pending_ = 0;
};

}  // namespace nodeperf
