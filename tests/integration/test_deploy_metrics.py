"""Every metric the PrometheusRule and the Grafana dashboard use is one the
agent exports: each name in their PromQL is a metric of docs/metrics.md
(which a unit test keeps equal to the agent's metric tables), a series of
a documented histogram or summary (_bucket, _sum, _count), a recording rule
of the PrometheusRule, or `up`. Then, as root (the eBPF metrics need it),
the running agent's own exposition has a `# TYPE` line of the documented
type for each of them (the volume families from a second agent with an
ext4 and a FUSE volume staged under a temporary host root). The dashboard's template variables and panels are
checked for the shape Grafana needs."""

import os
import re
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Agent, Checks  # noqa: E402
from deploy_util import (PROMETHEUS_SYNTHETIC, base_metric, dashboard, dashboard_queries,  # noqa: E402
                         disk_io, documented_metrics, metric_names, recorded_names, rule_expressions)

T = Checks()


def used_metrics():
    """{base metric: [where it is used]} over rules and dashboard, and the
    names that are none of the allowed kinds."""
    table = documented_metrics()
    recorded = recorded_names()
    used, unknown = {}, []
    for where, expr in [(f"rule {n}", e) for n, e in rule_expressions()] + \
                       [(f"dashboard: {n}", e) for n, e in dashboard_queries()]:
        names = metric_names(expr)
        T.check(names, f"{where}: no metric found in {expr!r}")
        for name in names:
            if name in recorded or name in PROMETHEUS_SYNTHETIC:
                continue
            base = base_metric(name, table)
            if base is None:
                unknown.append(f"{where}: {name}")
            else:
                used.setdefault(base, []).append(where)
    return used, unknown


def test_names_documented():
    table = documented_metrics()
    T.check(len(table) > 150, f"docs/metrics.md: only {len(table)} metrics parsed")
    used, unknown = used_metrics()
    T.check(not unknown, f"names used that the agent does not export: {unknown}")
    print(f"{len(used)} agent metrics used by the rules and the dashboard, all in the metric table")
    # The extraction itself: a name that is not exported must be caught.
    T.check(metric_names('rate(nodeperf_no_such_total{node=~"$node"}[5m]) / on (node) x:y:z') ==
            {"nodeperf_no_such_total", "x:y:z"}, "metric_names() finds selectors")
    T.check(base_metric("nodeperf_runqueue_latency_seconds_bucket", table) == "nodeperf_runqueue_latency_seconds" and
            base_metric("nodeperf_cpu_seconds_total_bucket", table) is None, "base_metric() on histogram series")
    # Recording rules the dashboard uses are defined, and each recording
    # rule's name follows level:metric:operations.
    for name in recorded_names():
        T.check(re.fullmatch(r"[a-z_]+:nodeperf_[a-z_]+:[a-z0-9_]+", name), f"recording rule name {name}")
    used_recorded = {n for _, e in dashboard_queries() for n in metric_names(e) if ":" in n}
    T.check(used_recorded <= recorded_names(), f"dashboard uses undefined recording rules {used_recorded - recorded_names()}")


def test_names_exposed():
    if os.geteuid() != 0:
        print("info: not root: the live exposition check (eBPF metrics need root) is skipped")
        return
    used, _ = used_metrics()
    table = documented_metrics()
    # kubelet.url set (to a closed port) so the nodeperf_kubelet_* metrics exist.
    with Agent("--kubelet.url=https://127.0.0.1:1/pods", "--kubelet.token-file=") as agent:
        disk_io()  # the block IO families appear with their first events
        time.sleep(2.5)
        text = agent.metrics()
    types = dict(re.findall(r"^# TYPE (\S+) (\S+)$", text, re.M))
    if any(name.startswith("nodeperf_volume_") for name in used):
        types.update(re.findall(r"^# TYPE (\S+) (\S+)$", volume_exposition(), re.M))
    for name in sorted(used):
        got = types.get(name)
        want = table[name]
        T.check(got == want, f"{name} (used by {used[name][0]}): TYPE {got} in the exposition, documented {want}")
    print(f"all {len(used)} have a # TYPE line of their documented type in the running agent's exposition")


def volume_exposition():
    """The exposition of an agent that has volumes: an ext4 loop device and
    a bindfs (FUSE) file system at kubelet volume paths under a temporary
    host root, in a private mount namespace, each read once."""
    import shutil
    import subprocess
    import tempfile
    from bpfutil import LoopDevice, timed_direct_io
    from test_volumes import KUBELET, POD_A, private_namespace, write_mountinfo
    block_path = f"{KUBELET}/{POD_A}/volumes/kubernetes.io~csi/pv-block/mount"
    fuse_path = f"{KUBELET}/{POD_A}/volumes/kubernetes.io~csi/pv-fuse/mount"
    private_namespace()
    tmp = tempfile.mkdtemp(prefix="nodeperf-deploy-volumes-")
    root, loop, mounted = f"{tmp}/root", None, []
    try:
        os.makedirs(f"{root}/proc/1")
        os.symlink("/sys", f"{root}/sys")
        loop = LoopDevice(tmp, size=32 << 20, name="vol")
        subprocess.run(["mkfs.ext4", "-q", "-F", loop.path], check=True, timeout=60, capture_output=True)
        for path in (block_path, fuse_path, "/src"):
            os.makedirs(root + path)
        subprocess.run(["mount", loop.path, root + block_path], check=True, timeout=20)
        mounted.append(root + block_path)
        subprocess.run(["bindfs", root + "/src", root + fuse_path], check=True, timeout=20)
        mounted.append(root + fuse_path)
        with open(f"{root}{block_path}/data", "wb") as f:
            f.write(b"x" * 65536)
        with open(f"{root}{fuse_path}/data", "wb") as f:
            f.write(b"x" * 4096)
        os.sync()
        write_mountinfo(root)
        with Agent(f"--host-root={root}", "--tick=500ms") as agent:
            time.sleep(2)  # the fslatency programs attach for the FUSE volume
            timed_direct_io(f"{root}{block_path}/data", [("read", 0)])
            with open(f"{root}{fuse_path}/data", "rb") as f:
                f.read()
            time.sleep(1.5)
            return agent.metrics()
    finally:
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", path], timeout=20)
        if loop:
            loop.close()
        shutil.rmtree(tmp, ignore_errors=True)


def test_dashboard_shape():
    board = dashboard()
    T.check(board.get("uid") == "nodeperf" and board.get("schemaVersion", 0) >= 36, "dashboard uid and schema version")
    variables = {v["name"]: v for v in board["templating"]["list"]}
    T.check(variables.get("datasource", {}).get("type") == "datasource", "a data source variable")
    used_vars = set()
    ids = set()

    def walk(panels):
        for p in panels:
            T.check(p["id"] not in ids, f"panel id {p['id']} repeated")
            ids.add(p["id"])
            for tgt in p.get("targets", []):
                T.check(tgt.get("datasource", {}).get("uid") == "${datasource}", f"{p['title']}: data source is the variable")
                used_vars.update(re.findall(r"\$\{?([a-zA-Z_]\w*)", tgt["expr"]))
            yield p
            yield from walk(p.get("panels", []))

    panels = list(walk(board["panels"]))
    titles = " ".join(p.get("title", "") for p in panels).lower()
    for want in ("run-queue", "disk io latency", "tcp", "by pod", "volumes"):
        T.check(want in titles, f"a panel about {want}")
    heatmaps = [p for p in panels if p["type"] == "heatmap"]
    T.check(any("by pod" in p["title"] for p in heatmaps), "per-pod latency heatmaps")
    T.check(any(t.get("format") == "heatmap" for p in heatmaps for t in p["targets"]), "heatmaps from histogram buckets")
    builtin = {"__rate_interval", "__interval", "__range"}
    T.check(used_vars - builtin <= set(variables), f"undefined variables {used_vars - builtin - set(variables)}")


def main():
    T.run(test_names_documented, test_names_exposed, test_dashboard_shape)
    T.done()


main()
