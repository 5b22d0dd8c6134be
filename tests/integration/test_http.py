#!/usr/bin/env python3
"""HTTP behaviour of the agent's endpoint, over raw sockets where the exact
bytes matter: methods, status codes, HEAD, limits, content negotiation,
keep-alive, and robustness against idle and slow clients."""

import gzip
import os
import select
import socket
import sys
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Agent, Checks, http_get, parse_exposition, series  # noqa: E402

HOST = "127.0.0.1"
OM_ACCEPT = "application/openmetrics-text; version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"

checks = Checks()
check = checks.check


# --- a minimal raw HTTP/1.1 client ------------------------------------------

class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # lower-case name -> value
        self.body = body
        self.raw_head = raw_head

    def __repr__(self):
        return f"<{self.status} {self.reason} {self.headers} body={self.body[:80]!r}>"


class RawConn:
    """One TCP connection; send bytes, read responses one at a time."""

    def __init__(self, port, timeout=5):
        self.sock = socket.create_connection((HOST, port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed by the server")
        self.buf += chunk

    def read_response(self, head=False):
        """The next response; for HEAD, no body is read (Content-Length is
        the size GET would send)."""
        for _ in range(10000):
            if b"\r\n\r\n" in self.buf:
                break
            self._fill()
        raw_head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = raw_head.decode("latin-1").split("\r\n")
        version, status, reason = (lines[0].split(" ", 2) + [""])[:3]
        assert version.startswith("HTTP/1."), f"bad status line {lines[0]!r}"
        headers = {}
        for line in lines[1:]:
            name, _, val = line.partition(":")
            headers[name.strip().lower()] = val.strip()
        body = b""
        if not head and "content-length" in headers:
            n = int(headers["content-length"])
            for _ in range(100000):
                if len(self.buf) >= n:
                    break
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
        elif not head and headers.get("transfer-encoding", "").lower() == "chunked":
            raise AssertionError("chunked responses are not expected from nodeperf")
        return Response(int(status), reason, headers, body, raw_head)

    def leftover_after(self, wait):
        """Bytes the server sends within `wait` seconds (b'' if it closed or sent nothing)."""
        self.sock.settimeout(wait)
        try:
            data = self.sock.recv(65536)
        except socket.timeout:
            data = b""
        except ConnectionError:
            data = b""
        return self.buf + data

    def closed_by_server(self, wait):
        """True if the server closes the connection within `wait` seconds
        (recv returns b'' or the connection is reset)."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            self.sock.settimeout(max(0.01, deadline - time.monotonic()))
            try:
                data = self.sock.recv(65536)
            except socket.timeout:
                return False
            except ConnectionError:
                return True
            if not data:
                return True
            self.buf += data
        return False

    def close(self):
        self.sock.close()


def exchange(port, data, head=False):
    """Send one request on a fresh connection and read one response."""
    c = RawConn(port)
    try:
        c.send(data)
        return c.read_response(head=head)
    finally:
        c.close()


def req(method, path, extra="", version="HTTP/1.1"):
    return f"{method} {path} {version}\r\nHost: {HOST}\r\n{extra}\r\n".encode()


def fd_count(pid):
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return -1


def socket_count(pid):
    n = 0
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            n += os.readlink(f"/proc/{pid}/fd/{fd}").startswith("socket:")
        except OSError:  # closed meanwhile
            pass
    return n


def metric(agent, name):
    text = agent.metrics()
    found = series(parse_exposition(text), name)
    return sum(found.values()) if found else None


# --- protocol checks ---------------------------------------------------------

def test_protocol():
    # A long tick: the snapshot (and so the body) stays the same between
    # requests, so HEAD/GET and gzip/plain bodies can be compared byte for byte.
    with Agent("--tick=5m") as agent:
        port = agent.port

        # Methods other than GET/HEAD: 405, Allow, and a body saying why.
        for method in ("POST", "PUT", "DELETE", "PATCH", "OPTIONS"):
            r = exchange(port, req(method, "/metrics", "Content-Length: 0\r\n"))
            check(r.status == 405, f"{method} /metrics: want 405, got {r.status}")
            allow = {m.strip() for m in r.headers.get("allow", "").split(",")}
            check({"GET", "HEAD"} <= allow, f"{method} /metrics: 405 needs Allow: GET, HEAD; got {r.headers.get('allow')!r}")
            check(len(r.body) > 0, f"{method} /metrics: 405 has an empty body")
            check(r.headers.get("content-length") == str(len(r.body)),
                  f"{method} /metrics: Content-Length {r.headers.get('content-length')} != body size {len(r.body)}")
        r = exchange(port, req("POST", "/healthz", "Content-Length: 0\r\n"))
        check(r.status == 405 and "allow" in r.headers, f"POST /healthz: want 405 with Allow, got {r}")

        # Unknown paths: 404 with a body, also for HEAD-less GETs of near misses.
        for path in ("/nope", "/metrics/", "/metricsx", "/Metrics", "/healthz/x"):
            r = exchange(port, req("GET", path))
            check(r.status == 404, f"GET {path}: want 404, got {r.status}")
            check(len(r.body) > 0, f"GET {path}: 404 has an empty body")

        # HEAD: the headers of GET, Content-Length of the GET body, and no body.
        for path in ("/metrics", "/", "/healthz"):
            g = exchange(port, req("GET", path, "Connection: close\r\n"))
            c = RawConn(port)
            c.send(req("HEAD", path, "Connection: close\r\n"))
            h = c.read_response(head=True)
            after = c.leftover_after(1.0)
            c.close()
            check(h.status == g.status == 200, f"HEAD/GET {path}: statuses {h.status}/{g.status}")
            check(h.headers.get("content-length") == str(len(g.body)),
                  f"HEAD {path}: Content-Length {h.headers.get('content-length')!r}, GET body is {len(g.body)} bytes")
            check(after == b"", f"HEAD {path}: server sent {len(after)} body bytes after the headers: {after[:60]!r}")
            for name in ("content-type", "content-encoding", "server"):
                check(h.headers.get(name) == g.headers.get(name),
                      f"HEAD {path}: header {name} {h.headers.get(name)!r} differs from GET's {g.headers.get(name)!r}")
        # HEAD with gzip: Content-Length is that of the gzip body.
        g = exchange(port, req("GET", "/metrics", "Accept-Encoding: gzip\r\n"))
        h = exchange(port, req("HEAD", "/metrics", "Accept-Encoding: gzip\r\n"), head=True)
        check(h.headers.get("content-encoding") == "gzip" and h.headers.get("content-length") == str(len(g.body)),
              f"HEAD /metrics gzip: headers {h.headers}, GET gzip body {len(g.body)} bytes")
        # HEAD then GET on one keep-alive connection: no stray body bytes in between.
        c = RawConn(port)
        c.send(req("HEAD", "/metrics") + req("GET", "/healthz"))
        h = c.read_response(head=True)
        g2 = c.read_response()
        c.close()
        check(h.status == 200 and g2.status == 200 and g2.body == b"ok\n",
              f"HEAD then GET pipelined on one connection: {h.status}, {g2!r}")

        # Oversize request headers: 431.
        big = "X-Big: " + "a" * 10000 + "\r\n"
        r = exchange(port, req("GET", "/metrics", big))
        check(r.status == 431, f"GET with a 10 kB header (limit 8192): want 431, got {r.status}")
        many = "".join(f"X-H{i}: {'v' * 60}\r\n" for i in range(200))
        r = exchange(port, req("GET", "/metrics", many))
        check(r.status == 431, f"GET with 200 headers (~14 kB): want 431, got {r.status}")
        r = exchange(port, req("GET", "/metrics", "X-Small: " + "a" * 6000 + "\r\n"))
        check(r.status == 200, f"GET with a 6 kB header (limit 8192): want 200, got {r.status}")

        # A request with a body: refused.
        r = exchange(port, req("GET", "/metrics", "Content-Length: 11\r\n") + b"hello world")
        check(r.status in (400, 413), f"GET with an 11-byte body: want 413 or 400, got {r.status}")
        r = exchange(port, req("POST", "/metrics", "Content-Length: 5\r\n") + b"x=1&y")
        check(r.status in (400, 405, 413), f"POST with a body: want 413, 405 or 400, got {r.status}")
        r = exchange(port, req("GET", "/metrics", "Transfer-Encoding: chunked\r\n") + b"5\r\nhello\r\n0\r\n\r\n")
        check(r.status in (400, 413), f"GET with a chunked body: want 413 or 400, got {r.status}")

        # Garbage: 400.
        for junk in (b"GARBAGE\r\n\r\n", b"GET\r\n\r\n", b"GET /metrics HTTP/x.y\r\n\r\n",
                     b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40 + b"\r\n\r\n",
                     b"GET /metrics HTTP/1.1\r\nBad Header Line\r\n\r\n"):
            try:
                r = exchange(port, junk)
                status = r.status
            except (EOFError, ConnectionError) as e:
                status = f"no response ({e})"
            check(status == 400, f"malformed request {junk[:30]!r}: want 400, got {status}")

        # OpenMetrics negotiation.
        r = exchange(port, req("GET", "/metrics", f"Accept: {OM_ACCEPT}\r\n"))
        ctype = r.headers.get("content-type", "")
        check(r.status == 200 and ctype.startswith("application/openmetrics-text"),
              f"Accept openmetrics: content-type {ctype!r}")
        text = r.body.decode()
        check(text.endswith("# EOF\n") and text.rstrip("\n").splitlines()[-1] == "# EOF",
              f"OpenMetrics body must end with '# EOF', ends with {text[-40:]!r}")
        check(text.count("# EOF") == 1, "OpenMetrics body has more than one '# EOF'")
        plain = exchange(port, req("GET", "/metrics"))
        check(plain.headers.get("content-type", "").startswith("text/plain; version=0.0.4"),
              f"default content-type {plain.headers.get('content-type')!r}")
        check(b"# EOF" not in plain.body, "text format body contains '# EOF'")

        # gzip.
        z = exchange(port, req("GET", "/metrics", "Accept-Encoding: gzip, deflate\r\n"))
        check(z.headers.get("content-encoding") == "gzip", f"Accept-Encoding gzip: got {z.headers.get('content-encoding')!r}")
        try:
            unz = gzip.decompress(z.body)
        except (OSError, EOFError) as e:
            unz = None
            check(False, f"gzip body does not decompress: {e}")
        if unz is not None:
            check(unz == plain.body, f"gunzipped body ({len(unz)} bytes) differs from the plain one ({len(plain.body)} bytes)")
            check(len(z.body) < len(plain.body), "gzip body is not smaller than the plain one")
        n = exchange(port, req("GET", "/metrics", "Accept-Encoding: gzip;q=0, identity\r\n"))
        check("content-encoding" not in n.headers and n.body == plain.body, "Accept-Encoding gzip;q=0 still got gzip")
        zo = exchange(port, req("GET", "/metrics", f"Accept: {OM_ACCEPT}\r\nAccept-Encoding: gzip\r\n"))
        check(zo.headers.get("content-encoding") == "gzip" and gzip.decompress(zo.body) == r.body,
              "gzip OpenMetrics body does not match the plain OpenMetrics body")

        # Keep-alive: two (and three) requests on one socket.
        c = RawConn(port)
        local = c.sock.getsockname()
        c.send(req("GET", "/metrics"))
        a = c.read_response()
        c.send(req("GET", "/healthz"))
        b = c.read_response()
        c.send(req("GET", "/metrics", "Accept-Encoding: gzip\r\n"))
        d = c.read_response()
        check(c.sock.getsockname() == local, "keep-alive: socket changed")
        check(a.status == 200 and a.body == plain.body, f"keep-alive first request: {a.status}")
        check(b.status == 200 and b.body == b"ok\n", f"keep-alive second request: {b!r}")
        check(d.status == 200 and d.headers.get("content-encoding") == "gzip", f"keep-alive third request: {d.status}")
        c.send(req("GET", "/healthz", "Connection: close\r\n"))
        e = c.read_response()
        check(e.status == 200 and c.closed_by_server(2), "Connection: close: server must close after the response")
        c.close()
        # HTTP/1.0 without keep-alive closes after the response.
        c = RawConn(port)
        c.send(b"GET /healthz HTTP/1.0\r\n\r\n")
        r = c.read_response()
        check(r.status == 200 and c.closed_by_server(2), f"HTTP/1.0 request: {r.status}, connection not closed")
        c.close()
        # Errors on a keep-alive connection: 404 and 405 do not cut it.
        c = RawConn(port)
        c.send(req("GET", "/nope"))
        r1 = c.read_response()
        c.send(req("DELETE", "/metrics"))
        r2 = c.read_response()
        c.send(req("GET", "/healthz"))
        r3 = c.read_response()
        c.close()
        check((r1.status, r2.status, r3.status) == (404, 405, 200),
              f"404, 405, 200 on one connection: got {r1.status}, {r2.status}, {r3.status}")

        # Query string on /metrics.
        q = exchange(port, req("GET", "/metrics?collect[]=cpu&x=%20y"))
        check(q.status == 200 and q.body == plain.body, f"GET /metrics?query: {q.status}")
        q = exchange(port, req("GET", "/healthz?probe=1"))
        check(q.status == 200, f"GET /healthz?probe=1: {q.status}")

        # /healthz, /readyz, /.
        for path in ("/healthz", "/readyz"):
            status, _, body = http_get(agent.url + path)
            check(status == 200 and body, f"GET {path}: {status} {body!r}")
        status, headers, body = http_get(agent.url + "/")
        html = body.decode(errors="replace")
        check(status == 200 and headers.get("Content-Type", "").startswith("text/html"),
              f"GET /: {status} {headers.get('Content-Type')!r}")
        for link in ("/metrics", "/healthz", "/readyz"):
            check(f'href="{link}"' in html, f"GET / has no link to {link}")

        # The exposition parses, and the error responses above were counted.
        parsed = parse_exposition(plain.body.decode())
        check(len(series(parsed, "nodeperf_build_info")) == 1, "nodeperf_build_info missing")
        check(agent.proc.poll() is None, "agent died during the protocol checks")


# --- robustness: idle connections, a slow loris, a connection cap ------------

def test_robustness():
    max_conns, idle = 16, 2.0
    with Agent(f"--web.max-connections={max_conns}", f"--web.idle-timeout={int(idle)}s", "--tick=250ms") as agent:
        pid = agent.proc.pid
        time.sleep(0.3)
        fds_start = fd_count(pid)
        evicted_start = metric(agent, "nodeperf_http_connections_evicted_total")
        check(evicted_start is not None, "nodeperf_http_connections_evicted_total missing")
        evicted_start = evicted_start or 0

        idle_socks = []
        t_open = time.monotonic()
        for _ in range(100):
            s = socket.create_connection((HOST, agent.port), timeout=5)
            idle_socks.append(s)
        t_opened = time.monotonic()

        # The slow loris: an incomplete request, one byte every 100 ms.
        loris = {"closed_at": None, "sent": 0}
        loris_sock = socket.create_connection((HOST, agent.port), timeout=5)
        loris_start = time.monotonic()

        def slow_loris():
            payload = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"X-Slow: " + b"z" * 200
            for i in range(len(payload)):
                if time.monotonic() - loris_start > 8:
                    break
                try:
                    loris_sock.sendall(payload[i:i + 1])
                    loris["sent"] += 1
                    r, _, _ = select.select([loris_sock], [], [], 0.1)
                    if r and not loris_sock.recv(4096):
                        loris["closed_at"] = time.monotonic()
                        return
                except (ConnectionError, OSError):
                    loris["closed_at"] = time.monotonic()
                    return

        th = threading.Thread(target=slow_loris, daemon=True)
        th.start()
        time.sleep(0.3)

        # A normal scrape must still succeed, quickly.
        t0 = time.monotonic()
        status, _, body = http_get(agent.url + "/metrics", timeout=5)
        took = time.monotonic() - t0
        check(status == 200 and b"nodeperf_build_info" in body,
              f"scrape with 100 idle connections and a slow loris open: status {status}")
        check(took < 2.0, f"scrape with 100 idle connections open took {took:.2f}s (want < 2s)")
        # And again, with keep-alive connections from a "second scraper".
        t0 = time.monotonic()
        status2, _, _ = http_get(agent.url + "/metrics", headers={"Accept-Encoding": "gzip"}, timeout=5)
        check(status2 == 200 and time.monotonic() - t0 < 2.0, f"second scrape: {status2}")
        print(f"info: opened 100 idle connections in {t_opened - t_open:.2f}s; scrape took {took:.3f}s")

        # The cap holds: the agent has at most max_connections sockets open
        # (plus the listener and some slack for the scrape in flight).
        sockets = socket_count(pid)
        check(0 < sockets <= max_conns + 3,
              f"agent holds {sockets} sockets with --web.max-connections={max_conns} (want <= {max_conns + 3})")

        # Evictions were counted (the counter is published at the next tick).
        # 101 connections (idle + loris) through a cap of 16 evict 85; the
        # first scrape evicts one more; the second finds room once the first
        # has gone (or evicts one if it has not).
        want = 100 + 1 + 1 - max_conns
        deadline = time.monotonic() + 3
        evicted = evicted_start
        while time.monotonic() < deadline:
            evicted = metric(agent, "nodeperf_http_connections_evicted_total") or 0
            if evicted - evicted_start >= want:
                break
            time.sleep(0.2)
        delta = evicted - evicted_start
        print(f"info: agent held {sockets} sockets at the peak; evictions rose by {delta:.0f} (expected {want}-{want + 2})")
        check(delta > 0, f"nodeperf_http_connections_evicted_total did not rise ({evicted_start} -> {evicted})")
        check(want <= delta <= want + 2,
              f"nodeperf_http_connections_evicted_total rose by {delta:.0f}, want {want}-{want + 2} "
              f"(101 idle/slow connections and 2 scrapes through a cap of {max_conns})")

        # After the idle timeout every idle socket has been closed by the server.
        deadline = t_opened + idle + 3.0
        pending = list(idle_socks)
        closed = 0
        while pending and time.monotonic() < deadline:
            r, _, _ = select.select(pending, [], [], max(0.0, min(0.5, deadline - time.monotonic())))
            for s in r:
                try:
                    data = s.recv(4096)
                except ConnectionError:
                    data = b""
                if data:
                    check(False, f"idle socket got unexpected data {data[:60]!r}")
                closed += 1
                pending.remove(s)
        check(closed == 100, f"{100 - closed} of 100 idle connections still open {idle + 3:.0f}s after opening "
                             f"(idle timeout {idle:.0f}s)")
        th.join(10)
        loris_life = (loris["closed_at"] - loris_start) if loris["closed_at"] else None
        check(loris_life is not None and loris_life <= idle + 1.5,
              f"slow loris (1 byte / 100 ms, {loris['sent']} bytes sent) not closed within idle timeout + 1.5s: "
              f"{'still open' if loris_life is None else f'{loris_life:.2f}s'}")
        if loris_life is not None:
            print(f"info: slow loris closed after {loris_life:.2f}s, {loris['sent']} bytes sent")
        for s in idle_socks:
            s.close()
        loris_sock.close()

        # The agent is alive, serves, and its file descriptors return to where they were.
        check(agent.proc.poll() is None, "agent died under the connection flood")
        status, _, _ = http_get(agent.url + "/healthz")
        check(status == 200, f"/healthz after the flood: {status}")
        deadline = time.monotonic() + 5
        fds = fd_count(pid)
        while time.monotonic() < deadline and fds > fds_start + 2:
            time.sleep(0.1)
            fds = fd_count(pid)
        check(fds <= fds_start + 2, f"agent fd count {fds} did not return near its start value {fds_start}")
        deadline = time.monotonic() + 3
        open_now = None
        while time.monotonic() < deadline:
            open_now = metric(agent, "nodeperf_http_connections")
            if open_now is not None and open_now <= 2:
                break
            time.sleep(0.2)
        check(open_now is not None and open_now <= 2, f"nodeperf_http_connections is {open_now} after all clients left")

        # A keep-alive connection left idle after a response is closed after
        # the idle timeout, not before.
        c = RawConn(agent.port)
        c.send(req("GET", "/healthz"))
        r = c.read_response()
        t0 = time.monotonic()
        early = c.closed_by_server(idle - 0.5)
        late = early or c.closed_by_server(2.0)
        waited = time.monotonic() - t0
        c.close()
        check(r.status == 200 and not early and late,
              f"idle keep-alive connection: closed early={early}, closed by {idle + 1.5:.1f}s={late} "
              f"(after {waited:.2f}s; idle timeout {idle:.0f}s)")


def test_request_limit_flag():
    # --web.max-request-bytes is honoured (1024 is its minimum).
    with Agent("--web.max-request-bytes=1024", "--tick=5m") as agent:
        r = exchange(agent.port, req("GET", "/metrics", "X-Pad: " + "p" * 1500 + "\r\n"))
        check(r.status == 431, f"1.5 kB header with --web.max-request-bytes=1024: want 431, got {r.status}")
        r = exchange(agent.port, req("GET", "/healthz", "X-Pad: " + "p" * 600 + "\r\n"))
        check(r.status == 200, f"0.6 kB header with --web.max-request-bytes=1024: want 200, got {r.status}")
        r = exchange(agent.port, req("GET", "/" + "a" * 2000))
        check(r.status in (414, 431, 400), f"2 kB request line with --web.max-request-bytes=1024: got {r.status}")


def main():
    checks.run(test_protocol, test_request_limit_flag, test_robustness)
    checks.done()


if __name__ == "__main__":
    main()
