"""Cgroup churn against the real kernel (root, cgroupfs): 1,000 cgroups are
created and removed while the agent ticks every 100 ms, and the agent must
neither leak nor lag:

- during the churn, every scrape of /metrics is checked: no series of a
  cgroup removed more than one tick (plus SLACK for the tick's own run and
  the scrape) before the scrape; every cgroup that has existed for that long
  and still exists has its series; no empty or `unknown` label values on
  cgroup series; nodeperf_cgroups_tracked is the number of cgroups exported;
- afterwards, the exported cgroups are exactly what exists (the test's parent
  only), in /metrics and in /api/v1/snapshot, and the series count is what
  it was before; the agent's file descriptors are back to their pre-churn
  count; none of its inotify watches (the `inotify wd:` lines of its inotify
  fds' fdinfo) is on a directory that no longer exists (the total is printed:
  the agent watches the whole host's tree, whose own cgroups come and go);
  its RSS is back within RSS_TOLERANCE of the plateau.

The plateau: a warm-up first makes more cgroups at once than the churn ever
has, then churns WARMUP of them the same way; the plateau is the highest RSS
seen in it. Why 1 MiB: a leak of L bytes per cgroup grows RSS by 1,000 x L,
so this catches anything from about 1 KiB per cgroup (a leaked entry with
its paths and watches in six hierarchies is more), while what the allocator
keeps of freed memory moved RSS by -20 to +600 KiB over 1,000 cgroups here
(and stayed there over 5,000). Leaks of series, watches and fds are checked
exactly, not through RSS.

The agent runs with only the cgroups collector, filtered to the test's
parent, and --history=1s: the history is a cache of the last ticks by
design (10 minutes by default), which would hold the churn's series for
longer than this test runs; its bound is not what this test is about.

The test makes its cgroups only under its own parent nodeperf-test-churn-<pid>
in every hierarchy the agent reads (v1 cpu,cpuacct, memory, blkio, pids and
the v2 one on a hybrid host; the v2 root on a pure v2 host) and removes all of
them, deepest first, in finally. A quarter of the cgroups run a short
`sleep` (placed in the cgroup before it execs) so they have real figures; a
tenth have a child cgroup of their own; lifetimes range from nothing (removed
right after creation, well under a tick) to one second."""

import json
import os
import random
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Agent, Checks, http_get, parse_exposition, require_root, series, skip  # noqa: E402
import bpfutil  # noqa: E402

TICK = 0.1
SLACK = 0.3  # the tick's own run, publishing the snapshot, the scrape (2 shared cores)
WARMUP = 300
CHURN = 1000
BATCH = 20  # cgroups created per step
MAX_ALIVE = 80
LIFETIMES = (0.0, 0.0, 0.03, 0.15, 0.4, 1.0)  # seconds; 0 and 0.03 are shorter than a tick
RSS_TOLERANCE = 1 << 20
TIME_BUDGET = 100  # seconds for the whole test, checked as it goes
BASE = "/sys/fs/cgroup"
V1_CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids")  # what the agent reads on v1
OTHER_COLLECTORS = ("blockio", "cpu", "diskstats", "loadavg", "meminfo", "netdev", "netstat", "pressure", "process",
                    "runqueue", "tcp", "vmstat")
CGROUP_FAMILY = "nodeperf_cgroup_"
MIB = 1 << 20
MAX_DEPTH = 4  # --collector.cgroups.max-depth (the default): the agent watches the directories above it


def hierarchies():
    """The distinct directories of the hierarchies the agent reads, as it
    finds them (agent: detect_cgroup_layout), or None without cgroupfs."""
    if os.path.exists(f"{BASE}/cgroup.controllers"):
        return [BASE]  # pure v2
    found = []
    if os.path.exists(f"{BASE}/unified/cgroup.controllers"):
        found.append(f"{BASE}/unified")
    for ctrl in V1_CONTROLLERS:
        d = f"{BASE}/{ctrl}"
        if os.path.exists(f"{d}/cgroup.procs") and not os.path.exists(f"{d}/cgroup.controllers"):
            real = os.path.realpath(d)  # cpu and cpuacct: one "cpu,cpuacct" hierarchy
            if real not in found:
                found.append(real)
    return found or None


class CgroupTree:
    """The test's parent cgroup in every hierarchy, and the cgroups under it.
    Only ever creates and removes directories under its own parent."""

    def __init__(self, roots, name):
        self.roots = roots
        self.label = "/" + name
        self.made = []  # parent directories created, for cleanup
        for root in roots:
            os.mkdir(root + self.label)
            self.made.append(root + self.label)

    def mkdir(self, label):
        for root in self.roots:
            os.mkdir(root + label)

    def rmdir(self, label):
        for root in self.roots:
            for attempt in range(100):
                try:
                    os.rmdir(root + label)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY: the reaped process is still leaving the cgroup
                    if attempt == 99:
                        raise
                    time.sleep(0.01)

    def procs_files(self, label):
        return [f"{root}{label}/cgroup.procs" for root in self.roots]

    def cleanup(self):
        """Removes everything under the parent, deepest first, then the
        parent itself; warns about what could not be removed."""
        for parent in self.made:
            if not os.path.isdir(parent):
                continue
            for dirpath, _, _ in sorted(os.walk(parent), key=lambda w: -w[0].count("/")):
                for _ in range(50):
                    try:
                        os.rmdir(dirpath)
                        break
                    except FileNotFoundError:
                        break
                    except OSError:
                        time.sleep(0.1)
                else:
                    print(f"WARNING: could not remove {dirpath}")
        self.made = []


def join_cgroup(procs_files):
    """preexec_fn: the child enters the cgroup in every hierarchy before exec."""
    def enter():
        pid = str(os.getpid())
        for path in procs_files:
            with open(path, "w") as f:
                f.write(pid)
    return enter


def rss_bytes(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


def fds(pid):
    """(all fds, fds that are not sockets): connections come and go with scrapes."""
    names = os.listdir(f"/proc/{pid}/fd")
    others = 0
    for fd in names:
        try:
            others += not os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:
            pass
    return len(names), others


def inotify_watches(pid):
    """[(dev, ino)] watched by the process's inotify instances: the
    `inotify wd:` lines of their fdinfo (sdev is the kernel's dev_t)."""
    out = []
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:inotify":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                for line in f:
                    if line.startswith("inotify wd:"):
                        kv = dict(w.split(":", 1) for w in line.split()[1:] if ":" in w)
                        sdev = int(kv["sdev"], 16)
                        out.append((os.makedev(sdev >> 20, sdev & 0xfffff), int(kv["ino"], 16)))
        except OSError:
            pass
    return out


def live_dirs(roots, depth):
    """{(dev, ino)} of the directories down to `depth` in the hierarchies."""
    out = set()

    def walk(path, level):
        st = os.stat(path)
        out.add((st.st_dev, st.st_ino))
        if level < depth:
            try:
                with os.scandir(path) as it:
                    subdirs = [e.path for e in it if e.is_dir(follow_symlinks=False)]
            except FileNotFoundError:
                return
            for d in subdirs:
                try:
                    walk(d, level + 1)
                except FileNotFoundError:
                    pass
    for root in roots:
        walk(root, 0)
    return out


def dead_watches(pid, roots):
    """(watches, watches on directories that no longer exist): the agent
    watches every cgroup above its depth limit on the host, and the host's
    own cgroups come and go, so leaks are the watches on dead directories.
    One that the agent has yet to see go is gone within a tick: the least
    of a few looks over half a second."""
    least = None
    for _ in range(4):
        watches = inotify_watches(pid)
        dead = len(set(watches) - live_dirs(roots, MAX_DEPTH - 1))
        if least is None or dead < least[1]:
            least = (len(watches), dead)
        if dead == 0:
            break
        time.sleep(0.15)
    return least


def cgroup_labels(parsed):
    """{cgroup label value} over the cgroups collector's per-cgroup series."""
    return {dict(labels)["cgroup"] for (name, labels) in parsed if name.startswith(CGROUP_FAMILY)
            and "cgroup" in dict(labels)}


class Churn:
    """Creates and removes cgroups under the tree's parent, recording when
    each label appeared and disappeared, and checks scrapes against that."""

    def __init__(self, tree, agent, checks):
        self.tree, self.agent, self.c = tree, agent, checks
        self.rng = random.Random(4)
        self.alive = {}  # label -> {"ready": t, "until": t, "proc": Popen|None, "dirs": [labels, parent first]}
        self.removed = {}  # label -> time its last directory was gone
        self.created = 0
        self.with_proc = 0
        self.figures_seen = set()  # labels of process cgroups seen with pids_current >= 1
        self.scrapes = 0
        self.max_alive = 0
        self.max_stale_age = 0.0  # longest a removed cgroup was still served (within the allowance)
        self.max_tracked = 0
        self.rss_max = 0  # highest RSS seen at a scrape
        self.failures = {"stale": [], "missing": [], "labels": [], "tracked": []}

    def create(self, n):
        now = time.monotonic()
        for _ in range(n):
            i = self.created
            self.created += 1
            label = f"{self.tree.label}/c{i}"
            dirs = [label]
            self.tree.mkdir(label)
            if i % 10 == 7:
                dirs.append(label + "/g")
                self.tree.mkdir(label + "/g")
            life = self.rng.choice(LIFETIMES)
            proc = None
            if i % 4 == 1:
                self.with_proc += 1
                leaf = dirs[-1]
                proc = subprocess.Popen(["sleep", f"{max(life - 0.02, 0.01):.3f}"],
                                        preexec_fn=join_cgroup(self.tree.procs_files(leaf)))
            ready = time.monotonic()
            self.alive[label] = {"ready": ready, "until": ready + life, "proc": proc, "dirs": dirs}
        self.max_alive = max(self.max_alive, len(self.alive))
        return time.monotonic() - now

    def burst(self, n, hold):
        """n cgroups, each with a child, made at once and held for `hold`
        seconds: more than the churn ever has at once (MAX_ALIVE, a tenth
        with a child), so the agent's memory reaches its peak here."""
        for i in range(n):
            label = f"{self.tree.label}/b{i}"
            self.tree.mkdir(label)
            self.tree.mkdir(label + "/g")
            self.alive[label] = {"ready": time.monotonic(), "until": time.monotonic() + hold, "proc": None,
                                 "dirs": [label, label + "/g"]}
        self.drain()

    def drain(self):
        """Removes the cgroups as they expire, scraping in between."""
        while self.alive:
            self.remove_expired()
            self.scrape_and_check()
            time.sleep(0.02)

    def remove(self, label):
        entry = self.alive.pop(label)
        if entry["proc"]:
            if entry["proc"].poll() is None:
                entry["proc"].kill()
            entry["proc"].wait()
        for d in reversed(entry["dirs"]):
            self.tree.rmdir(d)
        gone = time.monotonic()
        for d in entry["dirs"]:
            self.removed[d] = gone

    def remove_expired(self):
        now = time.monotonic()
        for label in [l for l, e in self.alive.items() if e["until"] <= now]:
            self.remove(label)

    def scrape_and_check(self):
        """One scrape, checked against what existed around it."""
        t0 = time.monotonic()
        parsed = parse_exposition(self.agent.metrics())
        t1 = time.monotonic()
        self.scrapes += 1
        self.rss_max = max(self.rss_max, rss_bytes(self.agent.proc.pid))
        allowed = TICK + SLACK
        seen = cgroup_labels(parsed)
        alive_dirs = {d for e in self.alive.values() for d in e["dirs"]}
        for label in seen - alive_dirs - {self.tree.label}:
            gone = self.removed.get(label)
            if gone is None:
                self.failures["stale"].append(f"{label}: never created")
            elif t0 - gone > allowed:
                self.failures["stale"].append(f"{label} removed {t0 - gone:.3f} s before the scrape")
            else:
                self.max_stale_age = max(self.max_stale_age, t0 - gone)
        for label, e in self.alive.items():
            for d in e["dirs"]:
                if e["ready"] < t0 - allowed and d not in seen:
                    self.failures["missing"].append(f"{d} existed {t0 - e['ready']:.3f} s before the scrape")
        for (name, labels) in parsed:
            ld = dict(labels)
            if "cgroup" not in ld:
                continue
            bad = {k: v for k, v in ld.items() if v in ("", "unknown")}
            if bad:
                self.failures["labels"].append(f"{name}{ld}")
        info = series(parsed, "nodeperf_cgroup_info")
        tracked = series(parsed, "nodeperf_cgroups_tracked")
        tracked = next(iter(tracked.values()), None)
        if tracked != len(info) or {dict(k)["cgroup"] for k in info} != seen:
            self.failures["tracked"].append(f"tracked {tracked}, info series {len(info)}, cgroups {len(seen)}")
        self.max_tracked = max(self.max_tracked, tracked or 0)
        for k, v in series(parsed, "nodeperf_cgroup_pids_current").items():
            if v >= 1:
                self.figures_seen.add(dict(k)["cgroup"])
        return t1 - t0

    def run(self, total, deadline):
        """Creates `total` cgroups in batches, removing expired ones and
        scraping between batches; then removes the rest. Returns seconds."""
        start = time.monotonic()
        target = self.created + total
        while self.created < target:
            if time.monotonic() > deadline:
                raise AssertionError(f"over the time budget after {self.created} cgroups")
            room = MAX_ALIVE - len(self.alive)
            if room > 0:
                self.create(min(BATCH, room, target - self.created))
            self.remove_expired()
            self.scrape_and_check()
            time.sleep(0.01)
        self.drain()
        return time.monotonic() - start

    def report(self, what):
        for kind, items in self.failures.items():
            self.c.check(not items, f"{what}: {kind}: {len(items)}, first: {items[:3]}")
            items.clear()


def stable_value(read, timeout=3):
    """read() once it gives the same value twice in a row 0.2 s apart."""
    last = read()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        time.sleep(0.2)
        now = read()
        if now == last:
            return now
        last = now
    return last


def main():
    require_root()
    roots = hierarchies()
    if not roots:
        skip(f"no cgroup hierarchy the agent reads under {BASE}")
    c = Checks()
    start = time.monotonic()
    deadline = start + TIME_BUDGET
    tree, agent, churn = None, None, None
    try:
        tree = CgroupTree(roots, f"nodeperf-test-churn-{os.getpid()}")
        print(f"hierarchies: {', '.join(roots)}")
        agent = Agent(f"--tick={int(TICK * 1000)}ms", "--history=1s",
                      *[f"--no-collector.{n}" for n in OTHER_COLLECTORS],
                      "--collector.cgroups", f"--collector.cgroups.max-depth={MAX_DEPTH}",
                      f"--collector.cgroups.include=^{tree.label}(/|$)")
        pid = agent.proc.pid
        bpfutil.wait_snapshots(agent, 3)
        rss_start = rss_bytes(pid)
        churn = Churn(tree, agent, c)

        # Warm-up: the churn's peak at once, then the same churn, smaller,
        # so the agent's memory reaches its plateau.
        churn.burst(MAX_ALIVE, 5 * TICK)
        rss_burst = rss_bytes(pid)
        t = churn.run(WARMUP, deadline)
        churn.report("warm-up")
        bpfutil.wait_snapshots(agent, 3)
        rss_settled = stable_value(lambda: rss_bytes(pid))
        # The plateau: the highest the warm-up took RSS to. The allocator
        # keeps some freed memory, and how much varies with where the
        # churn happens to be at each tick; a leak shows as growth past it.
        rss_plateau = max(churn.rss_max, rss_settled)
        fds_before = stable_value(lambda: fds(pid))
        watches_before = dead_watches(pid, roots)
        series_before = len(bpfutil.scrape(agent))
        print(f"warm-up: {2 * MAX_ALIVE} cgroups at once, then {WARMUP} churned in {t:.1f} s; RSS "
              f"{rss_start / MIB:.2f} MiB at start, {rss_burst / MIB:.2f} MiB after the burst, "
              f"{rss_settled / MIB:.2f} MiB settled, {rss_plateau / MIB:.2f} MiB plateau (highest)")

        # The churn.
        created0, procs0 = churn.created, churn.with_proc
        churn.rss_max = 0
        t = churn.run(CHURN, deadline)
        rss_peak = churn.rss_max
        watches_end = len(inotify_watches(pid))
        churn.report("churn")
        made = churn.created - created0
        print(f"churn: {made} cgroups ({churn.with_proc - procs0} with a process, {made // 10} with a child) "
              f"created and removed in {t:.1f} s: {made / t:.0f} cgroups/s; {churn.scrapes} scrapes in all, "
              f"up to {churn.max_alive} test cgroups alive, {churn.max_tracked:.0f} tracked; a removed cgroup "
              f"served at most {churn.max_stale_age * 1000:.0f} ms after removal (allowed {(TICK + SLACK) * 1000:.0f})")
        c.check(churn.created == WARMUP + CHURN, f"{WARMUP + CHURN} cgroups made: {churn.created}")
        print(f"cgroups seen with a process in them (pids_current >= 1): {len(churn.figures_seen)}")
        c.check(len(churn.figures_seen) > 0, "cgroups with a process were seen with pids_current >= 1")

        # After: what exists is what is exported.
        parsed, _ = bpfutil.wait_snapshots(agent, 3)
        left = cgroup_labels(parsed)
        c.check(left == {tree.label}, f"/metrics exports exactly the parent: {sorted(left)[:5]}")
        tracked = series(parsed, "nodeperf_cgroups_tracked")
        c.check(list(tracked.values()) == [1], f"nodeperf_cgroups_tracked is 1: {tracked}")
        status, _, body = http_get(agent.url + "/api/v1/snapshot")
        snap = json.loads(body) if status == 200 else {"families": []}
        in_snapshot = {s["labels"]["cgroup"] for f in snap["families"] for s in f["samples"]
                       if "cgroup" in s["labels"]}
        c.check(status == 200 and in_snapshot == {tree.label},
                f"/api/v1/snapshot has exactly the parent: {status} {sorted(in_snapshot)[:5]}")
        errors = series(parsed, "nodeperf_collector_errors_total", collector="cgroups")
        c.check(list(errors.values()) == [0], f"no cgroups collector errors: {errors}; log: {agent.log()[-500:]}")

        series_after = len(parsed)
        fds_after = stable_value(lambda: fds(pid))
        watches_after = dead_watches(pid, roots)
        rss_end = stable_value(lambda: rss_bytes(pid))
        print(f"series: {series_before} before the churn, {series_after} after")
        print(f"fds (all, not sockets): {fds_before} before, {fds_after} after")
        print(f"inotify watches (all, on removed directories): {watches_before} before, {watches_end} all as the "
              f"churn ended, {watches_after} after")
        print(f"RSS: {rss_start / MIB:.2f} MiB start, {rss_plateau / MIB:.2f} MiB plateau, "
              f"{rss_peak / MIB:.2f} MiB peak, {rss_end / MIB:.2f} MiB end "
              f"({(rss_end - rss_plateau) / 1024:+.0f} KiB; tolerance {RSS_TOLERANCE / 1024:.0f} KiB)")
        c.check(series_after == series_before, f"series count back: {series_before} -> {series_after}")
        c.check(fds_after[1] == fds_before[1], f"non-socket fds back: {fds_before} -> {fds_after}")
        c.check(fds_after[0] <= fds_before[0], f"fds back: {fds_before} -> {fds_after}")
        c.check(watches_before[1] == 0 and watches_after[1] == 0,
                f"no inotify watches on removed directories: {watches_before[1]} before, {watches_after[1]} after")
        c.check(rss_end <= rss_plateau + RSS_TOLERANCE,
                f"RSS back to the plateau: {rss_plateau / MIB:.2f} -> {rss_end / MIB:.2f} MiB")
        c.check(agent.proc.poll() is None, "agent still running")
    except Exception as e:
        c.check(False, f"{type(e).__name__}: {e}")
    finally:
        if churn:
            for e in churn.alive.values():
                if e["proc"]:
                    bpfutil.kill_all([e["proc"]])
        if tree:
            tree.cleanup()
        if agent:
            agent.stop()
    print(f"info: ran in {time.monotonic() - start:.1f}s")
    c.done()


if __name__ == "__main__":
    main()
