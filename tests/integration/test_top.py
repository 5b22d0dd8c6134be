#!/usr/bin/env python3
"""nodeperf top in a real terminal (tmux, private socket): every screen at
120x40 and 80x24 with plausible values, keys (screens, sort, filter, help,
history), resize, the agent going away and coming back on the same port,
q and SIGTERM restoring the terminal; batch frames against the agent's
/metrics at the same tick; --standalone; no agent at all. As root, the
Volumes screen with a real volume: a loop device with ext4 mounted at a
kubelet volume path under a fake host root, in a private mount namespace
(test_volumes.py's helpers), in batch mode and in tmux."""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, Agent, Checks, free_port, http_get, parse_exposition, skip, value, wait_until  # noqa: E402

checks = Checks()
check = checks.check
TMUX = shutil.which("tmux") or skip("tmux not installed (scripts/setup.sh installs it)")
SOCKET = f"nodeperf-test-{os.getpid()}"
TMP = tempfile.mkdtemp(prefix="nodeperf-top-")


def tmux(*args, check_rc=True):
    r = subprocess.run([TMUX, "-L", SOCKET, *args], capture_output=True, text=True, timeout=10)
    if check_rc and r.returncode != 0:
        raise AssertionError(f"tmux {args[0]}: {r.stderr.strip()}")
    return r.stdout


class Pane:
    """One tmux session running `nodeperf top` under sh, which reports how
    top exited and whether the tty settings came back."""

    def __init__(self, name, top_args, width, height):
        self.name = name
        self.pidfile = os.path.join(TMP, name + ".pid")
        script = (f'echo $$ > {self.pidfile}; saved=$(stty -g); {BIN} top {top_args}; echo "EXITED $?"; '
                  f'[ "$(stty -g)" = "$saved" ] && echo TTY-RESTORED; echo DONE; sleep 120')
        tmux("new-session", "-d", "-s", name, "-x", str(width), "-y", str(height), "sh", "-c", script)

    def text(self):
        return tmux("capture-pane", "-p", "-t", self.name)

    def keys(self, *keys):
        tmux("send-keys", "-t", self.name, *keys)

    def resize(self, width, height):
        tmux("resize-window", "-t", self.name, "-x", str(width), "-y", str(height))

    def top_pid(self):
        with open(self.pidfile) as f:
            sh = f.read().strip()
        out = subprocess.run(["pgrep", "-P", sh], capture_output=True, text=True).stdout.split()
        return int(out[0]) if out else None

    def wait(self, predicate, timeout=10):
        """The screen text once predicate(text) holds, or None at the timeout."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = self.text()
            if predicate(text):
                return text
            time.sleep(0.1)
        print(f"--- pane {self.name} at the timeout ---\n{text}---")
        return None

    def wait_for(self, *parts, timeout=10):
        return self.wait(lambda t: all(p in t for p in parts), timeout)


def meminfo_bytes(key):
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    return None


def format_bytes(v):
    """cli/top_format.cpp's format_bytes, for the checks below."""
    prefixes = ["", "K", "M", "G", "T", "P"]
    i = 0
    while abs(v) >= 999.5 and i + 1 < len(prefixes):
        v /= 1024
        i += 1
    unit = "B" if i == 0 else ""
    if v < 99.95 and (i > 0 or v != int(v)):
        return f"{v:.1f}{prefixes[i]}{unit}"
    return f"{v:.0f}{prefixes[i]}{unit}"


def screen_checks(pane, size):
    """Each screen's sections and plausible values, at the current size."""
    w, h = size
    text = pane.wait_for("CPU   [", "Mem   [", "DISK", "NET", "q:quit")
    check(text is not None, f"{size}: overview drawn")
    if text is None:
        return
    lines = text.rstrip("\n").split("\n")
    check(len(lines) <= h and all(len(l) <= w for l in lines), f"{size}: fits in the pane")
    rates = pane.wait(lambda t: re.search(r"cpu0 +\[[# ]+\] +\d+(\.\d)?%", t) and
                      re.search(r"PSI +some/full +cpu +\d", t))
    check(rates is not None, f"{size}: per-CPU bars and PSI rates")
    load = re.search(r"Load +(\d+\.\d\d) +(\d+\.\d\d) +(\d+\.\d\d)", text)
    with open("/proc/loadavg") as f:
        real = float(f.read().split()[0])
    check(load is not None and abs(float(load.group(1)) - real) < 2, f"{size}: load1 near /proc/loadavg ({real})")
    total = format_bytes(meminfo_bytes("MemTotal"))
    check(f"of{total:>6}" in text, f"{size}: memory total {total}")
    check(re.search(r"^lo +", text, re.M) is not None, f"{size}: a line for lo")
    check("Runq  p50" in text, f"{size}: run-queue line")

    pane.keys("2")
    text = pane.wait(lambda t: "[2 Cgroups]" in t and re.search(r"NAME +.*\*", t))
    check(text is not None, f"{size}: cgroups screen with its sort marker")
    if text and "no cgroups" not in text:
        check(re.search(r"^/\S* .*(us|ms|-)", text, re.M) is not None, f"{size}: a cgroup row")
    pane.keys("3")
    text = pane.wait(lambda t: "Latency: node run queue" in t or "No latency data" in t)
    check(text is not None, f"{size}: latency screen")
    if text and "Latency: node" in text:
        check(pane.wait_for("Last tick:", "Window (") is not None, f"{size}: tick and window charts")
        check(pane.wait(lambda t: "<p50" in t and "<p99" in t, 15) is not None, f"{size}: quantile marks")
    pane.keys("1")
    check(pane.wait_for("[1 Overview]") is not None, f"{size}: back to the overview")


def interactive(agent):
    port = agent.port
    pane = Pane("top", f"--url {agent.url} --delay 0.5", 120, 40)
    try:
        screen_checks(pane, (120, 40))

        pane.keys("2")
        pane.wait_for("*CPU%")
        pane.keys("s")
        check(pane.wait_for("*THR%") is not None, "s moves the sort to the next column")
        pane.keys("r")
        check(pane.wait_for("*RQ p99") is not None, "r sorts by run-queue p99")
        pane.keys("/")
        check(pane.wait_for("Filter: _") is not None, "/ opens the filter prompt")
        pane.keys("zz-no-such-cgroup", "Enter")
        check(pane.wait_for('matching "zz-no-such-cgroup"', "(no cgroups") is not None, "the filter applies")
        pane.keys("/", "Escape")
        check(pane.wait(lambda t: "matching" not in t and "Filter:" not in t) is not None, "Esc clears the filter")
        pane.keys("?")
        check(pane.wait_for("left/right") is not None, "? shows the help")
        pane.keys("x")
        check(pane.wait(lambda t: "left/right" not in t) is not None, "any key closes the help")
        volumes_screen(pane)

        pane.keys("1")
        time.sleep(3)  # a few ticks of history
        pane.keys("Left")
        text = pane.wait_for("(history -")
        check(text is not None, "left steps back into the history")
        pane.keys("Left")
        pane.keys("Left")
        check(pane.wait(lambda t: re.search(r"history -[2-9]s", t) is not None) is not None, "and further back")
        pane.keys("End")
        check(pane.wait_for("(live)") is not None, "End goes back to live")

        pane.resize(80, 24)
        text = pane.wait(lambda t: len(t.rstrip("\n").split("\n")) == 24 and "q:quit" in t.split("\n")[23])
        check(text is not None, "resize to 80x24 redraws with the key bar on the last line")
        screen_checks(pane, (80, 24))
        pane.resize(120, 40)
        check(pane.wait(lambda t: len(t.rstrip("\n").split("\n")) == 40 and "q:quit" in t.split("\n")[39])
              is not None, "resize back to 120x40")

        agent.stop()
        check(pane.wait_for("disconnected, retrying") is not None, "agent gone: disconnected, retrying")
        agent2 = Agent(f"--web.listen-address=127.0.0.1:{port}")
        try:
            check(pane.wait(lambda t: "disconnected" not in t and "(live)" in t, 15) is not None,
                  "agent back on the same port: recovered")
            pane.keys("q")
            text = pane.wait_for("DONE")
            check(text is not None and "TTY-RESTORED" in text and "q:quit" not in text,
                  "q exits 0 and restores the terminal")
        finally:
            agent2.stop()
    finally:
        tmux("kill-session", "-t", "top", check_rc=False)


def volumes_screen(pane):
    """Key 4: the Volumes screen with its header, rows or its empty-state
    message (this host has no kubelet volumes, as a rule); Tab wraps to 1."""
    pane.keys("4")
    text = pane.wait(lambda t: "[4 Volumes]" in t and re.search(r"POD +VOLUME +DEVICE +KIND +USED%", t)
                     and "R p99  W p99 INFL" in t)
    check(text is not None, "4 shows the Volumes screen with its header")
    if text:
        check(re.search(r"^Volumes: \d+", text, re.M) is not None, "volumes count line")
        check("(no volumes:" in text or re.search(r"^Volumes: [1-9]", text, re.M) is not None,
              "volume rows or the empty-state message")
    pane.keys("Tab")
    check(pane.wait_for("[1 Overview]", "CPU   [") is not None, "Tab from Volumes wraps to the overview")


def sigterm(agent):
    pane = Pane("term", f"--url {agent.url}", 100, 30)
    try:
        check(pane.wait_for("CPU   [") is not None, "top running for the SIGTERM check")
        pid = pane.top_pid()
        check(pid is not None, "found top's pid")
        if pid:
            os.kill(pid, signal.SIGTERM)
            text = pane.wait_for("DONE")
            check(text is not None and "EXITED 0" in text and "TTY-RESTORED" in text,
                  "SIGTERM: top exits 0 and restores the terminal")
    finally:
        tmux("kill-session", "-t", "term", check_rc=False)


def batch_matches_metrics(agent):
    """One batch frame and /metrics at the same tick show the same load and memory."""
    for attempt in range(5):
        r = subprocess.run([BIN, "top", "--batch", "--iterations", "1", "--url", agent.url],
                           capture_output=True, text=True, timeout=30)
        metrics = parse_exposition(agent.metrics())
        if r.returncode != 0:
            check(False, f"batch exit code {r.returncode}: {r.stderr}")
            return
        load = re.search(r"^Load +(\d+\.\d\d)", r.stdout, re.M)
        want = f"{value(metrics, 'nodeperf_load1'):.2f}"
        if load and load.group(1) == want:
            break
        time.sleep(0.3)  # a tick boundary fell between the two reads
    check(load is not None and load.group(1) == want, f"batch load1 {load and load.group(1)} = /metrics {want}")
    avail = format_bytes(value(metrics, "nodeperf_memory_MemAvailable_bytes"))
    check(re.search(rf"avail +{re.escape(avail)}\b", r.stdout) is not None, f"batch MemAvailable {avail}")
    check("Cgroups:" in r.stdout or "Pods and containers:" in r.stdout, "batch frame has the cgroups table")

    r = subprocess.run([BIN, "top", "-b", "-n", "3", "--delay", "0.2", "--url", agent.url],
                       capture_output=True, text=True, timeout=30)
    check(r.returncode == 0 and r.stdout.count("nodeperf top - ") == 3, "batch -n 3 prints three frames")
    check("q:quit" not in r.stdout and "\x1b" not in r.stdout, "batch frames are plain text")


def no_agent_and_standalone():
    url = f"http://127.0.0.1:{free_port()}"
    r = subprocess.run([BIN, "top", "--url", url], capture_output=True, text=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    check(r.returncode == 1 and "no agent answers" in r.stderr and "--standalone" in r.stderr,
          "no agent: says so and offers --standalone")
    r = subprocess.run([BIN, "top", "--standalone", "--batch", "-n", "2", "--delay", "0.5",
                        "--log-file", os.path.join(TMP, "agent.log")], capture_output=True, text=True, timeout=60)
    check(r.returncode == 0 and "CPU   [" in r.stdout and "cpu0" in r.stdout,
          f"--standalone batch works (rc {r.returncode}, {r.stderr.strip()[:200]})")
    check(re.search(r"^Load +\d", r.stdout, re.M) is not None, "--standalone has load figures")
    r = subprocess.run([BIN, "top", "--bogus"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 2 and "unknown argument" in r.stderr, "unknown flag: exit 2")
    r = subprocess.run([BIN, "top", "--help"], capture_output=True, text=True, timeout=10)
    check(r.returncode == 0 and "--standalone" in r.stdout, "--help")


VOLUME_DIR = "/var/lib/kubelet/pods/0b9f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b/volumes/kubernetes.io~csi/pv-alpha/mount"


def volume_row(text):
    """The pv-alpha row's columns, split on blanks, from the last frame that has it."""
    rows = [l.split() for l in text.splitlines() if " pv-alpha " in l]
    return rows[-1] if rows else None


def volumes_with_a_real_volume():
    """A 64 MiB loop device with ext4 at a kubelet CSI volume path under a
    fake host root; an agent reading that root; O_DIRECT writes to a file on
    it. Batch frames and the tmux screen show its row: the pod UID's prefix
    (no kubelet here, so no names), its loop device, kind block, USED%, and
    writes per second when the blockio collector is attached. Runs last:
    it moves this process to a private mount namespace."""
    if os.geteuid() != 0:
        print("SKIP: volumes with a real volume: needs root (loop device, mount, unshare)")
        return
    missing = [t for t in ("mkfs.ext4", "losetup", "mount") if not shutil.which(t)]
    if missing:
        print(f"SKIP: volumes with a real volume: {', '.join(missing)} not installed")
        return
    from bpfutil import LoopDevice
    from test_volumes import private_namespace, write_mountinfo
    private_namespace()
    tmp = tempfile.mkdtemp(prefix="nodeperf-top-volume-")
    root, loop, mounted, agent, writer = f"{tmp}/root", None, None, None, None
    try:
        os.makedirs(f"{root}/proc/1")
        os.symlink("/sys", f"{root}/sys")
        loop = LoopDevice(tmp, size=64 << 20, name="alpha")
        subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", loop.path],
                       check=True, timeout=60, capture_output=True)
        os.makedirs(root + VOLUME_DIR)
        subprocess.run(["mount", "-t", "ext4", loop.path, root + VOLUME_DIR], check=True, timeout=20)
        mounted = root + VOLUME_DIR
        write_mountinfo(root)
        agent = Agent("--host-root=" + root, "--tick=500ms", "--no-collector.runqueue", "--no-collector.tcp")
        writer = subprocess.Popen(
            ["sh", "-c", f"while :; do dd if=/dev/zero of={mounted}/data bs=64k count=16 oflag=direct "
                         "conv=notrunc status=none; sleep 0.1; done"])
        wait_until(lambda: "nodeperf_volume_capacity_bytes{" in agent.metrics(), what="the volume's series")
        blockio = "nodeperf_volume_io_ops_total{" in agent.metrics()
        r = subprocess.run([BIN, "top", "--batch", "-n", "3", "--delay", "1", "--width", "120", "--url", agent.url],
                           capture_output=True, text=True, timeout=60)
        check(r.returncode == 0, f"batch against the volume agent exits 0 ({r.stderr.strip()[:200]})")
        frames = r.stdout.split("nodeperf top - ")
        last = frames[-1]
        check("POD" in last and "VOLUME" in last and "Volumes: 1" in last, "batch frame has the volumes table")
        row = volume_row(last)
        print(f"info: batch volume row: {row}")
        check(row is not None and len(row) == 12, "batch: one row for pv-alpha with 12 columns")
        if row and len(row) == 12:
            check(row[0] == "0b9f6a3e" and row[2] == loop.name and row[3] == "block",
                  f"batch row: pod UID prefix, {loop.name}, kind block")
            check(re.fullmatch(r"\d+(\.\d)?%", row[4]) is not None, f"batch row: USED% {row[4]}")
            if blockio:
                check(row[6] != "-" and float(row[6].rstrip("k")) > 0, f"batch row: writes per second {row[6]}")
                check(row[10] != "-", f"batch row: write p99 {row[10]}")
            else:
                print("info: no volume IO series (blockio collector not attached): IO columns not checked")

        pane = Pane("vol", f"--url {agent.url} --delay 0.5", 120, 30)
        try:
            pane.wait_for("CPU   [")
            pane.keys("4")
            text = pane.wait(lambda t: "[4 Volumes]" in t and " pv-alpha " in t and loop.name in t)
            check(text is not None, "tmux: key 4 shows the real volume's row")
            pane.keys("/")
            pane.keys("zz-none", "Enter")
            check(pane.wait_for("(no volumes match)") is not None, "tmux: the filter applies to volumes")
            pane.keys("q")
            check(pane.wait_for("TTY-RESTORED") is not None, "tmux: q from the Volumes screen restores the terminal")
        finally:
            tmux("kill-session", "-t", "vol", check_rc=False)
    finally:
        if writer:
            writer.kill()
            writer.wait()
        if agent:
            agent.stop()
        if mounted:
            subprocess.run(["umount", "-l", mounted], timeout=20)
        if loop:
            loop.close()
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    agent = Agent("--history=5m")
    try:
        status, _, _ = http_get(agent.url + "/api/v1/snapshot")
        if status != 200:
            skip(f"the agent has no JSON API yet (/api/v1/snapshot: {status})")
        batch_matches_metrics(agent)
        sigterm(agent)
        interactive(agent)  # stops the agent
        no_agent_and_standalone()
        checks.run(volumes_with_a_real_volume)
    finally:
        if agent.proc.poll() is None:  # interactive() stops it on the way
            agent.stop()
        tmux("kill-server", check_rc=False)
        shutil.rmtree(TMP, ignore_errors=True)
    checks.done()


if __name__ == "__main__":
    main()
