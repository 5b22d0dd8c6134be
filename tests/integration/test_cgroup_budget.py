"""The cgroup budget against the real kernel (root): over
--collector.cgroups.max, cgroups are folded into cgroup="other".

The test makes nodeperf-test-budget-<pid> with six children c0..c5 in every
hierarchy the collector reads and runs the agent on them alone with a
budget of 2 and a 100 ms tick (so the ranking, every 60 ticks, comes every
6 s). It checks:
- c0 and c1 (path order) have series of their own; c2..c5 have none, and
  tracked/folded say 2 and 4;
- a child in c5 burns CPU: `other`'s CPU counter grows by the child's own
  rusage (within 10% + 50 ms), c0's does not move;
- at the next ranking c5, the busy one, takes a place: its own series
  appear, one swap is counted, two cgroups are still tracked;
- `other`'s CPU counter never goes back, scrape after scrape;
- once c5 is removed, its series are gone and its place is taken again;
- with fewer file descriptors than cgroup directories (prlimit 2100, 300
  more cgroups x 6 hierarchies), the collector's directory descriptors
  leave a reserve of 1024 for everything else (sockets, BPF objects, the
  files it reads): it still reads every cgroup (the rest by full path)
  and the endpoint still answers.
Nothing but the test's own cgroups is touched; they are removed in finally."""

import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Agent, Checks, require_root, series, skip  # noqa: E402
import bpfutil  # noqa: E402

BASE = "/sys/fs/cgroup"
CHILDREN = [f"c{i}" for i in range(6)]
BURN = "import time\nend = time.process_time() + float(input())\nwhile time.process_time() < end: pass\nprint('ok', flush=True)\n"


def hierarchies():
    """Each mounted hierarchy the collector reads, once (cpu and cpuacct may be one)."""
    out = []
    if os.path.exists(f"{BASE}/cgroup.controllers"):
        return [BASE]
    for name in ("cpu", "cpuacct", "memory", "blkio", "pids", "unified"):
        real = os.path.realpath(f"{BASE}/{name}")
        if os.path.exists(f"{real}/cgroup.procs") and real not in out:
            out.append(real)
    return out


def value(parsed, name, **labels):
    """The one series' value, or None when there is none."""
    found = series(parsed, name, **labels)
    assert len(found) <= 1, f"{name}{labels}: {len(found)} series"
    return next(iter(found.values()), None)


def cpu_seconds(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def own_cgroups(parsed, parent):
    return {dict(labels)["cgroup"] for labels in series(parsed, "nodeperf_cgroup_cpu_usage_seconds_total")
            if dict(labels)["cgroup"].startswith(parent + "/")}


def main():
    require_root()
    roots = hierarchies()
    if not roots:
        skip("no cgroup hierarchy mounted at /sys/fs/cgroup")
    c = Checks()
    parent = f"/nodeperf-test-budget-{os.getpid()}"
    made, child, agent = [], None, None
    try:
        for root in roots:
            for d in [parent] + [f"{parent}/{n}" for n in CHILDREN]:
                os.mkdir(root + d)
                made.append(root + d)
        agent = Agent("--tick=100ms", f"--collector.cgroups.include=^{parent}/", "--collector.cgroups.max=2")
        parsed, _ = bpfutil.wait_snapshots(agent, 2)
        mine = own_cgroups(parsed, parent)
        print(f"own series: {sorted(mine)}")
        c.check(mine == {f"{parent}/c0", f"{parent}/c1"}, "c0 and c1 (path order) have series of their own")
        c.check(value(parsed, "nodeperf_cgroups_tracked") == 2 and value(parsed, "nodeperf_cgroups_folded") == 4,
                "tracked 2, folded 4")
        c.check(value(parsed, "nodeperf_cgroup_cpu_usage_seconds_total", cgroup="other") is not None,
                "an `other` series exists")

        # CPU burnt in a folded cgroup lands in `other`.
        child = subprocess.Popen([sys.executable, "-c", BURN], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for root in roots:
            with open(f"{root}{parent}/c5/cgroup.procs", "w") as f:
                f.write(str(child.pid))
        parsed, _ = bpfutil.wait_snapshots(agent, 2)
        other0 = value(parsed, "nodeperf_cgroup_cpu_usage_seconds_total", cgroup="other")
        c0_0 = value(parsed, "nodeperf_cgroup_cpu_usage_seconds_total", cgroup=f"{parent}/c0")
        r0 = cpu_seconds(child.pid)
        child.stdin.write("0.6\n")
        child.stdin.flush()
        assert child.stdout.readline().strip() == "ok"
        want = cpu_seconds(child.pid) - r0
        parsed, _ = bpfutil.wait_snapshots(agent, 2)
        got = value(parsed, "nodeperf_cgroup_cpu_usage_seconds_total", cgroup="other") - other0
        print(f"cpu: child used {want:.3f} s, other grew {got:.3f} s")
        c.check(abs(got - want) <= 0.1 * want + 0.05, "other's CPU grew by the folded child's CPU")
        c.check(value(parsed, "nodeperf_cgroup_cpu_usage_seconds_total", cgroup=f"{parent}/c0") == c0_0,
                "a tracked cgroup's CPU did not move")

        # The next ranking (every 60 ticks) gives c5 a place; `other` never goes back.
        last_other, went_back, swapped = 0.0, False, False
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            parsed = bpfutil.scrape(agent)
            o = value(parsed, "nodeperf_cgroup_cpu_usage_seconds_total", cgroup="other")
            went_back = went_back or (o is not None and o < last_other)
            last_other = o if o is not None else last_other
            if f"{parent}/c5" in own_cgroups(parsed, parent):
                swapped = True
                break
            time.sleep(0.1)
        mine = own_cgroups(parsed, parent)
        print(f"after ranking: own series {sorted(mine)}, swaps {value(parsed, 'nodeperf_cgroups_rank_swaps_total')}")
        c.check(swapped, "the busy cgroup took a place at the ranking")
        c.check(value(parsed, "nodeperf_cgroups_rank_swaps_total") == 1, "one swap counted")
        c.check(len(mine) == 2 and value(parsed, "nodeperf_cgroups_tracked") == 2, "still two cgroups tracked")
        c.check(not went_back, "other's CPU counter never went back")
        own = value(parsed, "nodeperf_cgroup_cpu_usage_seconds_total", cgroup=f"{parent}/c5")
        c.check(own is not None and own >= want, "c5's own series carries its whole CPU time")

        # Removing c5 frees its place for a folded one.
        child.stdin.close()
        child.wait(10)
        child = None
        for root in roots:
            os.rmdir(f"{root}{parent}/c5")
            made.remove(f"{root}{parent}/c5")
        parsed, _ = bpfutil.wait_snapshots(agent, 2)
        mine = own_cgroups(parsed, parent)
        print(f"after rmdir c5: own series {sorted(mine)}")
        c.check(f"{parent}/c5" not in mine and len(mine) == 2, "c5's series are gone and its place is taken")
        c.check(value(parsed, "nodeperf_cgroups_folded") == 3, "three cgroups folded")
        c.check(value(parsed, "nodeperf_cgroup_cpu_usage_seconds_total", cgroup="other") >= last_other,
                "other's CPU counter did not go back")
        agent.stop()
        agent = None

        # More cgroup directories than descriptors.
        many = [f"{parent}/m{i:03d}" for i in range(300)]
        for root in roots:
            for d in many:
                os.mkdir(root + d)
                made.append(root + d)
        limit = 2100
        agent = Agent("--tick=200ms", f"--collector.cgroups.include=^{parent}/m", wrap=["prlimit", f"--nofile={limit}:{limit}"])
        parsed, _ = bpfutil.wait_snapshots(agent, 2)
        fd_dir = f"/proc/{agent.pid}/fd"
        targets = []
        for fd in os.listdir(fd_dir):
            try:
                targets.append(os.readlink(f"{fd_dir}/{fd}"))
            except OSError:
                pass  # closed meanwhile
        cgroup_dirs = sum(1 for t in targets if t.startswith("/sys/fs/cgroup"))
        have = own_cgroups(parsed, parent)
        print(f"fd limit {limit}: {len(targets)} descriptors open, {cgroup_dirs} of them cgroup directories; "
              f"{len(have)} of {len(many)} cgroups with series "
              f"({len(roots)} hierarchies: {len(many) * len(roots)} directories)")
        c.check(have == set(many), "every cgroup read with too few descriptors for all directories")
        # The reserve is for everything else: sockets, BPF objects, the files read each tick.
        c.check(cgroup_dirs <= limit - 1024, f"cgroup directories hold {cgroup_dirs} descriptors, "
                                             f"at most the limit less a reserve of 1024")
        c.check(len(targets) < limit - 512, f"{len(targets)} descriptors open: the reserve is mostly free")
        c.check(bpfutil.wait_snapshots(agent, 2) is not None, "the endpoint keeps answering")
    finally:
        if child:
            child.kill()
            child.wait()
        if agent:
            agent.stop()
        for d in sorted(made, key=lambda p: -p.count("/")):
            try:
                os.rmdir(d)
            except OSError as e:
                print(f"cleanup: {d}: {e}", file=sys.stderr)
    return c.done()


if __name__ == "__main__":
    sys.exit(main())
