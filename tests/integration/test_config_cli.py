#!/usr/bin/env python3
"""The command line: configuration errors (exit 2, one line naming the
file:line or the flag), --config.check, help and usage of every command,
doctor's output, and flags winning over the file."""

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, Agent, Checks, parse_exposition, series  # noqa: E402

checks = Checks()
check = checks.check
TMP = tempfile.mkdtemp(prefix="nodeperf-config-")
# Every agent run listens on an ephemeral loopback port, so a config that is
# wrongly accepted cannot take the default :19100 (it is killed at the timeout).
LISTEN = "--web.listen-address=127.0.0.1:0"
VERBOSE = "-v" in sys.argv[1:]


def run(*args, timeout=10):
    """(exit code, stdout, stderr) of `nodeperf args...`; exit code None if it
    was still running at the timeout (and was killed)."""
    try:
        p = subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout, errors="replace")
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        out = e.stdout.decode(errors="replace") if isinstance(e.stdout, bytes) else (e.stdout or "")
        err = e.stderr.decode(errors="replace") if isinstance(e.stderr, bytes) else (e.stderr or "")
        return None, out, err


def write(name, text):
    path = os.path.join(TMP, name)
    with open(path, "w") as f:
        f.write(text)
    return path


def one_error_line(what, rc, err):
    """Exit 2 and exactly one line on stderr, starting 'nodeperf: '."""
    lines = err.splitlines()
    if not check(rc == 2, f"{what}: want exit 2, got {rc} (stderr {err!r})"):
        return lines[0] if lines else ""
    ok = check(len(lines) == 1 and err.endswith("\n"), f"{what}: want exactly one line on stderr, got {err!r}")
    ok &= check(bool(lines) and lines[0].startswith("nodeperf: "), f"{what}: line must start 'nodeperf: ', got {err!r}")
    if VERBOSE:
        print(f"info: {what}: {lines[0] if lines else ''}")
    return lines[0] if lines else ""


# --- bad config files: (name, content, line(s) at fault, key named) -----------

BAD_FILES = [
    ("unknown top-level key", "tick: 1s\nlog:\n  level: info\ncolector:\n  cpu: false\n", 4, "colector"),
    ("unknown nested key", "tick: 1s\nweb:\n  max_connections: 8\n  listen_adress: ':1'\n", 4, "web.listen_adress"),
    ("unknown collector", "collector:\n  cpu: true\n  gpu: true\n", 3, "collector.gpu"),
    ("wrong type: list for tick", "# comment\nlog:\n  level: info\ntick: [1s, 2s]\n", 4, "tick"),
    ("wrong type: block list for tick", "log:\n  level: info\ntick:\n  - 1s\n", (3, 4), "tick"),
    ("wrong type: mapping for tick", "web:\n  max_connections: 4\ntick: {seconds: 1}\n", 3, "tick"),
    ("wrong type: value for a section", "tick: 1s\nweb: 5\n", 2, "web"),
    ("wrong type: string for a number", "web:\n  max_connections: many\n", 2, "web.max_connections"),
    ("wrong type: not a bool", "collector:\n  cpu: maybe\n", 2, "collector.cpu"),
    ("out of range: tick 10ms", "log:\n  level: debug\ntick: 10ms\n", 3, "tick"),
    ("out of range: tick 1h", "tick: 1h\n", 1, "tick"),
    ("out of range: max_connections 0", "tick: 1s\nweb:\n  idle_timeout: 5s\n  max_connections: 0\n", 4,
     "web.max_connections"),
    ("out of range: max_request_bytes 10", "web:\n  max_request_bytes: 10\n", 2, "web.max_request_bytes"),
    ("out of range: idle_timeout 2h", "web:\n  idle_timeout: 2h\n", 2, "web.idle_timeout"),
    ("bad duration: no unit", "tick: 1s\nweb:\n  max_connections: 16\n  idle_timeout: 5\n", 4, "web.idle_timeout"),
    ("bad duration: words", "\n\ntick: 1 second\n", 3, "tick"),
    ("bad duration: negative", "tick: -1s\n", 1, "tick"),
    ("bad duration: unknown unit", "tick: 1d\n", 1, "tick"),
    ("bad regex", "collector:\n  cpu: true\n  diskstats:\n    device_exclude: \"^(ram|loop[\"\n", 4,
     "collector.diskstats.device_exclude"),
    ("bad regex (netdev)", "collector:\n  netdev:\n    device_exclude: \"*lo\"\n", 3, "collector.netdev.device_exclude"),
    ("bad compat", "compat: prometheus\n", 1, "compat"),
    ("bad log level", "log:\n  level: verbose\n", 2, "log.level"),
    ("bad listen address", "web:\n  listen_address: localhost\n", 2, "web.listen_address"),
    ("host_root not a directory", "host_root: /etc/passwd\n", 1, "host_root"),
    ("host_root relative", "tick: 1s\nhost_root: proc\n", 2, "host_root"),
    ("web.config_file set", "tick: 1s\nweb:\n  config_file: /etc/nodeperf/web.yml\n", 3, "web.config_file"),
    ("top level is a list", "- tick: 1s\n", 1, "(top level)"),
    # The key with nothing after it is the line at fault, not the next one.
    ("empty value", "tick: 1s\nweb:\n  idle_timeout:\n\n# comment\n  max_connections: 16\n", 3, "web.idle_timeout"),
    # A value with a line break must still give a one-line error.
    ("multi-line value", "tick: 1s\nweb:\n  max_connections: |\n    16\n    17\n", (3, 4), "web.max_connections"),
]

YAML_ERRORS = [
    ("YAML syntax: tab indentation", "tick: 1s\n\tcompat: none\n", 2),
    ("YAML syntax: illegal map value", "tick: 1s\nlog:\n  level: info\ncompat: none: x\n", 4),
    ("YAML syntax: undefined alias", "tick: 1s\nlog:\n  level: *lvl\n", 3),
    ("YAML syntax: bad indentation", "tick: 1s\nweb:\n  max_connections: 16\n idle_timeout: 2s\n", 4),
]


def test_bad_files():
    for i, (what, text, line, key) in enumerate(BAD_FILES):
        path = write(f"bad{i}.yml", text)
        lines = line if isinstance(line, tuple) else (line,)
        for extra in ((), ("--config.check",)):
            rc, out, err = run("agent", LISTEN, f"--config.file={path}", *extra)
            label = f"{what}{' (--config.check)' if extra else ''}"
            msg = one_error_line(label, rc, err)
            m = re.match(rf"nodeperf: {re.escape(path)}:(\d+): (.*?): \S", msg)
            if check(m is not None, f"{label}: want 'nodeperf: {path}:LINE: KEY: message', got {msg!r}"):
                check(int(m.group(1)) in lines, f"{label}: names line {m.group(1)}, want line "
                                                f"{' or '.join(map(str, lines))} in {text!r}")
                check(m.group(2) == key, f"{label}: names key {m.group(2)!r}, want {key!r}")
            check(out == "", f"{label}: stdout should be empty, got {out!r}")

    for i, (what, text, line) in enumerate(YAML_ERRORS):
        path = write(f"yaml{i}.yml", text)
        rc, _, err = run("agent", LISTEN, f"--config.file={path}")
        msg = one_error_line(what, rc, err)
        m = re.match(rf"nodeperf: {re.escape(path)}:(\d+): \S", msg)
        if check(m is not None, f"{what}: want 'nodeperf: {path}:LINE: ...', got {msg!r}"):
            check(int(m.group(1)) == line, f"{what}: names line {m.group(1)}, want {line} in {text!r}")

    # Files that cannot be read at all: exit 2, one line naming the file.
    missing = os.path.join(TMP, "does-not-exist.yml")
    for what, path in (("non-existent --config.file", missing), ("--config.file is a directory", TMP)):
        rc, _, err = run("agent", LISTEN, f"--config.file={path}")
        msg = one_error_line(what, rc, err)
        if rc == 2:
            check(msg.startswith(f"nodeperf: {path}:"), f"{what}: line must name {path}, got {err!r}")
    rc, _, err = run("agent", LISTEN, "--config.file", missing)
    msg = one_error_line("--config.file FILE (two arguments), missing file", rc, err)
    check(missing in msg, f"--config.file FILE: line must name the file, got {msg!r}")


# --- bad flags: (args, flag that must be named) -------------------------------

BAD_FLAGS = [
    (["--bogus"], "--bogus"),
    (["--collector.gpu"], "--collector.gpu"),
    (["--no-tick"], "--no-tick"),
    (["--tick"], "--tick"),  # missing value: the last argument
    (["--web.max-connections"], "--web.max-connections"),
    (["--config.file"], "--config.file"),
    (["--config.file="], "--config.file"),
    (["--tick", "--log.level=debug"], "--tick"),  # the next flag is not a duration
    (["--tick=10ms"], "--tick"),
    (["--tick=abc"], "--tick"),
    (["--tick="], "--tick"),
    (["--web.idle-timeout=50ms"], "--web.idle-timeout"),
    (["--web.max-connections=0"], "--web.max-connections"),
    (["--web.max-connections=70000"], "--web.max-connections"),
    (["--web.max-request-bytes=lots"], "--web.max-request-bytes"),
    (["--compat=prometheus"], "--compat"),
    (["--compat"], "--compat"),
    (["--log.level=trace"], "--log.level"),
    (["--host-root=/etc/passwd"], "--host-root"),
    (["--host-root=relative/dir"], "--host-root"),
    (["--host-root=/does/not/exist"], "--host-root"),
    (["--web.config.file=/etc/nodeperf/web.yml"], "--web.config.file"),
    (["--collector.cpu=maybe"], "--collector.cpu"),
    (["--no-collector.cpu=false"], "--no-collector.cpu"),
    (["--config.check=yes"], "--config.check"),
    (["--collector.diskstats.device-exclude=(["], "--collector.diskstats.device-exclude"),
    (["--web.listen-address=localhost"], "--web.listen-address"),
    (["--web.listen-address=::1:9100"], "--web.listen-address"),
    (["--web.listen-address=127.0.0.1:99999"], "--web.listen-address"),
    (["--compat=node\nexporter"], "--compat"),  # a line break in the value: still one line
]


def test_bad_flags():
    for args, flag in BAD_FLAGS:
        # LISTEN goes first so a flag missing its value is the last argument.
        full = [LISTEN, *args]
        what = " ".join(a.encode("unicode_escape").decode() for a in args)
        rc, out, err = run("agent", *full)
        msg = one_error_line(f"agent {what}", rc, err)
        check(re.search(rf"{re.escape(flag)}(\b|$|[ =:])", msg) is not None,
              f"agent {what}: line must name the flag {flag}, got {msg!r}")
        check(out == "", f"agent {what}: stdout should be empty, got {out!r}")
    rc, _, err = run("agent", LISTEN, "stray")
    msg = one_error_line("agent stray (a positional argument)", rc, err)
    check("stray" in msg, f"positional argument: line must name it, got {msg!r}")
    # A bad flag on top of a good file names the flag, not the file.
    good = write("good-for-flag.yml", "tick: 2s\n")
    rc, _, err = run("agent", LISTEN, f"--config.file={good}", "--tick=0s")
    msg = one_error_line("good file + --tick=0s", rc, err)
    check(msg.startswith("nodeperf: flag --tick:"), f"good file + bad flag: want 'nodeperf: flag --tick: ...', got {msg!r}")


# --- --config.check -------------------------------------------------------------

def test_config_check():
    good = write("good.yml", "# a full, valid file\ntick: 2s\ncompat: none\nlog:\n  level: warn\nweb:\n"
                             "  listen_address: 127.0.0.1:0\n  max_connections: 32\n  idle_timeout: 10s\n"
                             "  max_request_bytes: 4096\ncollector:\n  cpu: false\n  netdev:\n"
                             "    enabled: true\n    device_exclude: '^lo$'\n  diskstats:\n"
                             "    device_exclude: '^(ram|loop)\\d+$'\n")
    rc, out, err = run("agent", "--config.check", f"--config.file={good}")
    check(rc == 0, f"--config.check with a valid file: want exit 0, got {rc} ({err!r})")
    check(len(out.splitlines()) == 1 and good in out, f"--config.check: want one line naming the file, got {out!r}")
    check(err == "", f"--config.check with a valid file: stderr should be empty, got {err!r}")
    rc, out, _ = run("agent", "--config.check")
    check(rc == 0 and len(out.splitlines()) == 1, f"--config.check without a file: {rc} {out!r}")
    empty = write("empty.yml", "")
    rc, _, err = run("agent", "--config.check", f"--config.file={empty}")
    check(rc == 0, f"--config.check with an empty file (all defaults): want 0, got {rc} {err!r}")

    # --config.check does not listen: it passes even with the port taken.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen(1)
        port = s.getsockname()[1]
        rc, out, err = run("agent", "--config.check", f"--web.listen-address=127.0.0.1:{port}")
        check(rc == 0, f"--config.check with a busy port: want 0 (no bind), got {rc} {err!r}")
        # ...while the agent itself fails to start there, and says why.
        rc, out, err = run("agent", f"--web.listen-address=127.0.0.1:{port}", timeout=10)
        check(rc not in (0, None) and "listen" in err, f"agent on a busy port: want a non-zero exit naming the "
                                                       f"address, got {rc} {err!r}")

    bad = write("bad-check.yml", "tick: 1s\nweb:\n  max_connections: 0\n")
    rc, out, err = run("agent", "--config.check", f"--config.file={bad}")
    msg = one_error_line("--config.check with a bad file", rc, err)
    check(f"{bad}:3:" in msg, f"--config.check with a bad file: want {bad}:3, got {msg!r}")
    check(out == "", f"--config.check with a bad file: stdout should be empty, got {out!r}")
    rc, out, err = run("agent", "--config.check", "--tick=1ms")
    one_error_line("--config.check --tick=1ms", rc, err)


# --- help, usage, version, doctor, unknown commands ----------------------------------

def test_commands():
    for args, want in ((["--help"], "Usage: nodeperf <command>"), (["-h"], "Usage: nodeperf <command>"),
                       (["help"], "Usage: nodeperf <command>"),
                       (["agent", "--help"], "Usage: nodeperf agent"), (["agent", "-h"], "Usage: nodeperf agent"),
                       (["doctor", "--help"], "Usage: nodeperf doctor"), (["version", "--help"], "Usage: nodeperf version")):
        rc, out, err = run(*args)
        check(rc == 0, f"nodeperf {' '.join(args)}: want exit 0, got {rc} ({err!r})")
        check(out.startswith(want), f"nodeperf {' '.join(args)}: want stdout starting {want!r}, got {out[:80]!r}")
    rc, out, _ = run("agent", "--help")
    for flag in ("--config.file", "--config.check", "--tick", "--web.listen-address", "--web.max-connections",
                 "--web.idle-timeout", "--web.max-request-bytes", "--compat", "--host-root", "--[no-]collector.cpu",
                 "--collector.diskstats.device-exclude", "--log.level"):
        check(flag in out, f"agent --help does not list {flag}")
    # --help wins over other (valid) flags and does not start the agent.
    rc, out, _ = run("agent", LISTEN, "--tick=2s", "--help", timeout=5)
    check(rc == 0 and out.startswith("Usage: nodeperf agent"), f"agent --tick=2s --help: {rc}")

    rc, out, err = run("version")
    check(rc == 0 and re.match(r"nodeperf \d+\.\d+\.\d+", out) is not None, f"nodeperf version: {rc} {out!r}")

    rc, out, err = run("doctor", timeout=30)
    lines = [line for line in out.splitlines() if line.strip()]
    check(rc in (0, 1), f"nodeperf doctor: want exit 0 or 1, got {rc} ({err!r})")
    check(len(lines) >= 3, f"nodeperf doctor: want a line per check, got {out!r}")
    bad = [line for line in lines if not re.match(r"(OK|WARN|MISSING)\s+\S", line)]
    check(not bad, f"nodeperf doctor: lines not starting with OK, WARN or MISSING: {bad}")
    missing = any(line.startswith("MISSING") for line in lines)
    check(rc == (1 if missing else 0), f"nodeperf doctor: exit {rc} but MISSING present={missing}")
    names = [line.split()[1] for line in lines if len(line.split()) > 1]
    check(len(names) == len(set(names)), f"nodeperf doctor: a check is reported twice: {names}")
    rc, out, _ = run("doctor", f"--host-root={TMP}", timeout=30)
    check(rc == 1 and "MISSING" in out, f"doctor --host-root=<empty dir>: want exit 1 and MISSING lines, got {rc}")
    rc, _, err = run("doctor", "--bogus")
    check(rc == 2 and "--bogus" in err, f"doctor --bogus: want exit 2 naming it, got {rc} {err!r}")

    rc, out, err = run("frobnicate")
    check(rc == 2, f"unknown command: want exit 2, got {rc}")
    check("frobnicate" in err, f"unknown command: stderr must name it, got {err!r}")
    rc, out, err = run()
    check(rc == 2 and "Usage" in out + err, f"no command: want exit 2 and usage, got {rc}")


# --- flags versus file, collectors, compat ------------------------------------------

def tick_logged(agent):
    m = re.search(r"\(tick (\d+)ms", agent.log())
    return int(m.group(1)) if m else None


def test_running_config():
    cfg = write("tick5.yml", "tick: 5s\ncollector:\n  cpu: false\n")
    with Agent(config=cfg) as a:
        check(tick_logged(a) == 5000, f"file tick 5s: log says tick {tick_logged(a)}ms, want 5000ms")
        check(not series(parse_exposition(a.metrics()), "nodeperf_cpu_seconds_total"),
              "file collector.cpu: false still exports nodeperf_cpu_seconds_total")
    with Agent("--tick=1s", "--collector.cpu", config=cfg) as a:
        check(tick_logged(a) == 1000, f"file tick 5s + --tick=1s: log says tick {tick_logged(a)}ms, want 1000ms (flags win)")
        check(bool(series(parse_exposition(a.metrics()), "nodeperf_cpu_seconds_total")),
              "file collector.cpu: false + --collector.cpu: nodeperf_cpu_seconds_total missing (flags win)")
    # Flag order: the last one wins.
    with Agent("--tick=2s", "--tick=300ms") as a:
        check(tick_logged(a) == 300, f"--tick=2s --tick=300ms: log says tick {tick_logged(a)}ms, want 300ms")

    with Agent("--tick=5m") as a:
        parsed = parse_exposition(a.metrics())
        check(bool(series(parsed, "nodeperf_cpu_seconds_total")), "default agent: nodeperf_cpu_seconds_total missing")
        check(not series(parsed, "node_cpu_seconds_total"), "default agent: exports node_cpu_seconds_total")
    with Agent("--no-collector.cpu", "--tick=5m") as a:
        parsed = parse_exposition(a.metrics())
        check(not series(parsed, "nodeperf_cpu_seconds_total"), "--no-collector.cpu: nodeperf_cpu_seconds_total present")
        check(not series(parsed, "nodeperf_collector_up", collector="cpu"),
              "--no-collector.cpu: nodeperf_collector_up{collector=\"cpu\"} still reported")
        check(bool(series(parsed, "nodeperf_build_info")), "--no-collector.cpu: nodeperf_build_info missing")
    with Agent("--compat=node_exporter", "--tick=5m") as a:
        parsed = parse_exposition(a.metrics())
        check(bool(series(parsed, "node_cpu_seconds_total")), "--compat=node_exporter: node_cpu_seconds_total missing")
        check(not series(parsed, "nodeperf_cpu_seconds_total"),
              "--compat=node_exporter: nodeperf_cpu_seconds_total still exported")
        check(len(series(parsed, "nodeperf_build_info")) == 1, "--compat=node_exporter: nodeperf_build_info missing")


def main():
    checks.run(test_bad_files, test_bad_flags, test_config_check, test_commands, test_running_config)
    shutil.rmtree(TMP, ignore_errors=True)
    checks.done()


if __name__ == "__main__":
    main()
