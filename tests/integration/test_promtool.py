"""Every exposition the agent serves (text and gzip, nodeperf, node_exporter
and cAdvisor names) passes `promtool check metrics`. The only remark allowed
is promtool's snake_case lint on names inherited from node_exporter
(MemTotal, Tcp_RetransSegs, ...), which node_exporter itself gets."""

import gzip
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import Agent, Checks, http_get, require_tool  # noqa: E402

CAMEL = re.compile(r"^(\S+) metric names should be written in 'snake_case' not 'camelCase'$")
INHERITED = re.compile(r"^(nodeperf|node)_(memory|netstat)_")


def promtool_remarks(promtool, text):
    r = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
    lines = (r.stdout + r.stderr).decode().splitlines()
    return r.returncode, [line for line in lines if line.strip()]


def main():
    promtool = require_tool("promtool")
    t = Checks()
    # cAdvisor's families need pod cgroups, which this host may not have:
    # test_cadvisor.py makes some and lints that exposition too.
    for mode in ["none", "node_exporter", "node_exporter,cadvisor"]:
        with Agent(f"--compat={mode}") as agent:
            plain = agent.metrics()
            status, headers, body = http_get(agent.url + "/metrics", {"Accept-Encoding": "gzip"})
            t.check(status == 200 and headers.get("Content-Encoding") == "gzip", f"{mode}: gzip response")
            t.check(gzip.decompress(body).decode().count("\n") > 300, f"{mode}: gzip body decodes to the exposition")
            rc, remarks = promtool_remarks(promtool, plain)
            unexpected = [r for r in remarks
                          if not (CAMEL.match(r) and INHERITED.match(CAMEL.match(r).group(1)))]
            t.check(not unexpected, f"{mode}: promtool remarks: {unexpected[:5]}")
            t.check(rc in (0, 3) and (rc == 0 or remarks), f"{mode}: promtool exit {rc}")
            # promtool exits 1 on a parse error; make sure one would be seen.
            rc_bad, _ = promtool_remarks(promtool, plain + "broken line here\n")
            t.check(rc_bad == 1, f"promtool did not flag a broken exposition (exit {rc_bad})")
    t.done()


main()
