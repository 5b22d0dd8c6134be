"""A real Prometheus server (Debian's) scrapes a running agent on loopback
with the scrape configuration the Prometheus Operator generates from
deploy/servicemonitor.yaml, and evaluates deploy/prometheusrule.yaml's
rules, for a short bounded time. No cluster here: the target is a static
one carrying the __meta_kubernetes_* labels that Kubernetes service
discovery would give an endpoint of the nodeperf Service, so the operator's
relabelling and ours run unchanged. Through Prometheus's HTTP API:
`up == 1` with the node label; every nodeperf series carries the node and
none the agent pod's labels; histogram_quantile(0.99, ...) over the disk
and run-queue histograms is a finite number; the node-level recording
rules produce series; every rule evaluates without error; and every query
of the Grafana dashboard is valid PromQL that Prometheus runs.

Where a cgroup v2 hierarchy is mounted, a pod is staged too: cgroups shaped
like a kubelet pod and container (cgroupfs driver) under a cgroup of the
test's own, a stand-in kubelet listing that pod, and a workload in the
container's cgroup (direct IO and HTTP requests): the per-pod recording
rules must then produce that pod's disk, run-queue and TCP p99, named by
namespace and pod as the kubelet says."""

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse


sys.path.insert(0, os.path.dirname(__file__))
import bpfutil  # noqa: E402
from harness import Agent, Checks, free_port, http_get, require_root, require_tool, wait_until  # noqa: E402
from deploy_util import (PodKubelet, dashboard_queries, disk_io, find, recorded_names, rule_groups, yaml,  # noqa: E402
                         substitute_variables)

NODE = "node-1"
POD = "nodeperf-x7k2p"
WORKLOAD_UID = "5e1f0c2a-7b3d-4c8e-9f10-2a3b4c5d6e7f"
WORKLOAD_CID = "c" * 64
T = Checks()


def sanitize(name):
    return re.sub(r"[^a-zA-Z0-9_]", "_", name)


def relabel(rule):
    """A ServiceMonitor RelabelConfig (camelCase) as Prometheus writes it."""
    keys = {"sourceLabels": "source_labels", "targetLabel": "target_label"}
    return {keys.get(k, k): v for k, v in rule.items()}


def scrape_config(sm, address, interval="1s"):
    """What the Prometheus Operator generates for the ServiceMonitor's first
    endpoint (role endpoints), with a static target in place of service
    discovery. The operator's own relabelling first, then ours."""
    (ep,) = sm["spec"]["endpoints"]
    ns = sm["metadata"]["namespace"]
    selector = sm["spec"]["selector"]["matchLabels"]
    meta = {
        "__meta_kubernetes_namespace": ns,
        "__meta_kubernetes_service_name": "nodeperf",
        "__meta_kubernetes_endpoint_port_name": ep["port"],
        "__meta_kubernetes_endpoint_address_target_kind": "Pod",
        "__meta_kubernetes_endpoint_address_target_name": POD,
        "__meta_kubernetes_pod_name": POD,
        "__meta_kubernetes_pod_container_name": "agent",
        "__meta_kubernetes_pod_node_name": NODE,
        "__meta_kubernetes_pod_phase": "Running",
    }
    svc = find("Service", "nodeperf")
    for k, v in svc["metadata"]["labels"].items():
        meta[f"__meta_kubernetes_service_label_{sanitize(k)}"] = v
        meta[f"__meta_kubernetes_service_labelpresent_{sanitize(k)}"] = "true"
    relabels = [{"source_labels": ["job"], "target_label": "__tmp_prometheus_job_name"}]
    for k, v in sorted(selector.items()):
        relabels.append({"action": "keep", "source_labels": [f"__meta_kubernetes_service_label_{sanitize(k)}",
                                                              f"__meta_kubernetes_service_labelpresent_{sanitize(k)}"],
                         "regex": f"({v});true"})
    relabels += [
        {"action": "keep", "source_labels": ["__meta_kubernetes_endpoint_port_name"], "regex": ep["port"]},
        {"source_labels": ["__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name"],
         "separator": ";", "regex": "Node;(.*)", "replacement": "${1}", "target_label": "node"},
        {"source_labels": ["__meta_kubernetes_endpoint_address_target_kind", "__meta_kubernetes_endpoint_address_target_name"],
         "separator": ";", "regex": "Pod;(.*)", "replacement": "${1}", "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "service"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
        {"action": "drop", "source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)"},
        {"source_labels": ["__meta_kubernetes_service_name"], "target_label": "job", "replacement": "${1}"},
    ]
    if sm["spec"].get("jobLabel"):
        relabels.append({"source_labels": [f"__meta_kubernetes_service_label_{sanitize(sm['spec']['jobLabel'])}"],
                         "target_label": "job", "regex": "(.+)", "replacement": "${1}"})
    relabels.append({"target_label": "endpoint", "replacement": ep["port"]})
    relabels += [relabel(r) for r in ep.get("relabelings", [])]
    return {
        "job_name": f"serviceMonitor/{ns}/{sm['metadata']['name']}/0",
        "honor_labels": ep.get("honorLabels", False),
        "metrics_path": ep.get("path", "/metrics"),
        "scheme": ep.get("scheme", "http"),
        # The ServiceMonitor's 15s, shortened so a test of seconds sees scrapes.
        "scrape_interval": interval,
        "scrape_timeout": interval,
        "static_configs": [{"targets": [address], "labels": meta}],
        "relabel_configs": relabels,
        "metric_relabel_configs": [relabel(r) for r in ep.get("metricRelabelings", [])],
    }


def api(base, path, **params):
    status, _, body = http_get(f"{base}/api/v1/{path}?{urllib.parse.urlencode(params)}", timeout=10)
    data = json.loads(body) if body else {}
    return status, data


def query(base, promql):
    status, data = api(base, "query", query=promql)
    if status != 200:
        return None, data.get("error", f"HTTP {status}")
    return data["data"]["result"], None


def finite(result):
    return bool(result) and all(math.isfinite(float(r["value"][1])) for r in result)


class StagedPod:
    """A kubelet-shaped pod and container cgroup of the test's own, and a
    kubelet that names them; removed again by close()."""

    def __init__(self, workdir, root):
        self.base = f"nodeperf-test-{os.getpid()}-deploy"
        pod_dir = f"{self.base}/kubepods/burstable/pod{WORKLOAD_UID}"
        self.groups = []
        for level in (self.base, f"{self.base}/kubepods", f"{self.base}/kubepods/burstable", pod_dir,
                      f"{pod_dir}/{WORKLOAD_CID}"):
            self.groups.append(bpfutil.Cgroup(root, level))
        self.container = self.groups[-1]
        self.kubelet = PodKubelet(workdir, [(WORKLOAD_UID, "shop", "cart-0", [("cart", WORKLOAD_CID)])])

    def agent_flags(self):
        return [f"--kubelet.url={self.kubelet.url}", f"--kubelet.ca-file={self.kubelet.cert}",
                "--kubelet.token-file=", f"--collector.cgroups.include=^/{self.base}(/|$)",
                "--collector.cgroups.max-depth=6"]

    def run(self, agent_port, seconds):
        """Direct IO and HTTP requests from inside the container's cgroup."""
        def enter():
            with open(f"{self.container.path}/cgroup.procs", "w") as f:
                f.write("0")
        script = (f"end=$(($(date +%s) + {seconds})); while [ $(date +%s) -lt $end ]; do "
                  "dd if=/dev/zero of=\"$F\" bs=64k count=16 oflag=direct conv=fsync status=none; "
                  "dd if=\"$F\" of=/dev/null bs=64k iflag=direct status=none; "
                  f"curl -s -o /dev/null http://127.0.0.1:{agent_port}/healthz; sleep 0.2; done; rm -f \"$F\"")
        fd, path = tempfile.mkstemp(prefix="nodeperf-io-", dir="/var/tmp")
        os.close(fd)
        try:
            subprocess.run(["sh", "-c", script], env={**os.environ, "F": path}, preexec_fn=enter,
                           check=True, timeout=seconds + 30)
        finally:
            if os.path.exists(path):
                os.unlink(path)

    def close(self):
        self.kubelet.stop()
        for g in reversed(self.groups):
            g.close()


def main():
    require_root()  # the eBPF histograms need it
    prometheus = require_tool("prometheus")
    sm = find("ServiceMonitor", "nodeperf")
    workdir = tempfile.mkdtemp(prefix="nodeperf-prom-deploy-")
    root = bpfutil.cgroup2_root()
    staged = None
    try:
        if root and shutil.which("openssl") and shutil.which("curl"):
            staged = StagedPod(workdir, root)
        else:
            print("NOTE: no cgroup v2 hierarchy (or no openssl/curl): the per-pod rules are not staged")
        with Agent(*(staged.agent_flags() if staged else [])) as agent:
            with open(os.path.join(workdir, "rules.yml"), "w") as f:
                yaml.safe_dump({"groups": rule_groups()}, f, sort_keys=False)
            config = {"global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                      "rule_files": [os.path.join(workdir, "rules.yml")],
                      "scrape_configs": [scrape_config(sm, f"127.0.0.1:{agent.port}")]}
            with open(os.path.join(workdir, "prometheus.yml"), "w") as f:
                yaml.safe_dump(config, f, sort_keys=False)
            r = subprocess.run([shutil.which("promtool") or "promtool", "check", "config",
                                os.path.join(workdir, "prometheus.yml")], capture_output=True, text=True, timeout=60)
            T.check(r.returncode == 0, f"promtool check config: {r.stdout}{r.stderr}")
            port = free_port()
            base = f"http://127.0.0.1:{port}"
            log = open(os.path.join(workdir, "prom.log"), "w")
            prom = subprocess.Popen(
                [prometheus, f"--config.file={workdir}/prometheus.yml", f"--storage.tsdb.path={workdir}/data",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=log)
            try:
                wait_until(lambda: http_get(base + "/-/ready")[0] == 200, timeout=30, what="prometheus ready")
                wait_until(lambda: (query(base, 'up{job="nodeperf"}')[0] or [{}])[0].get("value", [0, "0"])[1] == "1",
                           timeout=20, what="up == 1")
                # Disk IO in the scrape window, so the disk histograms move;
                # from the staged container's cgroup when there is one.
                if staged:
                    staged.run(agent.port, 8)
                else:
                    deadline = time.monotonic() + 8
                    while time.monotonic() < deadline:
                        disk_io(16)
                        time.sleep(0.5)
                time.sleep(3)  # rules evaluate every second: let them see the last scrapes
                check_target(base)
                check_labels(base)
                check_quantiles(base)
                check_rules(base, staged)
                check_dashboard(base, staged)
            finally:
                prom.terminate()
                try:
                    prom.wait(10)
                except subprocess.TimeoutExpired:
                    prom.kill()
                    prom.wait()
                log.close()
                with open(os.path.join(workdir, "prom.log")) as f:
                    errors = [line for line in f if "level=error" in line]
                T.check(not errors, f"Prometheus logged errors: {errors[:3]}")
    finally:
        if staged:
            staged.close()
        shutil.rmtree(workdir, ignore_errors=True)
    T.done()


def check_target(base):
    result, err = query(base, 'up{job="nodeperf"}')
    T.check(result and len(result) == 1, f"one nodeperf target: {result or err}")
    labels = result[0]["metric"]
    want = {"__name__": "up", "job": "nodeperf", "instance": NODE, "node": NODE}
    T.check(labels == want, f"up's labels {labels}, want {want}")
    T.check(result[0]["value"][1] == "1", "up == 1")
    print(f"up{{{', '.join(f'{k}={v!r}' for k, v in labels.items() if k != '__name__')}}} == 1")


def check_labels(base):
    total, _ = query(base, 'count({job="nodeperf"})')
    without, _ = query(base, f'count({{job="nodeperf", node!="{NODE}"}})')
    T.check(total and int(total[0]["value"][1]) > 500, f"series scraped: {total}")
    T.check(without == [], f"series without node={NODE}: {without}")
    # The agent pod's own target labels are dropped: a node-level series
    # never names the agent's pod.
    leaked, _ = query(base, f'count({{job="nodeperf", pod="{POD}"}}) or count({{job="nodeperf", endpoint!=""}})')
    T.check(leaked == [], f"series with the agent pod's target labels: {leaked}")
    print(f"{total[0]['value'][1]} series, every one with node={NODE!r}")


def check_quantiles(base):
    for name, expr in [
        ("disk", 'histogram_quantile(0.99, sum by (le) (rate(nodeperf_disk_io_latency_seconds_bucket{job="nodeperf"}[1m])))'),
        ("run-queue", 'histogram_quantile(0.99, sum by (le) (rate(nodeperf_runqueue_latency_seconds_bucket{job="nodeperf"}[1m])))'),
    ]:
        result, err = query(base, expr)
        T.check(finite(result), f"{name} p99 {result or err}")
        if finite(result):
            print(f"{name} p99 over the last minute: {float(result[0]['value'][1]) * 1e3:.3f} ms")


def check_rules(base, staged):
    status, data = api(base, "rules")
    T.check(status == 200, f"/api/v1/rules: HTTP {status}")
    rules = [r for g in data["data"]["groups"] for r in g["rules"]]
    T.check(len(rules) == sum(len(g["rules"]) for g in rule_groups()), f"{len(rules)} rules loaded")
    for r in rules:
        T.check(r["health"] == "ok", f"rule {r.get('name')}: health {r['health']}: {r.get('lastError')}")
    # Node-level rules must produce series here; disk and run-queue finite.
    for name in sorted(recorded_names()):
        if not name.startswith("node:") and not name.startswith("node_device:"):
            continue  # per-pod rules need Kubernetes cgroups and the kubelet's names
        result, err = query(base, name)
        T.check(result and all(r["metric"].get("node") == NODE for r in result), f"recording rule {name}: {result or err}")
        if "disk_io_latency_seconds:p99" in name or "runqueue" in name:
            T.check(any(math.isfinite(float(r["value"][1])) for r in (result or [])), f"{name} finite: {result}")
        print(f"{name}: {len(result or [])} series, e.g. {(result or [{}])[0].get('value')}")
    if staged:
        for name in sorted(recorded_names()):
            if not name.startswith("node_namespace_pod:"):
                continue
            result, err = query(base, name)
            want = {"__name__": name, "node": NODE, "namespace": "shop", "pod": "cart-0"}
            T.check(result and len(result) == 1 and result[0]["metric"] == want
                    and math.isfinite(float(result[0]["value"][1])), f"recording rule {name}: {result or err}")
            if result:
                print(f"{name}{{pod=cart-0}}: {float(result[0]['value'][1]) * 1e3:.3f} ms")
    firing = [r["name"] for r in rules if r.get("type") == "alerting" and r.get("state") == "firing"]
    print(f"alerts firing on this host: {firing or 'none'}")


def check_dashboard(base, staged):
    ran = 0
    for title, expr in dashboard_queries():
        promql = substitute_variables(expr)
        result, err = query(base, promql)
        T.check(err is None, f"dashboard {title}: {promql!r}: {err}")
        ran += err is None
    # Panels whose data this host has: they must show something.
    for title, expr in dashboard_queries():
        wanted = {"CPU busy by mode", "Run-queue latency", "Disk IO latency", "Agent memory", "variable node"}
        if staged:
            # (Not "Pod IO by device": on a hybrid host the staged cgroup
            # exists only in the v2 hierarchy, and IO bytes come from v1's blkio.)
            wanted |= {"Run-queue latency p99 by pod", "Disk IO latency p99 by pod", "TCP RTT p99 by pod",
                       "variable namespace"}
        if title in wanted:
            result, _ = query(base, substitute_variables(expr))
            T.check(result, f"dashboard {title}: no data from {expr!r}")
    print(f"{ran} dashboard queries run by Prometheus without error")


main()
