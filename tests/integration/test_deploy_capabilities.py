"""The capabilities deploy/daemonset.yaml gives the agent are enough, and
each of them is needed: the agent runs as root with its capability bounding
set cut to the DaemonSet's `capabilities.add` (as a container with
`drop: [ALL]` gets), and must then serve everything unrestricted root
serves: every collector up, every eBPF program attached, the same metric
names, /readyz, and `nodeperf doctor` without a MISSING line. Without
CAP_BPF, or without CAP_PERFMON, the eBPF collectors must be down (so
neither is there for nothing), and the procfs/cgroupfs collectors still up.
CAP_SYS_RESOURCE is for kernels 5.8-5.10 (RLIMIT_MEMLOCK): on 5.11+ the
probes load under a 64 KiB memlock limit without it."""

import os
import re
import stat
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from harness import Agent, Checks, http_get, parse_exposition, require_root, require_tool, series, skip  # noqa: E402
from deploy_util import disk_io, find  # noqa: E402

BPF_COLLECTORS = {"blockio", "runqueue", "tcp"}
EVENT_FAMILIES = ("nodeperf_disk_io_", "nodeperf_cgroup_disk_io_", "nodeperf_runqueue_", "nodeperf_cgroup_runqueue_",
                  "nodeperf_tcp_", "nodeperf_cgroup_tcp_")
REAL_BIN = harness.BIN

# Capability numbers (linux/capability.h) of the ones named here.
CAP_NUMBERS = {"SYS_ADMIN": 21, "SYS_RESOURCE": 24, "PERFMON": 38, "BPF": 39}


def bounding_caps():
    with open("/proc/self/status") as f:
        mask = int(re.search(r"^CapBnd:\s*([0-9a-f]+)$", f.read(), re.M).group(1), 16)
    return {name for name, bit in CAP_NUMBERS.items() if mask >> bit & 1}


class RestrictedAgent(Agent):
    """The agent exec'd by setpriv with only `caps` in its bounding set (so
    root's effective set is exactly those), and optional prlimit limits."""

    def __init__(self, caps, *flags, prlimit=None):
        self.wrapper = tempfile.NamedTemporaryFile("w", prefix="nodeperf-caps-", suffix=".sh", delete=False)
        bounding = ",".join(["-all"] + [f"+{c.lower()}" for c in sorted(caps)])
        limit = f"prlimit {prlimit} " if prlimit else ""
        self.wrapper.write(f'#!/bin/sh\nexec {limit}setpriv --bounding-set={bounding} --inh-caps=-all '
                           f'--ambient-caps=-all -- "{REAL_BIN}" "$@"\n')
        self.wrapper.close()
        os.chmod(self.wrapper.name, stat.S_IRWXU)
        harness.BIN = self.wrapper.name
        try:
            super().__init__(*flags)
        finally:
            harness.BIN = REAL_BIN

    def effective_caps(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            return int(re.search(r"^CapEff:\s*([0-9a-f]+)$", f.read(), re.M).group(1), 16)

    def doctor(self):
        r = subprocess.run([self.wrapper.name, "doctor"], capture_output=True, text=True, timeout=30)
        return r.returncode, r.stdout

    def stop(self, timeout=5):
        rc = super().stop(timeout)
        os.unlink(self.wrapper.name)
        return rc


def profile(agent):
    """What the agent serves, once its eBPF probes have seen a few ticks.
    Direct IO first: the block IO families appear with their first events."""
    disk_io()
    time.sleep(2.5)
    parsed = parse_exposition(agent.metrics())
    up = {dict(k)["collector"]: v for k, v in series(parsed, "nodeperf_collector_up").items()}
    attached = {(dict(k)["probe"], dict(k)["program"]): v for k, v in series(parsed, "nodeperf_bpf_program_attached").items()}
    names = {name for name, _ in parsed}
    return up, attached, names


def main():
    require_root()
    require_tool("setpriv")
    require_tool("prlimit")
    t = Checks()
    (c,) = find("DaemonSet", "nodeperf")["spec"]["template"]["spec"]["containers"]
    granted = set(c["securityContext"]["capabilities"]["add"])
    have = bounding_caps()
    if not {"BPF", "PERFMON"} <= have:
        skip(f"this host's capability bounding set lacks CAP_BPF or CAP_PERFMON ({sorted(have)})")
    missing_here = granted - have
    if missing_here:
        print(f"note: {sorted(missing_here)} not in this host's bounding set; tested without them")
    caps = granted & have
    release = os.uname().release
    major, minor = (int(x) for x in release.split(".")[:2])
    flags = ()

    with Agent(*flags) as full:
        ref_up, ref_attached, ref_names = profile(full)
    t.check(all(ref_up.get(c) == 1 for c in BPF_COLLECTORS), f"unrestricted root: eBPF collectors up: {ref_up}")
    print(f"unrestricted root: {len(ref_names)} metric names, {len(ref_attached)} eBPF programs attached")

    with RestrictedAgent(caps, *flags) as agent:
        want_mask = sum(1 << CAP_NUMBERS[c] for c in caps)
        t.check(agent.effective_caps() == want_mask,
                f"agent's effective set {agent.effective_caps():#x}, want {want_mask:#x} ({sorted(caps)})")
        up, attached, names = profile(agent)
        t.check(up == ref_up, f"with {sorted(caps)}: collector_up {up}, unrestricted {ref_up}")
        t.check(attached == ref_attached and all(v == 1 for v in attached.values()),
                f"with {sorted(caps)}: programs attached {attached}")
        # eBPF latency families appear with their first event, so a run may
        # lack one the other had by chance (the programs are compared above).
        differ = {n for n in names ^ ref_names if not n.startswith(EVENT_FAMILIES)}
        t.check(not differ, f"with {sorted(caps)}: metric names differ: missing {sorted(ref_names - names)[:10]}, "
                            f"extra {sorted(names - ref_names)[:10]}")
        t.check(http_get(agent.url + "/readyz")[0] == 200, "ready")
        rc, out = agent.doctor()
        t.check(rc == 0 and "MISSING" not in out, f"nodeperf doctor with {sorted(caps)}: exit {rc}\n{out}")
        print(f"with only {sorted(caps)}: every collector up, {len(attached)} programs attached, "
              f"{len(names)} metric names ({len(ref_names)} as unrestricted root)")
        print("doctor:\n" + "\n".join("  " + line for line in out.splitlines() if re.match(r"\S+\s+(capabilities|bpf)\s", line)))

    for dropped in ("BPF", "PERFMON"):
        rest = caps - {dropped}
        with RestrictedAgent(rest, *flags) as agent:
            up, attached, _ = profile(agent)
            down = {c for c, v in up.items() if v == 0}
            t.check(down == BPF_COLLECTORS, f"without CAP_{dropped}: collectors down {sorted(down)}, want {sorted(BPF_COLLECTORS)}")
            reason = [line for line in agent.log().splitlines() if "blockio" in line and "level=warn" in line][:1]
            print(f"without CAP_{dropped}: down {sorted(down)}; {reason[0] if reason else 'no log line'}")

    if (major, minor) >= (5, 11):
        with RestrictedAgent(caps - {"SYS_RESOURCE"}, *flags, prlimit="--memlock=65536") as agent:
            up, attached, _ = profile(agent)
            t.check(all(up.get(c) == 1 for c in BPF_COLLECTORS) and all(v == 1 for v in attached.values()),
                    f"kernel {release}, RLIMIT_MEMLOCK 64 KiB, no CAP_SYS_RESOURCE: collector_up {up}")
            print(f"kernel {release}: probes load under RLIMIT_MEMLOCK=64KiB without CAP_SYS_RESOURCE (memcg accounting)")
    else:
        print(f"kernel {release} < 5.11: BPF memory counts against RLIMIT_MEMLOCK; CAP_SYS_RESOURCE lets libbpf raise it")
    t.done()


main()
