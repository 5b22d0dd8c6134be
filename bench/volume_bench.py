#!/usr/bin/env python3
"""Volumes benchmark (root): what per-volume IO accounting costs.

In a private mount namespace, under a temporary host root whose
proc/1/mountinfo lists them, it mounts VOLUMES pod volumes (default 200: 50
pods x 4 volumes, binds of directories of 4 ext4 loop devices, so every
device is shared and IO is attributed by the submitter's pod cgroup, the
dearer path). Then, each in the same run:

1. Tick cost with VOLUMES volumes: the volumes collector's duration per tick
   (median of nodeperf_collector_duration_seconds) and the agent's CPU per
   tick (utime+stime), idle and while 4 pods (test cgroups shaped like
   theirs) read their volumes with O_DIRECT; beside it, Debian's
   node_exporter with only its filesystem collector over the same mounts
   (--path.procfs/--path.rootfs at the host root), scraped once a second:
   its CPU per scrape. Ratio nodeperf / node_exporter.
2. Added per-IO cost of volume attribution, against the block probe alone:
   fio 4k random O_DIRECT reads on one volume for SECONDS, with the agent's
   blockio collector alone (--no-collector.volumes) and with blockio +
   volumes; per configuration the blockio programs' ns per run (bpf_stats,
   on only for the run) and the agent's user-space CPU per IO; fio IOPS
   with no agent as the baseline.
3. The file-system latency probe's tax on every system call: `perf bench
   syscall basic` (getppid in a loop) with no agent, with the agent and no
   FUSE volume (fslatency detached) and with a bindfs volume (attached);
   ns per call, and the fslatency programs' ns per run.

Figures only; it never passes or fails. Usage:
  volume_bench.py [--bin build/nodeperf] [--volumes 200] [--seconds 10]
"""

import argparse
import ctypes
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests", "integration"))
from bpfutil import LoopDevice, cgroup2_root, remove_cgroups  # noqa: E402
from test_volumes import write_mountinfo as write_test_mountinfo  # noqa: E402

STATS = "/proc/sys/kernel/bpf_stats_enabled"
KUBELET = "/var/lib/kubelet/pods"
libc = ctypes.CDLL(None, use_errno=True)


def private_namespace():
    if libc.unshare(0x00020000) != 0:
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)


def pod_uid(i):
    return f"{i:08x}-0000-4000-8000-{i:012x}"


def write_mountinfo(root):
    """The test's fake mountinfo, and the older mounts format node_exporter's
    filesystem collector reads."""
    lines = write_test_mountinfo(root)
    with open(f"{root}/proc/1/mounts", "w") as f:
        for line in lines:
            fields = line.split(" ")
            sep = fields.index("-")
            f.write(f"{fields[sep + 2]} {fields[4]} {fields[sep + 1]} {fields[5]} 0 0\n")


def cpu_seconds(pid):
    fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def get(url):
    with urllib.request.urlopen(url, timeout=30) as r:
        return r.read().decode()


def metric(text, name, **labels):
    total, found = 0.0, False
    for line in text.splitlines():
        if not line.startswith(name + "{") and not line.startswith(name + " "):
            continue
        if all(f'{k}="{v}"' in line for k, v in labels.items()):
            total += float(line.rsplit(" ", 1)[1])
            found = True
    return total if found else None


class Agent:
    def __init__(self, binary, root, *flags):
        self.log = tempfile.TemporaryFile("w+")
        self.proc = subprocess.Popen([binary, "agent", "--web.listen-address=127.0.0.1:0", f"--host-root={root}",
                                      "--tick=1s", "--no-collector.runqueue", "--no-collector.tcp",
                                      "--no-collector.cgroups", *flags], stdout=subprocess.DEVNULL, stderr=self.log)
        for _ in range(300):
            self.log.seek(0)
            m = re.search(r"127\.0\.0\.1:(\d+)", self.log.read())
            if m:
                self.url = f"http://127.0.0.1:{m.group(1)}/metrics"
                return
            time.sleep(0.1)
        raise RuntimeError("agent did not start")

    def metrics(self):
        return get(self.url)

    def stop(self):
        self.proc.terminate()
        self.proc.wait(10)


class Stats:
    """kernel.bpf_stats_enabled on for a while, the old value back after."""

    def __enter__(self):
        self.old = open(STATS).read().strip()
        open(STATS, "w").write("1")
        return self

    def __exit__(self, *exc):
        open(STATS, "w").write(self.old)


def prog_ns(before, after, probe):
    """ns per run of a probe's programs between two scrapes, summed over them."""
    out = {}
    for line in after.splitlines():
        m = re.match(r'nodeperf_bpf_program_runs_total\{probe="%s",program="(\w+)"\} (\S+)' % probe, line)
        if not m:
            continue
        prog = m.group(1)
        runs = float(m.group(2)) - (metric(before, "nodeperf_bpf_program_runs_total", probe=probe, program=prog) or 0)
        secs = (metric(after, "nodeperf_bpf_program_run_seconds_total", probe=probe, program=prog) or 0) - \
            (metric(before, "nodeperf_bpf_program_run_seconds_total", probe=probe, program=prog) or 0)
        out[prog] = (runs, secs * 1e9 / runs if runs else float("nan"))
    return out


def in_cgroup(path):
    def move():
        with open(f"{path}/cgroup.procs", "w") as f:
            f.write(str(os.getpid()))
    return move


def tick_cost(binary, root, pods, files, window):
    print(f"\n== 1. tick cost with {len(files)} volumes ({len(pods)} pods), tick 1 s, {window} s per phase")
    agent = Agent(binary, root)
    try:
        time.sleep(4)
        for phase in ("idle", "IO"):
            readers = []
            if phase == "IO":
                for i, (uid, cg) in enumerate(list(pods.items())[:4]):
                    f = files[i * 4]
                    readers.append(subprocess.Popen(
                        ["fio", "--name=r", f"--filename={f}", "--rw=randread", "--bs=4k", "--direct=1",
                         "--size=4m", f"--runtime={window + 2}", "--time_based", "--rate_iops=500",
                         "--output=/dev/null"], preexec_fn=in_cgroup(cg)))
                time.sleep(2)
            c0, t0 = cpu_seconds(agent.proc.pid), time.monotonic()
            durations = []
            while time.monotonic() - t0 < window:
                text = agent.metrics()
                d = metric(text, "nodeperf_collector_duration_seconds", collector="volumes")
                if d is not None:
                    durations.append(d)
                time.sleep(1)
            cpu = (cpu_seconds(agent.proc.pid) - c0) / (time.monotonic() - t0)
            ops = metric(text, "nodeperf_volume_io_ops_total") or 0
            for r in readers:
                r.wait(window + 30)
            print(f"  nodeperf {phase:4s}: volumes collector {statistics.median(durations) * 1e3:.2f} ms/tick "
                  f"(max {max(durations) * 1e3:.2f}); agent CPU {cpu * 1e3:.2f} ms/tick (all its collectors); "
                  f"volume IO ops counted so far {ops:.0f}")
    finally:
        agent.stop()
    ne = shutil.which("prometheus-node-exporter")
    if not ne:
        print("  node_exporter: not installed, no peer figure")
        return
    proc = subprocess.Popen([ne, "--web.listen-address=127.0.0.1:19234", "--collector.disable-defaults",
                             "--collector.filesystem", f"--path.procfs={root}/proc", f"--path.rootfs={root}"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                text = get("http://127.0.0.1:19234/metrics")
                break
            except OSError:
                time.sleep(0.1)
        n = len(re.findall(r'^node_filesystem_size_bytes\{', text, re.M))
        c0, t0, scrapes, took = cpu_seconds(proc.pid), time.monotonic(), 0, []
        while time.monotonic() - t0 < window:
            s = time.monotonic()
            get("http://127.0.0.1:19234/metrics")
            took.append(time.monotonic() - s)
            scrapes += 1
            time.sleep(1)
        cpu = (cpu_seconds(proc.pid) - c0) / scrapes
        print(f"  node_exporter (filesystem collector only, {n} file systems): {cpu * 1e3:.2f} ms CPU per scrape, "
              f"scrape {statistics.median(took) * 1e3:.1f} ms")
    finally:
        proc.terminate()
        proc.wait(10)


def fio_run(path, seconds):
    out = subprocess.run(["fio", "--name=r", f"--filename={path}", "--rw=randread", "--bs=4k", "--direct=1",
                          "--size=16m", f"--runtime={seconds}", "--time_based", "--output-format=terse",
                          "--terse-version=3"], capture_output=True, text=True, check=True).stdout
    fields = out.strip().split(";")
    return float(fields[7])  # read IOPS


def per_io_cost(binary, root, path, seconds):
    print(f"\n== 2. per-IO cost: fio 4k random O_DIRECT reads on a volume, {seconds} s per run")
    fio_run(path, 2)  # warm the file's extents
    print(f"  no agent: {fio_run(path, seconds):.0f} IOPS")
    for label, flags in (("blockio alone", ["--no-collector.volumes"]), ("blockio + volumes", [])):
        agent = Agent(binary, root, *flags)
        try:
            time.sleep(3)
            with Stats():
                before, c0 = agent.metrics(), cpu_seconds(agent.proc.pid)
                iops = fio_run(path, seconds)
                time.sleep(1.2)
                after, c1 = agent.metrics(), cpu_seconds(agent.proc.pid)
            progs = prog_ns(before, after, "blockio")
            ios = progs.get("btf_complete", progs.get("raw_complete", (0, 0)))[0]
            per_io = sum(ns * runs for runs, ns in progs.values()) / ios if ios else float("nan")
            detail = ", ".join(f"{p} {ns:.0f} ns" for p, (runs, ns) in sorted(progs.items()))
            print(f"  {label:18s}: {iops:.0f} IOPS; BPF {per_io:.0f} ns per IO ({detail}); agent CPU "
                  f"{(c1 - c0) / (seconds + 1.2) * 1e3:.1f} ms/s (all collectors)")
        finally:
            agent.stop()


def syscall_rate():
    out = subprocess.run(["perf", "bench", "syscall", "basic", "-l", "3000000"], capture_output=True, text=True,
                         check=True).stdout
    return float(re.search(r"([\d.]+) usecs/op", out).group(1)) * 1e3


def syscall_tax(binary, root, volume_path):
    print("\n== 3. fslatency's tax on every system call: perf bench syscall basic (3M getppid), median of 5")

    def measure(label, agent=None):
        # The call's cost with bpf_stats off (its own clock reads cost too);
        # then a short run with it on, for the programs' time per run.
        ns = statistics.median(syscall_rate() for _ in range(5))
        extra = ""
        if agent:
            before = agent.metrics()
            with Stats():
                syscall_rate()
            progs = prog_ns(before, agent.metrics(), "fslatency")
            extra = "; " + (", ".join(f"{p} {v:.0f} ns/run" for p, (r, v) in sorted(progs.items())) or "not attached")
        print(f"  {label:34s}: {ns:.1f} ns per call{extra}")
        return ns

    base = measure("no agent")
    agent = Agent(binary, root)
    try:
        time.sleep(3)
        detached = measure("agent, no FUSE volume (detached)", agent)
        src = f"{root}/mnt/fuse-src"
        os.makedirs(src, exist_ok=True)
        os.makedirs(root + volume_path, exist_ok=True)
        subprocess.run(["bindfs", src, root + volume_path], check=True)
        try:
            write_mountinfo(root)
            time.sleep(3)
            attached = measure("agent, a FUSE volume (attached)", agent)
        finally:
            subprocess.run(["umount", root + volume_path])
            write_mountinfo(root)
    finally:
        agent.stop()
    print(f"  added per system call: detached {detached - base:+.1f} ns, attached {attached - base:+.1f} ns "
          f"({(attached / base - 1) * 100:+.0f}%)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", default=os.path.join(HERE, "..", "build", "nodeperf"))
    ap.add_argument("--volumes", type=int, default=200)
    ap.add_argument("--seconds", type=int, default=10)
    args = ap.parse_args()
    if os.geteuid() != 0:
        sys.exit("volume_bench.py: needs root (mounts, loop devices, BPF)")
    cg_root = cgroup2_root()
    private_namespace()
    tmp = tempfile.mkdtemp(prefix="nodeperf-volbench-")
    root = f"{tmp}/root"
    os.makedirs(f"{root}/proc/1")
    os.symlink("/sys", f"{root}/sys")
    os.symlink("/proc/diskstats", f"{root}/proc/diskstats")
    base_cg = f"{cg_root}/nodeperf-volbench-{os.getpid()}" if cg_root else None
    loops, mounts, cgroups = [], [], []
    try:
        for d in range(4):
            loop = LoopDevice(tmp, size=128 << 20, name=f"d{d}")
            loops.append(loop)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", loop.path],
                           check=True, capture_output=True)
            os.makedirs(f"{root}/mnt/d{d}")
            subprocess.run(["mount", "-o", "noatime", loop.path, f"{root}/mnt/d{d}"], check=True)
            mounts.append(f"{root}/mnt/d{d}")
        pods, files = {}, []
        for i in range(args.volumes):
            uid = pod_uid(i // 4)
            src = f"{root}/mnt/d{i % 4}/v{i}"
            dst = f"{root}{KUBELET}/{uid}/volumes/kubernetes.io~local-volume/pv-{i}"
            os.makedirs(src)
            os.makedirs(dst)
            subprocess.run(["mount", "--bind", src, dst], check=True)
            mounts.append(dst)
            files.append(f"{dst}/data")
            if uid not in pods and base_cg:
                pods[uid] = f"{base_cg}/kubepods/burstable/pod{uid}"
        for f in files[:16]:
            with open(f, "wb") as out:
                out.write(os.urandom(4 << 20))
        if base_cg:
            for d in (base_cg, f"{base_cg}/kubepods", f"{base_cg}/kubepods/burstable", *pods.values()):
                os.mkdir(d)
                cgroups.append(d)
        os.sync()
        write_mountinfo(root)
        tick_cost(args.bin, root, pods, files, args.seconds)
        per_io_cost(args.bin, root, files[0], args.seconds)
        syscall_tax(args.bin, root, f"{KUBELET}/{pod_uid(999)}/volumes/kubernetes.io~csi/pv-fuse/mount")
    finally:
        for m in reversed(mounts):
            subprocess.run(["umount", "-l", m])
        for loop in loops:
            loop.close()
        remove_cgroups(cgroups)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
