"""A real Prometheus server (Debian's) scrapes the agent on loopback for a few
seconds. Prometheus asks for OpenMetrics first, so this proves the
OpenMetrics encoder against the real parser; then PromQL over what it stored
must see the agent up and its counters rising."""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(__file__))
from harness import Agent, Checks, free_port, http_get, require_tool, wait_until  # noqa: E402


def query(base, promql):
    status, _, body = http_get(f"{base}/api/v1/query?query={urllib.parse.quote(promql)}")
    if status != 200:
        return None
    data = json.loads(body)["data"]["result"]
    return data


def main():
    prometheus = require_tool("prometheus")
    t = Checks()
    workdir = tempfile.mkdtemp(prefix="nodeperf-prom-")
    try:
        with Agent() as agent:
            port = free_port()
            config = os.path.join(workdir, "prometheus.yml")
            with open(config, "w") as f:
                f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
scrape_configs:
  - job_name: nodeperf
    static_configs:
      - targets: ['127.0.0.1:{agent.port}']
""")
            prom = subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--storage.tsdb.path={workdir}/data",
                 f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
                stdout=subprocess.DEVNULL, stderr=open(os.path.join(workdir, "prom.log"), "w"))
            base = f"http://127.0.0.1:{port}"
            try:
                wait_until(lambda: http_get(base + "/-/ready")[0] == 200, timeout=30, what="prometheus ready")
                wait_until(lambda: (query(base, "up") or [{}])[0].get("value", [0, "0"])[1] == "1",
                           timeout=20, what="up == 1")
                time.sleep(4)  # a few scrapes, so rate() has points
                _, _, targets = http_get(base + "/api/v1/targets")
                active = json.loads(targets)["data"]["activeTargets"]
                t.check(len(active) == 1 and active[0]["health"] == "up",
                        f"target health: {[(a['health'], a['lastError']) for a in active]}")
                n = query(base, "count(nodeperf_cpu_seconds_total)")
                t.check(n and int(n[0]["value"][1]) >= 8, f"count(nodeperf_cpu_seconds_total) = {n}")
                r = query(base, 'sum(rate(nodeperf_cpu_seconds_total[5s]))')
                cores = os.cpu_count()
                t.check(r and abs(float(r[0]["value"][1]) - cores) < 0.25 * cores,
                        f"sum of CPU seconds rate {r} should be about {cores} (all modes of all CPUs)")
                s = query(base, "nodeperf_scrapes_total")
                t.check(s and float(s[0]["value"][1]) >= 2, f"nodeperf_scrapes_total = {s}")
                m = query(base, "nodeperf_memory_MemTotal_bytes")
                t.check(m and float(m[0]["value"][1]) > 1e8, f"MemTotal = {m}")
            finally:
                prom.terminate()
                prom.wait(10)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    t.done()


main()
