#!/usr/bin/env python3
"""Scrape benchmark: nodeperf against Debian's node_exporter, side by side.

Starts, on loopback ports and in the same run:
  * nodeperf (its default collectors and 1 s tick unless --nodeperf-arg says otherwise),
  * node_exporter with its default collectors (the realistic peer),
  * node_exporter restricted to the collectors nodeperf has (the like-for-like peer),
then measures, for each and as a ratio nodeperf / node_exporter:
  1. scrape latency (median, p99) over N back-to-back scrapes on one keep-alive
     connection, plain and with Accept-Encoding: gzip; also "paced" scrapes, one
     per nodeperf tick, so that every nodeperf scrape renders a fresh snapshot
     (what Prometheus, scraping every 15 s, actually gets);
  2. bytes per scrape (plain and gzip) and series count (non-comment lines);
  3. CPU per scrape (utime+stime from /proc/PID/stat, and the nanosecond sum of
     /proc/PID/task/*/schedstat, before and after the scrapes, divided by N);
     for nodeperf the cost of its own ticks over the same wall time is subtracted;
  4. idle CPU over a window (default 60 s) with one gzip scrape every 15 s;
  5. RSS (VmRSS, VmHWM from /proc/PID/status) at the end of the run.

Python 3 standard library only. It prints figures; it never passes or fails on
them. Exit status is non-zero only if something could not be measured.
"""

import argparse
import datetime
import gc
import gzip
import http.client
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")
SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(SCRIPT_DIR)

# The node_exporter collectors that cover what nodeperf's /proc collectors
# collect (nodeperf's cpu collector also reads what node_exporter's stat
# collector exports).
SAME_COLLECTORS = ["cpu", "stat", "loadavg", "meminfo", "vmstat", "pressure", "diskstats", "netdev", "netstat"]
# nodeperf's collectors that read /proc and have a node_exporter counterpart
# (process: both export process_* about themselves). Any other collector of
# the binary (its eBPF probes) has none; the like-for-like nodeperf runs
# without them.
NODEPERF_PROC_COLLECTORS = {"cpu", "diskstats", "loadavg", "meminfo", "netdev", "netstat", "pressure", "process",
                            "vmstat"}

IDLE_SCRAPE_EVERY = 15.0  # seconds, Prometheus' default scrape interval
START_TIMEOUT = 20.0      # seconds to wait for a process to serve
HTTP_TIMEOUT = 30.0       # seconds per HTTP operation
WARMUP_SCRAPES = 5        # per target and encoding, not measured


class BenchError(Exception):
    pass


# ---------------------------------------------------------------- /proc readers

def stat_ticks(pid):
    """utime + stime of the whole process, in clock ticks (/proc/PID/stat)."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # fields 14 and 15 of proc(5)


def sched_ns(pid):
    """On-CPU time of every live thread, in ns (sum of /proc/PID/task/*/schedstat), or None."""
    total = 0
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except FileNotFoundError:
        return None
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except FileNotFoundError:
            continue  # the thread exited meanwhile
        except (OSError, ValueError, IndexError):
            return None  # no schedstat in this kernel
    return total


class Cpu:
    """A reading of both CPU counters of one process."""

    def __init__(self, pid):
        self.ticks = stat_ticks(pid)
        self.ns = sched_ns(pid)
        self.wall = time.monotonic()

    def since(self, before):
        """(seconds by /proc/PID/stat, seconds by schedstat or None, wall seconds)."""
        ns = None if self.ns is None or before.ns is None else (self.ns - before.ns) / 1e9
        return (self.ticks - before.ticks) / CLK_TCK, ns, self.wall - before.wall


def host_jiffies():
    """(busy, steal, total) jiffies of all CPUs, from the first line of /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]  # user nice system idle iowait irq softirq steal
    total = sum(v)
    return total - v[3] - v[4] - v[7], v[7], total


class HostLoad:
    """CPU used on the host by anything but the exporters and this script,
    between marks: other load disturbs every figure, latency most."""

    def __init__(self, pids):
        self.pids = pids
        self.marks = [("start", self._read())]

    def _read(self):
        t = os.times()
        return host_jiffies(), t.user + t.system, sum(stat_ticks(p) for p in self.pids) / CLK_TCK

    def mark(self, name):
        self.marks.append((name, self._read()))

    @staticmethod
    def between(a, b):
        (busy_a, steal_a, total_a), own_a, exp_a = a
        (busy_b, steal_b, total_b), own_b, exp_b = b
        span = max(1, total_b - total_a) / CLK_TCK  # CPU-seconds of all CPUs
        other = (busy_b - busy_a) / CLK_TCK - (exp_b - exp_a) - (own_b - own_a)
        return {"other_busy_pct": max(0.0, other) / span * 100, "steal_pct": (steal_b - steal_a) / CLK_TCK / span * 100,
                "client_cpu_s": own_b - own_a}

    def summary(self):
        out = {name: self.between(self.marks[i][1], m) for i, (name, m) in enumerate(self.marks[1:])}
        out["whole run"] = self.between(self.marks[0][1], self.marks[-1][1])
        return out


def other_load_pct(seconds):
    """Share of all CPUs busy over `seconds`, from /proc/stat (this script is idle meanwhile)."""
    a = host_jiffies()
    time.sleep(seconds)
    b = host_jiffies()
    return (b[0] - a[0]) / max(1, b[2] - a[2]) * 100


def wait_quiet(budget):
    """Wait up to `budget` seconds for other load under 10 % of all CPUs and for
    no tracing eBPF programs of other processes (they tax every context switch)."""
    begun = time.monotonic()
    said = -math.inf
    while True:
        busy = other_load_pct(5)  # includes our idle exporters, if any: well under 1 %
        probes = foreign_bpf_programs([]) or []
        waited = time.monotonic() - begun
        if busy < 10 and not probes:
            if waited > 6:
                print(f"  host quiet after {waited:.0f} s ({busy:.0f} % of all CPUs busy)")
            return
        why = f"{busy:.0f} % of all CPUs busy" + (f", {len(probes)} tracing eBPF programs loaded" if probes else "")
        if waited >= budget:
            print(f"  host still not quiet after {budget:g} s ({why}): going on anyway")
            return
        if waited - said >= 60:
            said = waited
            print(f"  waiting for a quiet host: {why}", flush=True)


TRACING_PROG_TYPES = {"kprobe", "tracepoint", "raw_tracepoint", "perf_event", "tracing", "raw_tracepoint_writable"}


def foreign_bpf_programs(our_pids):
    """Names of the tracing eBPF programs loaded on the host that none of
    `our_pids` holds, or None if bpftool is missing or not allowed."""
    exe = shutil.which("bpftool") or ("/usr/sbin/bpftool" if os.path.exists("/usr/sbin/bpftool") else None)
    if exe is None:
        return None
    try:
        out = subprocess.run([exe, "-j", "prog", "show"], capture_output=True, text=True, timeout=10)
        progs = json.loads(out.stdout or "null")
    except (OSError, subprocess.TimeoutExpired, ValueError):
        return None
    if not isinstance(progs, list):
        return None
    ours = set()
    for pid in our_pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fdinfo")
        except OSError:
            continue
        for fd in fds:
            try:
                with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                    m = re.search(r"^prog_id:\s*(\d+)", f.read(), re.M)
            except OSError:
                continue
            if m:
                ours.add(int(m.group(1)))
    return sorted(f"{p.get('name', '?')}#{p.get('id')}" for p in progs
                  if p.get("type") in TRACING_PROG_TYPES and p.get("id") not in ours)


def memory_kib(pid):
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            key, _, rest = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                out[key] = int(rest.split()[0])
    return out


# ---------------------------------------------------------------- processes

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_status(port, path):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            conn.request("GET", path)
            resp = conn.getresponse()
            resp.read()
            return resp.status
        finally:
            conn.close()
    except (OSError, http.client.HTTPException):
        return None


class Target:
    """One exporter process on a loopback port."""

    def __init__(self, key, label, argv, port=None, ready_path="/metrics"):
        self.key = key
        self.label = label
        self.argv = argv
        self.port = port
        self.tick = None  # seconds, nodeperf only
        self.log = tempfile.NamedTemporaryFile(prefix=f"scrape-bench-{key}-", suffix=".log", delete=False)
        try:
            self.proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                         stderr=self.log, start_new_session=True)
        except OSError as e:
            os.unlink(self.log.name)
            raise BenchError(f"cannot start {label}: {e}") from e
        self.pid = self.proc.pid
        self.conn = None
        self.ready_path = ready_path

    def log_text(self):
        with open(self.log.name, errors="replace") as f:
            return f.read()

    def wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError(f"{self.label} exited with {self.proc.returncode}:\n{self.log_text()[-2000:]}")
            if self.port is None:
                m = re.search(r"listening on [^ ]*:(\d+)(?: \(tick (\d+)ms)?", self.log_text())
                if m:
                    self.port = int(m.group(1))
                    if m.group(2):
                        self.tick = int(m.group(2)) / 1000
            if self.port is not None and http_status(self.port, self.ready_path) == 200:
                return
            time.sleep(0.05)
        raise BenchError(f"{self.label} did not become ready in {START_TIMEOUT:.0f} s:\n{self.log_text()[-2000:]}")

    # One keep-alive connection per target, as Prometheus keeps one per target.
    def connection(self):
        if self.conn is None:
            self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT)
        return self.conn

    def scrape(self, gz, path="/metrics"):
        """(seconds from request sent to full body read, body, content-encoding)."""
        headers = {"User-Agent": "nodeperf-scrape-bench"}
        if gz:
            headers["Accept-Encoding"] = "gzip"
        for attempt in (1, 2):  # a server may close an idle keep-alive connection: reconnect once
            conn = self.connection()
            try:
                start = time.perf_counter()
                conn.request("GET", path, headers=headers)
                resp = conn.getresponse()
                body = resp.read()
                elapsed = time.perf_counter() - start
            except (ConnectionError, http.client.RemoteDisconnected, http.client.CannotSendRequest,
                    http.client.BadStatusLine):
                conn.close()
                self.conn = None
                if attempt == 2:
                    raise
                continue
            if resp.status != 200:
                raise BenchError(f"{self.label}: GET {path} returned {resp.status}")
            if resp.will_close:
                conn.close()
                self.conn = None
            return elapsed, body, resp.getheader("Content-Encoding", "")
        raise AssertionError("unreachable")

    def stop(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            os.unlink(self.log.name)
        except OSError:
            pass


# ---------------------------------------------------------------- statistics

def percentile(sorted_values, p):
    """Nearest-rank percentile of an already sorted list."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(p / 100 * len(sorted_values)))
    return sorted_values[rank - 1]


def latency_summary(latencies):
    s = sorted(latencies)
    return {
        "n": len(s),
        "min_ms": s[0] * 1e3,
        "median_ms": statistics.median(s) * 1e3,
        "p90_ms": percentile(s, 90) * 1e3,
        "p99_ms": percentile(s, 99) * 1e3,
        "max_ms": s[-1] * 1e3,
        "mean_ms": statistics.fmean(s) * 1e3,
    }


def series_count(text):
    return sum(1 for line in text.splitlines() if line and not line.startswith("#"))


# ---------------------------------------------------------------- phases

def burst(target, gz, n, path="/metrics"):
    """N back-to-back scrapes on one keep-alive connection."""
    latencies = []
    before = Cpu(target.pid)
    for _ in range(n):
        elapsed, _, _ = target.scrape(gz, path)
        latencies.append(elapsed)
    after = Cpu(target.pid)
    cpu_stat, cpu_ns, wall = after.since(before)
    return {"latency": latency_summary(latencies), "cpu_stat_s": cpu_stat, "cpu_sched_s": cpu_ns,
            "wall_s": wall, "scrapes": n}


def paced(targets, gz, m, interval, path="/metrics"):
    """M rounds, one every `interval` seconds (longer than a nodeperf tick), each
    scraping every target once: every nodeperf scrape meets a snapshot not yet
    rendered, as a Prometheus scrape every 15 s does. The order rotates from
    round to round, so that no target always gets the client just woken up.
    Besides the CPU of the whole loop, each scrape is bracketed by schedstat
    readings of its server: for nodeperf that leaves its ticks out without
    subtracting an estimate (a tick falls inside a bracket about once in 100)."""
    lat = {t.key: [] for t in targets}
    brackets = {t.key: [] for t in targets}
    before = {t.key: Cpu(t.pid) for t in targets}
    start = time.monotonic()
    for i in range(m):
        delay = start + (i + 1) * interval - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for j in range(len(targets)):
            t = targets[(i + j) % len(targets)]
            b = sched_ns(t.pid)
            elapsed, _, _ = t.scrape(gz, path)
            lat[t.key].append(elapsed)
            time.sleep(0.003)  # let the server block again, so its schedstat is up to date
            a = sched_ns(t.pid)
            if a is not None and b is not None:
                brackets[t.key].append((a - b) / 1e6)
    out = {}
    for t in targets:
        cpu_stat, cpu_ns, wall = Cpu(t.pid).since(before[t.key])
        out[t.key] = {"latency": latency_summary(lat[t.key]), "cpu_stat_s": cpu_stat, "cpu_sched_s": cpu_ns,
                      "wall_s": wall, "scrapes": m, "interval_s": interval}
        if brackets[t.key]:
            out[t.key]["bracket_cpu_ms_median"] = statistics.median(brackets[t.key])
            out[t.key]["bracket_cpu_ms_mean"] = statistics.fmean(brackets[t.key])
            out[t.key]["bracket_cpu_ms_max"] = max(brackets[t.key])
    return out


def idle(targets, seconds):
    """A window of `seconds` with one gzip scrape of each target every 15 s.
    Each of those scrapes is bracketed by schedstat readings, so that nodeperf's
    tick cost alone is the window's CPU less what its scrapes took."""
    before = {t.key: Cpu(t.pid) for t in targets}
    scrape_ns = {t.key: 0 for t in targets}
    scrape_lat = {t.key: [] for t in targets}
    start = time.monotonic()
    k = 0
    while k * IDLE_SCRAPE_EVERY < seconds:
        delay = start + k * IDLE_SCRAPE_EVERY - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        for t in targets:
            b = sched_ns(t.pid)
            elapsed, _, _ = t.scrape(True)
            time.sleep(0.005)  # let the server block again, so its schedstat is up to date
            a = sched_ns(t.pid)
            if a is not None and b is not None:
                scrape_ns[t.key] += a - b
            scrape_lat[t.key].append(elapsed)
        k += 1
    delay = start + seconds - time.monotonic()
    if delay > 0:
        time.sleep(delay)
    out = {}
    for t in targets:
        cpu_stat, cpu_ns, wall = Cpu(t.pid).since(before[t.key])
        r = {"wall_s": wall, "scrapes": k, "cpu_stat_s": cpu_stat, "cpu_sched_s": cpu_ns,
             "scrape_latency": latency_summary(scrape_lat[t.key])}
        r["cpu_stat_s_per_min"] = cpu_stat / wall * 60
        r["core_pct_stat"] = cpu_stat / wall * 100
        if cpu_ns is not None:
            r["cpu_sched_s_per_min"] = cpu_ns / wall * 60
            r["core_pct_sched"] = cpu_ns / wall * 100
            r["scrape_cpu_sched_s"] = scrape_ns[t.key] / 1e9
            # What is left without the bracketed scrapes: the background (for
            # nodeperf, its ticks).
            r["background_sched_s_per_s"] = max(0.0, cpu_ns - scrape_ns[t.key] / 1e9) / wall
        out[t.key] = r
    return out


# ---------------------------------------------------------------- reporting

def fmt(v, digits=3):
    if v is None:
        return "n/a"
    if v == 0:
        return "0"
    if abs(v) >= 100:
        return f"{v:.0f}"
    if abs(v) >= 10:
        return f"{v:.1f}"
    return f"{v:.{digits}g}" if abs(v) < 0.01 else f"{v:.{digits}f}".rstrip("0").rstrip(".")


def fmt_ratio(a, b):
    if a is None or b is None or a < 0 or b <= 0:
        return "n/a"
    r = a / b
    if r == 0:
        return "0"
    if r < 1:
        return f"{r:.3f} (1/{1 / r:.0f})" if r < 0.1 else f"{r:.2f} (1/{1 / r:.1f})"
    return f"{r:.2f}"


def print_table(title, rows, pairs, labels):
    """rows: [(row name, {key: value}, unit)]; pairs: [(nodeperf key, node_exporter key)],
    each printed as two columns and their ratio nodeperf / node_exporter."""
    head = [""]
    for a, b in pairs:
        head += [labels[a], labels[b], "ratio"]
    table = [head]
    for name, values, unit in rows:
        line = [f"{name} [{unit}]" if unit else name]
        for a, b in pairs:
            line += [fmt(values.get(a)), fmt(values.get(b)), fmt_ratio(values.get(a), values.get(b))]
        table.append(line)
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    print(f"\n{title}")
    for i, r in enumerate(table):
        cells = [c.ljust(widths[j]) if j == 0 else c.rjust(widths[j]) for j, c in enumerate(r)]
        # a wider gap between the pairs
        print("  " + "  ".join(cells[:4]) + "".join(("    " if j == 4 else "  ") + c for j, c in enumerate(cells[4:], 4)))
        if i == 0:
            dashes = ["-" * w for w in widths]
            print("  " + "  ".join(dashes[:4]) + "".join(("    " if j == 4 else "  ") + d for j, d in enumerate(dashes[4:], 4)))


def nodeperf_collectors(exe):
    """Collector names from 'nodeperf agent --help' (its --[no-]collector.NAME flags)."""
    try:
        out = subprocess.run([exe, "agent", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    return re.findall(r"--\[no-\]collector\.([a-z0-9_]+)\b", out)


def version_of(argv):
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        return (out.stdout + out.stderr).strip().splitlines()[0]
    except (OSError, subprocess.TimeoutExpired, IndexError):
        return "unknown"


def cpu_model():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def os_name():
    try:
        with open("/etc/os-release") as f:
            m = re.search(r'^PRETTY_NAME="?([^"\n]*)', f.read(), re.M)
            if m:
                return m.group(1)
    except OSError:
        pass
    return platform.system()


# ---------------------------------------------------------------- main

def parse_args():
    p = argparse.ArgumentParser(description="Scrape benchmark: nodeperf vs node_exporter on loopback.")
    p.add_argument("--scrapes", type=int, default=300, metavar="N",
                   help="back-to-back scrapes per target and encoding (default 300)")
    p.add_argument("--paced-scrapes", type=int, default=20, metavar="M",
                   help="paced scrapes per encoding, one per nodeperf tick + 100 ms (default 20; 0 skips)")
    p.add_argument("--idle-seconds", type=float, default=60, metavar="S",
                   help="idle window, one scrape every 15 s (default 60)")
    p.add_argument("--nodeperf", default=os.path.join(REPO_DIR, "build", "nodeperf"), metavar="PATH",
                   help="nodeperf binary (default build/nodeperf)")
    p.add_argument("--nodeperf-arg", action="append", default=[], metavar="FLAG",
                   help="extra flag for 'nodeperf agent', repeatable (e.g. --nodeperf-arg=--tick=5s)")
    p.add_argument("--node-exporter", default=shutil.which("prometheus-node-exporter") or "prometheus-node-exporter",
                   metavar="PATH", help="node_exporter binary (default prometheus-node-exporter on PATH)")
    p.add_argument("--no-restricted", action="store_true",
                   help="skip the like-for-like pair (node_exporter restricted to nodeperf's /proc collectors, "
                        "and nodeperf without its eBPF collectors)")
    p.add_argument("--wait-quiet", type=float, default=0, metavar="S",
                   help="before measuring, wait up to S seconds for other load to drop under 10 %% of all CPUs")
    p.add_argument("--json", nargs="?", const="-", metavar="FILE",
                   help="also write machine-readable results to FILE (or stdout if no FILE)")
    a = p.parse_args()
    if not 1 <= a.scrapes <= 1_000_000:
        p.error("--scrapes must be between 1 and 1000000")
    if not 0 <= a.paced_scrapes <= 10_000:
        p.error("--paced-scrapes must be between 0 and 10000")
    if not 0 <= a.wait_quiet <= 86_400:
        p.error("--wait-quiet must be between 0 and 86400")
    if not 1 <= a.idle_seconds <= 86_400:
        p.error("--idle-seconds must be between 1 and 86400")
    return a


def main():
    args = parse_args()
    for exe in (args.nodeperf, args.node_exporter):
        if not (os.path.isfile(exe) and os.access(exe, os.X_OK)):
            print(f"scrape_bench: {exe}: not an executable file", file=sys.stderr)
            return 2

    # SIGTERM should run the finally blocks (and so stop the exporters) too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    now = datetime.datetime.now(datetime.timezone.utc).astimezone()
    info = {
        "date": now.isoformat(timespec="seconds"),
        "host": {"os": os_name(), "kernel": platform.release(), "cpus": os.cpu_count(), "cpu_model": cpu_model(),
                 "clk_tck": CLK_TCK, "python": platform.python_version()},
        "nodeperf": {"path": args.nodeperf, "version": version_of([args.nodeperf, "version"]),
                     "args": args.nodeperf_arg},
        "node_exporter": {"path": args.node_exporter, "version": version_of([args.node_exporter, "--version"])},
        "params": {"scrapes": args.scrapes, "paced_scrapes": args.paced_scrapes, "idle_seconds": args.idle_seconds,
                   "idle_scrape_every_s": IDLE_SCRAPE_EVERY, "warmup_scrapes": WARMUP_SCRAPES},
    }
    print(f"scrape_bench  {info['date']}")
    print(f"  host: {info['host']['os']}, kernel {info['host']['kernel']}, {info['host']['cpus']} CPUs "
          f"({info['host']['cpu_model']}), CLK_TCK {CLK_TCK}")
    print(f"  nodeperf: {info['nodeperf']['version']}  {' '.join(args.nodeperf_arg)}")
    print(f"  node_exporter: {info['node_exporter']['version']}")
    print(f"  scrapes {args.scrapes} back-to-back, {args.paced_scrapes} paced, per encoding; "
          f"idle window {args.idle_seconds:g} s with a scrape every {IDLE_SCRAPE_EVERY:g} s")

    # Pairs compared: nodeperf and node_exporter each with their defaults (the
    # deployment question), and the like-for-like pair: node_exporter with the
    # collectors matching nodeperf's /proc ones, against nodeperf without the
    # collectors node_exporter has no counterpart for (its eBPF probes), if any.
    # eBPF probes on the scheduler and the network stack make every process on
    # the host pay a little per event, so when nodeperf has any, the pairs run
    # one after the other: first the like-for-like pair, with no probe loaded,
    # then the defaults. Without any, one group of three.
    extra = [c for c in nodeperf_collectors(args.nodeperf) if c not in NODEPERF_PROC_COLLECTORS]
    info["nodeperf"]["collectors_without_counterpart"] = extra
    np_argv = [args.nodeperf, "agent", "--web.listen-address=127.0.0.1:0"]
    spec = {
        "nodeperf": ("nodeperf (defaults)", [*np_argv, *args.nodeperf_arg], "/readyz"),
        "nodeperf_proc": ("nodeperf (/proc collectors only)",
                          [*np_argv, *(f"--no-collector.{c}" for c in extra), *args.nodeperf_arg], "/readyz"),
        "ne": ("node_exporter (defaults)", [args.node_exporter], "/metrics"),
        "ne_same": ("node_exporter (same collectors)",
                    [args.node_exporter, "--collector.disable-defaults",
                     *(f"--collector.{c}" for c in SAME_COLLECTORS)], "/metrics"),
    }
    if args.no_restricted:
        pairs, groups = [("nodeperf", "ne")], [["nodeperf", "ne"]]
    elif extra:
        pairs = [("nodeperf", "ne"), ("nodeperf_proc", "ne_same")]
        groups = [["nodeperf_proc", "ne_same"], ["nodeperf", "ne"]]
    else:
        pairs, groups = [("nodeperf", "ne"), ("nodeperf", "ne_same")], [["nodeperf", "ne", "ne_same"]]
    floor_key = groups[0][0]  # the floor is measured on the first group's nodeperf
    labels = {"nodeperf": "nodeperf", "nodeperf_proc": "nodeperf /proc", "ne": "node_exp default",
              "ne_same": "node_exp same-coll"}
    info["pairs"], info["groups"], info["floor_on"] = pairs, groups, floor_key

    results = {}
    info["host_load"] = {}
    info["foreign_bpf"] = {}
    tick = 1.0
    interval = tick + 0.1
    for gi, group in enumerate(groups, 1):
        if len(groups) > 1:
            print(f"\ngroup {gi}/{len(groups)}: {', '.join(spec[k][0] for k in group)}")
        if args.wait_quiet:
            wait_quiet(args.wait_quiet)
        before_bpf = foreign_bpf_programs([])
        targets = []
        try:
            for key in group:
                label, argv, ready = spec[key]
                port = None
                if key.startswith("ne"):
                    port = free_port()
                    argv = [argv[0], f"--web.listen-address=127.0.0.1:{port}", *argv[1:]]
                targets.append(Target(key, label, argv, port=port, ready_path=ready))
            for t in targets:
                t.wait_ready()
            np_target = targets[0]
            tick = np_target.tick or 1.0
            interval = tick + 0.1
            for t in targets:
                print(f"  {t.label}: pid {t.pid}, port {t.port}: {' '.join(t.argv[1:])}")
            load = os.getloadavg()
            print(f"  load average: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
            host = HostLoad([t.pid for t in targets])
            for t in targets:
                results[t.key] = {"label": t.label, "pid": t.pid, "argv": t.argv}

            # Warm-up (not measured) and what one scrape looks like.
            for t in targets:
                for gz in (False, True):
                    for _ in range(WARMUP_SCRAPES):
                        _, body, enc = t.scrape(gz)
                    if gz:
                        if enc != "gzip":
                            raise BenchError(f"{t.label} did not gzip (Content-Encoding {enc!r})")
                        results[t.key]["bytes_gzip"] = len(body)
                        results[t.key]["series_gzip_body"] = series_count(gzip.decompress(body).decode())
                    else:
                        results[t.key]["bytes_plain"] = len(body)
                        results[t.key]["series"] = series_count(body.decode())

            gc.disable()  # no Python collector pauses inside the timed loops
            host.mark("warm-up")
            print("running: back-to-back scrapes ...", flush=True)
            if np_target.key == floor_key:
                # The floor of client, loopback and wake-ups: nodeperf's tiny
                # /healthz over the same kind of connection.
                results[floor_key]["burst_floor"] = burst(np_target, False, args.scrapes, "/healthz")
            for t in targets:
                results[t.key]["burst_plain"] = burst(t, False, args.scrapes)
                results[t.key]["burst_gzip"] = burst(t, True, args.scrapes)
            host.mark("back-to-back")

            if args.paced_scrapes:
                print(f"running: paced scrapes, one round every {interval:g} s "
                      f"(~{2 * args.paced_scrapes * interval:.0f} s) ...", flush=True)
                for gz, name in ((False, "paced_plain"), (True, "paced_gzip")):
                    for key, r in paced(targets, gz, args.paced_scrapes, interval).items():
                        results[key][name] = r
                if np_target.key == floor_key:
                    print(f"running: paced floor, nodeperf /healthz (~{args.paced_scrapes * interval:.0f} s) ...",
                          flush=True)
                    results[floor_key]["paced_floor"] = paced([np_target], False, args.paced_scrapes, interval,
                                                              "/healthz")[floor_key]
                host.mark("paced")

            print(f"running: idle window of {args.idle_seconds:g} s ...", flush=True)
            for key, r in idle(targets, args.idle_seconds).items():
                results[key]["idle"] = r
            host.mark("idle")

            ours = [t.pid for t in targets if t.key.startswith("nodeperf")]
            after_bpf = foreign_bpf_programs(ours)
            for t in targets:
                mem = memory_kib(t.pid)
                results[t.key]["vmrss_mib"] = mem.get("VmRSS", 0) / 1024
                results[t.key]["vmhwm_mib"] = mem.get("VmHWM", 0) / 1024
                results[t.key]["threads"] = len(os.listdir(f"/proc/{t.pid}/task"))
                results[t.key]["lifetime_cpu_stat_s"] = stat_ticks(t.pid) / CLK_TCK
                ns = sched_ns(t.pid)
                results[t.key]["lifetime_cpu_sched_s"] = None if ns is None else ns / 1e9
            gc.enable()
            prefix = f"group {gi} " if len(groups) > 1 else ""
            for name, h in host.summary().items():
                info["host_load"][prefix + name] = h
            info["foreign_bpf"][f"group {gi}"] = {"before": before_bpf, "after": after_bpf}
        finally:
            for t in targets:
                try:
                    t.stop()
                except Exception as e:  # keep stopping the others
                    print(f"scrape_bench: stopping {t.label}: {e}", file=sys.stderr)

    # ------------------------------------------------ derived figures
    rates = {}
    for key, r in results.items():
        if not key.startswith("nodeperf"):
            continue
        ri = r["idle"]
        # Idle cost of nodeperf per second of wall time, as measured in the idle
        # window (its scrapes every 15 s included): subtracted from the
        # back-to-back scrape CPU. Ticks alone (the window less its bracketed
        # scrapes): subtracted from the paced scrape CPU, where the window's
        # own scrapes would otherwise count twice.
        stat_rate = ri["cpu_stat_s"] / ri["wall_s"]
        sched_rate = None if ri["cpu_sched_s"] is None else ri["cpu_sched_s"] / ri["wall_s"]
        tick_rate = ri.get("background_sched_s_per_s")
        rates[key] = {"idle_rate_stat_s_per_s": stat_rate, "idle_rate_sched_s_per_s": sched_rate,
                      "tick_only_sched_s_per_s": tick_rate}
    info["nodeperf_tick_s"] = tick
    info["nodeperf_subtracted_rates"] = rates
    for key, r in results.items():
        for phase in ("burst_plain", "burst_gzip", "burst_floor", "paced_plain", "paced_gzip", "paced_floor"):
            p = r.get(phase)
            if not p:
                continue
            sub_stat = sub_sched = 0.0
            if key in rates:
                rt = rates[key]
                if phase.startswith("burst"):
                    sub_stat = rt["idle_rate_stat_s_per_s"] * p["wall_s"]
                    sub_sched = (rt["idle_rate_sched_s_per_s"] or 0) * p["wall_s"]
                else:
                    tr = rt["tick_only_sched_s_per_s"]
                    tr = tr if tr is not None else rt["idle_rate_stat_s_per_s"]
                    sub_stat, sub_sched = tr * p["wall_s"], tr * p["wall_s"]
            p["subtracted_stat_s"], p["subtracted_sched_s"] = sub_stat, sub_sched
            p["cpu_ms_per_scrape_stat"] = (p["cpu_stat_s"] - sub_stat) / p["scrapes"] * 1e3
            p["cpu_ms_per_scrape_sched"] = (None if p["cpu_sched_s"] is None
                                            else (p["cpu_sched_s"] - sub_sched) / p["scrapes"] * 1e3)

    # ------------------------------------------------ report
    keys = list(results)

    def col(fn):
        out = {}
        for k in keys:
            try:
                out[k] = fn(results[k])
            except (KeyError, TypeError):
                out[k] = None
        return out

    rows = [
        ("median latency, plain", col(lambda r: r["burst_plain"]["latency"]["median_ms"]), "ms"),
        ("p99 latency, plain", col(lambda r: r["burst_plain"]["latency"]["p99_ms"]), "ms"),
        ("median latency, gzip", col(lambda r: r["burst_gzip"]["latency"]["median_ms"]), "ms"),
        ("p99 latency, gzip", col(lambda r: r["burst_gzip"]["latency"]["p99_ms"]), "ms"),
        ("CPU/scrape plain, stat", col(lambda r: r["burst_plain"]["cpu_ms_per_scrape_stat"]), "ms"),
        ("CPU/scrape plain, schedstat", col(lambda r: r["burst_plain"]["cpu_ms_per_scrape_sched"]), "ms"),
        ("CPU/scrape gzip, stat", col(lambda r: r["burst_gzip"]["cpu_ms_per_scrape_stat"]), "ms"),
        ("CPU/scrape gzip, schedstat", col(lambda r: r["burst_gzip"]["cpu_ms_per_scrape_sched"]), "ms"),
    ]
    print_table(f"1, 3. Back-to-back scrapes: {args.scrapes} per encoding, one keep-alive connection "
                f"(nodeperf serves its cached body for all but the first of each tick)", rows, pairs, labels)

    if args.paced_scrapes:
        rows = [
            ("median latency, plain", col(lambda r: r["paced_plain"]["latency"]["median_ms"]), "ms"),
            ("p99 latency, plain", col(lambda r: r["paced_plain"]["latency"]["p99_ms"]), "ms"),
            ("median latency, gzip", col(lambda r: r["paced_gzip"]["latency"]["median_ms"]), "ms"),
            ("p99 latency, gzip", col(lambda r: r["paced_gzip"]["latency"]["p99_ms"]), "ms"),
            ("CPU/scrape plain, stat", col(lambda r: r["paced_plain"]["cpu_ms_per_scrape_stat"]), "ms"),
            ("CPU/scrape plain, schedstat", col(lambda r: r["paced_plain"]["cpu_ms_per_scrape_sched"]), "ms"),
            ("CPU/scrape plain, brackets median", col(lambda r: r["paced_plain"]["bracket_cpu_ms_median"]), "ms"),
            ("CPU/scrape gzip, stat", col(lambda r: r["paced_gzip"]["cpu_ms_per_scrape_stat"]), "ms"),
            ("CPU/scrape gzip, schedstat", col(lambda r: r["paced_gzip"]["cpu_ms_per_scrape_sched"]), "ms"),
            ("CPU/scrape gzip, brackets median", col(lambda r: r["paced_gzip"]["bracket_cpu_ms_median"]), "ms"),
        ]
        print_table(f"1, 3. Paced scrapes: {args.paced_scrapes} per encoding, one every {interval:g} s "
                    f"(every nodeperf scrape renders a new snapshot, as with Prometheus)", rows, pairs, labels)

    rows = [
        ("bytes/scrape, plain", col(lambda r: r["bytes_plain"]), "B"),
        ("bytes/scrape, gzip", col(lambda r: r["bytes_gzip"]), "B"),
        ("series (non-comment lines)", col(lambda r: r["series"]), ""),
    ]
    print_table("2. Size", rows, pairs, labels)

    rows = [
        ("idle CPU, stat", col(lambda r: r["idle"]["cpu_stat_s_per_min"]), "s/min"),
        ("idle CPU, stat", col(lambda r: r["idle"]["core_pct_stat"]), "% core"),
        ("idle CPU, schedstat", col(lambda r: r["idle"]["cpu_sched_s_per_min"]), "s/min"),
        ("idle CPU, schedstat", col(lambda r: r["idle"]["core_pct_sched"]), "% core"),
        ("  of which between scrapes", col(lambda r: r["idle"]["background_sched_s_per_s"] * 100), "% core"),
        ("latency of these scrapes, median", col(lambda r: r["idle"]["scrape_latency"]["median_ms"]), "ms"),
    ]
    print_table(f"4. Idle: {args.idle_seconds:g} s window, one gzip scrape every {IDLE_SCRAPE_EVERY:g} s "
                f"({results['nodeperf']['idle']['scrapes']} scrapes)", rows, pairs, labels)

    rows = [
        ("VmRSS", col(lambda r: r["vmrss_mib"]), "MiB"),
        ("VmHWM", col(lambda r: r["vmhwm_mib"]), "MiB"),
        ("threads", col(lambda r: r["threads"]), ""),
    ]
    print_table("5. Memory at the end of the run", rows, pairs, labels)

    bf, pf = results[floor_key]["burst_floor"], results[floor_key].get("paced_floor")
    print(f"\nFloor (client, loopback, wake-ups): {labels[floor_key]} GET /healthz, a 3-byte body, same client "
          f"and connection")
    print(f"  back-to-back: median {fmt(bf['latency']['median_ms'])} ms, p99 {fmt(bf['latency']['p99_ms'])} ms, "
          f"CPU/request {fmt(bf['cpu_ms_per_scrape_sched'])} ms")
    if pf:
        print(f"  paced:        median {fmt(pf['latency']['median_ms'])} ms, p99 {fmt(pf['latency']['p99_ms'])} ms, "
              f"CPU/request {fmt(pf.get('bracket_cpu_ms_median'))} ms (brackets median)")
    print("  Every latency above includes this floor; a ratio of latencies cannot go below floor / node_exporter.")

    print("\nReference targets (figures only; read them against the notes in bench/README.md)")
    phases = (("burst_plain", "back-to-back plain"), ("burst_gzip", "back-to-back gzip"),
              ("paced_plain", "paced plain"), ("paced_gzip", "paced gzip"))
    for a, b in pairs:
        for phase, what in phases:
            if phase in results[a] and phase in results[b]:
                x, y = results[a][phase]["latency"]["median_ms"], results[b][phase]["latency"]["median_ms"]
                print(f"  median latency, {what:18}  {labels[a]:>14} vs {labels[b]:18}: {y / x:5.1f}x lower"
                      f"   (target: 10x or more)")
    for a in dict.fromkeys(a for a, _ in pairs):
        r = results[a]
        for phase, what in phases[:2]:
            print(f"  CPU/scrape, {what:18}  {labels[a]:>14}: {fmt(r[phase]['cpu_ms_per_scrape_sched'])} ms schedstat,"
                  f" {fmt(r[phase]['cpu_ms_per_scrape_stat'])} ms stat   (target: under 1 ms)")
        for phase, what in phases[2:]:
            if phase in r:
                print(f"  CPU/scrape, {what:18}  {labels[a]:>14}: {fmt(r[phase].get('bracket_cpu_ms_median'))} ms "
                      f"brackets median, {fmt(r[phase]['cpu_ms_per_scrape_sched'])} ms schedstat whole loop"
                      f"   (target: under 1 ms)")
    for a, b in pairs:
        print(f"  VmRSS {labels[a]:>14} / {labels[b]:18}: {results[a]['vmrss_mib'] / results[b]['vmrss_mib']:.2f}"
              f"   (VmHWM {results[a]['vmhwm_mib'] / results[b]['vmhwm_mib']:.2f})   (target: under 0.5)")
    for a in dict.fromkeys(a for a, _ in pairs):
        print(f"  idle CPU {labels[a]:>14}: {fmt(results[a]['idle'].get('core_pct_sched'))} % of a core schedstat, "
              f"{fmt(results[a]['idle']['core_pct_stat'])} % stat   (target: under 0.1 %)")

    print(f"\nHost load: CPU used by other processes (not the exporters, not this client), % of all "
          f"{os.cpu_count()} CPUs; more than a few % disturbs the figures, latency most")
    print("  " + ", ".join(f"{name} {h['other_busy_pct']:.1f} % (steal {h['steal_pct']:.1f} %)"
                           for name, h in info["host_load"].items()))
    for g, fb in info["foreign_bpf"].items():
        if fb["before"] is None:
            print(f"  {g}: tracing eBPF programs of other processes: unknown (no bpftool, or not root)")
        elif fb["before"] or fb["after"]:
            print(f"  {g}: tracing eBPF programs of other processes (they tax every process): "
                  f"before {', '.join(fb['before']) or 'none'}; after {', '.join(fb['after'] or []) or 'none'}")
        else:
            print(f"  {g}: no tracing eBPF programs of other processes, before or after")

    print("\nNotes:")
    print("  * ratio = nodeperf / that node_exporter; 1/k means nodeperf's figure is k times smaller.")
    print(f"  * stat = utime+stime from /proc/PID/stat, in 1/{CLK_TCK} s ticks: one tick is "
          f"{1e3 / CLK_TCK / args.scrapes:.3g} ms per scrape over {args.scrapes} scrapes"
          + (f", {1e3 / CLK_TCK / args.paced_scrapes:.3g} ms over {args.paced_scrapes}" if args.paced_scrapes else "")
          + ", so small stat figures are quantisation (even negative); schedstat = ns sum of "
          "/proc/PID/task/*/schedstat.")
    for key, rt in rates.items():
        tr = rt["tick_only_sched_s_per_s"]
        print(f"  * {labels[key]}: back-to-back CPU/scrape has its idle rate subtracted "
              f"({fmt(rt['idle_rate_stat_s_per_s'] * 1e3)} ms/s stat, {fmt((rt['idle_rate_sched_s_per_s'] or 0) * 1e3)}"
              f" ms/s schedstat, from the idle window, 15 s scrapes included); paced whole-loop CPU/scrape has its "
              f"tick-only rate ({fmt((tr if tr is not None else rt['idle_rate_stat_s_per_s']) * 1e3)} ms/s) subtracted.")
    print("  * node_exporter works only when scraped: nothing subtracted. 'brackets median': the median of schedstat "
          "readings just before each paced request and 3 ms after its response (no subtraction; for node_exporter "
          "it misses garbage collection done later, so prefer the whole-loop figure there).")
    if len(groups) > 1:
        print("  * the pairs ran one after the other (like-for-like first, with no eBPF probe of nodeperf loaded), "
              "each pair side by side; figures of different pairs come from different minutes.")
    if "nodeperf_proc" in results:
        print(f"  * nodeperf /proc = nodeperf without {', '.join(extra)} (no node_exporter counterpart). Their "
              f"in-kernel (eBPF) work is charged to whatever task hits a probe, mostly other processes: little of it "
              f"is in nodeperf's figures.")

    results["_info"] = info
    if args.json:
        text = json.dumps(results, indent=2, sort_keys=True)
        if args.json == "-":
            print("\nJSON:")
            print(text)
        else:
            with open(args.json, "w") as f:
                f.write(text + "\n")
            print(f"\nJSON written to {args.json}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as e:
        print(f"scrape_bench: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
