"""The cgroups collector against the real kernel (root; this machine is
hybrid: v1 controllers at /sys/fs/cgroup/<ctrl>, v2 at .../unified). The
test makes its own cgroup nodeperf-test-<pid> in the cpu, cpuacct, memory,
blkio and pids hierarchies and in unified, runs a child in it that does
known work, and checks the agent's figures:

- CPU: the child burns CPU; the cgroup's usage grows by the child's own
  rusage (user + system) within 10% + 50 ms;
- memory: the child touches 64 MiB; usage and RSS grow by 64 MiB within
  -2 / +16 MiB (interpreter pages come and go);
- IO: 256 O_DIRECT writes of 4 KiB to a loop device: written bytes and
  write ops of that device grow by exactly 1 MiB and 256;
- a CPU quota of 20% throttles the burner: throttled periods and time rise;
- once the cgroup is removed, its series are gone at the next tick.
Nothing but the test's own cgroups is touched; they are removed in finally."""

import os
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Agent, Checks, require_root, series, skip  # noqa: E402
import bpfutil  # noqa: E402

TICK = 0.5
BASE = "/sys/fs/cgroup"
CONTROLLERS = ("cpu", "cpuacct", "memory", "blkio", "pids", "unified")

# The child: one command per line on stdin, "ok" on stdout when done.
CHILD = r"""import mmap, os, sys, time
held = []
for line in sys.stdin:
    cmd = line.split()
    if cmd[0] == "cpu":
        end = time.process_time() + float(cmd[1])
        while time.process_time() < end:
            pass
    elif cmd[0] == "wall":
        end = time.monotonic() + float(cmd[1])
        while time.monotonic() < end:
            pass
    elif cmd[0] == "mem":
        b = bytearray(int(cmd[1]))
        for i in range(0, len(b), 4096):
            b[i] = 1
        held.append(b)
    elif cmd[0] == "io":
        buf = mmap.mmap(-1, 4096)
        buf.write(b"\xa5" * 4096)
        fd = os.open(cmd[1], os.O_WRONLY | os.O_DIRECT)
        for i in range(int(cmd[2])):
            assert os.pwritev(fd, [buf], i * 4096) == 4096
        os.close(fd)
    print("ok", flush=True)
"""


def scrape_value(agent, name, label, **more):
    found = series(bpfutil.scrape(agent), name, cgroup=label, **more)
    return sum(found.values()) if found else None


def settle(agent, n=2):
    bpfutil.wait_snapshots(agent, n)


def main():
    require_root()
    if not all(os.path.isdir(f"{BASE}/{c}") for c in CONTROLLERS):
        skip("not the hybrid layout this test is written for (v1 controllers plus unified)")
    c = Checks()
    name = f"nodeperf-test-{os.getpid()}"
    label = "/" + name
    made, child, agent, loop, tmp = [], None, None, None, None
    try:
        seen = set()
        for ctrl in CONTROLLERS:
            real = os.path.realpath(f"{BASE}/{ctrl}")
            if real in seen:
                continue
            seen.add(real)
            os.mkdir(f"{real}/{name}")
            made.append(f"{real}/{name}")
        tmp = tempfile.mkdtemp(prefix="nodeperf-cg-")
        loop = bpfutil.LoopDevice(tmp, size=16 << 20)
        # v1 blkio accounts IO only on queues with throttling set up (kernel
        # 6.x initialises it lazily): a limit nobody reaches turns it on.
        with open(f"{BASE}/blkio/{name}/blkio.throttle.write_bps_device", "w") as f:
            f.write(f"{loop.major}:{loop.minor} {1 << 40}")

        child = subprocess.Popen([sys.executable, "-c", CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        for d in made:
            with open(f"{d}/cgroup.procs", "w") as f:
                f.write(str(child.pid))

        def do(cmd):
            child.stdin.write(cmd + "\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "ok", cmd

        agent = Agent(f"--tick={int(TICK * 1000)}ms", f"--collector.cgroups.include=^/{name}$")
        settle(agent)

        # CPU
        u0 = scrape_value(agent, "nodeperf_cgroup_cpu_usage_seconds_total", label)
        r0 = open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()
        do("cpu 1.0")
        r1 = open(f"/proc/{child.pid}/stat").read().rsplit(")", 1)[1].split()
        hz = os.sysconf("SC_CLK_TCK")
        want = (int(r1[11]) + int(r1[12]) - int(r0[11]) - int(r0[12])) / hz
        settle(agent)
        u1 = scrape_value(agent, "nodeperf_cgroup_cpu_usage_seconds_total", label)
        got = (u1 or 0) - (u0 or 0)
        print(f"cpu: child used {want:.3f} s (stat), agent's usage grew {got:.3f} s")
        c.check(u0 is not None and abs(got - want) <= 0.1 * want + 0.05, "cpu usage agrees with the child's")

        # Memory
        m0 = scrape_value(agent, "nodeperf_cgroup_memory_usage_bytes", label)
        s0 = scrape_value(agent, "nodeperf_cgroup_memory_rss_bytes", label)
        do(f"mem {64 << 20}")
        settle(agent, 6)  # memory.stat is read every 5th tick (docs/cgroups.md)
        m1 = scrape_value(agent, "nodeperf_cgroup_memory_usage_bytes", label)
        s1 = scrape_value(agent, "nodeperf_cgroup_memory_rss_bytes", label)
        ws = scrape_value(agent, "nodeperf_cgroup_memory_working_set_bytes", label)
        mib = 1 << 20
        print(f"memory: usage +{((m1 or 0) - (m0 or 0)) / mib:.1f} MiB, rss +{((s1 or 0) - (s0 or 0)) / mib:.1f} MiB, "
              f"working set {(ws or 0) / mib:.1f} MiB (64 MiB touched)")
        c.check(m0 is not None and 62 * mib <= m1 - m0 <= 80 * mib, "memory usage grew by 64 MiB")
        c.check(s0 is not None and 62 * mib <= s1 - s0 <= 80 * mib, "rss grew by 64 MiB")
        c.check(ws is not None and ws >= 64 * mib, "working set at least the touched memory")

        # IO
        dev = dict(device=loop.name)
        b0 = scrape_value(agent, "nodeperf_cgroup_io_written_bytes_total", label, **dev) or 0
        o0 = scrape_value(agent, "nodeperf_cgroup_io_writes_total", label, **dev) or 0
        do(f"io {loop.path} 256")
        settle(agent)
        b1 = scrape_value(agent, "nodeperf_cgroup_io_written_bytes_total", label, **dev) or 0
        o1 = scrape_value(agent, "nodeperf_cgroup_io_writes_total", label, **dev) or 0
        print(f"io: {loop.name} written +{b1 - b0:.0f} bytes in +{o1 - o0:.0f} writes (1 MiB in 256 expected)")
        c.check(b1 - b0 == 1 << 20, "written bytes: exactly 1 MiB")
        c.check(o1 - o0 == 256, "write ops: exactly 256")

        # Quota: 20 ms per 100 ms period.
        t0 = scrape_value(agent, "nodeperf_cgroup_cpu_throttled_periods_total", label) or 0
        ts0 = scrape_value(agent, "nodeperf_cgroup_cpu_throttled_seconds_total", label) or 0
        with open(f"{BASE}/cpu/{name}/cpu.cfs_quota_us", "w") as f:
            f.write("20000")
        do("wall 1.5")
        settle(agent)
        t1 = scrape_value(agent, "nodeperf_cgroup_cpu_throttled_periods_total", label) or 0
        ts1 = scrape_value(agent, "nodeperf_cgroup_cpu_throttled_seconds_total", label) or 0
        print(f"quota 20%: throttled periods +{t1 - t0:.0f}, throttled time +{ts1 - ts0:.3f} s over 1.5 s")
        c.check(t1 - t0 >= 5, "throttled periods rose")
        c.check(ts1 - ts0 >= 0.5, "throttled time rose (about 80% of 1.5 s)")

        # PSI from unified and pids from v1.
        c.check(scrape_value(agent, "nodeperf_cgroup_pids_current", label) == 1, "pids.current is the one child")
        c.check(scrape_value(agent, "nodeperf_cgroup_pressure_cpu_waiting_seconds_total", label) is not None,
                "PSI from the unified hierarchy")

        # Removal
        child.stdin.close()
        child.wait(10)
        child = None
        for d in reversed(made):
            os.rmdir(d)
        made = []
        settle(agent, 2)
        # This collector's series only: the eBPF collectors keep a removed
        # cgroup's latency window until it has passed.
        mine = ("nodeperf_cgroup_cpu_", "nodeperf_cgroup_memory_", "nodeperf_cgroup_io_", "nodeperf_cgroup_pids_",
                "nodeperf_cgroup_pressure_")
        left = [n for (n, labels) in bpfutil.scrape(agent) if ("cgroup", label) in labels and n.startswith(mine)]
        print(f"removed: {len(left)} series left")
        c.check(not left, f"series of {label} gone after removal: {left[:3]}")
    finally:
        if child:
            bpfutil.kill_all([child])
        bpfutil.remove_cgroups(made)
        if loop:
            loop.close()
        if tmp:
            for f in os.listdir(tmp):
                os.remove(os.path.join(tmp, f))
            os.rmdir(tmp)
        if agent:
            agent.stop()
    c.done()


if __name__ == "__main__":
    main()
