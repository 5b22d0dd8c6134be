#!/usr/bin/env python3
"""--web.config.file end to end: TLS, client certificates, basic auth with
bcrypt, Kubernetes bearer tokens checked by TokenReview, and what happens at
the edges (a handshake that never finishes, a broken file on SIGHUP, a
certificate rotated under the agent). Certificates are made with the openssl
CLI, bcrypt hashes with Python's crypt (libxcrypt), and the API server is a
local HTTPS server that counts the TokenReviews it answers."""

import http.client
import http.server
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import warnings

sys.path.insert(0, os.path.dirname(__file__))
from harness import Agent, Checks, free_port, parse_exposition, require_tool, series, wait_until  # noqa: E402

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import crypt  # noqa: E402  (Debian 12's Python 3.11 still has it)

checks = Checks()
check = checks.check
D = tempfile.mkdtemp(prefix="nodeperf-webconfig-")
USER, PASSWORD = "prometheus", "correct horse"
IDLE = 1.0  # --web.idle-timeout for the stalled-handshake test, seconds


def openssl(*args):
    subprocess.run(["openssl", *args], cwd=D, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_ca(name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2",
            "-subj", f"/CN=nodeperf test {name}", "-keyout", f"{name}.key", "-out", f"{name}.crt")


def make_cert(name, ca, cn, server=True):
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", f"{name}.key", "-out", f"{name}.csr")
    with open(os.path.join(D, f"{name}.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n" if server else "extendedKeyUsage=clientAuth\n")
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key", "-CAcreateserial",
            "-days", "2", "-extfile", f"{name}.ext", "-out", f"{name}.crt")


def make_certs():
    make_ca("ca")
    make_ca("client-ca")
    make_ca("other-ca")
    make_cert("server", "ca", "nodeperf one")
    make_cert("server2", "ca", "nodeperf two")
    make_cert("client", "client-ca", "scraper", server=False)
    make_cert("stranger", "other-ca", "stranger", server=False)


def path(name):
    return os.path.join(D, name)


def write(name, text):
    with open(path(name), "w") as f:
        f.write(text)
    return path(name)


def client_ctx(cert=None):
    ctx = ssl.create_default_context(cafile=path("ca.crt"))
    if cert:
        ctx.load_cert_chain(path(f"{cert}.crt"), path(f"{cert}.key"))
    return ctx


def basic(user, password):
    import base64
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def get(port, target="/metrics", headers=None, ctx=None, timeout=5):
    """(status, headers, body) over HTTPS (or HTTP when ctx is False); None if the connection failed."""
    try:
        if ctx is False:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        else:
            conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=ctx or client_ctx())
        conn.request("GET", target, headers=headers or {})
        r = conn.getresponse()
        out = (r.status, dict(r.headers), r.read())
        conn.close()
        return out
    except (OSError, http.client.HTTPException):
        return None


def status(*args, **kwargs):
    r = get(*args, **kwargs)
    return r[0] if r else None


def metrics(port, ctx=None, headers=None):
    r = get(port, headers=headers if headers is not None else basic(USER, PASSWORD), ctx=ctx)
    assert r and r[0] == 200, r and r[0]
    return parse_exposition(r[2].decode())


def start(web_file, *flags):
    agent = Agent(f"--web.config.file={web_file}", *flags, wait_ready=False)
    return agent


def tls_config(cert="server", extra=""):
    return (f"tls_server_config:\n  cert_file: {cert}.crt\n  key_file: {cert}.key\n{extra}")


def test_tls_and_basic_auth():
    hash10 = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))  # cost 10, as htpasswd -B
    t = time.monotonic()
    crypt.crypt(PASSWORD, hash10)
    print(f"info: one bcrypt verification at cost 10 in Python: {1000 * (time.monotonic() - t):.0f} ms")
    web = write("web-basic.yml", tls_config() + f"basic_auth_users:\n  {USER}: {hash10}\n"
                "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
    with start(web) as agent:
        wait_until(lambda: status(agent.port, "/readyz") == 200, what="ready over TLS")
        t = time.monotonic()
        first = get(agent.port, headers=basic(USER, PASSWORD))
        uncached = time.monotonic() - t
        t = time.monotonic()
        second = get(agent.port, headers=basic(USER, PASSWORD))
        cached = time.monotonic() - t
        print(f"info: scrape with basic auth: uncached {1000 * uncached:.0f} ms, cached {1000 * cached:.0f} ms "
              "(each a new TLS connection)")
        check(first and first[0] == 200 and b"nodeperf_build_info" in first[2], f"TLS + good password: {first and first[0]}")
        check(second and second[0] == 200, "TLS + good password again (cached)")
        check(first and first[1].get("X-Content-Type-Options") == "nosniff", "http_server_config.headers sent")
        bad = get(agent.port, headers=basic(USER, "wrong"))
        check(bad and bad[0] == 401 and bad[1].get("WWW-Authenticate", "").startswith("Basic"),
              f"wrong password: 401 with WWW-Authenticate: Basic ({bad and bad[0]}, {bad and bad[1]})")
        check(status(agent.port, headers=basic("nobody", PASSWORD)) == 401, "unknown user: 401")
        check(status(agent.port) == 401, "no credentials: 401")
        check(status(agent.port, "/") == 401, "the index page needs credentials too")
        check(status(agent.port, "/nope") == 401, "an unknown path is not told without credentials")
        check(status(agent.port, "/healthz") == 200, "/healthz open for kubelet probes")
        check(status(agent.port, "/readyz") == 200, "/readyz open for kubelet probes")
        plain = get(agent.port, "/metrics", basic(USER, PASSWORD), ctx=False)
        check(plain and plain[0] == 400 and b"HTTP request to an HTTPS server" in plain[2],
              f"plain HTTP to the TLS port: 400 saying so ({plain})")
        # curl, a client that is not Python
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", path("ca.crt"),
                            "-u", f"{USER}:{PASSWORD}", f"https://127.0.0.1:{agent.port}/metrics"],
                           capture_output=True, text=True, timeout=10)
        check(r.stdout == "200", f"curl over TLS with -u: {r.stdout} {r.stderr}")
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", path("ca.crt"),
                            f"https://127.0.0.1:{agent.port}/metrics"], capture_output=True, text=True, timeout=10)
        check(r.stdout == "401", f"curl over TLS without -u: {r.stdout}")
        r = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}",
                            f"https://127.0.0.1:{agent.port}/metrics"], capture_output=True, text=True, timeout=10)
        check(r.returncode != 0, "curl refuses the certificate without the CA")
        wait_until(lambda: series(metrics(agent.port), "nodeperf_http_auth_failures_total", reason="missing")
                   .get(frozenset({("reason", "missing")}), 0) >= 1, what="failures counted")
        m = metrics(agent.port)
        failures = {dict(k)["reason"]: v for k, v in series(m, "nodeperf_http_auth_failures_total").items()}
        check(failures.get("bad_credentials", 0) >= 2 and failures.get("missing", 0) >= 4,
              f"nodeperf_http_auth_failures_total by reason: {failures}")
        hs = series(m, "nodeperf_http_tls_handshake_failures_total")
        check(hs and list(hs.values())[0] >= 2, f"handshake failures counted (plain HTTP, curl without CA): {hs}")

        # Many scrapes with new passwords must not stall the loop: bcrypt runs off it.
        results = []

        def wrong(i):
            results.append(status(agent.port, headers=basic(USER, f"guess{i}"), timeout=20))
        threads = [threading.Thread(target=wrong, args=(i,)) for i in range(8)]
        for th in threads:
            th.start()
        t = time.monotonic()
        health = status(agent.port, "/healthz")
        health_time = time.monotonic() - t
        for th in threads:
            th.join()
        check(health == 200 and health_time < 0.5,
              f"/healthz answered in {1000 * health_time:.0f} ms while 8 uncached bcrypt checks ran")
        check(all(r == 401 for r in results), f"8 wrong guesses: {results}")


def test_client_certificates():
    web = write("web-mtls.yml", tls_config(extra="  client_auth_type: RequireAndVerifyClientCert\n"
                                            "  client_ca_file: client-ca.crt\n"))
    with start(web) as agent:
        wait_until(lambda: status(agent.port, "/readyz", ctx=client_ctx("client")) == 200, what="ready over mTLS")
        check(status(agent.port, ctx=client_ctx("client"), headers={}) == 200, "a client certificate from the client CA: 200")
        check(status(agent.port, ctx=client_ctx()) is None, "no client certificate: refused")
        check(status(agent.port, ctx=client_ctx("stranger")) is None, "a certificate from another CA: refused")
    web = write("web-optional.yml", tls_config(extra="  client_auth_type: VerifyClientCertIfGiven\n"
                                               "  client_ca_file: client-ca.crt\n"))
    with start(web) as agent:
        wait_until(lambda: status(agent.port, "/readyz") == 200, what="ready")
        check(status(agent.port) == 200, "VerifyClientCertIfGiven: no certificate is fine")
        check(status(agent.port, ctx=client_ctx("stranger")) is None, "VerifyClientCertIfGiven: a bad one is not")


def partial_client_hello():
    ctx = ssl.create_default_context()
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(incoming, outgoing, server_hostname="localhost")
    try:
        obj.do_handshake()
    except ssl.SSLWantReadError:
        pass
    hello = outgoing.read()
    return hello[:len(hello) // 2]


def test_stalled_handshakes():
    web = write("web-tls.yml", tls_config())
    with start(web, f"--web.idle-timeout={int(IDLE * 1000)}ms", "--web.max-connections=4") as agent:
        wait_until(lambda: status(agent.port, "/readyz") == 200, what="ready")
        silent = socket.create_connection(("127.0.0.1", agent.port))
        half = socket.create_connection(("127.0.0.1", agent.port))
        half.sendall(partial_client_hello())
        t = time.monotonic()
        ok = status(agent.port, "/healthz")
        check(ok == 200 and time.monotonic() - t < 0.5, "a scrape is served while two handshakes stall")

        def closed_after(sock):
            sock.settimeout(IDLE * 4)
            try:
                data = sock.recv(100)
                return data == b"" or data[:1] == b"\x15"  # closed, or a TLS alert then closed
            except (ConnectionResetError, socket.timeout):
                return False
        t = time.monotonic()
        check(closed_after(silent), "a client that sends nothing is dropped")
        check(closed_after(half), "a client that sends half a ClientHello is dropped")
        elapsed = time.monotonic() - t
        print(f"info: stalled handshakes dropped {elapsed:.2f} s after the scrape (idle timeout {IDLE} s)")
        check(elapsed < IDLE * 2.5, f"within about the idle timeout: {elapsed:.2f} s")
        # The connection cap still holds: 6 stalled handshakes, 4 slots, and a scraper gets in.
        stalled = [socket.create_connection(("127.0.0.1", agent.port)) for _ in range(6)]
        check(status(agent.port, "/healthz") == 200, "a scraper gets a slot past 6 stalled handshakes (cap 4)")
        # Self-metrics come with the next tick's snapshot.
        evicted = lambda: list(series(metrics(agent.port, headers={}), "nodeperf_http_connections_evicted_total").values())  # noqa: E731
        try:
            wait_until(lambda: evicted()[0] >= 3, timeout=5, what="evictions counted")
        except AssertionError:
            pass
        check(evicted()[0] >= 3, f"stalled handshakes evicted: {evicted()}")
        for s in stalled + [silent, half]:
            s.close()


PROMETHEUS = "system:serviceaccount:monitoring:prometheus"
USERS = {"good-token": {"username": PROMETHEUS, "uid": "u-1", "groups": ["system:serviceaccounts"]},
         "limited-token": {"username": "system:serviceaccount:default:app", "groups": ["system:serviceaccounts"]}}


class FakeApiServer:
    """TokenReview and SubjectAccessReview over HTTPS, counting requests: the
    Prometheus service account may get /metrics, nothing else may get anything."""

    def __init__(self):
        self.requests = 0
        self.mode = "ok"
        self.own_tokens_seen = set()
        self.access_reviews = []
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                fake.requests += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                fake.own_tokens_seen.add(self.headers.get("Authorization"))
                if fake.mode == "hang":
                    time.sleep(4)
                    return
                if self.path == "/apis/authentication.k8s.io/v1/tokenreviews" and body.get("kind") == "TokenReview":
                    user = USERS.get(body["spec"]["token"])
                    return self.send(201, {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
                                           "status": {"authenticated": True, "user": user} if user else
                                           {"authenticated": False, "error": "invalid bearer token"}})
                if (self.path == "/apis/authorization.k8s.io/v1/subjectaccessreviews"
                        and body.get("kind") == "SubjectAccessReview"):
                    spec = body["spec"]
                    fake.access_reviews.append(spec)
                    allowed = (spec.get("user") == PROMETHEUS and spec.get("nonResourceAttributes") ==
                               {"path": "/metrics", "verb": "get"})
                    return self.send(201, {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                                           "status": {"allowed": allowed}})
                self.send(404, {})

            def send(self, code, obj):
                data = json.dumps(obj).encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass

        self.server = Server(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(path("server.crt"), path("server.key"))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def down(self):
        self.server.shutdown()
        self.server.server_close()


def test_token_review():
    api = FakeApiServer()
    write("sa.token", "agent-own-token\n")
    web = write("web-k8s.yml", f"kubernetes_auth:\n  api_server: https://127.0.0.1:{api.port}\n"
                "  token_file: sa.token\n  ca_file: ca.crt\n  timeout: 1s\n  negative_cache_ttl: 30s\n")
    bearer = lambda t: {"Authorization": f"Bearer {t}"}  # noqa: E731
    with start(web) as agent:
        wait_until(lambda: status(agent.port, "/readyz", ctx=False) == 200, what="ready")
        t = time.monotonic()
        check(status(agent.port, headers=bearer("good-token"), ctx=False) == 200, "Prometheus's token on /metrics: 200")
        first = time.monotonic() - t
        t = time.monotonic()
        check(status(agent.port, headers=bearer("good-token"), ctx=False) == 200, "the same token again: 200")
        again = time.monotonic() - t
        print(f"info: bearer scrape: TokenReview + SubjectAccessReview {1000 * first:.0f} ms, cached {1000 * again:.0f} ms")
        check(api.requests == 2, f"one TokenReview and one SubjectAccessReview, then the cache: {api.requests} requests")
        check(api.own_tokens_seen == {"Bearer agent-own-token"}, f"the agent's own token was sent: {api.own_tokens_seen}")
        sar = api.access_reviews[0] if api.access_reviews else {}
        check(sar.get("user") == PROMETHEUS and sar.get("uid") == "u-1" and sar.get("groups") == ["system:serviceaccounts"],
              f"the SubjectAccessReview names the TokenReview's user: {sar}")
        check(status(agent.port, "/api/v1/snapshot", headers=bearer("good-token"), ctx=False) == 403,
              "Prometheus's token on another path: 403")
        check(status(agent.port, headers=bearer("limited-token"), ctx=False) == 403,
              "a valid token of a user without RBAC for /metrics: 403")
        check(api.requests == 6, f"each (token, path) reviewed once: {api.requests} requests")
        r = get(agent.port, headers=bearer("stolen-token"), ctx=False)
        check(r and r[0] == 401 and r[1].get("WWW-Authenticate", "").startswith("Bearer"), "a rejected token: 401 Bearer")
        check(status(agent.port, headers=bearer("stolen-token"), ctx=False) == 401, "rejected again")
        check(api.requests == 7, f"the rejected token was reviewed once (negative cache), no SubjectAccessReview: "
              f"{api.requests} requests")
        check(status(agent.port, ctx=False) == 401, "no token: 401")
        check(api.requests == 7, "no token: no TokenReview")
        api.mode = "hang"
        t = time.monotonic()
        hung = status(agent.port, headers=bearer("slow-token"), ctx=False, timeout=10)
        elapsed = time.monotonic() - t
        check(hung == 401 and elapsed < 3, f"API server hangs: 401 after {elapsed:.2f} s (timeout 1s)")
        check(status(agent.port, "/healthz", ctx=False) == 200, "the loop kept serving")
        api.down()
        t = time.monotonic()
        down = status(agent.port, headers=bearer("other-token"), ctx=False)
        check(down == 401 and time.monotonic() - t < 2, f"API server down: 401 at once ({down})")
        check(status(agent.port, headers=bearer("good-token"), ctx=False) == 200, "a cached token works while it is down")

        def failures():
            m = parse_exposition(get(agent.port, headers=bearer("good-token"), ctx=False)[2].decode())
            return {dict(k)["reason"]: v for k, v in series(m, "nodeperf_http_auth_failures_total").items()}
        try:  # self-metrics come with the next tick's snapshot
            wait_until(lambda: failures().get("unavailable", 0) >= 2, timeout=5, what="failures counted")
        except AssertionError:
            pass
        f = failures()
        check(f.get("token_rejected") == 2 and f.get("forbidden") == 2 and f.get("unavailable") == 2
              and f.get("missing") == 1,
              f"failures by reason: {f}")


def test_reload():
    hash4 = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=16))
    good = tls_config() + f"basic_auth_users:\n  {USER}: {hash4}\n"
    shutil.copy(path("server.crt"), path("live.crt"))
    shutil.copy(path("server.key"), path("live.key"))
    web = write("web-reload.yml", good.replace("server.", "live."))
    auth = basic(USER, PASSWORD)

    def served_cn(port):
        with socket.create_connection(("127.0.0.1", port)) as s:
            with client_ctx().wrap_socket(s, server_hostname="localhost") as t:
                return dict(x[0] for x in t.getpeercert()["subject"])["commonName"]

    with start(web) as agent:
        wait_until(lambda: status(agent.port, "/readyz") == 200, what="ready")
        check(served_cn(agent.port) == "nodeperf one", "serves the first certificate")
        write("web-reload.yml", good.replace("server.", "live.") + "bogus: 1\n")
        agent.signal(signal.SIGHUP)
        wait_until(lambda: "reload rejected" in agent.log(), what="reload rejected")
        lines = [l for l in agent.log().splitlines() if "reload rejected" in l]
        check(len(lines) == 1 and "web-reload.yml:6: bogus: unknown key" in lines[0],
              f"one line naming file, line and key: {lines}")
        check(status(agent.port, headers=auth) == 200, "still serving with the old web config")
        # Rotation: new files, SIGHUP, new connections get the new certificate.
        write("web-reload.yml", good.replace("server.", "live."))
        shutil.copy(path("server2.crt"), path("live.crt"))
        shutil.copy(path("server2.key"), path("live.key"))
        agent.signal(signal.SIGHUP)
        wait_until(lambda: agent.log().count("configuration reloaded") >= 1, what="reloaded")
        check(served_cn(agent.port) == "nodeperf two", "SIGHUP: the rotated certificate is served")
        check(status(agent.port, headers=auth) == 200, "and scrapes work over it")
        # Rotation without a signal: the agent looks at the files' times every few seconds.
        time.sleep(1.1)  # a new modification time
        shutil.copy(path("server.crt"), path("live.crt"))
        shutil.copy(path("server.key"), path("live.key"))
        t = time.monotonic()
        wait_until(lambda: served_cn(agent.port) == "nodeperf one", timeout=12, what="rotation picked up")
        print(f"info: certificate change picked up without SIGHUP after {time.monotonic() - t:.1f} s")
        check(True, "rotation without SIGHUP")


def test_prometheus_scrape():
    """A real Prometheus scrapes over TLS with a client certificate and basic auth."""
    prometheus = shutil.which("prometheus")
    if not prometheus:
        print("info: prometheus not installed: real-scrape check left out")
        return
    hash10 = crypt.crypt(PASSWORD, crypt.mksalt(crypt.METHOD_BLOWFISH, rounds=1 << 10))
    web = write("web-prom.yml", tls_config(extra="  client_ca_file: client-ca.crt\n") +
                f"basic_auth_users:\n  {USER}: {hash10}\n")
    with start(web) as agent:
        port = free_port()
        job = """  - job_name: {name}
    scheme: https
    tls_config: {{ca_file: {d}/ca.crt, cert_file: {d}/client.crt, key_file: {d}/client.key}}
    basic_auth: {{username: {user}, password: '{pw}'}}
    static_configs: [{{targets: ['127.0.0.1:{port}']}}]
"""
        write("prometheus.yml", "global: {scrape_interval: 1s, scrape_timeout: 1s}\nscrape_configs:\n" +
              job.format(name="nodeperf", d=D, user=USER, pw=PASSWORD, port=agent.port) +
              job.format(name="wrong_password", d=D, user=USER, pw="wrong", port=agent.port))
        prom = subprocess.Popen([prometheus, f"--config.file={path('prometheus.yml')}", f"--storage.tsdb.path={D}/tsdb",
                                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                                stdout=subprocess.DEVNULL, stderr=open(path("prom.log"), "w"))
        try:
            def targets():
                r = get(port, "/api/v1/targets", ctx=False)
                if not r or r[0] != 200:
                    return {}
                return {a["labels"]["job"]: a for a in json.loads(r[2])["data"]["activeTargets"]}
            try:
                wait_until(lambda: all(t.get("health") in ("up", "down") for t in targets().values())
                           and len(targets()) == 2, timeout=30, what="both targets scraped")
            except AssertionError:
                pass
            time.sleep(3)  # steady state: the password's verdict is cached, the connection kept alive
            t = targets()
            good, bad = t.get("nodeperf", {}), t.get("wrong_password", {})
            check(good.get("health") == "up", f"Prometheus scrapes over TLS + client cert + basic auth: {good.get('health')} "
                  f"{good.get('lastError')}")
            check(bad.get("health") == "down" and "401" in bad.get("lastError", ""),
                  f"with a wrong password Prometheus sees 401: {bad.get('health')} {bad.get('lastError')}")
            print(f"info: Prometheus's scrape over TLS + basic auth took {good.get('lastScrapeDuration', 0) * 1000:.1f} ms")
        finally:
            prom.terminate()
            prom.wait(10)


def test_bad_file_at_start():
    web = write("web-bad.yml", "tls_server_config:\n  cert_file: server.crt\n  key_file: nope.key\n")
    r = subprocess.run([os.environ.get("NODEPERF_BIN", "build/nodeperf"), "agent", f"--web.config.file={web}",
                        "--web.listen-address=127.0.0.1:0"], capture_output=True, text=True, timeout=10)
    lines = r.stderr.strip().splitlines()
    check(r.returncode == 2 and len(lines) == 1 and "nope.key" in lines[0] and web in lines[0],
          f"a bad web config at start: exit 2 with one line ({r.returncode}: {lines})")


def main():
    require_tool("openssl")
    require_tool("curl")
    try:
        make_certs()
        checks.run(test_tls_and_basic_auth, test_client_certificates, test_stalled_handshakes, test_token_review,
                   test_reload, test_prometheus_scrape, test_bad_file_at_start)
    finally:
        shutil.rmtree(D, ignore_errors=True)
    checks.done()


if __name__ == "__main__":
    main()
