#!/usr/bin/env python3
"""Names from the kubelet's pods API, end to end. No kubelet can run here,
so a local HTTPS server plays it: a CA and a serving certificate made with
the openssl CLI, a PodList in the kubelet's format, and modes the test
switches: ok (401 unless the right bearer token), bad JSON, a 10 s hang,
down. The agent shows what it knows in its nodeperf_kubelet_* self-metrics;
the tick must keep running while the kubelet hangs."""

import http.server
import json
import os
import re
import ssl
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(__file__))
import bpfutil  # noqa: E402
from harness import Agent, Checks, free_port, http_get, parse_exposition, require_tool, series, value  # noqa: E402

checks = Checks()
check = checks.check
TOKEN = "good-token"
REFRESH = 10  # --kubelet.refresh-interval, the shortest allowed
POD_A = "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"
POD_B = "11111111-2222-3333-4444-555555555555"
POD_C = "c0ffee00-1234-4abc-8def-0123456789ab"


def image_of(container):
    return f"registry.example/{container}:1.0"


def pod(uid, namespace, name, containers):
    return {"metadata": {"uid": uid, "namespace": namespace, "name": name},
            "status": {"phase": "Running",
                       "containerStatuses": [{"name": n, "containerID": "containerd://" + cid, "ready": True,
                                              "image": image_of(n), "imageID": image_of(n) + "@sha256:" + "0" * 64}
                                             for n, cid in containers]}}


def pod_list(*pods):
    return {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": list(pods)}


class FakeKubelet:
    """An HTTPS server on 127.0.0.1 answering GET /pods as the test says."""

    def __init__(self, cert, key):
        self.mode = "ok"
        self.delay = 0.0  # mode "slow": seconds before an answer (test_faults.py)
        self.body = pod_list()
        self.requests = 0
        self.hang_started = threading.Event()
        self.stopping = threading.Event()
        fake = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                fake.requests += 1
                if fake.mode == "hang":
                    fake.hang_started.set()
                    fake.stopping.wait(10)
                    return  # then close without an answer
                if fake.mode == "slow":
                    fake.stopping.wait(fake.delay)  # then answer, too late for the agent
                if self.headers.get("Authorization") != "Bearer " + TOKEN:
                    return self.send(401, b'{"kind":"Status","status":"Failure","code":401}')
                if fake.mode == "badjson":
                    return self.send(200, b'{"kind":"PodList","items":[{"metadata":')
                self.send(200, json.dumps(fake.body).encode())

            def send(self, code, body):
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        class Server(http.server.ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request, client_address):
                pass  # a client that gave up (the agent's deadline) is expected

        self.server = Server(("127.0.0.1", 0), Handler)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def down(self):
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()


def openssl(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def make_certs(d):
    """ca.crt signs server.crt (SAN IP:127.0.0.1); other-ca.crt signs nothing we serve."""
    for ca in ("ca", "other-ca"):
        openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", f"/CN=nodeperf test {ca}",
                "-keyout", f"{ca}.key", "-out", f"{ca}.crt", cwd=d)
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
            "-keyout", "server.key", "-out", "server.csr", cwd=d)
    with open(os.path.join(d, "san.ext"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.ext", "-out", "server.crt", cwd=d)


def kubelet_metrics(agent):
    parsed = parse_exposition(agent.metrics())
    out = {"up": value(parsed, "nodeperf_kubelet_up"),
           "pods": value(parsed, "nodeperf_kubelet_pods"),
           "last": value(parsed, "nodeperf_kubelet_last_refresh_timestamp_seconds")}
    for labels, v in series(parsed, "nodeperf_kubelet_refresh_errors_total").items():
        out["errors_" + dict(labels)["reason"]] = v
    return out


def wait_for(agent, predicate, timeout, what):
    deadline = time.monotonic() + timeout
    m = kubelet_metrics(agent)
    while time.monotonic() < deadline:
        if predicate(m):
            return m
        time.sleep(0.2)
        m = kubelet_metrics(agent)
    check(False, f"{what} within {timeout}s (metrics now: {m})")
    return m


def snapshot_time(agent):
    status, _, body = http_get(agent.url + "/api/v1/snapshot", timeout=2)
    return json.loads(body)["time"] if status == 200 else None


def check_names_join(d, token_file):
    """The kubelet's names join the cgroup series. The test makes cgroups
    shaped like a kubepods pod and container (cgroupfs driver) under a v2
    cgroup of its own; once the kubelet lists that pod, the container's
    series carry namespace, pod and container, the pod's namespace and pod.
    The new pod UID makes the agent ask the kubelet at once (at most every
    10 s), not at its next periodic refresh (60 s here)."""
    root = bpfutil.cgroup2_root() if os.geteuid() == 0 else None
    if not root:
        print("NOTE: not root or no cgroup v2 hierarchy: the names-join check is skipped")
        return
    fake = FakeKubelet(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
    fake.body = pod_list(pod(POD_A, "shop", "web-1", [("nginx", "a" * 64)]))
    base = f"nodeperf-test-{os.getpid()}"
    pod_dir = f"{base}/kubepods/besteffort/pod{POD_C}"
    cid = "d" * 64
    groups = []
    agent = Agent("--tick=250ms", "--kubelet.url=https://${NODE_NAME}:%d/pods" % fake.port,
                  f"--kubelet.token-file={token_file}", f"--kubelet.ca-file={d}/ca.crt",
                  "--kubelet.refresh-interval=60s", f"--collector.cgroups.include=^/{base}(/|$)",
                  "--collector.cgroups.max-depth=6")
    try:
        wait_for(agent, lambda m: m["up"] == 1 and m["pods"] == 1, 10, "names-join agent: first pod list")
        for level in (base, f"{base}/kubepods", f"{base}/kubepods/besteffort", pod_dir, f"{pod_dir}/{cid}"):
            groups.append(bpfutil.Cgroup(root, level))
        fake.body = pod_list(*fake.body["items"], pod(POD_C, "shop", "cart-0", [("cart", cid)]))
        started = time.monotonic()

        def labels_of(path):
            parsed = parse_exposition(agent.metrics())
            found = series(parsed, "nodeperf_cgroup_pressure_cpu_waiting_seconds_total", cgroup="/" + path)
            return [dict(k) for k in found]

        deadline = started + 25
        container = []
        while time.monotonic() < deadline:
            container = labels_of(f"{pod_dir}/{cid}")
            if container and "pod" in container[0]:
                break
            time.sleep(0.25)
        took = time.monotonic() - started
        pod_level = labels_of(pod_dir)
        print(f"names joined {took:.1f} s after the pod appeared: container {container}, pod {pod_level}")
        check(len(container) == 1 and container[0].get("namespace") == "shop" and container[0].get("pod") == "cart-0"
              and container[0].get("container") == "cart" and container[0].get("pod_uid") == POD_C
              and container[0].get("container_id") == cid and container[0].get("qos") == "besteffort",
              f"the container cgroup's series carry the kubelet's names: {container}")
        check(len(pod_level) == 1 and pod_level[0].get("pod") == "cart-0" and "container" not in pod_level[0],
              f"the pod cgroup's series carry namespace and pod, no container: {pod_level}")
        check(took < 20, f"a new pod UID fetched the names in {took:.1f} s, before the 60 s periodic refresh")
    finally:
        agent.stop()
        for g in reversed(groups):
            g.close()
        fake.stopping.set()
        fake.down()


def main():
    require_tool("openssl")
    tmp = tempfile.TemporaryDirectory(prefix="nodeperf-kubelet-")
    d = tmp.name
    make_certs(d)
    token_file = os.path.join(d, "token")
    with open(token_file, "w") as f:
        f.write(TOKEN + "\n")  # a trailing newline, as kubectl create token writes it
    fake = FakeKubelet(os.path.join(d, "server.crt"), os.path.join(d, "server.key"))
    fake.body = pod_list(pod(POD_A, "shop", "web-1", [("nginx", "a" * 64), ("sidecar", "b" * 64)]))

    # The DaemonSet form: the node's name from the environment.
    os.environ["NODE_NAME"] = "127.0.0.1"
    common = ["--tick=250ms", "--kubelet.url=https://${NODE_NAME}:%d/pods" % fake.port,
              f"--kubelet.token-file={token_file}", f"--kubelet.refresh-interval={REFRESH}s"]
    agent = Agent(*common, f"--kubelet.ca-file={d}/ca.crt")
    wrong_ca = Agent(*common, f"--kubelet.ca-file={d}/other-ca.crt")
    insecure = Agent(*common, "--kubelet.insecure-skip-verify")
    nowhere = Agent("--tick=250ms", f"--kubelet.url=https://127.0.0.1:{free_port()}/pods",
                    f"--kubelet.token-file={token_file}", f"--kubelet.ca-file={d}/ca.crt")
    plain = Agent("--tick=250ms")
    try:
        # Resolution: the pod list is fetched and cached.
        m = wait_for(agent, lambda m: m["up"] == 1 and m["pods"] == 1, 10, "first pod list fetched")
        check(abs(m["last"] - time.time()) < 30, f"last refresh time is now-ish: {m['last']}")
        check(all(v == 0 for k, v in m.items() if k.startswith("errors_")), f"no errors: {m}")
        check(set(k for k in m if k.startswith("errors_")) == {
            "errors_" + r for r in ("config", "connect", "timeout", "tls", "unauthorized", "forbidden",
                                    "http_status", "bad_response")}, f"every reason exported from the start: {m}")
        check("pod list fetched, 1 pods" in agent.log(), "a log line says the pod list was fetched")

        # Certificates: a CA that did not sign the kubelet's certificate fails; skipping checks works, with a warning.
        m = wait_for(wrong_ca, lambda m: m["errors_tls"] >= 1, 10, "wrong CA counted as a TLS error")
        check(m["up"] == 0 and m["pods"] == 0, f"wrong CA: nothing known: {m}")
        check("TLS handshake failed" in wrong_ca.log() and f"https://127.0.0.1:{fake.port}/pods" in wrong_ca.log(),
              "wrong CA: the log names the URL and the TLS failure: " + wrong_ca.log()[-400:])
        wait_for(insecure, lambda m: m["up"] == 1 and m["pods"] == 1, 10, "insecure-skip-verify fetches")
        check("insecure_skip_verify is set" in insecure.log(), "insecure-skip-verify logs a warning")
        for a in (wrong_ca, insecure):
            a.stop()  # from here on, only `agent` talks to the fake kubelet

        # Kubelet down from the start: the UID/ID labels keep working, a metric says names are missing.
        m = wait_for(nowhere, lambda m: m["errors_connect"] >= 1, 10, "refused connection counted")
        check(m["up"] == 0 and m["pods"] == 0, f"kubelet down: up 0, no pods: {m}")
        check("Connection refused" in nowhere.log() and "reason connect" in nowhere.log(),
              "kubelet down: the log says connection refused: " + nowhere.log()[-300:])
        check(not series(parse_exposition(plain.metrics()), "nodeperf_kubelet_up"),
              "without kubelet.url there are no kubelet metrics")

        # Refresh: a new pod appears at the next refresh.
        fake.body = pod_list(fake.body["items"][0], pod(POD_B, "batch", "job-1", [("job", "c" * 64)]))
        wait_for(agent, lambda m: m["pods"] == 2, REFRESH + 5, "the new pod picked up")

        # Bad JSON: counted, logged, the old cache kept.
        fake.mode = "badjson"
        m = wait_for(agent, lambda m: m["errors_bad_response"] >= 1, REFRESH + 5, "bad JSON counted")
        check(m["up"] == 0 and m["pods"] == 2, f"bad JSON: up 0, the 2 pods kept: {m}")
        check("bad pod list: not JSON" in agent.log(), "bad JSON: the log says so")

        # Bad token: 401, then the rotated (fixed) token file is read again and it recovers.
        fake.mode = "ok"
        with open(token_file, "w") as f:
            f.write("stale-token\n")
        m = wait_for(agent, lambda m: m["errors_unauthorized"] >= 1, 3 * REFRESH + 5, "401 counted")
        check(m["pods"] == 2, f"401: the 2 pods kept: {m}")
        check("HTTP 401" in agent.log() and token_file in agent.log(), "401: the log names the token file")
        with open(token_file, "w") as f:
            f.write(TOKEN + "\n")
        wait_for(agent, lambda m: m["up"] == 1, 3 * REFRESH + 5, "recovery once the token file is right")

        # A kubelet that hangs 10 s: the request hits its 5 s deadline, the tick never stalls.
        fake.mode = "hang"
        fake.hang_started.clear()
        check(fake.hang_started.wait(REFRESH + 5), "the agent's next request reached the hanging kubelet")
        # Judged on the snapshots' own times, so a slow poller on a loaded
        # machine (it may see only every other snapshot) cannot fail it: a
        # tick stalled by the hang would leave a gap of seconds.
        started = time.monotonic()
        times = []
        while time.monotonic() - started < 6:
            t = snapshot_time(agent)
            if t is not None and (not times or t != times[-1]):
                times.append(t)
            check(http_get(agent.url + "/healthz", timeout=2)[0] == 200, "healthz 200 while the kubelet hangs")
            time.sleep(0.1)
        worst_gap = max((b - a for a, b in zip(times, times[1:])), default=99)
        check(len(times) >= 2 and times[-1] - times[0] >= 4.5,
              f"snapshots kept coming while the kubelet hung: {len(times)} seen, "
              f"{times[-1] - times[0] if times else 0:.2f} s of snapshot time in 6 s")
        check(worst_gap < 1.5, f"longest gap between snapshots seen while the kubelet hung: {worst_gap:.2f}s")
        m = wait_for(agent, lambda m: m["errors_timeout"] >= 1, 5, "the hung request timed out")
        check(m["up"] == 0 and m["pods"] == 2, f"hang: up 0, the 2 pods kept: {m}")
        check("no answer within 5000ms" in agent.log(), "hang: the log names the deadline")
        fake.mode = "ok"
        fake.stopping.set()  # release the hung handler
        wait_for(agent, lambda m: m["up"] == 1, REFRESH + 10, "recovery after the hang")

        # The kubelet goes down: connection refused, the cache kept.
        fake.down()
        m = wait_for(agent, lambda m: m["errors_connect"] >= 1, REFRESH + 5, "kubelet down counted")
        check(m["up"] == 0 and m["pods"] == 2, f"down: up 0, the 2 pods kept: {m}")

        # Every failure above was one line naming the URL, not a flood.
        url = f"https://127.0.0.1:{fake.port}/pods"
        # (On a loaded machine a step may also hit another reason, e.g. the
        # server closing mid-request: still one line for it.)
        lines = [line for line in agent.log().splitlines() if url in line and "reason " in line]
        reasons = [re.search(r"\(reason (\w+)\)", line).group(1) for line in lines]
        check(len(reasons) == len(set(reasons)) and {"bad_response", "unauthorized", "timeout", "connect"} <= set(reasons),
              f"one line per failure reason: {lines}")

        check_names_join(d, token_file)
    finally:
        for a in (agent, wrong_ca, insecure, nowhere, plain):
            try:
                a.stop()
            except FileNotFoundError:  # stopped already
                pass
        fake.stopping.set()
        tmp.cleanup()
    checks.done()


if __name__ == "__main__":
    main()
