"""The agent against Debian's node_exporter on the same host, scraped at the
same moment: CPU, memory, disk and network counters must agree, and in
--compat=node_exporter mode every metric the agent claims node_exporter's name
for must exist in node_exporter's output with the same label keys."""

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(__file__))
from harness import Agent, Checks, NodeExporter, parse_exposition, series  # noqa: E402

TICK = 0.1  # a short tick bounds how stale the agent's snapshot can be

# Each (our metric, node_exporter metric, absolute tolerance, relative tolerance).
# Tolerances cover the agent's snapshot age (one tick) plus the gap between
# the two scrapes: CPU time grows by at most ncpu x elapsed seconds, disk
# counters by what the host does in that time, loopback by our own scrapes.
AGREE = [
    ("nodeperf_cpu_seconds_total", "node_cpu_seconds_total", 0.5, 0.0),
    ("nodeperf_context_switches_total", "node_context_switches_total", 5000, 0.001),
    ("nodeperf_forks_total", "node_forks_total", 50, 0.0),
    ("nodeperf_boot_time_seconds", "node_boot_time_seconds", 0, 0.0),
    ("nodeperf_memory_MemTotal_bytes", "node_memory_MemTotal_bytes", 0, 0.0),
    ("nodeperf_memory_SwapTotal_bytes", "node_memory_SwapTotal_bytes", 0, 0.0),
    ("nodeperf_memory_MemAvailable_bytes", "node_memory_MemAvailable_bytes", 0, 0.01),
    ("nodeperf_disk_reads_completed_total", "node_disk_reads_completed_total", 20, 0.001),
    ("nodeperf_disk_writes_completed_total", "node_disk_writes_completed_total", 200, 0.001),
    ("nodeperf_disk_read_bytes_total", "node_disk_read_bytes_total", 1 << 20, 0.001),
    ("nodeperf_disk_written_bytes_total", "node_disk_written_bytes_total", 16 << 20, 0.001),
    ("nodeperf_disk_io_time_seconds_total", "node_disk_io_time_seconds_total", 0.5, 0.0),
    ("nodeperf_network_receive_bytes_total", "node_network_receive_bytes_total", 1 << 20, 0.0),
    ("nodeperf_network_transmit_bytes_total", "node_network_transmit_bytes_total", 1 << 20, 0.0),
    ("nodeperf_network_receive_packets_total", "node_network_receive_packets_total", 500, 0.0),
    ("nodeperf_vmstat_pgfault", "node_vmstat_pgfault", 200000, 0.0),
    ("nodeperf_netstat_Tcp_ActiveOpens", "node_netstat_Tcp_ActiveOpens", 20, 0.0),
    ("nodeperf_netstat_Tcp_PassiveOpens", "node_netstat_Tcp_PassiveOpens", 20, 0.0),
    ("nodeperf_pressure_io_waiting_seconds_total", "node_pressure_io_waiting_seconds_total", 0.5, 0.0),
]

PEER_FLAGS = ["--collector.netstat.fields=.*", "--collector.vmstat.fields=.*"]


def scrape_both(agent, peer):
    with ThreadPoolExecutor(2) as pool:
        ours, theirs = pool.map(lambda target: target.metrics(), [agent, peer])
    return parse_exposition(ours), parse_exposition(theirs)


def main():
    t = Checks()
    with NodeExporter(*PEER_FLAGS) as peer, Agent(f"--tick={int(TICK * 1000)}ms") as agent:
        time.sleep(2 * TICK)
        ours, theirs = scrape_both(agent, peer)
        for our_name, their_name, abs_tol, rel_tol in AGREE:
            mine, peers = series(ours, our_name), series(theirs, their_name)
            t.check(mine, f"{our_name}: agent exports no series")
            for labels, v in mine.items():
                if labels not in peers:
                    # node_exporter's own defaults may leave a device out
                    t.check(our_name.startswith("nodeperf_network") or our_name.startswith("nodeperf_disk"),
                            f"{our_name}{dict(labels)}: node_exporter has no such series")
                    continue
                want = peers[labels]
                tol = abs_tol + rel_tol * abs(want)
                t.check(abs(v - want) <= tol,
                        f"{our_name}{dict(labels)} = {v}, node_exporter {their_name} = {want} (tolerance {tol})")
        t.check(any("vda" in dict(k).values() for k in series(ours, "nodeperf_disk_reads_completed_total")),
                "the system disk vda is reported")

    # Compatibility mode: our node_exporter names are node_exporter's names.
    with NodeExporter(*PEER_FLAGS) as peer, Agent("--compat=node_exporter") as agent:
        ours, theirs = scrape_both(agent, peer)
        their_names = {}
        for name, labels in theirs:
            their_names.setdefault(name, set(k for k, _ in labels))
        checked = 0
        for name, labels in ours:
            if name.startswith("nodeperf_") or name.startswith("process_"):
                continue
            checked += 1
            t.check(name in their_names, f"compat name {name} is not in node_exporter's output")
            if name in their_names:
                t.check(set(k for k, _ in labels) == their_names[name],
                        f"{name}: label keys {sorted(k for k, _ in labels)} != node_exporter's {sorted(their_names[name])}")
        t.check(checked > 100, f"only {checked} node_ series in compat mode")
        t.check(not series(ours, "nodeperf_cpu_seconds_total"), "compat mode still exports nodeperf_cpu_seconds_total")
        t.check(series(ours, "nodeperf_build_info"), "compat mode drops the agent's own metrics")
    t.done()


main()
