// The kubelet's PodList parser, URL expansion and the kubelet options. The
// HTTPS side (TLS, tokens, timeouts, a hung kubelet) is tested end to end by
// tests/integration/test_kubelet.py against a local server.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <sstream>

#include "agent/config.h"
#include "agent/kubelet.h"

using namespace nodeperf;

namespace {

// Trimmed from a real kubelet's /pods (v1.29, containerd): what the parser reads and some of what it skips.
constexpr std::string_view kPodList = R"({
  "kind": "PodList", "apiVersion": "v1", "metadata": {},
  "items": [
    {"metadata": {"name": "web-7d4b9c", "namespace": "shop", "uid": "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0",
                  "labels": {"app": "web"}},
     "spec": {"containers": [{"name": "nginx"}, {"name": "sidecar"}]},
     "status": {"phase": "Running",
       "initContainerStatuses": [{"name": "init-db", "containerID": "containerd://aaaa000000000000000000000000000000000000000000000000000000000001"}],
       "containerStatuses": [
         {"name": "nginx", "containerID": "containerd://bbbb000000000000000000000000000000000000000000000000000000000002", "ready": true,
          "image": "docker.io/library/nginx:1.25", "imageID": "docker.io/library/nginx@sha256:0d17b565c37bcbd895e9d92315a05c1c3c9a29f762b011a10c54a66cd53c9b31"},
         {"name": "sidecar", "containerID": "cri-o://cccc000000000000000000000000000000000000000000000000000000000003"}],
       "ephemeralContainerStatuses": [{"name": "debugger-x1", "containerID": "docker://dddd000000000000000000000000000000000000000000000000000000000004"}]}},
    {"metadata": {"name": "pending-0", "namespace": "batch", "uid": "11111111-2222-3333-4444-555555555555"},
     "status": {"phase": "Pending",
       "containerStatuses": [{"name": "job", "state": {"waiting": {"reason": "ContainerCreating"}}}]}},
    {"metadata": {"name": "kube-apiserver-node1", "namespace": "kube-system", "uid": "4f0f3b2e9c1d8a7b6c5d4e3f2a1b0c9d"},
     "status": {"containerStatuses": [{"name": "kube-apiserver", "containerID": "e5e5000000000000000000000000000000000000000000000000000000000005"}]}},
    {"metadata": {"name": "no-uid", "namespace": "x"}},
    {"metadata": {"uid": "99999999-8888-7777-6666-555555555555"}, "status": null},
    "not an object"
  ]
})";

std::optional<PodNamesByUid> parse(std::string_view text, std::string& error) { return parse_pod_list(text, error); }

}  // namespace

TEST_CASE("a kubelet PodList gives names by pod UID and container ID") {
  std::string error;
  auto pods = parse(kPodList, error);
  REQUIRE(pods);
  CHECK(error.empty());
  REQUIRE(pods->size() == 4);  // the pod without a UID is left out

  const PodNames& web = pods->at("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0");
  CHECK(web.namespace_name == "shop");
  CHECK(web.pod == "web-7d4b9c");
  CHECK(web.containers.size() == 4);  // init, two containers, ephemeral
  CHECK(web.containers.at("aaaa000000000000000000000000000000000000000000000000000000000001").name == "init-db");
  const PodContainer& nginx = web.containers.at("bbbb000000000000000000000000000000000000000000000000000000000002");
  CHECK(nginx.name == "nginx");
  CHECK(nginx.image == "docker.io/library/nginx:1.25");  // the image as asked for, not imageID
  CHECK(web.containers.at("cccc000000000000000000000000000000000000000000000000000000000003").image.empty());
  CHECK(web.containers.at("cccc000000000000000000000000000000000000000000000000000000000003").name == "sidecar");
  CHECK(web.containers.at("dddd000000000000000000000000000000000000000000000000000000000004").name == "debugger-x1");

  SECTION("a pod whose containers have not started has names but no container IDs") {
    const PodNames& pending = pods->at("11111111-2222-3333-4444-555555555555");
    CHECK(pending.namespace_name == "batch");
    CHECK(pending.pod == "pending-0");
    CHECK(pending.containers.empty());
  }
  SECTION("a static pod keeps the kubelet's own UID; an ID without a runtime prefix is kept as is") {
    const PodNames& api = pods->at("4f0f3b2e9c1d8a7b6c5d4e3f2a1b0c9d");
    CHECK(api.containers.at("e5e5000000000000000000000000000000000000000000000000000000000005").name == "kube-apiserver");
  }
  SECTION("missing names and a null status are empty, not errors") {
    const PodNames& bare = pods->at("99999999-8888-7777-6666-555555555555");
    CHECK(bare.namespace_name.empty());
    CHECK(bare.pod.empty());
    CHECK(bare.containers.empty());
  }
}

TEST_CASE("runtime prefixes are stripped from container IDs") {
  CHECK(strip_runtime_prefix("containerd://abc") == "abc");
  CHECK(strip_runtime_prefix("cri-o://abc") == "abc");
  CHECK(strip_runtime_prefix("docker://abc") == "abc");
  CHECK(strip_runtime_prefix("abc") == "abc");
  CHECK(strip_runtime_prefix("") == "");
}

TEST_CASE("an empty PodList is valid, with items [] or null") {
  std::string error;
  auto a = parse(R"({"kind":"PodList","apiVersion":"v1","metadata":{},"items":[]})", error);
  REQUIRE(a);
  CHECK(a->empty());
  auto b = parse(R"({"kind":"PodList","apiVersion":"v1","metadata":{},"items":null})", error);
  REQUIRE(b);
  CHECK(b->empty());
}

TEST_CASE("text that is not a PodList is an error naming what is wrong") {
  std::string error;
  CHECK_FALSE(parse("", error));
  CHECK(error == "not JSON");
  CHECK_FALSE(parse(R"({"kind":"PodList","items":[{"metadata":)", error));  // cut short
  CHECK(error == "not JSON");
  CHECK_FALSE(parse("<html>502 Bad Gateway</html>", error));
  CHECK(error == "not JSON");
  CHECK_FALSE(parse("[]", error));
  CHECK(error.find("not a PodList") != std::string::npos);
  CHECK_FALSE(parse(R"({"kind":"PodList"})", error));
  CHECK(error.find("no items") != std::string::npos);
  CHECK_FALSE(parse(R"({"kind":"PodList","items":5})", error));
  CHECK(error.find("no items") != std::string::npos);
  CHECK_FALSE(parse(R"({"kind":"Status","items":[],"status":"Failure"})", error));
  CHECK(error == "kind is Status, not PodList");
}

TEST_CASE("wrong types inside a pod are skipped, not trusted") {
  std::string error;
  auto pods = parse(R"({"items":[
      {"metadata":{"uid":7,"name":"x"}},
      {"metadata":{"uid":"u1","name":["x"],"namespace":3},
       "status":{"containerStatuses":{"name":"c"},
                 "initContainerStatuses":[{"name":"c","containerID":5},{"name":5,"containerID":"containerd://i"},
                                          {"name":"ok","containerID":"containerd://j"}]}}]})",
                    error);
  REQUIRE(pods);
  REQUIRE(pods->size() == 1);
  const PodNames& p = pods->at("u1");
  CHECK(p.pod.empty());
  CHECK(p.namespace_name.empty());
  REQUIRE(p.containers.size() == 1);
  CHECK(p.containers.at("j").name == "ok");
}

TEST_CASE("${NODE_NAME} and $(NODE_NAME) in the kubelet URL come from the environment") {
  CHECK(expand_node_name("https://${NODE_NAME}:10250/pods", "node-7") == "https://node-7:10250/pods");
  CHECK(expand_node_name("https://$(NODE_NAME):10250/pods", "node-7") == "https://node-7:10250/pods");
  CHECK(expand_node_name("https://127.0.0.1:10250/pods", nullptr) == "https://127.0.0.1:10250/pods");
  CHECK(expand_node_name("https://${NODE_NAME}:10250/pods", nullptr) == std::nullopt);
  CHECK(expand_node_name("https://${NODE_NAME}:10250/pods", "") == std::nullopt);
}

TEST_CASE("kubelet options: defaults, flags and bad values") {
  Config defaults;
  CHECK(defaults.kubelet_url.empty());
  CHECK(defaults.kubelet_token_file == "/var/run/secrets/kubernetes.io/serviceaccount/token");
  CHECK_FALSE(defaults.kubelet_insecure_skip_verify);
  CHECK(defaults.kubelet_timeout == std::chrono::seconds(5));

  Config c = build_config("", {{"kubelet.url", "https://${NODE_NAME}:10250/pods"},
                               {"kubelet.ca-file", "/ca.crt"},
                               {"kubelet.token-file", ""},
                               {"kubelet.insecure-skip-verify", "true"},
                               {"kubelet.timeout", "2s"},
                               {"kubelet.refresh-interval", "1m"}});
  CHECK(c.kubelet_url == "https://${NODE_NAME}:10250/pods");
  CHECK(c.kubelet_ca_file == "/ca.crt");
  CHECK(c.kubelet_token_file.empty());
  CHECK(c.kubelet_insecure_skip_verify);
  CHECK(c.kubelet_timeout == std::chrono::seconds(2));
  CHECK(c.kubelet_refresh_interval == std::chrono::minutes(1));

  CHECK_THROWS_WITH(build_config("", {{"kubelet.url", "http://node:10255/pods"}}),
                    Catch::Contains("--kubelet.url") && Catch::Contains("https://"));
  CHECK_THROWS_WITH(build_config("", {{"kubelet.timeout", "0s"}}), Catch::Contains("--kubelet.timeout"));
  CHECK_THROWS_WITH(build_config("", {{"kubelet.refresh-interval", "1s"}}),
                    Catch::Contains("--kubelet.refresh-interval"));
}

TEST_CASE("without a usable URL KubeletPods finds nothing, asks nothing and says why") {
  Config c;
  c.kubelet_url = "https://${NODE_NAME}:10250/pods";
  ::unsetenv("NODE_NAME");
  set_log_output(nullptr);
  KubeletPods pods(c);
  set_log_output(stderr);
  CHECK(pods.find("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0") == nullptr);
  SampleSink sink;
  pods.emit_metrics(sink);
  Snapshot snap(std::move(sink), false, std::chrono::system_clock::now());
  const Family* up = snap.find("nodeperf_kubelet_up");
  REQUIRE(up);
  CHECK(up->samples.at(0).value == 0);
  const Family* errors = snap.find("nodeperf_kubelet_refresh_errors_total");
  REQUIRE(errors);
  bool config_counted = false;
  for (const Sample& s : errors->samples) {
    if (s.labels == "reason=\"config\"") config_counted = s.value == 1;
  }
  CHECK(config_counted);
}

TEST_CASE("parse_pod_list reads each volume's claim from spec.volumes") {
  std::string error;
  auto pods = parse_pod_list(R"({"kind": "PodList", "items": [
    {"metadata": {"name": "db-0", "namespace": "data", "uid": "0b9f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"},
     "spec": {"volumes": [
       {"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}},
       {"name": "scratch", "emptyDir": {}},
       {"name": "odd", "persistentVolumeClaim": "not an object"},
       {"persistentVolumeClaim": {"claimName": "no-name"}},
       "not an object"]}},
    {"metadata": {"name": "bare", "namespace": "x", "uid": "7d3c2b1a-9e8f-4a6b-b5c4-d3e2f1a0b9c8"}, "spec": {"volumes": null}}
  ]})", error);
  REQUIRE(pods);
  const PodNames& db = pods->at("0b9f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b");
  CHECK(db.volume_claims == std::map<std::string, std::string, std::less<>>{{"data", "data-db-0"}, {"scratch", ""}, {"odd", ""}});
  CHECK(pods->at("7d3c2b1a-9e8f-4a6b-b5c4-d3e2f1a0b9c8").volume_claims.empty());
}
