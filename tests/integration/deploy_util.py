"""Helpers for the deployment tests (test_deploy_*.py): the manifests in
deploy/ read as `kubectl apply -f deploy/` reads them, the rules of the
PrometheusRule as a Prometheus rule file, the metric names used by PromQL
expressions, and the metric table of docs/metrics.md."""

import glob
import json
import os
import re

from harness import SOURCE_DIR, skip

try:
    import yaml
except ImportError:
    skip("python3-yaml not installed (scripts/setup.sh installs it)")

DEPLOY = os.path.join(SOURCE_DIR, "deploy")
VALIDATOR_DIR = os.path.join(SOURCE_DIR, "tests", "deploy")
DASHBOARD = os.path.join(DEPLOY, "grafana", "nodeperf.json")


def manifest_files():
    """The files `kubectl apply -f deploy/` reads: deploy/*.{yaml,yml,json},
    not recursive."""
    files = []
    for ext in ("yaml", "yml", "json"):
        files += glob.glob(os.path.join(DEPLOY, f"*.{ext}"))
    return sorted(files)


def load_manifests():
    """[(file, document)] of every non-empty YAML document in deploy/."""
    out = []
    for f in manifest_files():
        with open(f) as fh:
            for doc in yaml.safe_load_all(fh):
                if doc is not None:
                    out.append((f, doc))
    return out


def find(kind, name=None):
    found = [d for _, d in load_manifests() if d.get("kind") == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"{kind}/{name}: {len(found)} objects in deploy/"
    return found[0]


def rule_groups():
    """The PrometheusRule's groups, as a Prometheus rule file holds them."""
    return find("PrometheusRule")["spec"]["groups"]


def write_rule_file(path):
    with open(path, "w") as f:
        yaml.safe_dump({"groups": rule_groups()}, f, sort_keys=False)


def require_validator():
    """node, and the npm packages scripts/setup.sh installs with `npm ci`."""
    import shutil
    node = shutil.which("node")
    if not node:
        skip("node not installed (scripts/setup.sh installs nodejs)")
    if not os.path.isdir(os.path.join(VALIDATOR_DIR, "node_modules", "kubernetes-models")):
        skip("tests/deploy/node_modules missing (scripts/setup.sh runs npm ci there)")
    return node


# ------------------------------------------------------------ PromQL names

_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_IDENT = re.compile(r'[a-zA-Z_:][a-zA-Z0-9_:]*')
# PromQL words that are not metric names: functions are followed by "(",
# these are not.
_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
             "offset", "inf", "nan"}


def metric_names(expr):
    """Metric names an expression selects: identifiers outside strings,
    label matchers, grouping clauses and range brackets that are not
    functions or keywords."""
    expr = _STRING.sub('""', expr)
    expr = re.sub(r"\{[^}]*\}", "{}", expr)       # label matchers
    expr = re.sub(r"\[[^\]]*\]", "[]", expr)      # ranges and subqueries
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", expr)
    names = set()
    for m in _IDENT.finditer(expr):
        word = m.group(0)
        rest = expr[m.end():].lstrip()
        if rest.startswith("("):
            continue  # a function or an aggregation
        if word.lower() in _KEYWORDS or re.fullmatch(r"\d.*", word):
            continue
        start = m.start()
        if start > 0 and (expr[start - 1].isdigit() or expr[start - 1] == "."):
            continue  # the exponent or unit of a number, e.g. 1e9, 5m
        names.add(word)
    return names


def dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def dashboard_queries(board=None):
    """[(panel title, expr)] of every Prometheus query of the dashboard,
    its template variables' queries included."""
    board = board or dashboard()
    out = []

    def panels(items):
        for p in items:
            yield p
            yield from panels(p.get("panels", []))

    for p in panels(board.get("panels", [])):
        for t in p.get("targets", []):
            if t.get("expr"):
                out.append((p.get("title", "?"), t["expr"]))
    for v in board.get("templating", {}).get("list", []):
        if v.get("type") == "query":
            q = v.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            m = re.fullmatch(r"\s*label_values\((.*),\s*[a-zA-Z_]+\)\s*", q or "")
            out.append((f"variable {v['name']}", m.group(1) if m else q))
    return out


GRAFANA_VARIABLES = {
    "$__rate_interval": "1m", "${__rate_interval}": "1m", "$__interval": "15s", "${__interval}": "15s",
    "$__range": "5m", "${__range}": "5m",
}


def substitute_variables(expr, board=None):
    """The expression with Grafana's variables replaced as a query at
    'All' would have them: built-in intervals by durations, ours by '.*'."""
    for k, v in GRAFANA_VARIABLES.items():
        expr = expr.replace(k, v)
    return re.sub(r"\$\{?([a-zA-Z_][a-zA-Z0-9_]*)(:[a-z]+)?\}?", ".*", expr)


# ------------------------------------------------------------- metric table

def documented_metrics():
    """{name: type} from docs/metrics.md's tables (a unit test keeps them
    equal to the agent's metric tables)."""
    out = {}
    with open(os.path.join(SOURCE_DIR, "docs", "metrics.md")) as f:
        for line in f:
            m = re.match(r"^\| `([a-zA-Z_:][a-zA-Z0-9_:]*)` \| (counter|gauge|untyped|histogram|summary) \|", line)
            if m:
                out[m.group(1)] = m.group(2)
    return out


def base_metric(name, table):
    """The documented metric a sample name belongs to (x_bucket -> x for a
    histogram, x_sum/x_count for histograms and summaries), or None."""
    if name in table:
        return name
    for suffix, kinds in (("_bucket", {"histogram"}), ("_sum", {"histogram", "summary"}),
                          ("_count", {"histogram", "summary"})):
        if name.endswith(suffix) and table.get(name[: -len(suffix)]) in kinds:
            return name[: -len(suffix)]
    return None


# Series Prometheus itself makes for every target.
PROMETHEUS_SYNTHETIC = {"up", "scrape_duration_seconds", "scrape_samples_scraped", "scrape_series_added",
                        "scrape_samples_post_metric_relabeling"}


def recorded_names():
    return {r["record"] for g in rule_groups() for r in g["rules"] if "record" in r}


def rule_expressions():
    return [(r.get("record") or r.get("alert"), r["expr"]) for g in rule_groups() for r in g["rules"]]


def disk_io(blocks=64):
    """A few direct (O_DIRECT) writes and reads on the disk under /var/tmp,
    so the block IO histograms have events; bounded, and cleaned up."""
    import subprocess
    import tempfile
    fd, path = tempfile.mkstemp(prefix="nodeperf-io-", dir="/var/tmp")
    os.close(fd)
    try:
        subprocess.run(["dd", "if=/dev/zero", f"of={path}", "bs=64k", f"count={blocks}", "oflag=direct",
                        "conv=fsync", "status=none"], check=True, timeout=30)
        subprocess.run(["dd", f"if={path}", "of=/dev/null", "bs=64k", "iflag=direct", "status=none"],
                       check=True, timeout=30)
    finally:
        os.unlink(path)


class PodKubelet:
    """A stand-in for the kubelet's pods API on 127.0.0.1 (HTTPS with a
    self-signed certificate made by the openssl CLI, no token asked),
    listing the pods given: [(uid, namespace, name, [(container, id)])]."""

    def __init__(self, workdir, pods):
        import http.server
        import ssl
        import subprocess
        import threading
        self.cert = os.path.join(workdir, "kubelet.crt")
        key = os.path.join(workdir, "kubelet.key")
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1",
                        "-keyout", key, "-out", self.cert], check=True, capture_output=True, timeout=60)
        body = json.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": [
            {"metadata": {"uid": uid, "namespace": ns, "name": name},
             "status": {"phase": "Running", "containerStatuses": [
                 {"name": c, "containerID": "containerd://" + cid, "ready": True} for c, cid in containers]}}
            for uid, ns, name, containers in pods]}).encode()

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                self.send_response(200 if self.path == "/pods" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(self.cert, key)
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}/pods"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
