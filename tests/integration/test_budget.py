#!/usr/bin/env python3
"""Overhead budget: with a tiny budget (0.01% of a core) and a 100 ms tick
the agent degrades one level per window up to the last (high-rate probes
sampled 1 in 8, tick x4, runqueue, tcp and cgroups collectors stopped), and
exports and logs each step; a SIGHUP that raises the budget far above its
use restores it one level per window back to level 0. Checks the agent's
exported state, not timings.
As root, the sampling is checked against real IO: 4003 O_DIRECT reads of a
loop device the test makes, at the last level, must come out of the
sampled blockio probe as a multiple of 8 (each counted read stands for 8)
within 5 standard deviations of 4003; the same reads once restored, exactly.
And the run-queue probe's count grows by multiples of 8 while it samples.
As root, the BPF side: while this script holds a BPF_ENABLE_STATS
descriptor (a few seconds; the kernel then counts every program's run time,
which is all it changes), the agent sees stats on and counts its programs'
time."""

import ctypes
import json
import os
import signal
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Agent, Checks, http_get, parse_exposition, series, wait_until  # noqa: E402
from bpfutil import LoopDevice, timed_direct_io, wait_snapshots  # noqa: E402

checks = Checks()
check = checks.check
TMP = tempfile.mkdtemp(prefix="nodeperf-budget-")
CONFIG = os.path.join(TMP, "nodeperf.yaml")
LAST_LEVEL = 5
SAMPLE_ONE_IN = 8
READS = 4003  # not a multiple of 8: a count scaled by 8 never equals it


def write_config(cpu, window="1s"):
    tmp = CONFIG + ".new"
    with open(tmp, "w") as f:
        f.write(f"budget:\n  cpu: {cpu}\n  window: {window}\n")
    os.replace(tmp, CONFIG)


def state(agent):
    return parse_exposition(agent.metrics())


def one(parsed, name, **labels):
    found = series(parsed, name, **labels)
    return next(iter(found.values())) if len(found) == 1 else None


def snapshot_gaps(agent, seconds=2.5):
    """Seconds between the distinct snapshot times seen while polling."""
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        status, _, body = http_get(agent.url + "/api/v1/snapshot")
        if status == 200:
            t = json.loads(body)["time"]
            if not times or t != times[-1]:
                times.append(t)
        time.sleep(0.03)
    return sorted(b - a for a, b in zip(times, times[1:]))


def median(values):
    return values[len(values) // 2] if values else None


def cpu_rate(agent, seconds=3.0):
    """The agent's CPU seconds per second, from its own process CPU counter."""
    def sample():
        return one(state(agent), "nodeperf_budget_cpu_seconds_total", source="process"), time.monotonic()
    (c0, t0) = sample()
    time.sleep(seconds)
    (c1, t1) = sample()
    return (c1 - c0) / (t1 - t0)


def level(agent):
    return one(state(agent), "nodeperf_budget_level")


def counted_reads(agent, loop):
    """Does READS O_DIRECT 4 KiB reads of the loop device; returns how many
    the agent's blockio probe counted on it."""
    def count():
        return one(state(agent), "nodeperf_disk_io_latency_seconds_count", device=loop.name, op="read") or 0
    before = count()
    timed_direct_io(loop.path, [("read", (i % 4096) * 4096) for i in range(READS)])
    wait_snapshots(agent, 2)  # drained by the tick after they completed
    return count() - before


def make_loop():
    """A loop device for the sampling checks, or None (not root, no blockio)."""
    if os.geteuid() != 0:
        print("info: not root: the sampling checks against real IO are skipped")
        return None
    try:
        return LoopDevice(TMP, size=16 << 20, name="sampled")
    except OSError as e:
        print(f"info: no loop device ({e}): the sampling checks against real IO are skipped")
        return None


def test_degrade_and_restore():
    write_config(0.01)
    loop = make_loop()
    try:
        degrade_and_restore(loop)
    finally:
        if loop:
            loop.close()


def degrade_and_restore(loop):
    with Agent("--tick=100ms", config=CONFIG) as agent:
        first = state(agent)
        check(one(first, "nodeperf_budget_sampling_ratio") == 1, "every event counted before degrading")
        blockio = loop is not None and one(first, "nodeperf_collector_up", collector="blockio") == 1
        if loop is not None and not blockio:
            print("info: blockio probe not running here: the sampling checks against real IO are skipped")
        check(one(first, "nodeperf_budget_limit_ratio") == 0.0001, "limit ratio is budget.cpu / 100")
        check(one(first, "nodeperf_budget_tick_seconds") == 0.1, "tick 100ms before degrading")
        check(one(first, "nodeperf_budget_cpu_seconds_total", source="process") is not None, "process CPU exported")
        check(one(first, "nodeperf_budget_cpu_seconds_total", source="bpf") is not None, "BPF CPU exported")
        check(one(first, "nodeperf_budget_bpf_stats_enabled") in (0, 1), "bpf_stats_enabled exported")
        gaps_before = snapshot_gaps(agent, 1.0) if level(agent) == 0 else []

        wait_until(lambda: level(agent) == LAST_LEVEL, timeout=40, what=f"budget level {LAST_LEVEL}")
        s = state(agent)
        check(one(s, "nodeperf_budget_tick_seconds") == 0.4, "tick x4 at the last level")
        check(one(s, "nodeperf_budget_changes_total", direction="up") == LAST_LEVEL, "one change per level up")
        check(one(s, "nodeperf_budget_usage_ratio") is not None, "usage ratio exported")
        for c in ("runqueue", "tcp", "cgroups"):
            check(one(s, "nodeperf_budget_collector_dropped", collector=c) == 1, f"{c} dropped")
            check(not series(s, "nodeperf_collector_up", collector=c), f"{c} no longer runs")
        check(one(s, "nodeperf_collector_up", collector="cpu") == 1, "cpu collector still runs")
        check(one(s, "nodeperf_budget_sampling_ratio") == 1 / SAMPLE_ONE_IN, "high-rate probes sampled 1 in 8")
        check(one(s, "nodeperf_budget_collector_dropped", collector="blockio") is None, "blockio is never dropped")
        if blockio:
            got = counted_reads(agent, loop)
            bound = 5 * (READS * (SAMPLE_ONE_IN - 1)) ** 0.5  # 5 sd of a binomial(READS, 1/8) count, times 8
            print(f"info: sampled 1 in {SAMPLE_ONE_IN}: {READS} reads counted as {got} "
                  f"({100 * (got - READS) / READS:+.1f}%, 5 sd = {100 * bound / READS:.1f}%)")
            check(got % SAMPLE_ONE_IN == 0, f"sampled read count {got} is a multiple of {SAMPLE_ONE_IN}")
            check(abs(got - READS) <= bound, f"sampled read count {got} within {bound:.0f} of {READS}")
        log = agent.log()
        for n in range(LAST_LEVEL):
            check(f"overhead budget: level {n} -> {n + 1} (CPU " in log, f"logged level {n} -> {n + 1}")
        check("stopped: runqueue, tcp, cgroups" in log or "stopped: cgroups, runqueue, tcp" in log,
              "the last level's log line names the stopped collectors")
        check("level 0 -> 1 (CPU " in log and "): sampling 1 in 8, tick 100ms" in log,
              "the first level's log line says it samples")
        gaps_after = snapshot_gaps(agent)
        check(median(gaps_after) is not None and median(gaps_after) >= 0.3,
              f"snapshots ~0.4 s apart at the last level, median gap {median(gaps_after)}")
        rate_after = cpu_rate(agent)

        write_config(400)
        agent.signal(signal.SIGHUP)
        wait_until(lambda: level(agent) == 0, timeout=40, what="budget level 0 after raising the budget")
        s = state(agent)
        check(one(s, "nodeperf_budget_limit_ratio") == 4, "reloaded budget")
        check(one(s, "nodeperf_budget_tick_seconds") == 0.1, "tick back to 100ms")
        check(one(s, "nodeperf_budget_sampling_ratio") == 1, "every event counted again")
        if blockio:
            got = counted_reads(agent, loop)
            check(got == READS, f"restored: {READS} reads counted exactly, got {got}")
        check(one(s, "nodeperf_budget_changes_total", direction="down") == LAST_LEVEL, "one change per level down")
        for c in ("runqueue", "tcp", "cgroups"):
            check(one(s, "nodeperf_budget_collector_dropped", collector=c) == 0, f"{c} restored")
            check(one(s, "nodeperf_collector_up", collector=c) is not None, f"{c} runs again")
        log = agent.log()
        for n in range(LAST_LEVEL, 0, -1):
            check(f"overhead budget: level {n} -> {n - 1} (CPU " in log, f"logged level {n} -> {n - 1}")
        gaps_restored = snapshot_gaps(agent, 1.5)
        check(median(gaps_restored) is not None and median(gaps_restored) < 0.25,
              f"snapshots ~0.1 s apart again, median gap {median(gaps_restored)}")
        rate_restored = cpu_rate(agent)
        fmt = lambda r: "n/a" if r is None else f"{100 * r:.2f}%"  # noqa: E731
        print(f"info: agent CPU over 3 s at level {LAST_LEVEL}: {fmt(rate_after)} of a core, "
              f"back at level 0: {fmt(rate_restored)}; "
              f"median snapshot gap at start {median(gaps_before)}, degraded {median(gaps_after)}, "
              f"restored {median(gaps_restored)}")


def test_runqueue_sampled():
    """Between two scrapes at a sampling level (1 to 3: the runqueue probe
    still runs), its counts grow by multiples of 8 only."""
    if os.geteuid() != 0:
        print("info: not root: runqueue sampling check skipped")
        return
    write_config(0.01, window="3s")
    with Agent("--tick=100ms", config=CONFIG) as agent:
        if one(state(agent), "nodeperf_collector_up", collector="runqueue") != 1:
            print("info: runqueue probe not running here: its sampling check skipped")
            return
        wait_until(lambda: one(state(agent), "nodeperf_budget_sampling_ratio") == 1 / SAMPLE_ONE_IN, timeout=20,
                   what="sampling")
        count = lambda s: one(s, "nodeperf_runqueue_latency_seconds_count")  # noqa: E731
        first = state(agent)
        time.sleep(1.5)
        second = state(agent)
        levels = (one(first, "nodeperf_budget_level"), one(second, "nodeperf_budget_level"))
        if max(levels) > 3:
            print(f"info: levels {levels}: the runqueue probe stopped meanwhile, check skipped")
            return
        grew = count(second) - count(first)
        print(f"info: runqueue events counted in 1.5 s while sampling 1 in {SAMPLE_ONE_IN}: {grew:.0f}")
        check(grew > 0 and grew % SAMPLE_ONE_IN == 0, f"runqueue count grew by {grew}, a multiple of 8")


def test_off_restores_at_once():
    write_config(0.01)
    with Agent("--tick=100ms", config=CONFIG) as agent:
        wait_until(lambda: (level(agent) or 0) >= 2, timeout=30, what="budget level 2")
        write_config(0)
        agent.signal(signal.SIGHUP)
        wait_until(lambda: level(agent) == 0, timeout=5, what="level 0 once the budget is off")
        s = state(agent)
        check(one(s, "nodeperf_budget_limit_ratio") == 0, "budget off")
        check(one(s, "nodeperf_budget_tick_seconds") == 0.1, "tick back to 100ms at once")
        check("overhead budget: level" in agent.log() and "(budget turned off)" in agent.log(),
              "logged the restore with its reason")


def enable_bpf_stats():
    """A BPF_ENABLE_STATS descriptor (stats on while it is open), or None."""
    libc = ctypes.CDLL(None, use_errno=True)
    attr = (ctypes.c_uint8 * 8)()  # enable_stats.type = BPF_STATS_RUN_TIME (0)
    nr_bpf = {"x86_64": 321, "aarch64": 280}.get(os.uname().machine)
    if nr_bpf is None:
        return None
    fd = libc.syscall(nr_bpf, 32, attr, ctypes.sizeof(attr))  # cmd 32: BPF_ENABLE_STATS
    return fd if fd >= 0 else None


def test_bpf_time_counted_when_stats_on():
    if os.geteuid() != 0:
        print("info: not root: BPF time check skipped")
        return
    with Agent("--tick=200ms") as agent:
        if one(state(agent), "nodeperf_collector_up", collector="runqueue") != 1:
            print("info: runqueue probe not running here: BPF time check skipped")
            return
        fd = enable_bpf_stats()
        if fd is None:
            print("info: BPF_ENABLE_STATS refused: BPF time check skipped")
            return
        try:
            wait_until(lambda: one(state(agent), "nodeperf_budget_cpu_seconds_total", source="bpf") > 0,
                       timeout=10, what="BPF run time counted")
            wait_until(lambda: one(state(agent), "nodeperf_budget_bpf_stats_enabled") == 1,
                       timeout=10, what="stats seen on")
        finally:
            os.close(fd)
        check(True, "BPF run time counted while stats are on")


checks.run(test_degrade_and_restore, test_runqueue_sampled, test_off_restores_at_once,
           test_bpf_time_counted_when_stats_on)
checks.done()
