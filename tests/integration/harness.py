"""Shared helpers for the integration tests: start the real agent (and real
peers) on loopback ports, scrape them, parse the text exposition."""

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request

BIN = os.environ.get("NODEPERF_BIN", "build/nodeperf")
SOURCE_DIR = os.environ.get("NODEPERF_SOURCE_DIR", os.getcwd())
SKIP = 77  # CTest's SKIP_RETURN_CODE for these scripts


def skip(reason):
    print(f"SKIP: {reason}")
    sys.exit(SKIP)


def require_root():
    if os.geteuid() != 0:
        skip("needs root")


def require_tool(name):
    path = shutil.which(name)
    if not path:
        skip(f"{name} not installed (scripts/setup.sh installs it)")
    return path


class Agent:
    """The nodeperf agent on an ephemeral loopback port."""

    def __init__(self, *flags, config=None, wait_ready=True, wrap=()):
        """`wrap`: a command that execs the agent (e.g. prlimit ...)."""
        self.stderr = tempfile.NamedTemporaryFile(prefix="nodeperf-agent-", suffix=".log", delete=False)
        args = [*wrap, BIN, "agent", "--web.listen-address=127.0.0.1:0", *flags]
        if config is not None:
            args.append(f"--config.file={config}")
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.stderr)
        self.pid = self.proc.pid
        self.port = self._wait_port()
        self.url = f"http://127.0.0.1:{self.port}"
        if wait_ready:
            wait_until(lambda: http_get(self.url + "/readyz")[0] == 200, what="agent ready")

    def _wait_port(self, timeout=10):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"listening on [^ ]*:(\d+)", self.log())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                raise AssertionError(f"agent exited with {self.proc.returncode}: {self.log()}")
            time.sleep(0.02)
        raise AssertionError("agent did not log its port: " + self.log())

    def log(self):
        with open(self.stderr.name, errors="replace") as f:
            return f.read()

    def metrics(self, headers=None):
        status, _, body = http_get(self.url + "/metrics", headers)
        assert status == 200, status
        return body.decode()

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self, timeout=5):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        os.unlink(self.stderr.name)
        return self.proc.returncode

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


class NodeExporter:
    """Debian's prometheus-node-exporter on a free loopback port, as a peer."""

    def __init__(self, *flags):
        exe = require_tool("prometheus-node-exporter")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([exe, f"--web.listen-address=127.0.0.1:{self.port}", *flags],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(lambda: http_get(self.url + "/metrics")[0] == 200, what="node_exporter up")

    def metrics(self):
        return http_get(self.url + "/metrics")[2].decode()

    def stop(self):
        self.proc.terminate()
        self.proc.wait(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, headers=None, method="GET", timeout=5):
    """(status, headers, body); never raises for HTTP error statuses."""
    req = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), e.read()
    except (urllib.error.URLError, ConnectionError, socket.timeout):
        return None, {}, b""


def wait_until(predicate, timeout=10, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_exposition(text):
    """{(name, frozenset(labels.items())): value} for every sample line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = SAMPLE.match(line)
        assert m, f"unparsable sample line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        key = (m.group(1), labels)
        assert key not in out, f"duplicate series: {line!r}"
        out[key] = float(m.group(4))
    return out


def series(parsed, name, **labels):
    """Values of the series of `name` whose labels include `labels`."""
    want = set(labels.items())
    return {k[1]: v for k, v in parsed.items() if k[0] == name and want <= set(k[1])}


def value(parsed, name, **labels):
    found = series(parsed, name, **labels)
    assert len(found) == 1, f"{name}{labels}: {len(found)} series"
    return next(iter(found.values()))


class Checks:
    """Counts checks so each script ends with a 'N passed, N failed' line."""

    def __init__(self):
        self.passed = 0
        self.failed = 0

    def check(self, ok, what):
        if ok:
            self.passed += 1
        else:
            self.failed += 1
            print(f"FAIL: {what}")
        return ok

    def run(self, *tests):
        """Runs each test function; an unexpected error is a failed check,
        not a crash, and the next test still runs."""
        start = time.monotonic()
        for test in tests:
            try:
                test()
            except Exception as e:
                self.check(False, f"{test.__name__}: {type(e).__name__}: {e}")
        print(f"info: ran in {time.monotonic() - start:.1f}s")

    def done(self):
        print(f"{self.passed} passed, {self.failed} failed")
        sys.exit(1 if self.failed else 0)
