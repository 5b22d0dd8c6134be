"""Helpers for the eBPF integration tests (test_bpf_*.py): loop devices,
O_DIRECT IO, tracefs, bpftool, cgroup v2, the agent's BPF state, and exact
order statistics. Everything that creates something has a matching cleanup
the tests call from `finally` blocks."""

import json
import math
import mmap
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time

from harness import BIN, Agent, http_get, parse_exposition, series, skip, wait_until

# Quantile error of the agent's summaries: the reported value is the geometric
# middle of a bucket 2^(1/2^schema) wide, so within 2^(1/2^(schema+1)) of the
# true order statistic.
def schema_error(schema=3):
    return 2.0 ** (1.0 / 2 ** (schema + 1)) - 1.0


def exact_quantile(values, q):
    """The rank-ceil(q*n) order statistic (1-based), the agent's definition."""
    s = sorted(values)
    rank = min(max(math.ceil(q * len(s)), 1), len(s))
    return s[rank - 1]


def order_bracket(values, rank, below, above):
    """Bounds on the rank-th smallest (1-based) of a population of which
    `values` is a subset missing `below` members, when the rank is counted in
    another subset missing `above` members: between the known order
    statistics at ranks rank - below and rank + above (0 and infinity where
    those do not exist)."""
    s = sorted(values)
    lo = s[rank - below - 1] if 1 <= rank - below <= len(s) else 0.0
    hi = s[rank + above - 1] if rank + above <= len(s) else math.inf
    return lo, hi


def rel_err(got, want):
    return abs(got - want) / want if want else float("inf")


# ---------------------------------------------------------------- the agent

def scrape(agent):
    return parse_exposition(agent.metrics())


def snapshot_id(parsed):
    """Something that changes with every tick: the collectors' durations."""
    return tuple(sorted(series(parsed, "nodeperf_collector_duration_seconds").items()))


def wait_snapshots(agent, n, timeout=15):
    """Waits until the agent has published `n` snapshots after this call;
    returns (the last one parsed, seconds waited) or raises AssertionError."""
    start = time.monotonic()
    last = snapshot_id(scrape(agent))
    seen = 0
    while time.monotonic() - start < timeout:
        time.sleep(0.05)
        parsed = scrape(agent)
        now = snapshot_id(parsed)
        if now != last:
            seen += 1
            last = now
            if seen >= n:
                return parsed, time.monotonic() - start
    raise AssertionError(f"the agent published {seen} of {n} snapshots in {timeout} s")


def collector_up(parsed, name):
    found = series(parsed, "nodeperf_collector_up", collector=name)
    return next(iter(found.values())) if found else None


def require_bpf_collectors(agent, *names):
    """Skip (exit 77) if any of these BPF collectors is down; the caller's
    finally block stops the agent."""
    parsed = scrape(agent)
    down = [n for n in names if collector_up(parsed, n) != 1]
    if down:
        log = agent.log()
        reasons = [l for l in log.splitlines() if any(f"collector {n}:" in l for n in down)]
        skip(f"BPF collectors {down} not up here: {reasons or 'no reason logged'}")


class PrefixedAgent(Agent):
    """harness.Agent, run under a command prefix (setpriv, ...)."""

    def __init__(self, prefix, *flags, wait_ready=True):
        self.stderr = tempfile.NamedTemporaryFile(prefix="nodeperf-agent-", suffix=".log", delete=False)
        args = [*prefix, os.path.abspath(BIN), "agent", "--web.listen-address=127.0.0.1:0", *flags]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.stderr, cwd="/")
        self.port = self._wait_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if wait_ready:
            wait_until(lambda: http_get(self.url + "/readyz")[0] == 200, what="agent ready")


def fd_bpf_ids(pid, maps=None):
    """({prog ids}, {link ids}) the process holds file descriptors to; map
    ids are added to `maps` if given."""
    progs, links = set(), set()
    fd_dir = f"/proc/{pid}/fd"
    for fd in os.listdir(fd_dir):
        try:
            target = os.readlink(f"{fd_dir}/{fd}")
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                info = f.read()
        except OSError:
            continue
        if target == "anon_inode:bpf-prog":
            m = re.search(r"^prog_id:\s*(\d+)", info, re.M)
            if m:
                progs.add(int(m.group(1)))
        elif target == "anon_inode:bpf_link":
            m = re.search(r"^link_id:\s*(\d+)", info, re.M)
            if m:
                links.add(int(m.group(1)))
        elif target == "anon_inode:bpf-map" and maps is not None:
            m = re.search(r"^map_id:\s*(\d+)", info, re.M)
            if m:
                maps.add(int(m.group(1)))
    return progs, links


# ---------------------------------------------------------------- bpftool

def bpftool_json(*args):
    exe = shutil.which("bpftool")
    if not exe:
        return None
    r = subprocess.run([exe, "-j", *args], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise AssertionError(f"bpftool {' '.join(args)}: {r.stderr.strip()}")
    return json.loads(r.stdout or "[]")


def bpftool_progs():
    """{id: name} of every loaded BPF program (the kernel keeps 15
    characters of a name; bpftool shows the full one where BTF has it)."""
    return {p["id"]: p.get("name", "") for p in bpftool_json("prog", "list")}


def recursion_misses(pid):
    """{program name: recursion_misses} of the programs `pid` holds, as
    bpftool reports them (missing means 0)."""
    progs = fd_bpf_ids(pid)[0]
    return {p.get("name", ""): p.get("recursion_misses", 0) for p in bpftool_json("prog", "list")
            if p["id"] in progs}


def bpftool_maps():
    """{id: name} of every BPF map."""
    return {m["id"]: m.get("name", "") for m in bpftool_json("map", "list")}


def bpftool_links():
    """{id: prog_id} of every BPF link."""
    return {l["id"]: l.get("prog_id") for l in bpftool_json("link", "list")}


# ---------------------------------------------------------------- tracefs

class Tracefs:
    """Mounts tracefs at /sys/kernel/tracing if nothing is there; unmounts
    it on close only if this mounted it."""

    PATH = "/sys/kernel/tracing"

    def __init__(self):
        self.mounted_here = False
        if not os.path.exists(f"{self.PATH}/events"):
            r = subprocess.run(["mount", "-t", "tracefs", "tracefs", self.PATH], capture_output=True, text=True)
            if r.returncode != 0:
                raise OSError(f"mount tracefs: {r.stderr.strip()}")
            self.mounted_here = True

    def close(self):
        if not self.mounted_here:
            return
        for _ in range(20):  # busy for a moment after a tracer exits
            r = subprocess.run(["umount", self.PATH], capture_output=True, text=True)
            if r.returncode == 0:
                break
            time.sleep(0.1)
        else:
            print(f"WARNING: could not unmount the tracefs this test mounted at {self.PATH}: {r.stderr.strip()}")
        self.mounted_here = False


# ---------------------------------------------------------------- loop devices

class LoopDevice:
    """A loop device over a sparse file in `directory`. Detach with close()."""

    def __init__(self, directory, size=64 << 20, direct_io=True, name="disk", prefill=0):
        """prefill: bytes of data written (and synced) at the start of the
        otherwise sparse backing file."""
        self.backing = os.path.join(directory, f"{name}.img")
        with open(self.backing, "wb") as f:
            f.truncate(size)
            if prefill:
                f.write(b"\x5a" * prefill)
                f.flush()
                os.fsync(f.fileno())
        self.size = size
        self.path = None
        self.direct_io = False
        base = ["losetup", "-f", "--show"]
        attempts = ([base + ["--direct-io=on"]] if direct_io else []) + [base]
        errors = []
        for cmd in attempts:
            r = subprocess.run(cmd + [self.backing], capture_output=True, text=True, timeout=20)
            if r.returncode == 0:
                self.path = r.stdout.strip()
                self.direct_io = "--direct-io=on" in cmd
                break
            errors.append(r.stderr.strip())
        if not self.path:
            raise OSError("losetup: " + "; ".join(errors))
        st = os.stat(self.path)
        self.major, self.minor = os.major(st.st_rdev), os.minor(st.st_rdev)
        self.name = os.path.basename(self.path)
        # What the kernel reports: losetup may have fallen back to buffered IO.
        try:
            with open(f"/sys/block/{self.name}/loop/dio") as f:
                self.direct_io = f.read().strip() == "1"
        except OSError:
            pass

    @property
    def dev_t(self):
        """The kernel-internal dev_t of tracepoints: major << 20 | minor."""
        return (self.major << 20) | self.minor

    def close(self):
        if self.path:
            for _ in range(20):  # the device can be briefly busy after close()
                r = subprocess.run(["losetup", "-d", self.path], capture_output=True, text=True)
                if r.returncode == 0 or not self._still_ours():
                    break
                time.sleep(0.1)
            self.path = None
        if os.path.exists(self.backing):
            os.unlink(self.backing)

    def _still_ours(self):
        r = subprocess.run(["losetup", "-n", "-O", "BACK-FILE", self.path], capture_output=True, text=True)
        return self.backing in r.stdout


def disk_stat(name):
    """The kernel's own IO counts for a disk, from /sys/block/NAME/stat."""
    with open(f"/sys/block/{name}/stat") as f:
        v = [int(x) for x in f.read().split()]
    return {"reads": v[0], "read_merges": v[1], "read_sectors": v[2], "writes": v[4], "write_merges": v[5],
            "write_sectors": v[6], "in_flight": v[8]}


def aligned_buffer(size=4096):
    """An anonymous mapping: page aligned, as O_DIRECT wants."""
    return mmap.mmap(-1, size)


def timed_direct_io(path, ops, block=4096):
    """Runs ops, a list of ("read"|"write", offset), with O_DIRECT on `path`,
    one syscall each. Returns [(op, offset, ns)] timed around each syscall."""
    buf = aligned_buffer(block)
    buf.write(b"\xa5" * block)
    fd = os.open(path, os.O_RDWR | os.O_DIRECT)
    out = []
    try:
        for op, offset in ops:
            t0 = time.perf_counter_ns()
            n = os.preadv(fd, [buf], offset) if op == "read" else os.pwritev(fd, [buf], offset)
            t1 = time.perf_counter_ns()
            assert n == block, f"{op} at {offset}: {n} bytes"
            out.append((op, offset, t1 - t0))
    finally:
        os.close(fd)
        buf.close()
    return out


# ---------------------------------------------------------------- network namespaces

class VethPair:
    """Two network namespaces made by the test, joined by a veth pair
    (dev_a in ns_a, dev_b in ns_b) with one /24 address each, links and lo
    up. Traffic between addr_a and addr_b never leaves them. close()
    deletes both namespaces, and the pair with them."""

    def __init__(self, ns_a, ns_b, dev_a, dev_b, addr_a, addr_b):
        self.namespaces = []
        try:
            for ns in (ns_a, ns_b):
                _ip("netns", "add", ns)
                self.namespaces.append(ns)
            _ip("link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
            for ns, dev, addr in ((ns_a, dev_a, addr_a), (ns_b, dev_b, addr_b)):
                _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
                _ip("-n", ns, "link", "set", dev, "up")
                _ip("-n", ns, "link", "set", "lo", "up")
        except BaseException:
            self.close()
            raise

    def close(self):
        for ns in self.namespaces:
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces = []


def _ip(*args):
    r = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20)
    if r.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")


# ---------------------------------------------------------------- cgroup v2

def cgroup2_root():
    """Where the v2 hierarchy is mounted: /sys/fs/cgroup (pure v2) or
    /sys/fs/cgroup/unified (hybrid), else None."""
    for path in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        if os.path.exists(f"{path}/cgroup.procs"):
            with open("/proc/self/mountinfo") as f:
                for line in f:
                    fields = line.split()
                    sep = fields.index("-")
                    if fields[4] == path and fields[sep + 1] == "cgroup2":
                        return path
    return None


def remove_cgroups(dirs):
    """Removes cgroup directories a test made, deepest first as listed in
    reverse, each tried for up to 5 s while its last tasks leave."""
    for d in reversed(dirs):
        for _ in range(50):
            try:
                os.rmdir(d)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.1)


class Cgroup:
    """A child v2 cgroup this test creates and removes (never any other)."""

    def __init__(self, root, name):
        self.root = root
        self.path = os.path.join(root, name)
        self.label = "/" + name  # the agent's `cgroup` label: path under the v2 root
        os.mkdir(self.path)

    def pids(self):
        try:
            with open(f"{self.path}/cgroup.procs") as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def close(self):
        """Removes the cgroup once its processes (the caller's, killed and
        reaped first) have left it; it moves nothing anywhere."""
        if not os.path.isdir(self.path):
            return
        for _ in range(50):
            try:
                os.rmdir(self.path)
                return
            except OSError:
                time.sleep(0.1)
        raise OSError(f"could not remove {self.path}: processes {self.pids()} still in it")


# ---------------------------------------------------------------- processes

def kill_all(procs, sig=signal.SIGKILL):
    for p in procs:
        if p.poll() is None:
            try:
                p.send_signal(sig)
            except ProcessLookupError:
                pass
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            pass
