"""The raw_tp fallback of every probe, on a kernel where tp_btf works (so
it would otherwise never run here): with NODEPERF_BPF_ATTACH=raw_tp the
agent attaches the raw_ twins, and the block IO and run-queue tests pass
against them unchanged (exact counts per device and op, quantiles against
bpftrace, run-queue waits equal to the kernel's schedstat, side by side
with runqlat, TCP RTT against ss), and so does the volume IO test (block
requests per volume, and the file-system latency probe's raw_tp twins on a
FUSE volume), and the budget test (the probes' sampling: real reads
counted through the sampled block probe). Root only; about 100 s."""

import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import Agent, Checks, require_root  # noqa: E402
import bpfutil  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
PROBES = ("blockio", "runqueue", "tcp")
TESTS = ("test_bpf_blockio.py", "test_bpf_runqueue.py", "test_bpf_tcp.py", "test_volume_io.py", "test_budget.py")


def main():
    require_root()
    os.environ["NODEPERF_BPF_ATTACH"] = "raw_tp"
    c = Checks()

    agent = Agent()
    try:
        bpfutil.require_bpf_collectors(agent, *PROBES)
        attached = dict(re.findall(r'msg="(\w+): attached ([^"]*)"', agent.log()))
        for probe in PROBES:
            names = [n.strip() for n in attached.get(probe, "").split(",") if n.strip()]
            print(f"{probe}: attached {', '.join(names) or 'nothing'}")
            c.check(names and all(n.startswith("raw_") for n in names),
                    f"{probe}: attached {names}, not raw_tp programs only")
    finally:
        agent.stop()

    for test in TESTS:
        r = subprocess.run([sys.executable, os.path.join(HERE, test)], capture_output=True, text=True, timeout=300)
        tail = r.stdout.strip().splitlines()[-1:] or [""]
        print(f"{test} under raw_tp: exit {r.returncode}: {tail[0]}")
        c.check(r.returncode == 0, f"{test} under raw_tp failed:\n{r.stdout[-3000:]}{r.stderr[-2000:]}")
    c.done()


if __name__ == "__main__":
    main()
