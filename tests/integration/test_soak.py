#!/usr/bin/env python3
"""A soak (docs/hardening.md, "Soak"): the agent, with its default
collectors (eBPF and procfs/cgroupfs), under a mixed load for a bounded
time, while its RSS, file descriptors, threads and CPU are sampled; after
a warm-up, nothing may grow.

The load, all bounded in time (each part stops by itself at the end of the
soak, and is killed and cleaned up in `finally` if it does not):

  CPU       stress-ng --cpu 1 --cpu-load 50, in a test cgroup
  disk      fio: O_DIRECT 4 KiB random reads and writes (70/30) at 150 IOPS
            on a loop device over a sparse file (the loop device itself in
            direct-IO mode where the kernel allows it), in a test cgroup
  TCP       two network namespaces made by the test, joined by a veth pair
            (198.51.100.1 <-> .2, TEST-NET-2, inside the namespaces only):
            a client making 20 connections a second (16 KiB each way in
            and a short answer back), in a test cgroup
  cgroups   churn: about 8 cgroups a second created and removed under the
            test's own parent (every hierarchy the agent reads: the v2 one,
            and the v1 controllers on a hybrid host), living 0 to 3 s, up
            to 40 at once; a tenth with a child; some with a process: a
            sleep, a burst of O_DIRECT reads of the loop device (dd), or a
            burst of 10 TCP connections in the namespace pair, so the eBPF
            collectors' per-cgroup state churns too
  scrapes   a separate process at 10 requests a second: of every 10,
            5 plain /metrics on a new connection, 3 gzip /metrics on a
            kept-alive one, 1 /api/v1/snapshot, 1 /api/v1/history. Every
            /metrics body is parsed, and every counter, histogram bucket,
            _count and _sum in two consecutive ones must not go down

Sampled every 2 s (longer runs: duration / 200): VmRSS, Threads, fds (all,
and those that are not sockets), utime+stime; the agent's own
nodeperf_snapshot_series (from every parsed scrape) and its history's size
(/api/v1/history). The cgroups collector exports only the test's cgroups
(--collector.cgroups.include), so that others' cgroups on a shared host do
not move the series count. The first 30% of the run is the warm-up: the agent's
history (--history) and histogram window (--histogram.window) are sized to
fill in half of it (at most their defaults, 10 min and 60 s, reached in a
long run), since a cache filling is growth by design. After the warm-up:

  - RSS at the end <= the warm-up's highest + max(2 MiB, 10%);
  - the least-squares slope of RSS over the post-warm-up samples is below
    that margin spread over the post-warm-up span (printed per hour);
  - fds that are not sockets never above 1.25 x the warm-up's highest
    (the agent holds files of every live cgroup open, so they follow the
    churn); once the load has stopped, all fds no more than the warm-up's
    highest and those that are not sockets back to the start (+4);
    threads never above the warm-up's highest;
  - nodeperf_snapshot_series never above 1.5 x the warm-up's highest + 200
    (the churn is steady; a leak of series grows without bound), and once
    the load has stopped, no series of a churned cgroup;
  - the history never over its capacity;
  - the agent's CPU in the last third of the post-warm-up no more than
    twice the first third + 5% of a core;
  - every request answered 200, no counter went backwards, no warning or
    error line in the agent's log beyond ALLOWED_LOG, no BPF map drops
    after the warm-up, the agent alive and exiting 0 on SIGTERM; and the
    load really ran (fio's IOs, the client's connections, cgroups churned,
    the agent's disk counters of the loop device and, with the tcp
    collector up, its connect count rising).

Timings are printed, never asserted. Default 150 s of load, about 3 minutes
in all; NODEPERF_SOAK_SECONDS=3600 runs it for an hour (run the script
directly then: ctest's TIMEOUT for it is 300 s):

  sudo NODEPERF_BIN=build/nodeperf NODEPERF_SOAK_SECONDS=3600 \\
      python3 tests/integration/test_soak.py

Root only (cgroupfs, loop devices, network namespaces, BPF)."""

import gzip
import http.client
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bpfutil  # noqa: E402
import test_cgroup_churn as churn  # noqa: E402
from harness import Agent, Checks, http_get, parse_exposition, require_root, require_tool, series, skip  # noqa: E402
from test_faults import monotonic_keys, problem_lines  # noqa: E402

SOAK_SECONDS = float(os.environ.get("NODEPERF_SOAK_SECONDS", "150"))
WARMUP_FRACTION = 0.3
SAMPLE_EVERY = max(2.0, SOAK_SECONDS / 200)
SCRAPE_HZ = 10
# Of every 10 requests: what the scraper asks for.
SCRAPE_MIX = ("metrics", "gzip", "metrics", "snapshot", "metrics", "gzip", "metrics", "history", "metrics", "gzip")
MIB = 1 << 20
FD_SLACK = 4  # non-socket fds once the load has stopped, over the start
RSS_MARGIN_MIN = 2 * MIB
RSS_MARGIN_FRACTION = 0.10
# Warning/error lines the agent may log (none so far).
ALLOWED_LOG = ()

PID = os.getpid()
NS_A = f"np-soak-a-{PID}"  # clients
NS_B = f"np-soak-b-{PID}"  # server
DEV_A = f"npsa{PID}"
DEV_B = f"npsb{PID}"
ADDR_A = "198.51.100.1"
ADDR_B = "198.51.100.2"
PORT = 5001
TCP_RATE = 20  # connections per second of the long-lived client

CHURN_RATE = 8  # cgroups per second
CHURN_MAX_ALIVE = 40
CHURN_LIFETIMES = (0.0, 0.2, 0.5, 1.0, 2.0, 3.0)

SERVER = r'''
import socket, sys, time
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(256)
s.settimeout(0.5)
end = time.monotonic() + float(sys.argv[3])
print("READY", flush=True)
served = 0
while time.monotonic() < end:
    try:
        c, _ = s.accept()
    except socket.timeout:
        continue
    c.settimeout(5)
    try:
        while c.recv(65536):
            pass
        c.sendall(b"ok")
        served += 1
    except OSError:
        pass
    c.close()
print("SERVED", served, flush=True)
'''

CLIENT = r'''
import socket, sys, time
host, port, seconds, rate = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
payload = b"x" * 16384
end = time.monotonic() + seconds
due = time.monotonic()
done = errors = 0
while time.monotonic() < end:
    try:
        s = socket.create_connection((host, port), timeout=5)
        s.sendall(payload)
        s.shutdown(socket.SHUT_WR)
        while s.recv(65536):
            pass
        s.close()
        done += 1
    except OSError:
        errors += 1
    due += 1 / rate
    pause = due - time.monotonic()
    if pause > 0:
        time.sleep(pause)
    else:
        due = time.monotonic()
print("DONE", done, errors, flush=True)
'''

# Runs a command in cgroups: the shell writes its pid to every cgroup.procs
# file given in $1 (space separated), then execs the rest.
JOIN = 'for f in $1; do echo $$ > "$f" || exit 97; done; shift; exec "$@"'


def in_cgroups(procs_files, args, **kw):
    return subprocess.Popen(["sh", "-c", JOIN, "sh", " ".join(procs_files), *args], **kw)


def run(*cmd, timeout=20):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    return r.stdout


# --- the scraper (a process of its own: parsing 8 bodies a second in the
# test's own process would slow everything else in it) ------------------------

def foreign_device(labels, ours):
    """A loop device other than the test's: others on a shared host set them
    up and tear them down, and a new device under an old name starts its
    counters again (the kernel's, in /proc/diskstats and blkio/io.stat)."""
    dev = dict(labels).get("device", "")
    return re.fullmatch(r"loop\d+(p\d+)?", dev) is not None and dev != ours and not dev.startswith(ours + "p")


def scraper_main(url, seconds, out, own_loop):
    host, port = url.rsplit("/", 1)[-1].split(":")
    conn = None
    stats = {k: {"n": 0, "bytes": 0, "lat": []} for k in set(SCRAPE_MIX)}
    failures, backwards = [], []
    backwards_n = 0
    foreign = []  # counter resets of loop devices not the test's
    series_trace = {}  # whole second since start -> highest nodeperf_snapshot_series seen in it
    history_trace = []  # (seconds since start, count)
    prev = None
    late = 0
    start = time.monotonic()
    due = start
    i = 0

    def kept(path, headers):
        nonlocal conn
        for attempt in (0, 1):  # the agent may have closed an idle kept-alive connection
            try:
                if conn is None:
                    conn = http.client.HTTPConnection(host, int(port), timeout=10)
                conn.request("GET", path, headers=headers)
                r = conn.getresponse()
                return r.status, r.getheader("Content-Encoding"), r.read()
            except (OSError, http.client.HTTPException) as e:
                conn.close()
                conn = None
                if attempt:
                    return f"{type(e).__name__}: {e}", None, b""

    while time.monotonic() - start < seconds:
        kind = SCRAPE_MIX[i % len(SCRAPE_MIX)]
        i += 1
        t0 = time.monotonic()
        if kind == "metrics":
            status, headers, body = http_get(f"{url}/metrics", {"Accept-Encoding": "identity"}, timeout=10)
            encoding = headers.get("Content-Encoding")
        elif kind == "gzip":
            status, encoding, body = kept("/metrics", {"Accept-Encoding": "gzip"})
        elif kind == "snapshot":
            status, encoding, body = kept("/api/v1/snapshot", {})
        else:
            status, encoding, body = kept("/api/v1/history", {})
        lat = time.monotonic() - t0
        st = stats[kind]
        st["n"] += 1
        st["bytes"] += len(body)
        st["lat"].append(lat)
        try:
            if status != 200:
                raise ValueError(f"status {status}")
            if kind in ("metrics", "gzip"):
                if kind == "gzip":
                    if encoding != "gzip":
                        raise ValueError(f"Content-Encoding {encoding!r}")
                    body = gzip.decompress(body)
                elif encoding:
                    raise ValueError(f"Content-Encoding {encoding!r} without asking")
                text = body.decode()
                parsed = parse_exposition(text)
                keys = monotonic_keys(text, parsed)
                if prev is not None:
                    for k in keys:
                        if k in prev and parsed[k] < prev[k]:
                            if foreign_device(k[1], own_loop):
                                if len(foreign) < 10:
                                    foreign.append([k[0], dict(k[1]), prev[k], parsed[k]])
                                continue
                            backwards_n += 1
                            if len(backwards) < 10:
                                backwards.append([k[0], dict(k[1]), prev[k], parsed[k]])
                prev = {k: parsed[k] for k in keys}
                n = next(iter(series(parsed, "nodeperf_snapshot_series").values()), None)
                sec = int(t0 - start)
                if n is not None:
                    series_trace[sec] = max(series_trace.get(sec, 0), n)
            elif kind == "snapshot":
                if not json.loads(body).get("families"):
                    raise ValueError("no families in the snapshot")
            else:
                history_trace.append((round(t0 - start, 2), json.loads(body)["count"]))
        except Exception as e:  # a failed request is recorded, never the end of the scraper
            if len(failures) < 20:
                failures.append(f"{kind} at {t0 - start:.1f} s: {type(e).__name__}: {e}")
            else:
                failures.append("...")
        due += 1 / SCRAPE_HZ
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        elif pause < -1:  # over a second behind: skip the missed slots rather than bunching up
            late += 1
            due = time.monotonic()
    elapsed = time.monotonic() - start
    for st in stats.values():
        lat = sorted(st.pop("lat")) or [0.0]
        st["p50_ms"] = lat[len(lat) // 2] * 1e3
        st["p99_ms"] = lat[min(len(lat) - 1, int(len(lat) * 0.99))] * 1e3
        st["max_ms"] = lat[-1] * 1e3
    with open(out, "w") as f:
        json.dump({"elapsed": elapsed, "stats": stats, "failures": failures, "failed": len(failures),
                   "backwards": backwards, "backwards_n": backwards_n, "foreign": foreign, "late": late,
                   "series": sorted(series_trace.items()), "history": history_trace}, f)


# --- what the agent holds -----------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def sample(pid):
    """{rss, threads, fds, fds_other (not sockets), cpu (seconds)} of a process."""
    out = {}
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                out["rss"] = int(line.split()[1]) * 1024
            elif line.startswith("Threads:"):
                out["threads"] = int(line.split()[1])
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    out["cpu"] = (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime
    out["fds"], out["fds_other"] = churn.fds(pid)
    return out


def history_count(agent):
    status, _, body = http_get(agent.url + "/api/v1/history")
    return json.loads(body)["count"] if status == 200 else None


def slope_per_hour(points):
    """Least-squares slope of [(t seconds, y)], in y per hour."""
    n = len(points)
    if n < 3:
        return 0.0
    mt = sum(t for t, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return 3600 * sum((t - mt) * (y - my) for t, y in points) / var if var else 0.0


def total(parsed, name, **labels):
    return sum(series(parsed, name, **labels).values())


# --- the cgroup churn -----------------------------------------------------------

class Churner:
    """Creates and removes cgroups under the tree's parent in a thread, at
    CHURN_RATE a second, until `until` (monotonic); some run a process."""

    def __init__(self, tree, loop_path, until):
        self.tree, self.loop_path, self.until = tree, loop_path, until
        self.alive = {}  # label -> (until, proc or None, [labels, parent first], ends by itself)
        self.made = self.with_proc = self.tcp_bursts = self.dd_bursts = 0
        self.errors = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _start(self, i, leaf):
        files = self.tree.procs_files(leaf)
        kind = i % 8
        if kind in (1, 5):
            return in_cgroups(files, ["sleep", "5"])
        if kind == 3:
            self.dd_bursts += 1
            skip_blocks = (i * 97) % 8000
            return in_cgroups(files, ["dd", f"if={self.loop_path}", "of=/dev/null", "iflag=direct", "bs=4k",
                                      "count=64", f"skip={skip_blocks}", "status=none"],
                              stderr=subprocess.DEVNULL)
        if kind == 7:
            self.tcp_bursts += 1
            return in_cgroups(files, ["ip", "netns", "exec", NS_A, sys.executable, "-c", CLIENT, ADDR_B, str(PORT),
                                      "0.5", "20"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return None

    def _remove(self, label):
        _, proc, dirs, ends = self.alive.pop(label)
        if proc is not None:
            if ends:
                try:
                    proc.wait(3)  # dd and the TCP bursts end by themselves
                except subprocess.TimeoutExpired:
                    pass
            bpfutil.kill_all([proc])
        for d in reversed(dirs):
            self.tree.rmdir(d)

    def _run(self):
        i = 0
        due = time.monotonic()
        try:
            while not self.stop.is_set() and time.monotonic() < self.until:
                now = time.monotonic()
                for label in [l for l, e in self.alive.items() if e[0] <= now]:
                    self._remove(label)
                if len(self.alive) < CHURN_MAX_ALIVE:
                    label = f"{self.tree.label}/c{i}"
                    dirs = [label]
                    self.tree.mkdir(label)
                    if i % 10 == 9:
                        dirs.append(label + "/g")
                        self.tree.mkdir(label + "/g")
                    life = CHURN_LIFETIMES[i % len(CHURN_LIFETIMES)]
                    proc = self._start(i, dirs[-1])
                    if proc is not None:
                        self.with_proc += 1
                        life = max(life, 1.0)
                    self.alive[label] = (time.monotonic() + life, proc, dirs, i % 8 in (3, 7))
                    self.made += 1
                    i += 1
                due += 1 / CHURN_RATE
                self.stop.wait(max(0.0, due - time.monotonic()))
                if due < time.monotonic() - 1:
                    due = time.monotonic()
        except Exception as e:
            self.errors.append(f"{type(e).__name__}: {e}")
        finally:
            for label in list(self.alive):
                try:
                    self._remove(label)
                except Exception as e:
                    self.errors.append(f"removing {label}: {type(e).__name__}: {e}")

    def close(self):
        self.stop.set()
        self.thread.join(60)


# --- the soak -------------------------------------------------------------------

def fmt_mib(b):
    return f"{b / MIB:.2f}"


def main():
    if len(sys.argv) == 6 and sys.argv[1] == "--scraper":
        scraper_main(sys.argv[2], float(sys.argv[3]), sys.argv[4], sys.argv[5])
        return
    require_root()
    for tool in ("ip", "stress-ng", "fio", "losetup", "dd"):
        require_tool(tool)
    roots = churn.hierarchies()
    if not roots or not bpfutil.cgroup2_root():
        skip("needs cgroupfs with a v2 hierarchy")
    c = Checks()
    started = time.monotonic()
    warmup = SOAK_SECONDS * WARMUP_FRACTION
    history_s = int(min(600, max(10, warmup / 2)))
    window_s = int(min(60, max(10, warmup / 2)))
    tmp = tempfile.TemporaryDirectory(prefix="nodeperf-soak-")
    agent = tree = loop = churner = server = None
    procs = []
    net = None
    scraper_out = os.path.join(tmp.name, "scraper.json")
    try:
        # ---- setup: cgroups, a loop device, two namespaces joined by a veth pair
        tree = churn.CgroupTree(roots, f"nodeperf-test-soak-{PID}")
        for leaf in ("cpu", "io", "tcp"):
            tree.mkdir(f"{tree.label}/{leaf}")
        loop = bpfutil.LoopDevice(tmp.name, size=64 << 20, name="soak")
        net = bpfutil.VethPair(NS_A, NS_B, DEV_A, DEV_B, ADDR_A, ADDR_B)
        print(f"soak: {SOAK_SECONDS:.0f} s of load, warm-up {warmup:.0f} s, samples every {SAMPLE_EVERY:.0f} s; "
              f"hierarchies {', '.join(roots)}; {loop.path} (direct IO {loop.direct_io}); "
              f"{NS_A} {ADDR_A} <-> {NS_B} {ADDR_B}")

        # The cgroups collector exports only the test's cgroups: on a shared
        # host, others' cgroups coming and going would move the series count
        # (it still lists and watches the whole hierarchy).
        agent = Agent(f"--history={history_s}s", f"--histogram.window={window_s}s",
                      f"--collector.cgroups.include=^{tree.label}(/|$)")
        pid = agent.pid
        bpfutil.wait_snapshots(agent, 2)
        parsed0 = bpfutil.scrape(agent)
        up = {dict(k)["collector"]: v for k, v in series(parsed0, "nodeperf_collector_up").items()}
        print(f"agent pid {pid}, --history={history_s}s --histogram.window={window_s}s; collectors up: "
              f"{sorted(n for n, v in up.items() if v == 1)}; down: {sorted(n for n, v in up.items() if v != 1)}")
        start_log = problem_lines(agent.log())
        history_cap = history_s  # at the default 1 s tick

        # ---- the load, each part ending by itself at `until`
        t0 = time.monotonic()
        until = t0 + SOAK_SECONDS
        secs = f"{SOAK_SECONDS:.0f}"
        first = sample(pid)
        first["series"] = total(parsed0, "nodeperf_snapshot_series")
        first["history"] = history_count(agent)
        server = subprocess.Popen(["ip", "netns", "exec", NS_B, sys.executable, "-c", SERVER, ADDR_B, str(PORT),
                                   str(SOAK_SECONDS + 15)], stdout=subprocess.PIPE, text=True)
        procs.append(server)
        if server.stdout.readline().strip() != "READY":
            raise AssertionError("the TCP server did not start")
        scraper = subprocess.Popen([sys.executable, os.path.abspath(__file__), "--scraper", agent.url, secs,
                                    scraper_out, loop.name])
        procs.append(scraper)
        cpu_load = in_cgroups(tree.procs_files(f"{tree.label}/cpu"),
                              ["stress-ng", "--cpu", "1", "--cpu-load", "50", "--timeout", f"{secs}s", "--quiet"])
        procs.append(cpu_load)
        fio_out = os.path.join(tmp.name, "fio.json")
        fio = in_cgroups(tree.procs_files(f"{tree.label}/io"),
                         ["fio", "--name=soak", f"--filename={loop.path}", "--direct=1", "--rw=randrw",
                          "--rwmixread=70", "--bs=4k", "--ioengine=psync", "--rate_iops=150", "--time_based",
                          f"--runtime={secs}", "--output-format=json", f"--output={fio_out}"],
                         stdout=subprocess.DEVNULL)
        procs.append(fio)
        client = in_cgroups(tree.procs_files(f"{tree.label}/tcp"),
                            ["ip", "netns", "exec", NS_A, sys.executable, "-c", CLIENT, ADDR_B, str(PORT), secs,
                             str(TCP_RATE)], stdout=subprocess.PIPE, text=True)
        procs.append(client)
        churner = Churner(tree, loop.path, until)

        # ---- sampling
        samples = [dict(first, t=0.0)]
        drops_at_warmup = parsed_warm = None
        next_sample = t0 + SAMPLE_EVERY
        while time.monotonic() < until:
            time.sleep(max(0.0, min(next_sample, until) - time.monotonic()))
            if time.monotonic() >= until:
                break
            next_sample += SAMPLE_EVERY
            if agent.proc.poll() is not None:
                raise AssertionError(f"the agent exited with {agent.proc.returncode}: {agent.log()[-2000:]}")
            s = sample(pid)
            s["t"] = time.monotonic() - t0
            s["history"] = history_count(agent)
            samples.append(s)
            if drops_at_warmup is None and s["t"] >= warmup:
                parsed_warm = bpfutil.scrape(agent)
                drops_at_warmup = total(parsed_warm, "nodeperf_bpf_map_drops_total")
        last = sample(pid)  # the end: the last figures under load
        last["t"] = time.monotonic() - t0
        last["history"] = history_count(agent)
        samples.append(last)

        # ---- the load ends by itself
        churner.close()
        for p in (cpu_load, fio, client, scraper):
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                c.check(False, f"{p.args[:6]} did not end by itself 30 s after the soak")
        client_out = client.stdout.read().split() if client.stdout else []
        bpfutil.kill_all([server])
        parsed_after, _ = bpfutil.wait_snapshots(agent, 3)
        after = churn.stable_value(lambda: sample(pid)["rss"])
        after_fds = churn.stable_value(lambda: churn.fds(pid))
        after_series = total(parsed_after, "nodeperf_snapshot_series")
        drops_end = total(parsed_after, "nodeperf_bpf_map_drops_total")

        # ---- figures
        with open(scraper_out) as f:
            scr = json.load(f)
        for s in samples:  # the agent's series count: the highest the scraper saw in the second before the sample
            near = [n for sec, n in scr["series"] if s["t"] - SAMPLE_EVERY <= sec <= s["t"]]
            s.setdefault("series", max(near) if near else None)
        pre = [s for s in samples if s["t"] <= warmup]
        post = [s for s in samples if s["t"] > warmup]
        if len(post) < 5:
            raise AssertionError(f"only {len(post)} samples after the warm-up")
        for a, b in zip(samples, samples[1:]):
            b["cpu_pct"] = 100 * (b["cpu"] - a["cpu"]) / (b["t"] - a["t"])
        wmax = {k: max(s[k] for s in pre if s.get(k) is not None) for k in ("rss", "fds", "fds_other", "threads",
                                                                            "series", "history")}
        pmax = {k: max(s[k] for s in post if s.get(k) is not None) for k in wmax}
        end = samples[-1]
        w_end = pre[-1]

        def cpu_mean(ss):
            ss = [s for s in ss if "cpu_pct" in s]
            return sum(s["cpu_pct"] for s in ss) / len(ss) if ss else 0.0

        third = max(1, len(post) // 3)
        cpu_w, cpu_p1, cpu_p3 = cpu_mean(pre), cpu_mean(post[:third]), cpu_mean(post[-third:])
        cpu_all = 100 * (end["cpu"] - first["cpu"]) / end["t"]
        margin = max(RSS_MARGIN_MIN, RSS_MARGIN_FRACTION * wmax["rss"])
        span = post[-1]["t"] - post[0]["t"]
        slope = slope_per_hour([(s["t"], s["rss"]) for s in post])
        slope_bound = margin / span * 3600 if span > 0 else float("inf")
        fds_slope = slope_per_hour([(s["t"], s["fds_other"]) for s in post])

        print("\nfigure                 start   warm-up max  warm-up end  post max      end   after load")
        print(f"RSS (MiB)         {fmt_mib(first['rss']):>10} {fmt_mib(wmax['rss']):>13} {fmt_mib(w_end['rss']):>12} "
              f"{fmt_mib(pmax['rss']):>9} {fmt_mib(end['rss']):>8} {fmt_mib(after):>12}")
        print(f"fds all           {first['fds']:>10} {wmax['fds']:>13} {w_end['fds']:>12} {pmax['fds']:>9} "
              f"{end['fds']:>8} {after_fds[0]:>12}")
        print(f"fds not sockets   {first['fds_other']:>10} {wmax['fds_other']:>13} {w_end['fds_other']:>12} "
              f"{pmax['fds_other']:>9} {end['fds_other']:>8} {after_fds[1]:>12}")
        print(f"threads           {first['threads']:>10} {wmax['threads']:>13} {w_end['threads']:>12} "
              f"{pmax['threads']:>9} {end['threads']:>8}")
        print(f"snapshot series   {first['series']:>10.0f} {wmax['series']:>13.0f} {w_end['series'] or 0:>12.0f} "
              f"{pmax['series']:>9.0f} {end['series'] or 0:>8.0f} {after_series:>12.0f}")
        print(f"history entries   {first['history']:>10} {wmax['history']:>13} {w_end['history']:>12} "
              f"{pmax['history']:>9} {end['history']:>8}   (capacity {history_cap})")
        print(f"agent CPU: {cpu_all:.1f}% of a core over the soak; warm-up {cpu_w:.1f}%, first third after it "
              f"{cpu_p1:.1f}%, last third {cpu_p3:.1f}% ({end['cpu'] - first['cpu']:.1f} s in {end['t']:.0f} s)")
        print(f"RSS slope after the warm-up: {slope / MIB:+.2f} MiB/h ({slope / 1024 / 60:+.1f} KiB/min) over "
              f"{span:.0f} s, {len(post)} samples; bound {slope_bound / MIB:.1f} MiB/h (margin {fmt_mib(margin)} MiB "
              f"over the span); non-socket fds slope {fds_slope:+.1f}/h")
        print("RSS (MiB) by sample: " + " ".join(f"{s['rss'] / MIB:.1f}" for s in samples))
        print("CPU (%) by sample: " + " ".join(f"{s['cpu_pct']:.0f}" for s in samples[1:]))

        st = scr["stats"]
        n_req = sum(v["n"] for v in st.values())
        print(f"scraper: {n_req} requests in {scr['elapsed']:.0f} s ({n_req / scr['elapsed']:.1f}/s, target "
              f"{SCRAPE_HZ}/s; {scr['late']} times over a second behind): "
              + "; ".join(f"{k} {v['n']} ({v['bytes'] / max(v['n'], 1) / 1024:.0f} KiB each, p50 {v['p50_ms']:.0f} ms, "
                          f"p99 {v['p99_ms']:.0f} ms, max {v['max_ms']:.0f} ms)" for k, v in sorted(st.items()))
              + f"; {scr['failed']} failed, {scr['backwards_n']} counter samples went backwards")
        if scr["foreign"]:
            print(f"info: counters of loop devices not the test's started again (someone else's device, "
                  f"detached and set up again): {scr['foreign'][:3]}")

        # The load ran, and the agent saw it.
        try:
            with open(fio_out) as f:
                job = json.load(f)["jobs"][0]
            fio_ios = job["read"]["total_ios"] + job["write"]["total_ios"]
        except (OSError, ValueError, KeyError, IndexError):
            fio_ios = 0
        tcp_done = int(client_out[1]) if len(client_out) >= 3 and client_out[0] == "DONE" else 0
        tcp_err = int(client_out[2]) if len(client_out) >= 3 and client_out[0] == "DONE" else None
        disk_reads = (total(parsed_after, "nodeperf_disk_io_latency_seconds_count", device=loop.name, op="read")
                      - total(parsed0, "nodeperf_disk_io_latency_seconds_count", device=loop.name, op="read"))
        connects = (total(parsed_after, "nodeperf_tcp_connect_latency_seconds_count")
                    - total(parsed0, "nodeperf_tcp_connect_latency_seconds_count"))
        print(f"load: fio {fio_ios} IOs; TCP client {tcp_done} connections ({tcp_err} errors) + {churner.tcp_bursts} "
              f"bursts from churned cgroups; {churner.made} cgroups churned ({churner.with_proc} with a process, "
              f"{churner.dd_bursts} dd bursts); agent: {loop.name} reads +{disk_reads:.0f}, tcp connects "
              f"+{connects:.0f}; BPF map drops {total(parsed0, 'nodeperf_bpf_map_drops_total'):.0f} at start, "
              f"{drops_at_warmup} after the warm-up, {drops_end:.0f} at the end")

        if parsed_warm is not None:  # what the series are, where their count changed
            def families(parsed):
                out = {}
                for name, labels in parsed:
                    out.setdefault(name, set()).add(labels)
                return out
            fw, fa = families(parsed_warm), families(parsed_after)
            moved = sorted(((len(fa.get(n, ())) - len(fw.get(n, ())), n) for n in set(fw) | set(fa)),
                           key=lambda x: -abs(x[0]))
            print("series by family, warm-up end -> after the load: " + ", ".join(
                f"{n} {len(fw.get(n, ())):d} -> {len(fa.get(n, ())):d}" for d, n in moved[:6] if d))
            if moved and moved[0][0] > 0:
                n = moved[0][1]
                print(f"  new in {n}: " + "; ".join(
                    str(dict(l)) for l in sorted(fa[n] - fw.get(n, set()), key=str)[:5]))

        # ---- checks
        c.check(not churner.errors, f"cgroup churn failed: {churner.errors[:3]}")
        c.check(fio_ios > 0.5 * 150 * SOAK_SECONDS, f"fio did {fio_ios} IOs")
        c.check(tcp_done > 0.5 * TCP_RATE * SOAK_SECONDS and tcp_err == 0,
                f"TCP client: {tcp_done} connections, {tcp_err} errors")
        c.check(churner.made >= 0.5 * CHURN_RATE * SOAK_SECONDS, f"only {churner.made} cgroups churned")
        if up.get("blockio") == 1:
            c.check(disk_reads >= 0.5 * 0.7 * 150 * SOAK_SECONDS, f"agent counted {disk_reads} reads on {loop.name}")
        if up.get("tcp") == 1:
            c.check(connects >= tcp_done, f"agent counted {connects} connects, the client made {tcp_done}")

        c.check(n_req >= 0.5 * SCRAPE_HZ * SOAK_SECONDS, f"only {n_req} requests by the scraper")
        c.check(scr["failed"] == 0, f"requests failed: {scr['failures'][:5]}")
        c.check(scr["backwards_n"] == 0, f"{scr['backwards_n']} counter samples went backwards: {scr['backwards']}")

        c.check(end["rss"] <= wmax["rss"] + margin,
                f"RSS at the end {fmt_mib(end['rss'])} MiB > warm-up max {fmt_mib(wmax['rss'])} + {fmt_mib(margin)}")
        c.check(slope <= slope_bound, f"RSS grows {slope / MIB:.2f} MiB/h after the warm-up "
                                      f"(bound {slope_bound / MIB:.2f} MiB/h)")
        # The agent holds files of every live cgroup open, so its fds follow
        # how many of the churn's are alive at the sample; a leak of one fd
        # per cgroup would be over a thousand here.
        c.check(pmax["fds_other"] <= 1.25 * wmax["fds_other"],
                f"non-socket fds after the warm-up up to {pmax['fds_other']}, warm-up max {wmax['fds_other']}")
        c.check(after_fds[0] <= wmax["fds"], f"fds after the load {after_fds[0]} > warm-up max {wmax['fds']}")
        c.check(after_fds[1] <= first["fds_other"] + FD_SLACK,
                f"non-socket fds after the load {after_fds[1]}, at the start {first['fds_other']}")
        c.check(pmax["threads"] <= wmax["threads"], f"threads up to {pmax['threads']} > warm-up {wmax['threads']}")
        c.check(pmax["series"] <= 1.5 * wmax["series"] + 200,
                f"snapshot series after the warm-up up to {pmax['series']}, warm-up max {wmax['series']}")
        left = sorted({dict(k[1])["cgroup"] for k in parsed_after
                       if re.match(re.escape(tree.label) + r"/c\d", dict(k[1]).get("cgroup", ""))})
        c.check(not left, f"series of churned cgroups after the load: {left[:5]}")
        hmax = max([pmax["history"], wmax["history"]] + [n for _, n in scr["history"]])
        c.check(hmax <= history_cap, f"history up to {hmax} entries, capacity {history_cap}")
        c.check(cpu_p3 <= 2 * cpu_p1 + 5, f"agent CPU grew: {cpu_p1:.1f}% -> {cpu_p3:.1f}% of a core")
        if drops_at_warmup is not None:
            c.check(drops_end == drops_at_warmup, f"BPF map drops after the warm-up: {drops_at_warmup} -> {drops_end}")
        problems = [l for l in problem_lines(agent.log()) if not any(re.search(a, l) for a in ALLOWED_LOG)]
        new_problems = [l for l in problems if l not in start_log]
        print(f"agent log: {len(start_log)} warning/error lines at start, {len(new_problems)} during the soak")
        c.check(not problems, f"agent warning/error lines: {problems[:5]}")
        c.check(agent.proc.poll() is None, "agent still running")
        rc = agent.stop()
        agent = None
        c.check(rc == 0, f"agent exited with {rc} on SIGTERM")
    except Exception as e:
        c.check(False, f"{type(e).__name__}: {e}")
    finally:
        if churner:
            churner.close()
        bpfutil.kill_all(procs)
        if agent:
            agent.stop()
        if net:
            net.close()
        if tree:
            tree.cleanup()
        if loop:
            loop.close()
        tmp.cleanup()
    print(f"info: ran in {time.monotonic() - started:.1f}s")
    c.done()


if __name__ == "__main__":
    main()
