// Configuration: defaults, a YAML file, flags on top; every bad input is one
// ConfigError line naming file:line (or the flag) and the key.
#include <stdlib.h>

#include <algorithm>
#include <catch2/catch.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <vector>

#include "agent/config.h"
#include "collectors/collector.h"
#include "collectors/diskstats.h"

using namespace nodeperf;
using Catch::Matchers::Contains;
using Catch::Matchers::StartsWith;
using namespace std::chrono_literals;

namespace {

// A fresh directory for config files, removed at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string pattern = (std::filesystem::temp_directory_path() / "nodeperf-config-XXXXXX").string();
    REQUIRE(mkdtemp(pattern.data()) != nullptr);
    path_ = pattern;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string path(const std::string& name) const { return path_ + "/" + name; }

  // Writes the file and returns its path.
  std::string write(const std::string& name, const std::string& text) const {
    std::string file = path(name);
    std::ofstream(file, std::ios::binary) << text;
    return file;
  }

 private:
  std::string path_;
};

// The message of the ConfigError f throws.
std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const ConfigError& e) {
    return e.what();
  }
  FAIL("no ConfigError was thrown");
  return {};
}

const std::string kFixtures = NODEPERF_FIXTURES;

}  // namespace

TEST_CASE("config: the built-in defaults", "[config]") {
  Config c = build_config("", {});
  CHECK(c == Config());
  CHECK(c.host_root == "/");
  CHECK(c.listen_address == ":19100");
  CHECK(c.web_config_file.empty());
  CHECK(c.max_connections == 64);
  CHECK(c.idle_timeout == 30s);
  CHECK(c.max_request_bytes == 8192);
  CHECK(c.tick == 1s);
  CHECK_FALSE(c.node_exporter_compat);
  CHECK_FALSE(c.cadvisor_compat);
  CHECK(c.diskstats_device_exclude == kDefaultDiskExclude);
  CHECK(c.netdev_device_exclude.empty());
  CHECK(c.log_level == LogLevel::info);
  for (const CollectorFactory& f : collector_factories()) {
    INFO(f.name);
    CHECK(c.enabled(f.name));
  }
  CHECK_FALSE(c.enabled("no-such-collector"));
}

TEST_CASE("config: a YAML file sets every key", "[config]") {
  TempDir dir;
  SECTION("every key") {
    std::string file = dir.write("full.yaml", "host_root: " + kFixtures + R"(
web:
  listen_address: "127.0.0.1:9100"
  max_connections: 10
  idle_timeout: 2m
  max_request_bytes: 4096
tick: 250ms
compat: node_exporter
log:
  level: debug
collector:
  cpu: false
  diskstats:
    enabled: false
    device_exclude: "x"
  netdev:
    device_exclude: "^lo$"
)");
    Config c = build_config(file, {});
    CHECK(c.host_root == kFixtures);
    CHECK(c.listen_address == "127.0.0.1:9100");
    CHECK(c.max_connections == 10);
    CHECK(c.idle_timeout == 2min);
    CHECK(c.max_request_bytes == 4096);
    CHECK(c.tick == 250ms);
    CHECK(c.node_exporter_compat);
    CHECK_FALSE(c.cadvisor_compat);
    CHECK(c.log_level == LogLevel::debug);
    CHECK_FALSE(c.enabled("cpu"));
    CHECK_FALSE(c.enabled("diskstats"));
    CHECK(c.enabled("netdev"));
    CHECK(c.enabled("meminfo"));
    CHECK(c.diskstats_device_exclude == "x");
    CHECK(c.netdev_device_exclude == "^lo$");
  }
  SECTION("the collector shorthand and the long form agree") {
    Config shorthand = build_config(dir.write("a.yaml", "collector: {cpu: false}\n"), {});
    Config long_form = build_config(dir.write("b.yaml", "collector:\n  cpu:\n    enabled: false\n"), {});
    CHECK_FALSE(shorthand.enabled("cpu"));
    CHECK(shorthand.enabled("diskstats"));
    CHECK(shorthand == long_form);
  }
  SECTION("durations in every unit, at the bounds") {
    CHECK(build_config(dir.write("t1.yaml", "tick: 100ms\n"), {}).tick == 100ms);
    CHECK(build_config(dir.write("t2.yaml", "tick: 5m\n"), {}).tick == 5min);
    CHECK(build_config(dir.write("t3.yaml", "web:\n  idle_timeout: 1h\n"), {}).idle_timeout == 1h);
    CHECK(build_config(dir.write("t4.yaml", "web:\n  idle_timeout: 90s\n"), {}).idle_timeout == 90s);
  }
  SECTION("compat is none or a list of modes") {
    Config both = build_config(dir.write("c1.yaml", "compat: cadvisor,node_exporter\n"), {});
    CHECK(both.node_exporter_compat);
    CHECK(both.cadvisor_compat);
    Config cadvisor = build_config(dir.write("c2.yaml", "compat: cadvisor\n"), {});
    CHECK_FALSE(cadvisor.node_exporter_compat);
    CHECK(cadvisor.cadvisor_compat);
    Config none = build_config(dir.write("c3.yaml", "compat: none\n"), {});
    CHECK(none == Config());
  }
  SECTION("listen addresses") {
    CHECK(build_config(dir.write("l1.yaml", "web: {listen_address: '[::1]:9100'}\n"), {}).listen_address ==
          "[::1]:9100");
    CHECK(build_config(dir.write("l2.yaml", "web: {listen_address: ':0'}\n"), {}).listen_address == ":0");
  }
  SECTION("an empty file or one of comments only gives the defaults") {
    CHECK(build_config(dir.write("empty.yaml", ""), {}) == Config());
    CHECK(build_config(dir.write("comments.yaml", "# nothing here\n\n"), {}) == Config());
  }
}

TEST_CASE("config: flags override the file", "[config][flags]") {
  TempDir dir;
  std::string file = dir.write("c.yaml", "tick: 5s\ncompat: node_exporter\ncollector:\n  cpu: false\n  vmstat: false\n");
  Config c = build_config(file, {{"tick", "2s"}, {"collector.cpu", "true"}, {"compat", "none"}});
  CHECK(c.tick == 2s);
  CHECK(c.enabled("cpu"));
  CHECK_FALSE(c.node_exporter_compat);
  CHECK_FALSE(c.enabled("vmstat"));  // not overridden: the file's value
  SECTION("the later of two flags wins") {
    Config twice = build_config(file, {{"tick", "2s"}, {"tick", "3s"}});
    CHECK(twice.tick == 3s);
  }
}

TEST_CASE("config: each bad value in a file names file:line and the key", "[config][errors]") {
  TempDir dir;
  auto error = [&](const std::string& yaml) {
    std::string file = dir.write("bad.yaml", yaml);
    return error_of([&] { build_config(file, {}); });
  };
  auto at = [&](int line) { return dir.path("bad.yaml") + ":" + std::to_string(line) + ": "; };

  SECTION("unknown keys") {
    CHECK(error("tick: 1s\nweb:\n  foo: 1\n") == at(3) + "web.foo: unknown key");
    CHECK(error("bogus: 1\n") == at(1) + "bogus: unknown key");
    CHECK(error("collector:\n  bogus: false\n") == at(2) + "collector.bogus: unknown key");
    CHECK(error("collector:\n  cpu:\n    enabled: false\n    extra: 1\n") == at(4) + "collector.cpu.extra: unknown key");
  }
  SECTION("a list or mapping where a value is expected") {
    CHECK(error("tick: [1s, 2s]\n") == at(1) + "tick: expected a value, got a list");
    CHECK(error("log: {level: {a: 1}}\n") == at(1) + "log.level: expected a value, got a mapping");
    CHECK(error("tick: 1s\nweb:\n  listen_address:\n    - ':9100'\n") ==
          at(3) + "web.listen_address: expected a value, got a list");
  }
  SECTION("a value where a mapping is expected") {
    CHECK(error("collector: 3\n") == at(1) + "collector: expected a mapping, got a value");
    CHECK(error("tick: 1s\nweb: [1]\n") == at(2) + "web: expected a mapping, got a list");
    CHECK(error("- a\n- b\n") == at(1) + "(top level): expected a mapping of keys, got a list");
  }
  SECTION("out of range") {
    CHECK(error("tick: 10ms\n") == at(1) + "tick: must be between 100ms and 5m, got 10ms");
    CHECK(error("tick: 6m\n") == at(1) + "tick: must be between 100ms and 5m, got 6m");
    CHECK(error("log: {level: info}\nweb:\n  max_connections: 0\n") ==
          at(3) + "web.max_connections: must be between 1 and 65535, got 0");
    CHECK(error("web:\n  max_connections: -1\n") == at(2) + "web.max_connections: must be a whole number, got '-1'");
    CHECK(error("web:\n  max_request_bytes: 100\n") ==
          at(2) + "web.max_request_bytes: must be between 1024 and 1048576, got 100");
  }
  SECTION("bad durations") {
    CHECK(error("web:\n  idle_timeout: 1.5s\n") ==
          at(2) + "web.idle_timeout: must be a duration such as 500ms, 1s, 2m or 1h, got '1.5s'");
    CHECK(error("tick: 30\n") == at(1) + "tick: must be a duration such as 500ms, 1s, 2m or 1h, got '30'");
    CHECK(error("tick: -1s\n") == at(1) + "tick: must be a duration such as 500ms, 1s, 2m or 1h, got '-1s'");
    CHECK(error("tick: 1d\n") == at(1) + "tick: must be a duration such as 500ms, 1s, 2m or 1h, got '1d'");
  }
  SECTION("a bad regular expression") {
    CHECK_THAT(error("collector:\n  diskstats:\n    device_exclude: '(unclosed'\n"),
               StartsWith(at(3) + "collector.diskstats.device_exclude: invalid regular expression '(unclosed': "));
    CHECK_THAT(error("collector:\n  netdev: {device_exclude: '[a-'}\n"),
               StartsWith(at(2) + "collector.netdev.device_exclude: invalid regular expression '[a-': "));
  }
  SECTION("bad listen addresses") {
    CHECK(error("web:\n  listen_address: 19100\n") ==
          at(2) + "web.listen_address: must be host:port or :port, got '19100'");
    CHECK(error("web:\n  listen_address: ':http'\n") ==
          at(2) + "web.listen_address: port must be a number from 0 to 65535, got ':http'");
    CHECK(error("web:\n  listen_address: ':65536'\n") ==
          at(2) + "web.listen_address: port must be a number from 0 to 65535, got ':65536'");
    CHECK(error("web:\n  listen_address: '::1:9100'\n") ==
          at(2) + "web.listen_address: an IPv6 host must be in brackets, as in [::1]:19100, got '::1:9100'");
  }
  SECTION("bad enumerations and booleans") {
    CHECK(error("compat: prometheus\n") ==
          at(1) + "compat: must be none or a comma-separated list of node_exporter and cadvisor, got 'prometheus'");
    CHECK(error("compat: node_exporter,,cadvisor\n") ==
          at(1) + "compat: must be none or a comma-separated list of node_exporter and cadvisor, got "
                  "'node_exporter,,cadvisor'");
    CHECK(error("compat: none,cadvisor\n") ==
          at(1) + "compat: must be none or a comma-separated list of node_exporter and cadvisor, got "
                  "'none,cadvisor'");
    CHECK(error("log:\n  level: verbose\n") == at(2) + "log.level: must be debug, info, warn or error, got 'verbose'");
    CHECK(error("collector:\n  cpu: maybe\n") == at(2) + "collector.cpu: must be true or false, got 'maybe'");
    CHECK(error("collector:\n  cpu: {enabled: 1}\n") == at(2) + "collector.cpu.enabled: must be true or false, got '1'");
  }
  SECTION("host_root must be an existing absolute directory") {
    CHECK(error("host_root: /nonexistent/nodeperf\n") == at(1) + "host_root: '/nonexistent/nodeperf' is not a directory");
    CHECK(error("host_root: " + kFixtures + "/README.md\n") ==
          at(1) + "host_root: '" + kFixtures + "/README.md' is not a directory");
    CHECK(error("host_root: relative/dir\n") == at(1) + "host_root: must be an absolute path, got 'relative/dir'");
  }
  SECTION("a web config file that cannot be read is refused rather than ignored") {
    CHECK(error("web:\n  config_file: /etc/web.yml\n") ==
          at(2) + "web.config_file: /etc/web.yml: cannot read the web config file: no such file");
  }
  SECTION("YAML syntax errors") {
    CHECK_THAT(error("tick: 1s\nlog:\n  level: info\n   bad: x\n"), StartsWith(at(4) + "YAML syntax error: "));
    CHECK_THAT(error("tick: 1s\nweb: [\n"), StartsWith(at(3) + "YAML syntax error: "));
  }
}

TEST_CASE("config: a file that cannot be read", "[config][errors]") {
  TempDir dir;
  std::string missing = dir.path("missing.yaml");
  CHECK_THAT(error_of([&] { build_config(missing, {}); }), StartsWith(missing + ": cannot read the config file"));
}

// An empty value has no line of its own (yaml-cpp marks the null node at the
// next token), so the error must point at the key's line.
TEST_CASE("config: an empty value is reported on the key's line", "[config][errors]") {
  TempDir dir;
  std::string file = dir.write("bad.yaml", "tick:\nlog:\n  level: info\n");
  CHECK(error_of([&] { build_config(file, {}); }) == file + ":1: tick: expected a value, got nothing");
  file = dir.write("bad.yaml", "log:\n  level: info\ntick:   # comment\n\n\nweb: {}\n");
  CHECK(error_of([&] { build_config(file, {}); }) == file + ":3: tick: expected a value, got nothing");
}

// yaml-cpp accepts a key twice in one mapping; nodeperf must not.
TEST_CASE("config: a duplicate key is an error", "[config][errors]") {
  TempDir dir;
  std::string file = dir.write("dup.yaml", "tick: 1s\ntick: 2s\n");
  CHECK(error_of([&] { build_config(file, {}); }) == file + ":2: tick: duplicate key");
  file = dir.write("dup.yaml", "collector:\n  cpu: false\n  cpu: true\n");
  CHECK(error_of([&] { build_config(file, {}); }) == file + ":3: collector.cpu: duplicate key");
}

TEST_CASE("config: bad flag values name the flag", "[config][flags][errors]") {
  CHECK(error_of([] { build_config("", {{"tick", "10ms"}}); }) == "flag --tick: must be between 100ms and 5m, got 10ms");
  CHECK(error_of([] { build_config("", {{"web.max-connections", "0"}}); }) ==
        "flag --web.max-connections: must be between 1 and 65535, got 0");
  CHECK(error_of([] { build_config("", {{"collector.cpu", "maybe"}}); }) ==
        "flag --collector.cpu: must be true or false, got 'maybe'");
  CHECK(error_of([] { build_config("", {{"host-root", "/nonexistent/nodeperf"}}); }) ==
        "flag --host-root: '/nonexistent/nodeperf' is not a directory");
  CHECK(error_of([] { build_config("", {{"compat", "cadvisor,kubelet"}}); }) ==
        "flag --compat: must be none or a comma-separated list of node_exporter and cadvisor, got 'cadvisor,kubelet'");
  CHECK(error_of([] { build_config("", {{"bogus", "1"}}); }) == "unknown flag --bogus");
}

TEST_CASE("parse_agent_args", "[config][flags]") {
  SECTION("--no-collector.X and --collector.X=false") {
    AgentArgs a = parse_agent_args({"--no-collector.cpu", "--collector.diskstats=false", "--collector.vmstat"});
    REQUIRE(a.flags.size() == 3);
    CHECK(a.flags[0].flag == "collector.cpu");
    CHECK(a.flags[0].value == "false");
    CHECK(a.flags[1].flag == "collector.diskstats");
    CHECK(a.flags[1].value == "false");
    CHECK(a.flags[2].flag == "collector.vmstat");
    CHECK(a.flags[2].value == "true");
    Config c = build_config("", a.flags);
    CHECK_FALSE(c.enabled("cpu"));
    CHECK_FALSE(c.enabled("diskstats"));
    CHECK(c.enabled("vmstat"));
  }
  SECTION("a value after a space or an =") {
    AgentArgs a = parse_agent_args({"--tick", "2s", "--web.listen-address=:9100", "--host-root", kFixtures,
                                    "--collector.diskstats.device-exclude=^sd"});
    REQUIRE(a.flags.size() == 4);
    CHECK(a.flags[0].flag == "tick");
    CHECK(a.flags[0].value == "2s");
    Config c = build_config("", a.flags);
    CHECK(c.tick == 2s);
    CHECK(c.listen_address == ":9100");
    CHECK(c.host_root == kFixtures);
    CHECK(c.diskstats_device_exclude == "^sd");
  }
  SECTION("an empty value after = is kept, and refused by build_config") {
    AgentArgs a = parse_agent_args({"--tick="});
    REQUIRE(a.flags.size() == 1);
    CHECK(a.flags[0].value.empty());
    CHECK(error_of([&] { build_config("", a.flags); }) ==
          "flag --tick: must be a duration such as 500ms, 1s, 2m or 1h, got ''");
  }
  SECTION("--config.file, --config.check, --help") {
    AgentArgs a = parse_agent_args({"--config.file", "/etc/nodeperf.yaml", "--config.check"});
    CHECK(a.config_file == "/etc/nodeperf.yaml");
    CHECK(a.config_check);
    CHECK_FALSE(a.help);
    CHECK(a.flags.empty());
    CHECK(parse_agent_args({"--config.file=/x.yaml"}).config_file == "/x.yaml");
    CHECK(parse_agent_args({"-h"}).help);
    CHECK(parse_agent_args({"--help"}).help);
    CHECK_FALSE(parse_agent_args({}).config_check);
  }
  SECTION("errors") {
    CHECK(error_of([] { parse_agent_args({"--bogus"}); }) == "unknown flag --bogus (see nodeperf agent --help)");
    CHECK(error_of([] { parse_agent_args({"--bogus=1"}); }) == "unknown flag --bogus (see nodeperf agent --help)");
    CHECK(error_of([] { parse_agent_args({"--no-tick"}); }) == "unknown flag --no-tick (see nodeperf agent --help)");
    CHECK(error_of([] { parse_agent_args({"--tick"}); }) == "flag --tick needs a value");
    CHECK(error_of([] { parse_agent_args({"--no-collector.cpu=true"}); }) ==
          "flag --no-collector.cpu takes no value");
    CHECK(error_of([] { parse_agent_args({"--config.check=yes"}); }) == "flag --config.check takes no value");
    CHECK(error_of([] { parse_agent_args({"--config.file"}); }) == "flag --config.file needs a file name");
    CHECK(error_of([] { parse_agent_args({"stray"}); }) == "unexpected argument 'stray' (flags start with --)");
    CHECK(error_of([] { parse_agent_args({"-x"}); }) == "unexpected argument '-x' (flags start with --)");
  }
}

TEST_CASE("config: every option has a flag and shows in --help", "[config][docs]") {
  auto docs = option_docs();
  std::string help = config_help();
  for (const CollectorFactory& f : collector_factories()) {
    std::string key = "collector." + std::string(f.name) + ".enabled";
    INFO(key);
    auto it = std::find_if(docs.begin(), docs.end(), [&](const OptionDoc& d) { return d.key == key; });
    REQUIRE(it != docs.end());
    CHECK(it->flag == "--collector." + std::string(f.name));
    CHECK(it->default_value == "true");
    CHECK_THAT(help, Contains("--[no-]collector." + std::string(f.name)));
  }
  for (const OptionDoc& d : docs) {
    INFO(d.key);
    CHECK(d.flag.starts_with("--"));
    CHECK_FALSE(d.help.empty());
    CHECK_THAT(help, Contains(d.flag.substr(2)));
  }
  auto tick = std::find_if(docs.begin(), docs.end(), [](const OptionDoc& d) { return d.key == "tick"; });
  REQUIRE(tick != docs.end());
  CHECK(tick->default_value == "1s");
}

TEST_CASE("config: a file's text applies as the file does, errors naming the given name", "[config]") {
  TempDir dir;
  const std::string yaml = "tick: 2s\ncollector:\n  cpu: false\nweb:\n  listen_address: ':0'\n";
  Config from_text;
  apply_config_text(from_text, yaml, "text.yaml");
  CHECK(from_text == build_config(dir.write("same.yaml", yaml), {}));
  CHECK(from_text.tick == 2s);
  CHECK_FALSE(from_text.enabled("cpu"));

  Config empty;
  apply_config_text(empty, "", "empty.yaml");
  CHECK(empty == Config());

  Config c;
  CHECK(error_of([&] { apply_config_text(c, "tick: 1s\nbogus: 1\n", "given.yaml"); }) ==
        "given.yaml:2: bogus: unknown key");
  CHECK_THAT(error_of([&] { apply_config_text(c, "a: [\n", "given.yaml"); }),
             StartsWith("given.yaml:") && Contains("YAML syntax error"));
}

// Found by fuzz/fuzz_config.cpp (fuzz/corpus/fuzz_config/regress-*): yaml-cpp
// 0.7's LoadAll never returned on a stray ',' and grew without bound.
TEST_CASE("config: a stray ',' is a syntax error, not a hang", "[config][errors]") {
  Config c;
  CHECK(error_of([&] { apply_config_text(c, ", a\n- b\n", "f.yaml"); }) ==
        "f.yaml:1: YAML syntax error: a stray token (such as ',') where a value should start");
  CHECK(error_of([&] { apply_config_text(c, ",", "f.yaml"); }) ==
        "f.yaml:1: YAML syntax error: a stray token (such as ',') where a value should start");
  CHECK(error_of([&] { apply_config_text(c, "tick: 1s\n---\n\n ,\n", "f.yaml"); }) ==
        "f.yaml:4: YAML syntax error: a stray token (such as ',') where a value should start");
  TempDir dir;
  std::string file = dir.write("comma.yaml", "tick: 1s\n,\n");
  CHECK_THAT(error_of([&] { build_config(file, {}); }), StartsWith(file + ":"));
  CHECK(error_of([&] { apply_config_text(c, "tick: 1s\n---\ntick: 2s\n", "f.yaml"); }) ==
        "f.yaml:2: (document): one YAML document expected, found 2");
}
