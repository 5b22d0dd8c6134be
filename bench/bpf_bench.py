#!/usr/bin/env python3
"""eBPF probe cost: nodeperf's probes against Debian's libbpf-tools, side by side.

Two probes, each against its peer, on the same bounded workload and in the same run:
  * run queue:  nodeperf's runqueue collector   vs  runqlat (libbpf-tools)
                workload: taskset -c CPU perf bench sched pipe -l LOOPS
  * block IO:   nodeperf's blockio collector    vs  biolatency (libbpf-tools)
                workload: fio 4k random reads, O_DIRECT, on a loop device backed
                by a file (or on a file of the root fs), --runtime=N --time_based

Only one tool is loaded at a time. For each tool, it measures
  1. per-event cost of each BPF program, run_time_ns / run_cnt from
     `bpftool -j prog show`, with kernel.bpf_stats_enabled on only for the
     measured workload run (the old value is put back right after, and in
     `finally`). A tool's programs are those its process holds: the prog and
     link fds listed in /proc/PID/fdinfo (the Debian bpftool has no "pids");
     measured in the first COST_REPS rounds;
  2. workload throughput (bpf_stats off): perf bench usecs/op and ops/sec, fio
     IOPS, with no tool, with the peer and with nodeperf; every configuration
     REPS times, the order rotated each round; medians, spread, and each tool's
     loss as % of the baseline (of the medians, of the best runs, and the
     median of per-round losses), and nodeperf's loss / the peer's.

Before each run it waits (bounded) for a quiet machine: CPU under a threshold
and no other tracing program loaded; runs that did not get one are counted as
not clean and the other programs are named.

nodeperf runs as `nodeperf agent --web.listen-address=127.0.0.1:0` with every
other eBPF collector off (found in `nodeperf agent --help`), so that only the
probe under test is loaded; its /proc collectors stay on, as deployed.

Python 3 standard library only; run as root. It prints figures; it never passes
or fails on them. Exit status is non-zero only if something could not be measured.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

SCRIPT_DIR = os.path.dirname(os.path.abspath(__file__))
REPO_DIR = os.path.dirname(SCRIPT_DIR)
STATS_SYSCTL = "/proc/sys/kernel/bpf_stats_enabled"

READY_TIMEOUT = 30.0  # seconds for a tool to attach its programs
STOP_TIMEOUT = 5.0    # seconds per signal when stopping a process
SETTLE = 1.0          # seconds after a tool attached, before measuring

SCHED_TPS = ["sched_wakeup", "sched_wakeup_new", "sched_switch"]
BLOCK_TPS = ["block_rq_insert", "block_rq_issue", "block_rq_complete"]
TRACING_TYPES = {"tracing", "raw_tracepoint", "tracepoint", "kprobe", "perf_event", "raw_tracepoint_writable"}


class BenchError(Exception):
    pass


def log(msg):
    print("[%s] %s" % (datetime.datetime.now().strftime("%H:%M:%S"), msg), file=sys.stderr, flush=True)


# --------------------------------------------------------------------------
# Cleanup registry: every process started and every loop device set up.

class Resources:
    def __init__(self):
        self.procs = []   # (name, Popen)
        self.loops = []   # /dev/loopN
        self.paths = []   # files and directories to remove
        self.stats_old = None

    def spawn(self, name, argv, **kw):
        # A session of its own: its process group can be signalled without
        # touching anything else.
        p = subprocess.Popen(argv, start_new_session=True, **kw)
        self.procs.append((name, p))
        return p

    def stop(self, p, first=signal.SIGINT):
        if p.poll() is not None:
            return p.returncode
        for sig in (first, signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                return p.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                continue
        return p.poll()

    def cleanup(self):
        for name, p in reversed(self.procs):
            try:
                self.stop(p, signal.SIGTERM)
            except Exception as e:  # keep cleaning
                log("could not stop %s (pid %d): %s" % (name, p.pid, e))
        self.procs.clear()
        for dev in reversed(self.loops):
            r = subprocess.run(["losetup", "-d", dev], capture_output=True, text=True, timeout=30)
            if r.returncode != 0:
                log("losetup -d %s: %s" % (dev, r.stderr.strip()))
        self.loops.clear()
        for path in reversed(self.paths):
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.unlink(path)
        self.paths.clear()
        if self.stats_old is not None:
            write_stats(self.stats_old)


RES = Resources()


# --------------------------------------------------------------------------
# bpf_stats and program statistics

def read_stats():
    with open(STATS_SYSCTL) as f:
        return f.read().strip()


def write_stats(value):
    with open(STATS_SYSCTL, "w") as f:
        f.write(value + "\n")


def bpftool_progs():
    """{id: program dict} from `bpftool -j prog show`."""
    r = subprocess.run(["bpftool", "-j", "prog", "show"], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise BenchError("bpftool prog show: " + r.stderr.strip())
    return {p["id"]: p for p in json.loads(r.stdout or "[]")}


def fdinfo_bpf(pid):
    """The BPF programs process `pid` holds: {prog_id: tracepoint or None},
    from its prog fds and its link fds (a link names its tracepoint)."""
    progs, links = {}, 0
    base = "/proc/%d/fdinfo" % pid
    try:
        fds = os.listdir(base)
    except OSError:
        return progs, links
    for fd in fds:
        try:
            with open(os.path.join(base, fd)) as f:
                text = f.read()
        except OSError:
            continue
        fields = dict(line.split(":", 1) for line in text.splitlines() if ":" in line)
        fields = {k.strip(): v.strip() for k, v in fields.items()}
        if "prog_id" not in fields:
            continue
        pid_ = int(fields["prog_id"])
        if "link_id" in fields:
            links += 1
            progs[pid_] = fields.get("tp_name") or progs.get(pid_)
        else:
            progs.setdefault(pid_, None)
    return progs, links


def tracepoint_of(name, tp_name, tps):
    """The tracepoint of a program: its link's tp_name, else by program name
    (longest match first, so that wakeup_new is not taken for wakeup)."""
    if tp_name:
        return tp_name
    for tp in sorted(tps, key=len, reverse=True):
        short = tp.split("_", 1)[1] if tp.startswith("sched_") else tp.replace("block_rq_", "")
        if tp in name or name.endswith(short) or ("_" + short) in name:
            return tp
    return name


# --------------------------------------------------------------------------
# Tools

class Tool:
    """A process that loads BPF programs: a peer from libbpf-tools or the agent."""

    def __init__(self, label, argv, min_links, ready_log=None, stop_sig=signal.SIGINT, ready_timeout=READY_TIMEOUT):
        self.label = label
        self.ready_timeout = ready_timeout
        self.argv = argv
        self.min_links = min_links
        self.ready_log = ready_log
        self.stop_sig = stop_sig
        self.proc = None
        self.out_path = None
        self.progs = {}  # prog_id -> tracepoint

    def start(self, tmpdir):
        self.out_path = os.path.join(tmpdir, "%s.%d.log" % (re.sub(r"\W+", "_", self.label), time.monotonic_ns()))
        out = open(self.out_path, "w")
        try:
            self.proc = RES.spawn(self.label, self.argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        finally:
            out.close()
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise BenchError("%s exited with %d at start:\n%s" % (self.label, self.proc.returncode, self.output()))
            progs, links = fdinfo_bpf(self.proc.pid)
            logged = self.ready_log is None or re.search(self.ready_log, self.output())
            if links >= self.min_links and logged:
                time.sleep(SETTLE)
                self.progs, _ = fdinfo_bpf(self.proc.pid)
                return
            time.sleep(0.1)
        raise BenchError("%s did not attach %d programs within %.0f s:\n%s"
                         % (self.label, self.min_links, self.ready_timeout, self.output()))

    def output(self):
        try:
            with open(self.out_path, errors="replace") as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc is not None:
            RES.stop(self.proc, self.stop_sig)
            RES.procs = [(n, p) for n, p in RES.procs if p is not self.proc]
            self.proc = None


def agent_bpf_collectors(nodeperf):
    r = subprocess.run([nodeperf, "agent", "--help"], capture_output=True, text=True, timeout=30)
    text = r.stdout + r.stderr
    found = re.findall(r"--\[no-\]collector\.(\w+)\n\s+Enable the \w+ collector:[^\n]*eBPF", text)
    return found


# --sampled: a budget no agent keeps to, over a window long enough for a run
# at the sampling level (1) before the tick stretches (level 2, 2 windows in;
# no change per event) and the runqueue probe stops (level 4, 4 windows in).
SAMPLED_WINDOW_S = 30


def make_agent(nodeperf, collector, all_bpf, extra, sampled=False):
    argv = [nodeperf, "agent", "--web.listen-address=127.0.0.1:0"]
    argv += ["--no-collector." + c for c in all_bpf if c != collector]
    argv += extra
    # "listening" is logged after every collector loaded: by then its programs are attached.
    ready = r"listening on 127\.0\.0\.1:\d+"
    if sampled:
        argv += ["--budget.cpu=0.0001", "--budget.window=%ds" % SAMPLED_WINDOW_S]
        ready = r"overhead budget: level 0 -> 1 \(.*sampling 1 in \d+"
    return Tool("nodeperf", argv, 1, ready_log=ready, stop_sig=signal.SIGTERM,
                ready_timeout=READY_TIMEOUT + (2 * SAMPLED_WINDOW_S if sampled else 0))


# --------------------------------------------------------------------------
# Workloads

class PipeWorkload:
    name = "sched"

    def __init__(self, cpu, loops):
        self.argv = ["taskset", "-c", str(cpu), "perf", "bench", "sched", "pipe", "-l", str(loops)]
        self.loops = loops

    def describe(self):
        return " ".join(self.argv)

    def run(self):
        r = subprocess.run(self.argv, capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise BenchError("perf bench failed (%d): %s" % (r.returncode, r.stderr.strip()))
        usecs = re.search(r"([\d.]+)\s+usecs/op", r.stdout)
        ops = re.search(r"(\d+)\s+ops/sec", r.stdout)
        if not usecs or not ops:
            raise BenchError("cannot parse perf bench output:\n" + r.stdout)
        return {"usecs_per_op": float(usecs.group(1)), "ops_per_sec": float(ops.group(1)), "ops": self.loops}

    primary = "ops_per_sec"
    figures = [("usecs_per_op", "usecs/op", "%.3f"), ("ops_per_sec", "ops/sec", "%.0f")]


class FioWorkload:
    name = "block"

    def __init__(self, target, runtime, engine, iodepth, size, cpu):
        self.argv = ["fio", "--name=bpfbench", "--filename=" + target, "--rw=randread", "--bs=4k",
                     "--direct=1", "--ioengine=" + engine, "--iodepth=%d" % iodepth, "--size=" + size,
                     "--runtime=%d" % runtime, "--time_based", "--norandommap", "--randrepeat=0",
                     "--group_reporting", "--output-format=json"]
        if cpu is not None:
            self.argv[1:1] = ["--cpus_allowed=%s" % cpu]
        self.runtime = runtime

    def describe(self):
        return " ".join(self.argv)

    def run(self):
        r = subprocess.run(self.argv, capture_output=True, text=True, timeout=self.runtime + 120)
        if r.returncode != 0:
            raise BenchError("fio failed (%d): %s" % (r.returncode, r.stderr.strip()))
        try:
            # fio may print notices before the JSON
            data = json.loads(r.stdout[r.stdout.index("{"):])
            job = data["jobs"][0]["read"]
        except (ValueError, KeyError, IndexError):
            raise BenchError("cannot parse fio output:\n" + r.stdout[-2000:])
        return {"iops": float(job["iops"]), "clat_us": float(job["clat_ns"]["mean"]) / 1000.0,
                "ops": int(job["total_ios"])}

    primary = "iops"
    figures = [("iops", "IOPS", "%.0f"), ("clat_us", "mean clat us", "%.1f")]


def setup_block_target(args, tmpdir):
    """A loop device over a file (default), or a plain file for direct=1."""
    base = tempfile.mkdtemp(prefix="nodeperf-bpf-bench-", dir=args.scratch_dir)
    RES.paths.append(base)
    path = os.path.join(base, "disk.img")
    size = parse_size(args.fio_size)
    chunk = b"\xa5" * (1 << 20)
    with open(path, "wb") as f:  # real blocks, not a sparse file
        for _ in range((size + len(chunk) - 1) // len(chunk)):
            f.write(chunk)
        f.flush()
        os.fsync(f.fileno())
    if args.block_target == "file":
        return path, "file %s (%s) on %s" % (path, args.fio_size, mount_of(path))
    argv = ["losetup", "--find", "--show"]
    if args.loop_direct_io:
        argv.append("--direct-io=on")
    r = subprocess.run(argv + [path], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise BenchError("losetup: " + r.stderr.strip())
    dev = r.stdout.strip()
    RES.loops.append(dev)
    sched = ""
    try:
        with open("/sys/block/%s/queue/scheduler" % os.path.basename(dev)) as f:
            sched = f.read().strip()
    except OSError:
        pass
    return dev, "loop device %s over %s (%s, direct-io %s, scheduler %s)" % (
        dev, path, args.fio_size, "on" if args.loop_direct_io else "off", sched)


def parse_size(s):
    m = re.fullmatch(r"(\d+)([KMG]?)", s.upper().rstrip("B").rstrip("I"))
    if not m:
        raise BenchError("bad size " + s)
    return int(m.group(1)) << {"": 0, "K": 10, "M": 20, "G": 30}[m.group(2)]


def mount_of(path):
    r = subprocess.run(["df", "--output=source", path], capture_output=True, text=True, timeout=30)
    lines = r.stdout.split()
    return lines[-1] if lines else "?"


# --------------------------------------------------------------------------
# Measurement

def cpu_busy_sample(seconds=1.0):
    def snap():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return sum(v), v[3] + v[4]
    t0, i0 = snap()
    time.sleep(seconds)
    t1, i1 = snap()
    return 100.0 * (1 - (i1 - i0) / max(1, t1 - t0))


def wait_quiet(below, max_wait):
    """Samples CPU busy (1 s each) and the loaded tracing programs until the
    CPU is under `below` % busy and no tracing program is loaded, or until
    `max_wait` seconds passed. Returns (busy %, foreign programs)."""
    deadline = time.monotonic() + max_wait
    while True:
        busy = cpu_busy_sample()
        foreign = foreign_progs(bpftool_progs(), set())
        if (busy <= below and not foreign) or time.monotonic() >= deadline:
            return busy, foreign


def foreign_progs(progs_all, own_ids):
    return sorted("%d:%s" % (i, p.get("name", "?")) for i, p in progs_all.items()
                  if p.get("type") in TRACING_TYPES and i not in own_ids)


def measure_cost(tool, workload, tps, stats_old):
    """One workload run with bpf_stats on; per-program deltas of the tool's programs."""
    own = set(tool.progs)
    write_stats("1")
    try:
        before = bpftool_progs()
        t0 = time.monotonic()
        result = workload.run()
        wall = time.monotonic() - t0
        after = bpftool_progs()
    finally:
        write_stats(stats_old)
    rows = {}
    for pid_, tp in tool.progs.items():
        a, b = after.get(pid_), before.get(pid_)
        if not a or not b:
            continue
        tp = tracepoint_of(a.get("name", ""), tp, tps)
        rows[tp] = {
            "program": a.get("name", "?"), "id": pid_,
            "events": a.get("run_cnt", 0) - b.get("run_cnt", 0),
            "ns": a.get("run_time_ns", 0) - b.get("run_time_ns", 0),
            "xlated_insns": a.get("bytes_xlated", 0) // 8, "jited_bytes": a.get("bytes_jited", 0),
        }
    # Other tracing programs that ran meanwhile (another tool, another bench).
    busy_foreign = []
    for i, a in after.items():
        if i in own or a.get("type") not in TRACING_TYPES or i not in before:
            continue
        d = a.get("run_cnt", 0) - before[i].get("run_cnt", 0)
        if d > 0:
            busy_foreign.append("%d:%s(%d runs)" % (i, a.get("name", "?"), d))
    return {"programs": rows, "workload": result, "wall_s": wall, "foreign_running": busy_foreign}


def run_scenario(args, workload, peer, make_ours, tps, stats_old, tmpdir):
    """Interleaved rounds: each configuration REPS times, order rotated.
    Each throughput run records how clean it was: CPU busy just before it,
    and the other tracing programs loaded meanwhile (other tools, other
    benchmarks); each cost run, the other tracing programs that ran."""
    configs = [("baseline", None), (peer.label, peer), ("nodeperf", make_ours)]
    through = {c: [] for c, _ in configs}
    costs = {c: [] for c, _ in configs[1:]}
    log("%s: warm-up run, no tool" % workload.name)
    workload.run()
    for rep in range(args.reps):
        order = configs[rep % 3:] + configs[:rep % 3]
        for label, tool in order:
            busy, _ = wait_quiet(args.quiet_below, args.quiet_wait)
            t = tool() if callable(tool) and not isinstance(tool, Tool) else tool
            if t is not None:
                t.start(tmpdir)
            try:
                foreign = foreign_progs(bpftool_progs(), set(t.progs) if t else set())
                res = workload.run()  # bpf_stats as found (off)
                res.update(round=rep + 1, busy_before_pct=busy, foreign_loaded=foreign,
                           clean=busy <= args.quiet_below and not foreign)
                through[label].append(res)
                log("%s round %d %-10s %s%s" % (
                    workload.name, rep + 1, label,
                    "  ".join(f % res[k] + " " + n for k, n, f in workload.figures),
                    "" if res["clean"] else "  (not clean: CPU %.0f%% busy before, %d other tracing programs)"
                    % (busy, len(foreign))))
                if t is not None and rep < args.cost_reps:
                    c = measure_cost(t, workload, tps, stats_old)
                    c["round"] = rep + 1
                    costs[label].append(c)
                    log("%s round %d %-10s ns/event %s" % (
                        workload.name, rep + 1, label,
                        ", ".join("%s=%.0f" % (tp, r["ns"] / r["events"]) for tp, r in sorted(c["programs"].items())
                                  if r["events"])))
            finally:
                if t is not None:
                    t.stop()
    return through, costs


def conditions(through, costs):
    """Summary lines: how many runs were clean, and who else traced."""
    lines = []
    runs = [r for rs in through.values() for r in rs]
    dirty = [r for r in runs if not r["clean"]]
    if dirty:
        names = sorted({f.split(":", 1)[1] for r in dirty for f in r["foreign_loaded"]})
        lines.append("%d of %d throughput runs not clean (CPU busy before: %s%%; other tracing programs: %s)"
                     % (len(dirty), len(runs), "/".join("%.0f" % r["busy_before_pct"] for r in runs),
                        ", ".join(names) or "none"))
    ran = sorted({f.split(":", 1)[1].split("(")[0] for cs in costs.values() for c in cs for f in c["foreign_running"]})
    if ran:
        lines.append("other tracing programs ran during per-event runs (their cost is not counted in ours/theirs, "
                     "but they share the CPU and caches): " + ", ".join(ran))
    return lines


# --------------------------------------------------------------------------
# Report

def med(xs):
    return statistics.median(xs) if xs else float("nan")


def fmt(x, f="%.0f"):
    return "-" if x is None or x != x else f % x


def cost_summary(costs, tps):
    """Per tracepoint: program, median events, median ns/event over rounds."""
    out = {}
    for tp in tps:
        runs = [c["programs"][tp] for c in costs if tp in c["programs"]]
        if not runs:
            continue
        per = [r["ns"] / r["events"] for r in runs if r["events"] > 0]
        out[tp] = {"program": runs[0]["program"], "events": med([r["events"] for r in runs]),
                   "ns_per_event": med(per) if per else float("nan"),
                   "ns_per_event_min": min(per) if per else float("nan"),
                   "xlated_insns": runs[0]["xlated_insns"], "jited_bytes": runs[0]["jited_bytes"]}
    total = [sum(r["ns"] for r in c["programs"].values()) / max(1, c["workload"]["ops"]) for c in costs]
    return out, med(total)


def print_cost_table(title, tps, ours, theirs, peer_label, ours_total, theirs_total, op_name):
    print()
    print(title)
    hdr = ("tracepoint", "nodeperf prog", "events", "ns/ev", "(min)", "insns",
           peer_label + " prog", "events", "ns/ev", "(min)", "insns", "ours/theirs")
    w = (17, 14, 8, 5, 5, 5, 21, 8, 5, 5, 5, 11)
    left = (0, 1, 6)

    def row(cells):
        print("  " + "  ".join(c.ljust(x) if i in left else c.rjust(x) for i, (c, x) in enumerate(zip(cells, w))))

    row(hdr)
    for tp in tps:
        o, t = ours.get(tp), theirs.get(tp)
        if not o and not t:
            continue
        ratio = (o["ns_per_event"] / t["ns_per_event"]) if o and t and t["ns_per_event"] else None

        def side(x, missing):
            if not x:
                return [missing, "-", "-", "-", "-"]
            return [x["program"], fmt(x["events"]), fmt(x["ns_per_event"]), fmt(x["ns_per_event_min"]),
                    fmt(x["xlated_insns"])]
        row([tp] + side(o, "-") + side(t, "(not traced)") + [fmt(ratio, "%.2f")])
    ratio = ours_total / theirs_total if theirs_total else None
    print("  BPF ns per %s, all programs (median): nodeperf %s, %s %s, ours/theirs %s"
          % (op_name, fmt(ours_total, "%.1f"), peer_label, fmt(theirs_total, "%.1f"), fmt(ratio, "%.2f")))


def print_throughput_table(title, workload, through, peer_label):
    """Medians (what the figures are), plus the best run of each config (the
    highest throughput: on a shared machine, the one least disturbed)."""
    print()
    print(title)
    key = workload.primary
    base = med([r[key] for r in through["baseline"]])
    base_best = max([r[key] for r in through["baseline"]], default=float("nan"))
    losses, best_losses = {}, {}
    print("  %-12s %s  %20s  %5s  %9s  %s" % (
        "config", "  ".join("%14s" % n for _, n, _ in workload.figures), "min..max " + key, "clean",
        "loss", "loss of the best runs"))
    for label in ("baseline", peer_label, "nodeperf"):
        rs = through[label]
        vals = [r[key] for r in rs]
        m = med(vals)
        spread = "%s..%s" % (fmt(min(vals)), fmt(max(vals))) if vals else "-"
        loss = 100.0 * (base - m) / base if label != "baseline" and base else None
        best = 100.0 * (base_best - max(vals)) / base_best if label != "baseline" and vals and base_best else None
        losses[label], best_losses[label] = loss, best
        clean = "%d/%d" % (sum(1 for r in rs if r["clean"]), len(rs))
        print("  %-12s %s  %20s  %5s  %9s  %s" % (
            label, "  ".join("%14s" % fmt(med([r[k] for r in rs]), f) for k, _, f in workload.figures),
            spread, clean, fmt(loss, "%+.1f%%") if loss is not None else "",
            fmt(best, "%+.1f%%") if best is not None else ""))
    bvals = [r[key] for r in through["baseline"]]
    noise = 100.0 * (max(bvals) - min(bvals)) / base if bvals and base else None
    # Paired: each round's loss against the same round's baseline (run
    # minutes apart at most), then the median over rounds: slow drifts of the
    # machine cancel out.
    by_round = {r["round"]: r[key] for r in through["baseline"]}
    paired = {}
    for label in (peer_label, "nodeperf"):
        per = [100.0 * (by_round[r["round"]] - r[key]) / by_round[r["round"]]
               for r in through[label] if by_round.get(r["round"])]
        paired[label] = med(per) if per else None

    def ratio(d):
        lo, lt = d.get("nodeperf"), d.get(peer_label)
        return lo / lt if lo is not None and lt else None
    print("  loss = (baseline - config) / baseline, of the medians; baseline spread (max-min)/median: %s"
          % fmt(noise, "%.1f%%"))
    print("  median of per-round losses (each round against its own baseline): %s %s, nodeperf %s"
          % (peer_label, fmt(paired[peer_label], "%+.1f%%"), fmt(paired["nodeperf"], "%+.1f%%")))
    print("  loss nodeperf / loss %s: %s (medians), %s (best runs), %s (per-round)"
          % (peer_label, fmt(ratio(losses), "%.2f"), fmt(ratio(best_losses), "%.2f"), fmt(ratio(paired), "%.2f")))
    # A ratio of two losses smaller than the run-to-run spread is noise over noise.
    if noise is not None and all(x is None or abs(x) < noise / 2
                                 for x in (losses.get(peer_label), paired.get(peer_label))):
        print("  (the %s losses are under half the baseline spread: within noise, so the ratios mean nothing)"
              % peer_label)
    return {"baseline_median": base, "loss_pct": losses, "best_loss_pct": best_losses,
            "paired_loss_pct": paired, "paired_loss_ratio": ratio(paired),
            "baseline_noise_pct": noise, "loss_ratio": ratio(losses), "best_loss_ratio": ratio(best_losses)}


# --------------------------------------------------------------------------

def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    default_bin = os.path.join(REPO_DIR, "build", "nodeperf")
    ap.add_argument("--nodeperf", default=default_bin, help="nodeperf binary (default: %(default)s)")
    ap.add_argument("--agent-arg", action="append", default=[], help="extra nodeperf agent flag (repeatable)")
    ap.add_argument("--runqlat", default=shutil.which("runqlat") or "/usr/sbin/runqlat")
    ap.add_argument("--biolatency", default=shutil.which("biolatency") or "/usr/sbin/biolatency")
    ap.add_argument("--biolatency-arg", action="append", default=[],
                    help="extra biolatency flag, e.g. -Q to also trace block_rq_insert (repeatable)")
    ap.add_argument("--only", choices=["sched", "block"], help="run one scenario only")
    ap.add_argument("--sampled", action="store_true",
                    help="measure nodeperf at the overhead budget's first level (probe events sampled 1 in 8); "
                         "each agent start waits %d s for it" % SAMPLED_WINDOW_S)
    ap.add_argument("--reps", type=int, default=3, help="rounds per configuration (default %(default)s)")
    ap.add_argument("--cost-reps", type=int, default=3,
                    help="rounds that also measure per-event cost, the first ones (default %(default)s)")
    ap.add_argument("--cpu", type=int, default=0, help="CPU perf bench is pinned to (default %(default)s)")
    ap.add_argument("--pipe-loops", type=int, default=200000)
    ap.add_argument("--fio-runtime", type=int, default=10, help="seconds per fio run (default %(default)s)")
    ap.add_argument("--fio-engine", default="libaio", help="fio ioengine (default %(default)s)")
    ap.add_argument("--fio-iodepth", type=int, default=16, help="(default %(default)s)")
    ap.add_argument("--fio-size", default="256M", help="backing file size (default %(default)s)")
    ap.add_argument("--fio-cpu", help="fio --cpus_allowed (default: not pinned)")
    ap.add_argument("--block-target", choices=["loop", "file"], default="loop",
                    help="loop: a loop device over a file (default); file: a file on --scratch-dir, direct=1")
    ap.add_argument("--loop-direct-io", action="store_true",
                    help="losetup --direct-io=on (the loop device then reads the disk, not the page cache)")
    ap.add_argument("--scratch-dir", default="/var/tmp", help="where the backing file goes (default %(default)s)")
    ap.add_argument("--quiet-below", type=float, default=20.0,
                    help="before each run, wait until CPU busy is under this %% (default %(default)s)")
    ap.add_argument("--quiet-wait", type=float, default=30.0,
                    help="but at most this many seconds (default %(default)s; 0: one 1 s sample); "
                    "it also waits for other tracing programs to go away")
    ap.add_argument("--start-wait", type=float, default=300.0,
                    help="before starting, wait at most this many seconds for a quiet machine (default %(default)s)")
    ap.add_argument("--json", help="also write every raw figure to this file")
    args = ap.parse_args()
    sys.stdout.reconfigure(line_buffering=True)

    if os.geteuid() != 0:
        print("bpf_bench.py: needs root (BPF, bpf_stats, losetup)", file=sys.stderr)
        return 2
    for tool in ("bpftool", "perf", "fio", "taskset", "losetup", args.nodeperf, args.runqlat, args.biolatency):
        if not shutil.which(tool) and not os.access(tool, os.X_OK):
            print("bpf_bench.py: missing %s" % tool, file=sys.stderr)
            return 2
    if args.reps < 1 or args.cost_reps < 1:
        print("bpf_bench.py: --reps and --cost-reps must be at least 1", file=sys.stderr)
        return 2

    stats_old = read_stats()
    RES.stats_old = stats_old
    tmpdir = tempfile.mkdtemp(prefix="nodeperf-bpf-bench-logs-")
    RES.paths.append(tmpdir)
    report = {"args": vars(args), "kernel": platform.release(), "bpf_stats_enabled_before": stats_old}

    # SIGTERM/SIGHUP: unwind through finally like Ctrl-C does.
    def on_signal(signum, _frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    status = 0
    try:
        all_bpf = agent_bpf_collectors(args.nodeperf)
        if args.start_wait > 0:
            log("waiting up to %.0f s for a quiet machine (CPU under %.0f%% busy, no tracing programs)"
                % (args.start_wait, args.quiet_below))
        busy, preloaded = wait_quiet(args.quiet_below, args.start_wait)
        print("eBPF probe cost: nodeperf vs libbpf-tools  (%s)" % datetime.datetime.now().isoformat(timespec="seconds"))
        print("kernel %s, %d CPUs, nodeperf %s (eBPF collectors: %s)"
              % (platform.release(), os.cpu_count(), args.nodeperf, ", ".join(all_bpf) or "?"))
        print("bpf_stats_enabled was %s: turned on only around the per-event runs; medians of %d rounds"
              % (stats_old, args.reps))
        print("CPU busy before start: %.0f%%; tracing programs already loaded: %s"
              % (busy, ", ".join(preloaded) or "none"))
        if stats_old != "0":
            print("NOTE: bpf_stats was already on: the throughput runs include its overhead")
        report.update(cpu_busy_before_pct=busy, preloaded=preloaded)

        if args.only in (None, "sched"):
            wl = PipeWorkload(args.cpu, args.pipe_loops)
            peer = Tool("runqlat", [args.runqlat], 3)
            through, costs = run_scenario(
                args, wl, peer, lambda: make_agent(args.nodeperf, "runqueue", all_bpf, args.agent_arg, args.sampled),
                SCHED_TPS, stats_old, tmpdir)
            ours, ours_tot = cost_summary(costs["nodeperf"], SCHED_TPS)
            theirs, theirs_tot = cost_summary(costs["runqlat"], SCHED_TPS)
            print()
            print("=== Run queue: nodeperf runqueue probe vs runqlat; workload: %s" % wl.describe())
            print_cost_table("Per-event cost (bpf_stats on, run_time_ns / run_cnt, median of %d)"
                             % min(args.reps, args.cost_reps),
                             SCHED_TPS, ours, theirs, "runqlat", ours_tot, theirs_tot, "pipe op")
            tp = print_throughput_table("Throughput (bpf_stats off, median of %d)" % args.reps, wl, through, "runqlat")
            for line in conditions(through, costs):
                print("  NOTE: " + line)
            report["sched"] = {"workload": wl.describe(), "throughput": through, "costs": costs,
                               "summary": {"nodeperf": ours, "runqlat": theirs, "ns_per_op": [ours_tot, theirs_tot],
                                           "throughput": tp}}

        if args.only in (None, "block"):
            target, desc = setup_block_target(args, tmpdir)
            wl = FioWorkload(target, args.fio_runtime, args.fio_engine, args.fio_iodepth, args.fio_size, args.fio_cpu)
            peer_label = "biolatency" + "".join(args.biolatency_arg).replace(" ", "")
            peer = Tool(peer_label, [args.biolatency] + args.biolatency_arg, 2)
            through, costs = run_scenario(
                args, wl, peer, lambda: make_agent(args.nodeperf, "blockio", all_bpf, args.agent_arg, args.sampled),
                BLOCK_TPS, stats_old, tmpdir)
            ours, ours_tot = cost_summary(costs["nodeperf"], BLOCK_TPS)
            theirs, theirs_tot = cost_summary(costs[peer_label], BLOCK_TPS)
            print()
            print("=== Block IO: nodeperf blockio probe vs %s; target: %s" % (peer_label, desc))
            print("    workload: %s" % wl.describe())
            print_cost_table("Per-event cost (bpf_stats on, run_time_ns / run_cnt, median of %d)"
                             % min(args.reps, args.cost_reps),
                             BLOCK_TPS, ours, theirs, peer_label, ours_tot, theirs_tot, "IO")
            tp = print_throughput_table("Throughput (bpf_stats off, median of %d)" % args.reps, wl, through, peer_label)
            for line in conditions(through, costs):
                print("  NOTE: " + line)
            report["block"] = {"workload": wl.describe(), "target": desc, "throughput": through, "costs": costs,
                               "summary": {"nodeperf": ours, peer_label: theirs, "ns_per_op": [ours_tot, theirs_tot],
                                           "throughput": tp}}

        busy = cpu_busy_sample()
        print()
        print("CPU busy after the run: %.0f%%" % busy)
        report.update(cpu_busy_after_pct=busy)
    except BenchError as e:
        print("bpf_bench.py: %s" % e, file=sys.stderr)
        status = 1
    except KeyboardInterrupt as e:
        print("bpf_bench.py: interrupted %s" % (e or ""), file=sys.stderr)
        status = 130
    finally:
        RES.cleanup()
    if args.json and status == 0:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return status


if __name__ == "__main__":
    sys.exit(main())
