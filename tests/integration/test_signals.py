#!/usr/bin/env python3
"""Signals: SIGTERM and SIGINT stop the agent within a second with exit 0;
SIGHUP reloads the config file (flags still win), rejects a bad file and
keeps serving with the running config."""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Agent, Checks, http_get, parse_exposition, series  # noqa: E402

checks = Checks()
check = checks.check
TMP = tempfile.mkdtemp(prefix="nodeperf-signals-")
TICK = 0.5  # seconds; the reload checks run on this tick


def write_config(path, text):
    """Replace the file atomically, as an editor or a config manager would."""
    tmp = path + ".new"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def timed_stop(agent, sig, limit=1.0):
    """Send `sig`; (exit code, seconds to exit) — exit code None if still running after 5 s."""
    t0 = time.monotonic()
    agent.signal(sig)
    try:
        rc = agent.proc.wait(5)
    except subprocess.TimeoutExpired:
        return None, time.monotonic() - t0
    return rc, time.monotonic() - t0


def has_cpu(agent):
    status, _, body = http_get(agent.url + "/metrics")
    if status != 200:
        return None
    return bool(series(parse_exposition(body.decode()), "nodeperf_cpu_seconds_total"))


def wait_for(predicate, timeout):
    """Seconds until predicate() is true, or None at the timeout."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if predicate():
            return time.monotonic() - t0
        time.sleep(0.05)
    return None


def log_count(agent, text):
    return agent.log().count(text)


def ticks_in(agent, seconds):
    """How many new snapshots appear in `seconds`: scraping every 50 ms, each
    scrape bumps nodeperf_http_requests_total, which a snapshot publishes."""
    values = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        status, _, body = http_get(agent.url + "/metrics")
        if status == 200:
            found = series(parse_exposition(body.decode()), "nodeperf_http_requests_total", code="200")
            values.append(sum(found.values()))
        time.sleep(0.05)
    return sum(1 for a, b in zip(values, values[1:]) if a != b)


def raw_status(port, extra_headers):
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(f"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{extra_headers}\r\n".encode())
        data = b""
        for _ in range(1000):
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
            if b"\r\n" in data:
                break
    try:
        return int(data.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


# --- stopping ------------------------------------------------------------------

def test_stop():
    for sig in (signal.SIGTERM, signal.SIGINT):
        name = sig.name
        agent = Agent("--tick=1s")
        try:
            rc, took = timed_stop(agent, sig)
            print(f"info: {name}: exit {rc} after {took * 1000:.0f} ms")
            check(rc == 0, f"{name}: want exit code 0, got {rc}")
            check(took < 1.0, f"{name}: took {took:.2f}s to exit (want < 1s)")
            log = agent.log()
            check(f"received {name}" in log and "stopped" in log, f"{name}: log does not say it stopped: {log[-300:]!r}")
        finally:
            agent.stop()

    # With clients connected: an idle connection, a half-sent request, a
    # keep-alive connection between requests. None of them holds the exit up.
    agent = Agent("--tick=1s", "--web.idle-timeout=1m")
    socks = []
    try:
        socks.append(socket.create_connection(("127.0.0.1", agent.port), timeout=5))
        half = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
        half.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        socks.append(half)
        ka = socket.create_connection(("127.0.0.1", agent.port), timeout=5)
        ka.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        ka.recv(4096)
        socks.append(ka)
        time.sleep(0.2)
        rc, took = timed_stop(agent, signal.SIGTERM)
        print(f"info: SIGTERM with 3 open connections: exit {rc} after {took * 1000:.0f} ms")
        check(rc == 0 and took < 1.0, f"SIGTERM with open connections: exit {rc} after {took:.2f}s (want 0, < 1s)")
        for s in socks:
            s.settimeout(2)
            try:
                closed = s.recv(4096) == b""
            except ConnectionError:
                closed = True
            except socket.timeout:
                closed = False
            check(closed, "SIGTERM: a client connection was left open")
    finally:
        for s in socks:
            s.close()
        agent.stop()

    # SIGTERM right after start, before anyone scraped.
    agent = Agent("--tick=1s", wait_ready=False)
    try:
        rc, took = timed_stop(agent, signal.SIGTERM)
        check(rc == 0 and took < 1.0, f"SIGTERM right after start: exit {rc} after {took:.2f}s (want 0, < 1s)")
    finally:
        agent.stop()


# --- reloading -----------------------------------------------------------------

def test_reload():
    cfg = os.path.join(TMP, "nodeperf.yml")
    base = f"tick: {int(TICK * 1000)}ms\n"
    write_config(cfg, base + "collector:\n  cpu: true\n  loadavg: true\n")
    # A flag disables loadavg: it must stay disabled across reloads (flags win).
    agent = Agent("--no-collector.loadavg", config=cfg)
    try:
        def loadavg_up():
            status, _, body = http_get(agent.url + "/metrics")
            return bool(series(parse_exposition(body.decode()), "nodeperf_collector_up", collector="loadavg"))

        check(has_cpu(agent) is True, "before reload: nodeperf_cpu_seconds_total missing")
        check(not loadavg_up(), "--no-collector.loadavg: loadavg collector reported")

        # 1. A good file that disables cpu.
        write_config(cfg, base + "collector:\n  cpu: false\n  loadavg: true\n")
        agent.signal(signal.SIGHUP)
        took = wait_for(lambda: has_cpu(agent) is False, 2 * TICK + 1.0)
        check(took is not None, f"SIGHUP with collector.cpu: false: nodeperf_cpu_seconds_total still exported "
                                f"after {2 * TICK + 1.0:.1f}s (tick {TICK}s)")
        if took is not None:
            print(f"info: cpu gone {took:.2f}s after SIGHUP (tick {TICK}s)")
        check(wait_for(lambda: "configuration reloaded" in agent.log(), 2) is not None,
              f"SIGHUP: log does not say 'configuration reloaded': {agent.log()[-300:]!r}")
        check(cfg in agent.log().split("configuration reloaded", 1)[-1].splitlines()[0],
              "SIGHUP: the reload log line does not name the file")
        check(not loadavg_up(), "after SIGHUP: the file's loadavg: true won over the --no-collector.loadavg flag")
        check(agent.proc.poll() is None, "agent died on SIGHUP")

        # 2. A broken file: rejected, the running config (cpu off) stays.
        for broken, line in (("collector:\n  cpu: maybe\n", 2), ("tick: 1s\ncompat: none: x\n", 2),
                             ("tick: 10ms\n", 1)):
            rejected_before = log_count(agent, "reload rejected")
            reloaded_before = log_count(agent, "configuration reloaded")
            write_config(cfg, broken)
            agent.signal(signal.SIGHUP)
            got = wait_for(lambda: log_count(agent, "reload rejected") > rejected_before, 2)
            check(got is not None, f"SIGHUP with a broken file {broken!r}: no 'reload rejected' log line; "
                                   f"log ends {agent.log()[-300:]!r}")
            if got is not None:
                reject_line = [ln for ln in agent.log().splitlines() if "reload rejected" in ln][-1]
                check(f"{cfg}:{line}:" in reject_line,
                      f"reload rejected: the log line should name {cfg}:{line}, got {reject_line!r}")
            time.sleep(3 * TICK)
            check(agent.proc.poll() is None, f"agent died after SIGHUP with a broken file {broken!r}")
            check(log_count(agent, "configuration reloaded") == reloaded_before,
                  f"broken file {broken!r}: the log says 'configuration reloaded'")
            check(has_cpu(agent) is False, f"after a rejected reload ({broken!r}) the previous config "
                                           f"(cpu disabled) is no longer in effect")
            status, _, _ = http_get(agent.url + "/healthz")
            check(status == 200, f"/healthz after a rejected reload: {status}")

        # 3. A good file again: cpu comes back.
        reloaded_before = log_count(agent, "configuration reloaded")
        write_config(cfg, base + "collector:\n  cpu: true\n")
        agent.signal(signal.SIGHUP)
        took = wait_for(lambda: has_cpu(agent) is True, 2 * TICK + 1.0)
        check(took is not None, "SIGHUP with a fixed file: nodeperf_cpu_seconds_total did not come back")
        check(wait_for(lambda: log_count(agent, "configuration reloaded") > reloaded_before, 2) is not None,
              "SIGHUP with a fixed file: no 'configuration reloaded' log line")

        # 3b. A reload changes the tick: count how often the snapshot changes.
        before = ticks_in(agent, 2.0)
        write_config(cfg, "tick: 200ms\ncollector:\n  cpu: true\n")
        agent.signal(signal.SIGHUP)
        time.sleep(0.5)
        after = ticks_in(agent, 2.0)
        print(f"info: snapshots in 2s: {before} at tick {TICK}s, {after} after reloading with tick 200ms")
        check(2 <= before <= 6, f"tick {TICK}s: saw {before} snapshots in 2s (want about {2 / TICK:.0f})")
        check(7 <= after <= 12, f"SIGHUP with tick: 200ms: saw {after} snapshots in 2s (want about 10)")
        write_config(cfg, base + "collector:\n  cpu: true\n")
        agent.signal(signal.SIGHUP)
        time.sleep(0.5)

        # 4. A reload changes HTTP limits: a 2 kB header is fine at the default
        #    8192 and too large at 1024.
        pad = "X-Pad: " + "p" * 2000 + "\r\n"
        check(raw_status(agent.port, pad) == 200, "2 kB header before lowering web.max_request_bytes: not 200")
        write_config(cfg, base + "web:\n  max_request_bytes: 1024\n")
        agent.signal(signal.SIGHUP)
        took = wait_for(lambda: raw_status(agent.port, pad) == 431, 2)
        check(took is not None, "SIGHUP lowering web.max_request_bytes to 1024: a 2 kB header still accepted")

        # 5. A burst of SIGHUPs: still alive and serving.
        write_config(cfg, base)
        for _ in range(10):
            agent.signal(signal.SIGHUP)
            time.sleep(0.01)
        time.sleep(1)
        check(agent.proc.poll() is None, "agent died after 10 SIGHUPs in a row")
        check(has_cpu(agent) is True, "after 10 SIGHUPs: /metrics not serving the reloaded config")

        # 6. The config file removed: rejected, keeps running.
        os.unlink(cfg)
        rejected_before = log_count(agent, "reload rejected")
        agent.signal(signal.SIGHUP)
        check(wait_for(lambda: log_count(agent, "reload rejected") > rejected_before, 2) is not None,
              "SIGHUP with the config file removed: no 'reload rejected' log line")
        check(agent.proc.poll() is None and has_cpu(agent) is True,
              "SIGHUP with the config file removed: agent not serving the previous config")

        # 7. The config path is now a directory: rejected, keeps running.
        os.mkdir(cfg)
        rejected_before = log_count(agent, "reload rejected")
        agent.signal(signal.SIGHUP)
        got = wait_for(lambda: log_count(agent, "reload rejected") > rejected_before or agent.proc.poll() is not None, 2)
        time.sleep(0.3)
        alive = agent.proc.poll() is None
        check(alive and log_count(agent, "reload rejected") > rejected_before,
              f"SIGHUP with the config path now a directory: want 'reload rejected' and the agent running; "
              f"agent {'running' if alive else f'exited with {agent.proc.returncode}'}, log ends "
              f"{agent.log()[-200:]!r}")
        os.rmdir(cfg)
        write_config(cfg, base)

        # 8. After all that, SIGTERM still stops it promptly.
        if agent.proc.poll() is None:
            rc, took = timed_stop(agent, signal.SIGTERM)
            check(rc == 0 and took < 1.0, f"SIGTERM after reloads: exit {rc} after {took:.2f}s (want 0, < 1s)")
    finally:
        agent.stop()

    # SIGHUP without a config file: the flags are re-applied; no harm done.
    agent = Agent("--tick=1s", "--no-collector.cpu")
    try:
        agent.signal(signal.SIGHUP)
        check(wait_for(lambda: "configuration reloaded" in agent.log(), 2) is not None,
              "SIGHUP without a config file: no 'configuration reloaded' log line")
        time.sleep(1.5)
        check(agent.proc.poll() is None and has_cpu(agent) is False,
              "SIGHUP without a config file: the --no-collector.cpu flag was lost or the agent died")
    finally:
        agent.stop()


def main():
    checks.run(test_stop, test_reload)
    shutil.rmtree(TMP, ignore_errors=True)
    checks.done()


if __name__ == "__main__":
    main()
