"""The eBPF probes' lifecycle against the real kernel: the agent's programs
are loaded and attached while it runs and gone after SIGTERM and after
SIGKILL; without privileges the BPF collectors report up 0 with one log line
each and everything else works; `nodeperf doctor` as root says OK for btf
and bpf. Root only; about 3 s.

Other agents may run on the same host meanwhile (with programs of the same
names), so programs are told apart by id: those the agent holds file
descriptors to, from /proc/PID/fdinfo (Debian's bpftool lists no pids)."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import BIN, Agent, Checks, http_get, require_root, series, skip  # noqa: E402
import bpfutil  # noqa: E402

BPF_COLLECTORS = ("blockio", "runqueue")
# What else names each probe: its BPF object (bpf/blockio.bpf.c, bpf/runqlat.bpf.c).
PROBE_WORDS = {"blockio": ("blockio",), "runqueue": ("runqueue", "runqlat")}
# Programs the task names, at least, cut to bpftool's 15 characters.
MUST_HAVE = {"btf_switch", "btf_issue", "btf_complete"}
GONE_TIMEOUT = 5.0  # links and programs are freed from a workqueue after the last fd closes
UNPRIVILEGED = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                "--bounding-set=-all"]


def attached_names(log):
    """{probe: [program, ...]} from the agent's 'X: attached a, b' log lines."""
    out = {}
    for m in re.finditer(r'msg="(\w+): attached ([^"]*)"', log):
        out[m.group(1)] = [p.strip() for p in m.group(2).split(",") if p.strip()]
    return out


def wait_gone(ids, timeout=GONE_TIMEOUT):
    """Polls bpftool until none of these ids ({"progs", "links", "maps"} ->
    ids) is listed; ({kind: ids left}, seconds waited)."""
    listers = {"progs": bpfutil.bpftool_progs, "links": bpfutil.bpftool_links, "maps": bpfutil.bpftool_maps}
    start = time.monotonic()
    while True:
        left = {kind: sorted(set(listers[kind]()) & ids[kind]) for kind in ids}
        waited = time.monotonic() - start
        if not any(left.values()) or waited >= timeout:
            return left, waited
        time.sleep(0.1)


def loaded_agent(c, what):
    """Starts a root agent and checks its programs are loaded and attached;
    returns (agent, {"progs": ids, "links": ids, "maps": ids}) of what it holds."""
    agent = Agent("--tick=500ms")
    parsed = bpfutil.scrape(agent)
    down = [n for n in BPF_COLLECTORS if bpfutil.collector_up(parsed, n) != 1]
    if down:
        log = agent.log()
        agent.stop()
        skip(f"BPF collectors {down} not up: {[l for l in log.splitlines() if 'collector' in l]}")
    maps = set()
    progs, links = bpfutil.fd_bpf_ids(agent.proc.pid, maps)
    listed = bpfutil.bpftool_progs()
    # bpftool prints the full name where the program's BTF has it, else the
    # kernel's name, cut to 15 characters: compare on the first 15.
    names = {listed.get(i)[:15] for i in progs if listed.get(i)}
    expected = {p[:15] for plist in attached_names(agent.log()).values() for p in plist}
    print(f"{what}: agent {agent.proc.pid} holds {len(progs)} programs, {len(links)} links, {len(maps)} maps: "
          f"{', '.join(sorted(n for n in names if n))}")
    c.check(progs and progs <= set(listed), f"{what}: programs {sorted(progs - set(listed))} not in bpftool prog list")
    c.check(MUST_HAVE <= names, f"{what}: bpftool shows {sorted(n for n in names if n)}, missing "
                                f"{sorted(MUST_HAVE - names)}")
    c.check(expected and expected <= names, f"{what}: logged as attached {sorted(expected)}, bpftool has "
                                            f"{sorted(n for n in names if n)}")
    linked = {p for l, p in bpfutil.bpftool_links().items() if l in links}
    c.check(links and linked and linked <= progs,
            f"{what}: links {sorted(links)} point at {sorted(linked)}, not the agent's programs")
    c.check(len(linked) == len(expected), f"{what}: {len(linked)} programs linked, {len(expected)} logged attached")
    attached = series(parsed, "nodeperf_bpf_program_attached")
    c.check(attached and all(v == 1 for v in attached.values()),
            f"{what}: nodeperf_bpf_program_attached not all 1: {attached}")
    c.check({dict(k)["program"][:15] for k in attached} == expected,
            f"{what}: nodeperf_bpf_program_attached programs {sorted(dict(k)['program'] for k in attached)}")
    others = [i for i, n in listed.items() if n in MUST_HAVE and i not in progs]
    if others:
        print(f"NOTE: {len(others)} programs of the same names belong to other processes (other agents running)")
    c.check(maps and maps <= set(bpfutil.bpftool_maps()), f"{what}: maps {sorted(maps)} not in bpftool map list")
    return agent, {"progs": progs, "links": links, "maps": maps}


def part_a(c):
    # SIGTERM: a clean exit within 1 s, and nothing left in the kernel.
    agent, ids = loaded_agent(c, "SIGTERM run")
    try:
        t = time.monotonic()
        agent.signal(signal.SIGTERM)
        try:
            rc = agent.proc.wait(5)
        except subprocess.TimeoutExpired:
            rc = None
        took = time.monotonic() - t
        print(f"SIGTERM: exit {rc} after {took:.3f} s")
        c.check(rc == 0 and took <= 1.0, f"SIGTERM: exit {rc} after {took:.2f} s, want 0 within 1 s")
        left, waited = wait_gone(ids)
        print(f"SIGTERM: left in the kernel {left} (gone within {waited:.2f} s)")
        c.check(not any(left.values()), f"SIGTERM: {left} still loaded {waited:.1f} s after exit")
    finally:
        agent.stop()

    # SIGKILL: no destructor runs, but the links are file descriptors, so the
    # kernel detaches and frees everything when the process dies.
    agent, ids = loaded_agent(c, "SIGKILL run")
    try:
        agent.signal(signal.SIGKILL)
        rc = agent.proc.wait(5)
        c.check(rc == -signal.SIGKILL, f"SIGKILL: exit {rc}")
        left, waited = wait_gone(ids)
        print(f"SIGKILL: left in the kernel {left} (gone within {waited:.2f} s)")
        c.check(not any(left.values()), f"SIGKILL: {left} still loaded {waited:.1f} s after death")
    finally:
        agent.stop()


def part_b(c):
    if not shutil.which("setpriv"):
        print("NOTE: setpriv not installed: the unprivileged run is skipped")
        return
    if not os.access(os.path.abspath(BIN), os.X_OK):
        print("NOTE: the binary is not executable: the unprivileged run is skipped")
        return
    agent = bpfutil.PrefixedAgent(UNPRIVILEGED, "--tick=200ms")
    try:
        status = None
        with open(f"/proc/{agent.proc.pid}/status") as f:
            status = f.read()
        uid = re.search(r"^Uid:\s+(\d+)", status, re.M).group(1)
        capeff = re.search(r"^CapEff:\s+(\w+)", status, re.M).group(1)
        print(f"unprivileged agent: uid {uid}, CapEff {capeff}")
        c.check(uid == "65534" and int(capeff, 16) == 0, f"agent not unprivileged: uid {uid}, CapEff {capeff}")
        time.sleep(2.0)  # ten ticks: a repeated log line would show
        code, _, body = http_get(agent.url + "/metrics")
        c.check(code == 200, f"/metrics: HTTP {code}")
        parsed = bpfutil.parse_exposition(body.decode())
        for name in BPF_COLLECTORS:
            up = bpfutil.collector_up(parsed, name)
            c.check(up == 0, f"unprivileged: collector_up{{collector={name}}} is {up}, want 0")
        up = bpfutil.collector_up(parsed, "cpu")
        c.check(up == 1, f"unprivileged: collector_up{{collector=cpu}} is {up}, want 1")
        cpu = series(parsed, "nodeperf_cpu_seconds_total")
        c.check(len(cpu) > 0 and all(v >= 0 for v in cpu.values()), "unprivileged: no nodeperf_cpu_seconds_total")
        c.check(not series(parsed, "nodeperf_runqueue_latency_seconds_count"),
                "unprivileged: runqueue latency series exported without the probe")
        log = agent.log()
        lines = log.splitlines()
        for name in BPF_COLLECTORS:
            mine = [l for l in lines if f"collector {name}:" in l]
            print(f"unprivileged: {name} log: {mine}")
            c.check(len(mine) == 1, f"unprivileged: {len(mine)} agent log lines for {name} after 10 ticks, want 1")
            c.check(all(f"{name}:" in l and re.search(r"not permitted|permission|EPERM|needs root", l, re.I)
                        for l in mine), f"unprivileged: {name} line does not name the probe and the reason: {mine}")
            # Nothing else should speak of the probe: the agent's line says it all.
            stray = [l for l in lines if any(w in l for w in PROBE_WORDS[name]) and l not in mine]
            c.check(not stray, f"unprivileged: {len(stray)} more stderr lines about {name} besides the agent's "
                               f"one: {stray}")
        raw = [l for l in lines if l and not l.startswith("ts=")]
        c.check(not raw, f"unprivileged: {len(raw)} stderr lines outside the agent's log format, e.g. {raw[:3]}")
    finally:
        agent.stop()


def part_c(c):
    r = subprocess.run([BIN, "doctor"], capture_output=True, text=True, timeout=30)
    print("doctor (root):\n" + r.stdout.rstrip())
    for check in ("btf", "bpf"):
        c.check(re.search(rf"^OK\s+{check}\s", r.stdout, re.M), f"doctor as root: {check} not OK")
    c.check(re.search(r"^OK\s+capabilities\s", r.stdout, re.M), "doctor as root: capabilities not OK")
    c.check(r.returncode == 0 or re.search(r"^MISSING", r.stdout, re.M),
            f"doctor as root: exit {r.returncode} without a MISSING line")
    if shutil.which("setpriv"):
        r = subprocess.run(UNPRIVILEGED + [os.path.abspath(BIN), "doctor"], capture_output=True, text=True,
                           timeout=30, cwd="/")
        cap = [l for l in r.stdout.splitlines() if "capabilities" in l]
        print(f"doctor (unprivileged): exit {r.returncode}; {cap}")
        c.check(re.search(r"^MISSING\s+capabilities\s", r.stdout, re.M) and r.returncode == 1,
                f"doctor without privileges: exit {r.returncode}, {cap}: want MISSING capabilities and exit 1")


def main():
    require_root()
    if not shutil.which("bpftool"):
        skip("bpftool not installed")
    started = time.monotonic()
    c = Checks()
    part_a(c)
    part_b(c)
    part_c(c)
    print(f"runtime {time.monotonic() - started:.1f} s")
    c.done()


if __name__ == "__main__":
    main()
