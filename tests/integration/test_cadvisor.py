#!/usr/bin/env python3
"""--compat=cadvisor against real cgroups and a fake kubelet (root; the
hybrid layout of this machine, as test_cgroups.py). The test makes a
kubepods-shaped pod and container cgroup (cgroupfs driver) under a cgroup
of its own in every hierarchy, runs a child in the container (under a 50%
CPU quota) that burns some CPU and touches 32 MiB, and serves a PodList naming the pod, the
container and its image from test_kubelet.py's HTTPS fake kubelet. Checks:

- cAdvisor's families carry namespace, pod, container, image, id and name,
  and in the same scrape (one tick) hold exactly the figures of the
  nodeperf_cgroup_* series of that cgroup;
- the pod's cgroup has container="" and image="", as in cAdvisor, so a
  kubernetes-mixin selection (image!="", container!="") keeps only the
  container; the test's other cgroups have no container_* series;
- promtool check metrics accepts the exposition (when promtool is here);
- without --compat=cadvisor there is no container_* family at all."""

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Agent, Checks, parse_exposition, require_root, require_tool, series, skip, wait_until  # noqa: E402
from test_kubelet import TOKEN, FakeKubelet, image_of, make_certs, pod, pod_list  # noqa: E402

BASE = "/sys/fs/cgroup"
CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids", "unified")
POD_UID = "5e1f0c2a-7b3d-4e8f-9a6b-0c1d2e3f4a5b"
CID = "e" * 64
CHILD = r"""import sys, time
sys.stdin.readline()  # moved into the cgroups
held = bytearray(32 << 20)
for i in range(0, len(held), 4096):
    held[i] = 1
end = time.process_time() + 0.3
while time.process_time() < end:
    pass
print("ok", flush=True)
sys.stdin.readline()
"""
CAMEL = re.compile(r"^(\S+) metric names should be written in 'snake_case' not 'camelCase'$")
INHERITED = re.compile(r"^(nodeperf|node)_(memory|netstat)_")

checks = Checks()
check = checks.check


def labels(key):
    return dict(key)


def select(parsed, family, want):
    """harness.series() with the labels as a dict: cAdvisor has a `name` label."""
    return {k[1]: v for k, v in parsed.items() if k[0] == family and set(want.items()) <= set(k[1])}


def container_families(parsed):
    return sorted({name for name, _ in parsed if name.startswith("container_")})


def promtool_check(text):
    promtool = shutil.which("promtool")
    if not promtool:
        print("NOTE: no promtool: the exposition is not linted")
        return
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    remarks = [line for line in (r.stdout + r.stderr).decode().splitlines() if line.strip()]
    unexpected = [x for x in remarks if not (CAMEL.match(x) and INHERITED.match(CAMEL.match(x).group(1)))]
    check(r.returncode in (0, 3) and not unexpected, f"promtool check metrics: exit {r.returncode}, {unexpected[:5]}")
    if not unexpected:
        print(f"promtool check metrics: exit {r.returncode}, {len(remarks)} remarks, all on inherited names")


def remove_cgroup(path):
    """rmdir, retried while the killed child is still leaving it."""
    for _ in range(50):
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            time.sleep(0.1)
    print(f"NOTE: could not remove {path}")


def main():
    require_root()
    require_tool("openssl")
    if not all(os.path.isdir(f"{BASE}/{c}") for c in CONTROLLERS):
        skip("not the hybrid layout this test is written for (v1 controllers plus unified)")
    base = f"nodeperf-test-{os.getpid()}"
    pod_path = f"/{base}/kubepods/burstable/pod{POD_UID}"
    ctr_path = f"{pod_path}/{CID}"
    tmp = tempfile.TemporaryDirectory(prefix="nodeperf-cadvisor-")
    made, child, agents, fake = [], None, [], None
    try:
        roots = sorted({os.path.realpath(f"{BASE}/{c}") for c in CONTROLLERS})
        for root in roots:
            parts = ctr_path.strip("/").split("/")
            for i in range(1, len(parts) + 1):
                os.mkdir(os.path.join(root, *parts[:i]))
                made.append(os.path.join(root, *parts[:i]))
        # A CPU quota of 50% on the container (v1 cpu here): its CFS families appear, the pod's do not.
        with open(f"{BASE}/cpu{ctr_path}/cpu.cfs_quota_us", "w") as f:
            f.write("50000")
        child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 text=True)
        for root in roots:
            with open(f"{root}{ctr_path}/cgroup.procs", "w") as f:
                f.write(str(child.pid))
        child.stdin.write("go\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ok"

        make_certs(tmp.name)
        token_file = os.path.join(tmp.name, "token")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        fake = FakeKubelet(os.path.join(tmp.name, "server.crt"), os.path.join(tmp.name, "server.key"))
        fake.body = pod_list(pod(POD_UID, "shop", "cart-0", [("cart", CID)]))
        common = ["--tick=250ms", f"--kubelet.url=https://127.0.0.1:{fake.port}/pods",
                  f"--kubelet.token-file={token_file}", f"--kubelet.ca-file={tmp.name}/ca.crt",
                  f"--collector.cgroups.include=^/{base}(/|$)", "--collector.cgroups.max-depth=6"]
        agent = Agent(*common, "--compat=cadvisor")
        plain = Agent(*common, "--compat=node_exporter")
        agents = [agent, plain]

        # Names join once the kubelet's pod list is in (a new pod UID asks for it at once).
        parsed = {}

        def named():
            nonlocal parsed
            parsed = parse_exposition(agent.metrics())
            return series(parsed, "container_cpu_usage_seconds_total", id=ctr_path, pod="cart-0")

        wait_until(named, timeout=25, what="the kubelet's names on the container's cAdvisor series")
        text = agent.metrics()
        parsed = parse_exposition(text)  # one scrape: one tick, for every comparison below

        want = {"namespace": "shop", "pod": "cart-0", "container": "cart", "image": image_of("cart"),
                "id": ctr_path, "name": CID}
        cpu = series(parsed, "container_cpu_usage_seconds_total", id=ctr_path)
        check(len(cpu) == 1 and labels(next(iter(cpu))) == {**want, "cpu": "total"},
              f"container_cpu_usage_seconds_total has cAdvisor's labels: {[labels(k) for k in cpu]}")
        ours_cpu = series(parsed, "nodeperf_cgroup_cpu_usage_seconds_total", cgroup=ctr_path)
        got, ours = next(iter(cpu.values()), None), next(iter(ours_cpu.values()), None)
        print(f"container cpu: cAdvisor name {got} s, nodeperf name {ours} s")
        check(got is not None and got == ours and got >= 0.25, "CPU usage agrees with nodeperf's, same tick")

        ws = select(parsed, "container_memory_working_set_bytes", want)
        ours_ws = series(parsed, "nodeperf_cgroup_memory_working_set_bytes", cgroup=ctr_path)
        got, ours = next(iter(ws.values()), None), next(iter(ours_ws.values()), None)
        print(f"container working set: cAdvisor name {got}, nodeperf name {ours}")
        check(got is not None and got == ours and got >= 32 << 20, "working set agrees with nodeperf's, same tick")
        for name, nodeperf in [("container_memory_usage_bytes", "nodeperf_cgroup_memory_usage_bytes"),
                               ("container_memory_rss", "nodeperf_cgroup_memory_rss_bytes"),
                               ("container_cpu_user_seconds_total", "nodeperf_cgroup_cpu_user_seconds_total"),
                               ("container_threads", "nodeperf_cgroup_pids_current"),
                               ("container_cpu_cfs_periods_total", "nodeperf_cgroup_cpu_periods_total"),
                               ("container_cpu_cfs_throttled_periods_total",
                                "nodeperf_cgroup_cpu_throttled_periods_total"),
                               ("container_cpu_cfs_throttled_seconds_total",
                                "nodeperf_cgroup_cpu_throttled_seconds_total")]:
            a = select(parsed, name, want)
            b = series(parsed, nodeperf, cgroup=ctr_path)
            check(len(a) == 1 and list(a.values()) == list(b.values()), f"{name} is {nodeperf}: {a} {b}")
        check(select(parsed, "container_spec_memory_limit_bytes", want) == {frozenset(want.items()): 0},
              "no memory limit is 0, as in cAdvisor")

        # The pod's own cgroup: names, no container or image.
        pod_cpu = series(parsed, "container_cpu_usage_seconds_total", id=pod_path)
        check([labels(k) for k in pod_cpu] == [{"namespace": "shop", "pod": "cart-0", "container": "", "image": "",
                                                "id": pod_path, "name": "", "cpu": "total"}],
              f"the pod cgroup's series: {[labels(k) for k in pod_cpu]}")
        check(list(pod_cpu.values()) == list(series(parsed, "nodeperf_cgroup_cpu_usage_seconds_total",
                                                    cgroup=pod_path).values()), "pod CPU agrees with nodeperf's")
        check(not series(parsed, "container_cpu_cfs_periods_total", id=pod_path),
              "no CFS families for the pod's cgroup, which has no quota")
        periods = next(iter(select(parsed, "container_cpu_cfs_periods_total", want).values()), 0)
        check(periods > 0, f"the container ran under its quota for {periods} periods")

        # What a kubernetes-mixin rule keeps: image!="" (and container!="").
        kept = {(labels(k)["namespace"], labels(k)["pod"], labels(k)["container"])
                for k in series(parsed, "container_memory_working_set_bytes") if labels(k)["image"]}
        check(kept == {("shop", "cart-0", "cart")}, f"image!=\"\" keeps the container only: {kept}")
        ids = {labels(k)["id"] for name, k in parsed if name.startswith("container_")}
        check(ids == {pod_path, ctr_path}, f"cAdvisor series for the pod and the container cgroup only: {ids}")
        print("cAdvisor families:", ", ".join(container_families(parsed)))
        promtool_check(text)

        check(not container_families(parse_exposition(plain.metrics())),
              "without --compat=cadvisor there is no container_* family")
    finally:
        for a in agents:
            a.stop()
        if child:
            child.kill()
            child.wait()
        for d in reversed(made):
            remove_cgroup(d)
        if fake:
            fake.stopping.set()
            fake.down()
        tmp.cleanup()
    checks.done()


if __name__ == "__main__":
    main()
