"""The volumes collector on real mounts (root): two loop devices with ext4
mounted at fake kubelet volume paths under a temporary host root whose
proc/1/mountinfo lists them; the agent's capacity, used, available and
inode figures must equal statvfs (and df) exactly, and used must grow by a
file written. Then a FUSE mount that never answers (the test opens
/dev/fuse, mounts it with mount(2) and never reads a request): the agent
keeps ticking and serving, marks that volume stale, and holds one thread for
it, not one per tick. The test aborts the FUSE connection and unmounts.

Everything runs in a private mount namespace of this process (unshare), so
no other process on the host ever sees the hung mount, and the mounts go
away with the process whatever happens; the loop devices and the temporary
directory are removed in `finally`."""

import ctypes
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from bpfutil import LoopDevice  # noqa: E402
from harness import Agent, Checks, http_get, parse_exposition, series, wait_until  # noqa: E402
from test_kubelet import TOKEN, FakeKubelet, make_certs, pod_list  # noqa: E402

CLONE_NEWNS = 0x00020000
MS_REC, MS_PRIVATE = 0x4000, 1 << 18
MNT_DETACH = 2
libc = ctypes.CDLL(None, use_errno=True)
libc.mount.argtypes = [ctypes.c_char_p] * 3 + [ctypes.c_ulong, ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]

POD_A = "0b9f6a3e-1c2d-4e5f-8a9b-0c1d2e3f4a5b"
POD_B = "7d3c2b1a-9e8f-4a6b-b5c4-d3e2f1a0b9c8"
POD_C = "3c2b1a0f-9e8d-4c7b-a6f5-e4d3c2b1a0f9"
KUBELET = "/var/lib/kubelet/pods"
PATH_A = f"{KUBELET}/{POD_A}/volumes/kubernetes.io~csi/pv-alpha/mount"
PATH_B = f"{KUBELET}/{POD_B}/volumes/kubernetes.io~local-volume/pv-beta"
PATH_BLOCK = f"{KUBELET}/{POD_B}/volumeDevices/kubernetes.io~local-volume/pv-raw"
PATH_HUNG = f"{KUBELET}/{POD_C}/volumes/kubernetes.io~csi/pv-hung/mount"
FLAGS = ["--tick=500ms", "--no-collector.blockio", "--no-collector.runqueue", "--no-collector.tcp",
         "--no-collector.cgroups"]

c = Checks()

# The kubelet's pod list: pod A has one claim, so its one PV-named volume is
# that claim's; pod B has two, and which PV is whose needs the API server.
PODS = pod_list(
    {"metadata": {"name": "db-0", "namespace": "shop", "uid": POD_A},
     "spec": {"volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "data-db-0"}},
                          {"name": "kube-api-access-x1", "projected": {}}]}},
    {"metadata": {"name": "cache-0", "namespace": "shop", "uid": POD_B},
     "spec": {"volumes": [{"name": "a", "persistentVolumeClaim": {"claimName": "claim-a"}},
                          {"name": "b", "persistentVolumeClaim": {"claimName": "claim-b"}}]}})


def call(fn, *args):
    if fn(*args) != 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{fn.__name__}{args[:2]}: {os.strerror(e)}")


def private_namespace():
    call(libc.unshare, CLONE_NEWNS)
    call(libc.mount, b"none", b"/", None, MS_REC | MS_PRIVATE, None)


def write_mountinfo(root):
    """root/proc/1/mountinfo: this namespace's mounts below `root`, with the
    mount points as the host would list them (without the `root` prefix)."""
    lines = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split(" ")
            if fields[4].startswith(root + "/"):
                fields[4] = fields[4][len(root):]
                lines.append(" ".join(fields))
    tmp = f"{root}/proc/1/mountinfo.new"
    with open(tmp, "w") as f:
        f.writelines(lines)
    os.rename(tmp, f"{root}/proc/1/mountinfo")
    return lines


def abort_fuse(minor):
    """Aborts a FUSE connection through fusectl, mounting it (in this private
    namespace) if the host has not."""
    connections = "/sys/fs/fuse/connections"
    if not os.path.exists(f"{connections}/{minor}"):
        subprocess.run(["mount", "-t", "fusectl", "fusectl", connections], timeout=10, capture_output=True)
    try:
        with open(f"{connections}/{minor}/abort", "w") as f:
            f.write("1")
        print(f"info: aborted FUSE connection {minor}")
    except OSError as e:
        print(f"info: no fusectl abort ({e}); closing /dev/fuse aborts the connection")


def scrape(agent):
    return parse_exposition(agent.metrics())


def one(parsed, name, **labels):
    found = series(parsed, name, **labels)
    return next(iter(found.values())) if len(found) == 1 else None


def figures(path):
    st = os.statvfs(path)
    return {
        "nodeperf_volume_capacity_bytes": st.f_blocks * st.f_frsize,
        "nodeperf_volume_available_bytes": st.f_bavail * st.f_frsize,
        "nodeperf_volume_used_bytes": (st.f_blocks - st.f_bfree) * st.f_frsize,
        "nodeperf_volume_inodes": st.f_files,
        "nodeperf_volume_inodes_free": st.f_ffree,
        "nodeperf_volume_inodes_used": st.f_files - st.f_ffree,
    }


def df(path):
    """df's own figures in bytes: size, used, avail; itotal, iused, iavail."""
    out = subprocess.run(["df", "-B1", "--output=size,used,avail,itotal,iused,iavail", path],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return [int(x) for x in out.splitlines()[1].split()]


def agent_figures(parsed, volume):
    return {name: one(parsed, name, volume=volume) for name in figures("/")}


def history_count(agent):
    return json.loads(http_get(agent.url + "/api/v1/history")[2])["count"]


def main():
    harness.require_root()
    for tool in ("mkfs.ext4", "losetup", "df", "openssl"):
        harness.require_tool(tool)
    if not os.path.exists("/dev/fuse"):
        harness.skip("no /dev/fuse (modprobe fuse)")
    c.run(procfs_mount_table_is_read_only_when_it_changes)
    private_namespace()
    tmp = tempfile.mkdtemp(prefix="nodeperf-volumes-")
    root = f"{tmp}/root"
    os.makedirs(f"{root}/proc/1")
    os.symlink("/sys", f"{root}/sys")
    loops, mounted, agent, kubelet = [], [], None, None
    try:
        make_certs(tmp)
        with open(f"{tmp}/token", "w") as f:
            f.write(TOKEN + "\n")
        kubelet = FakeKubelet(f"{tmp}/server.crt", f"{tmp}/server.key")
        kubelet.body = PODS
        for name, path in (("a", PATH_A), ("b", PATH_B)):
            loop = LoopDevice(tmp, size=64 << 20, name=name)
            loops.append(loop)
            subprocess.run(["mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", loop.path],
                           check=True, timeout=60, capture_output=True)
            os.makedirs(root + path)
            subprocess.run(["mount", "-t", "ext4", loop.path, root + path], check=True, timeout=20)
            mounted.append(root + path)
        # A raw block volume: the third loop device's node bound at a volumeDevices path.
        raw = LoopDevice(tmp, size=32 << 20, name="raw")
        loops.append(raw)
        os.makedirs(os.path.dirname(root + PATH_BLOCK))
        open(root + PATH_BLOCK, "w").close()
        subprocess.run(["mount", "--bind", raw.path, root + PATH_BLOCK], check=True, timeout=20)
        mounted.append(root + PATH_BLOCK)
        write_mountinfo(root)
        agent = Agent("--host-root=" + root, *FLAGS, f"--kubelet.url=https://127.0.0.1:{kubelet.port}/pods",
                      f"--kubelet.ca-file={tmp}/ca.crt", f"--kubelet.token-file={tmp}/token")

        def figures_match_statvfs_and_df():
            test_figures(agent, root, loops)

        def hung_mount_is_stale_and_the_agent_carries_on():
            test_hung_mount(agent, root)

        def names_and_claims_from_the_kubelet():
            test_names(agent)

        c.run(figures_match_statvfs_and_df, names_and_claims_from_the_kubelet,
              hung_mount_is_stale_and_the_agent_carries_on)
    finally:
        if agent:
            agent.stop()
        if kubelet:
            kubelet.down()
        for path in reversed(mounted):
            subprocess.run(["umount", "-l", path], timeout=20)
        for loop in loops:
            loop.close()
        shutil.rmtree(tmp, ignore_errors=True)
    c.done()


def procfs_mount_table_is_read_only_when_it_changes():
    """The real /proc/1/mountinfo (host root /): poll() says when it changed.
    Needs this process in pid 1's mount namespace (checked: the tmpfs it
    mounts there for a moment must show in pid 1's table) (before the rest of the test moves to its own namespace)."""
    others = [f"--no-collector.{n}" for n in ("cpu", "diskstats", "loadavg", "meminfo", "netdev", "netstat",
                                              "pressure", "process", "vmstat")]
    tmp = tempfile.mkdtemp(prefix="nodeperf-volumes-poll-")
    mounted = False
    try:
        with Agent("--host-root=/", *FLAGS, *others) as agent:
            def reads():
                return one(scrape(agent), "nodeperf_volume_mount_table_reads_total")
            wait_until(lambda: reads() == 1, what="first read")
            count0, reads0 = history_count(agent), reads()
            time.sleep(3)
            ticks, extra = history_count(agent) - count0, reads() - reads0
            print(f"info: procfs mountinfo: {extra} re-reads in {ticks} ticks without a mount change of ours")
            c.check(extra < ticks, f"mount table re-read every tick: {extra} reads in {ticks} ticks")
            before = reads()
            subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "nodeperf-poll", tmp], check=True, timeout=10)
            mounted = True
            with open("/proc/1/mountinfo") as f:
                if f" {tmp} " not in f.read():
                    print("info: pid 1 is in another mount namespace: procfs change notification not checked")
                    return
            wait_until(lambda: reads() > before, timeout=5, what="a re-read after a mount")
            before = reads()
            subprocess.run(["umount", tmp], check=True, timeout=10)
            mounted = False
            wait_until(lambda: reads() > before, timeout=5, what="a re-read after an unmount")
            c.check(True, "mount and unmount seen through poll()")
    finally:
        if mounted:
            subprocess.run(["umount", "-l", tmp], timeout=10)
        os.rmdir(tmp)


def test_figures(agent, root, loops):
    wait_until(lambda: one(scrape(agent), "nodeperf_volume_capacity_bytes", volume="pv-beta") is not None,
               what="volume series")
    for volume, path, loop, plugin in (("pv-alpha", PATH_A, loops[0], "kubernetes.io~csi"),
                                      ("pv-beta", PATH_B, loops[1], "kubernetes.io~local-volume")):
        want = figures(root + path)
        got = agent_figures(scrape(agent), volume)
        c.check(got == want, f"{volume}: agent {got} != statvfs {want}")
        size, used, avail, itotal, iused, ifree = df(root + path)
        c.check((got["nodeperf_volume_capacity_bytes"], got["nodeperf_volume_used_bytes"],
                 got["nodeperf_volume_available_bytes"]) == (size, used, avail),
                f"{volume}: agent {got} != df {size} {used} {avail}")
        c.check((got["nodeperf_volume_inodes"], got["nodeperf_volume_inodes_used"],
                 got["nodeperf_volume_inodes_free"]) == (itotal, iused, ifree), f"{volume}: inodes != df")
        print(f"info: {volume} on {loop.name}: capacity {size} used {used} avail {avail} inodes {itotal}/{iused}")
        info = series(scrape(agent), "nodeperf_volume_info", volume=volume)
        c.check(len(info) == 1, f"{volume}: one info series, not {len(info)}")
        labels = dict(next(iter(info))) if info else {}
        c.check(labels.get("device") == loop.name and labels.get("disk") == loop.name, f"device labels {labels}")
        c.check(labels.get("plugin") == plugin and labels.get("fstype") == "ext4" and labels.get("mountpoint") == path,
                f"info labels {labels}")
        c.check(one(scrape(agent), "nodeperf_volume_stale", volume=volume) == 0, f"{volume} not stale")

    # The raw block volume: the device's size, no file system figures.
    parsed = scrape(agent)
    raw = loops[2]
    c.check(one(parsed, "nodeperf_volume_capacity_bytes", volume="pv-raw") == raw.size,
            f"raw block capacity {one(parsed, 'nodeperf_volume_capacity_bytes', volume='pv-raw')} != {raw.size}")
    c.check(one(parsed, "nodeperf_volume_used_bytes", volume="pv-raw") is None, "raw block: no used bytes")
    info = series(parsed, "nodeperf_volume_info", volume="pv-raw")
    labels = dict(next(iter(info))) if len(info) == 1 else {}
    c.check(labels.get("kind") == "block" and labels.get("device") == raw.name, f"raw block info {labels}")

    # A file of known size: used grows by it, as statvfs says.
    before = one(scrape(agent), "nodeperf_volume_used_bytes", volume="pv-alpha")
    size = 8 << 20
    with open(f"{root}{PATH_A}/blob", "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    want = figures(root + PATH_A)["nodeperf_volume_used_bytes"]
    try:
        wait_until(lambda: one(scrape(agent), "nodeperf_volume_used_bytes", volume="pv-alpha") == want,
                   timeout=5, what="used to grow")
    except AssertionError:
        pass
    after = one(scrape(agent), "nodeperf_volume_used_bytes", volume="pv-alpha")
    grew = after - before
    print(f"info: wrote {size} bytes, used grew by {grew:.0f} (statvfs: {want - before:.0f})")
    c.check(after == want, f"used after the write: agent {after} != statvfs {want}")
    # ext4 with 4 KiB blocks: the data blocks, and at most a few blocks of metadata.
    c.check(size <= grew <= size + 64 * 1024, f"used grew by {grew}, wrote {size}")
    reads = one(scrape(agent), "nodeperf_volume_mount_table_reads_total")
    c.check(reads == 1, f"mount table read once while it did not change, not {reads}")


def test_names(agent):
    def labels(name, volume):
        found = series(scrape(agent), name, volume=volume)
        return dict(next(iter(found))) if len(found) == 1 else {}

    wait_until(lambda: labels("nodeperf_volume_info", "pv-alpha").get("pod") == "db-0", timeout=15,
               what="names from the kubelet")
    wait_until(lambda: labels("nodeperf_volume_info", "pv-beta").get("pod") == "cache-0", timeout=15,
               what="names from the kubelet")
    alpha = labels("nodeperf_volume_used_bytes", "pv-alpha")
    beta = labels("nodeperf_volume_used_bytes", "pv-beta")
    print(f"info: labels {alpha} / {beta}")
    c.check(alpha.get("namespace") == "shop" and alpha.get("persistentvolumeclaim") == "data-db-0",
            f"pv-alpha: the pod's one claim: {alpha}")
    c.check(beta.get("namespace") == "shop" and "persistentvolumeclaim" not in beta,
            f"pv-beta: two claims, none guessed: {beta}")


def test_hung_mount(agent, root):
    os.makedirs(root + PATH_HUNG)
    fd = os.open("/dev/fuse", os.O_RDWR | os.O_CLOEXEC)
    target = (root + PATH_HUNG).encode()
    opts = f"fd={fd},rootmode=40000,user_id=0,group_id=0".encode()
    minor = None
    try:
        call(libc.mount, b"nodeperf-hang", target, b"fuse.nodeperf-hang", 0, opts)
        lines = write_mountinfo(root)
        minor = next(int(line.split(" ")[2].split(":")[1]) for line in lines if line.split(" ")[4] == PATH_HUNG)
        wait_until(lambda: one(scrape(agent), "nodeperf_volume_stale", volume="pv-hung") == 1, timeout=10,
                   what="the hung volume to be stale")
        # Ticks keep coming, scrapes stay quick, the other volumes keep their figures.
        count0, t0 = history_count(agent), time.monotonic()
        slowest, threads_seen = 0.0, set()
        while time.monotonic() - t0 < 5:
            s = time.monotonic()
            parsed = scrape(agent)
            slowest = max(slowest, time.monotonic() - s)
            threads_seen.add(one(parsed, "nodeperf_volume_stat_threads"))
            c.check(one(parsed, "nodeperf_volume_stale", volume="pv-hung") == 1, "hung volume stale")
            c.check(one(parsed, "nodeperf_volume_capacity_bytes", volume="pv-hung") is None, "no figures while stale")
            c.check(one(parsed, "nodeperf_volume_stale", volume="pv-alpha") == 0, "pv-alpha not stale")
            c.check(one(parsed, "nodeperf_volume_capacity_bytes", volume="pv-alpha") is not None, "pv-alpha served")
            time.sleep(0.25)
        ticks = history_count(agent) - count0
        elapsed = time.monotonic() - t0
        duration = one(scrape(agent), "nodeperf_collector_duration_seconds", collector="volumes")
        print(f"info: hung mount: {ticks} ticks in {elapsed:.1f}s at 500ms, slowest scrape {slowest * 1000:.0f} ms, "
              f"statvfs threads {sorted(threads_seen)}, volumes collector {duration * 1000:.1f} ms")
        c.check(ticks >= int(elapsed / 0.5) - 2, f"ticks kept coming: {ticks} in {elapsed:.1f}s")
        c.check(slowest < 0.5, f"scrapes stay quick: slowest {slowest:.3f}s")
        c.check(max(threads_seen) <= 3, f"one thread for the hung mount, not one per tick: {threads_seen}")
        c.check(duration is not None and duration < 0.3, f"volumes collector took {duration}s")
    finally:
        if minor is not None:
            abort_fuse(minor)
        libc.umount2(target, MNT_DETACH)
        os.close(fd)  # closing the device aborts the connection too, if the abort above could not
    # The aborted call returns: the thread comes back, and without the mount
    # in the table the volume goes away.
    write_mountinfo(root)
    wait_until(lambda: not series(scrape(agent), "nodeperf_volume_stale", volume="pv-hung"), timeout=10,
               what="the hung volume to go")
    wait_until(lambda: one(scrape(agent), "nodeperf_volume_stat_threads") <= 2, timeout=10,
               what="the stuck thread to come back")
    c.check(agent.proc.poll() is None, "agent still running")


if __name__ == "__main__":
    main()
