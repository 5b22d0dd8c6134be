#!/usr/bin/env python3
"""Cgroups collector benchmark: tick cost and memory against the number of
cgroups. For each N (default 10, 100, 1000, 5000) it either generates a pure
v2 fixture tree of N container cgroups (10 per pod, Kubernetes
systemd-driver paths, the files the collector reads) in a temp dir and runs
the agent on it (--host-root at the temp dir), or, with --real (root), makes
N real empty cgroups under nodeperf-bench-<pid> in every mounted hierarchy
and runs the agent on the host, filtered to them. Only the cgroups collector
runs, 1 s tick. It prints:
  * the collector's duration per tick (nodeperf_collector_duration_seconds,
    median of the samples over the window) and per cgroup in microseconds;
  * the agent's CPU over the window (utime+stime from /proc/PID/stat) per tick,
    scraped every 5 s;
  * RSS (VmRSS) and open descriptors at the end.
Figures only; it never passes or fails.
Usage: cgroup_bench.py [--bin B] [--window S] [--real] [N ...]"""

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

PSI = "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=678\n"
FILES = {
    "cgroup.procs": "",
    "cpu.stat": "usage_usec 123456\nuser_usec 100000\nsystem_usec 23456\nnr_periods 10\nnr_throttled 1\nthrottled_usec 500\n",
    "memory.current": "104857600\n",
    "memory.max": "268435456\n",
    "memory.swap.current": "0\n",
    "memory.stat": "anon 52428800\nfile 41943040\nkernel 1048576\nshmem 0\nactive_file 20971520\ninactive_file 20971520\n"
                   "active_anon 0\ninactive_anon 52428800\nslab 1048576\npgfault 1000\npgmajfault 0\n",
    "memory.events": "low 0\nhigh 0\nmax 0\noom 0\noom_kill 0\noom_group_kill 0\n",
    "io.stat": "8:0 rbytes=1048576 wbytes=2097152 rios=256 wios=512 dbytes=0 dios=0\n",
    "pids.current": "12\n",
    "pids.max": "1024\n",
    "cpu.pressure": PSI,
    "memory.pressure": PSI,
    "io.pressure": PSI,
}


def make_tree(root, n):
    base = os.path.join(root, "sys/fs/cgroup")
    os.makedirs(base)
    open(os.path.join(base, "cgroup.controllers"), "w").write("cpu io memory pids\n")
    def cgroup(path):
        os.makedirs(path, exist_ok=True)
        for name, text in FILES.items():
            with open(os.path.join(path, name), "w") as f:
                f.write(text)
    made = 0
    pod = 0
    while made < n:
        p = f"{base}/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{pod:08x}_0000_4000_8000_000000000000.slice"
        for c in range(min(10, n - made)):
            cgroup(f"{p}/cri-containerd-{pod:032x}{c:032x}.scope")
            made += 1
        pod += 1
    return made


CGROUP_FS = "/sys/fs/cgroup"
SCRAPE_EVERY = 5.0  # a fast Prometheus; each scrape's cost is in the agent's CPU


def real_hierarchies():
    """The mounted hierarchies the collector reads (v1 controllers, v2)."""
    out = []
    for line in open("/proc/self/mounts"):
        _, mnt, fstype, opts = line.split()[:4]
        if not mnt.startswith(CGROUP_FS):
            continue
        if fstype == "cgroup2" or (fstype == "cgroup" and set(opts.split(",")) & {"cpu", "cpuacct", "memory", "blkio", "pids"}):
            out.append(mnt)
    return out


def make_real(parent, n):
    for h in real_hierarchies():
        os.makedirs(f"{h}/{parent}", exist_ok=True)
        for i in range(n):
            os.mkdir(f"{h}/{parent}/c{i}")
    return n


def remove_real(parent):
    for h in real_hierarchies():
        base = f"{h}/{parent}"
        if not os.path.isdir(base):
            continue
        for name in os.listdir(base):
            if os.path.isdir(f"{base}/{name}"):
                os.rmdir(f"{base}/{name}")
        os.rmdir(base)


def scrape(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mib(pid):
    m = re.search(r"VmRSS:\s+(\d+) kB", open(f"/proc/{pid}/status").read())
    return int(m.group(1)) / 1024


def collectors(binary):
    help_text = subprocess.run([binary, "agent", "--help"], capture_output=True, text=True).stdout
    return sorted(set(re.findall(r"--\[no-\]collector\.([a-z_]+)\n", help_text)))


def run(binary, n, window, real):
    tmp = tempfile.mkdtemp(prefix="nodeperf-cgbench-")
    parent = f"nodeperf-bench-{os.getpid()}"
    try:
        if real:
            made = make_real(parent, n)
            where = [f"--collector.cgroups.include=^/{parent}/"]
        else:
            made = make_tree(tmp, n)
            where = [f"--host-root={tmp}"]
        others = [f"--no-collector.{c}" for c in collectors(binary) if c != "cgroups"]
        log = open(os.path.join(tmp, "agent.log"), "w+")
        agent = subprocess.Popen([binary, "agent", "--web.listen-address=127.0.0.1:0", *where,
                                  "--tick=1s", f"--collector.cgroups.max={made + 100}", *others],
                                 stdout=subprocess.DEVNULL, stderr=log)
        try:
            port = None
            for _ in range(100):
                log.seek(0)
                m = re.search(r"127\.0\.0\.1:(\d+)", log.read())
                if m:
                    port = int(m.group(1))
                    break
                time.sleep(0.1)
            url = f"http://127.0.0.1:{port}/metrics"
            time.sleep(3)  # start-up listing and first ticks
            c0, t0 = cpu_seconds(agent.pid), time.monotonic()
            durations = []
            end = t0 + window
            while time.monotonic() < end:
                text = scrape(url)
                m = re.search(r'nodeperf_collector_duration_seconds\{collector="cgroups"\} (\S+)', text)
                if m:
                    durations.append(float(m.group(1)))
                time.sleep(SCRAPE_EVERY)
            cpu = (cpu_seconds(agent.pid) - c0) / (time.monotonic() - t0)  # per second = per tick
            tracked = re.search(r"^nodeperf_cgroups_tracked (\S+)", text, re.M)
            med = statistics.median(durations)
            fds = len(os.listdir(f"/proc/{agent.pid}/fd"))
            n_series = sum(1 for line in text.splitlines() if line and not line.startswith("#"))
            print(f"{made:6d} cgroups (tracked {tracked.group(1) if tracked else '?'}): collector {med * 1e3:8.2f} ms/tick; "
                  f"agent CPU {cpu * 1e3:8.2f} ms/tick = {cpu / made * 1e6:6.1f} us/cgroup = {cpu * 100:5.2f}% of a core; "
                  f"RSS {rss_mib(agent.pid):6.1f} MiB; {fds} fds; {n_series} series")
        finally:
            agent.terminate()
            agent.wait(10)
    finally:
        shutil.rmtree(tmp)
        if real:
            remove_real(parent)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default=os.environ.get("NODEPERF_BIN", "build/nodeperf"))
    ap.add_argument("--window", type=float, default=20.0)
    ap.add_argument("--real", action="store_true", help="real empty cgroups in every mounted hierarchy (root)")
    ap.add_argument("counts", nargs="*", type=int, default=[10, 100, 1000, 5000])
    a = ap.parse_args()
    if a.real:
        print(f"cgroups collector, real empty cgroups in {', '.join(real_hierarchies())}, tick 1 s, window {a.window:g} s")
    else:
        print(f"cgroups collector, pure v2 fixture tree on {tempfile.gettempdir()}, tick 1 s, window {a.window:g} s")
    for n in a.counts:
        run(a.bin, n, a.window, a.real)


if __name__ == "__main__":
    sys.exit(main())
