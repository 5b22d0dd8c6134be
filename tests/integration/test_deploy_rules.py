"""The PrometheusRule's rules, extracted to a Prometheus rule file: `promtool
check rules` passes, and `promtool test rules` runs tests/deploy/rules_test.yml
(synthetic series for every alert, firing and not). A test that cannot fail
proves nothing, so the unit tests must fail on a copy of the rules with a
threshold changed. Every alert has a severity, a summary, a description and
a runbook_url whose section exists in docs/operations.md."""

import os
import re
import shutil
import subprocess
import sys
import tempfile


sys.path.insert(0, os.path.dirname(__file__))
from harness import SOURCE_DIR, Checks, require_tool  # noqa: E402
from deploy_util import VALIDATOR_DIR, rule_groups, write_rule_file, yaml  # noqa: E402

T = Checks()
PROMTOOL = None


def promtool(*args, cwd=None):
    r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=120, cwd=cwd)
    return r.returncode, (r.stdout + r.stderr).strip()


def with_rules(groups, fn):
    d = tempfile.mkdtemp(prefix="nodeperf-rules-")
    try:
        with open(os.path.join(d, "rules.yml"), "w") as f:
            yaml.safe_dump({"groups": groups}, f, sort_keys=False)
        shutil.copy(os.path.join(VALIDATOR_DIR, "rules_test.yml"), d)
        return fn(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_check():
    d = tempfile.mkdtemp(prefix="nodeperf-rules-")
    try:
        path = os.path.join(d, "rules.yml")
        write_rule_file(path)
        rc, out = promtool("check", "rules", path)
        print(out)
        T.check(rc == 0, f"promtool check rules: exit {rc}")
        # promtool must see a broken expression.
        groups = rule_groups()
        groups[0]["rules"][0] = {**groups[0]["rules"][0], "expr": "histogram_quantile(0.99, sum by (le) (rate(x[5m]))"}
        with open(path, "w") as f:
            yaml.safe_dump({"groups": groups}, f)
        rc, _ = promtool("check", "rules", path)
        T.check(rc != 0, "promtool check rules accepted a broken expression")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_unit_tests():
    rc, out = with_rules(rule_groups(), lambda d: promtool("test", "rules", "rules_test.yml", cwd=d))
    print(out)
    T.check(rc == 0, f"promtool test rules: exit {rc}")
    # Every alert is tested firing at least once.
    with open(os.path.join(VALIDATOR_DIR, "rules_test.yml")) as f:
        tests = yaml.safe_load(f)["tests"]
    fired = {a["alertname"] for t in tests for a in t.get("alert_rule_test", []) if a.get("exp_alerts")}
    alerts = {r["alert"] for g in rule_groups() for r in g["rules"] if "alert" in r}
    T.check(alerts == fired, f"alerts never tested firing: {sorted(alerts - fired)}")
    # The same tests on rules with the disk threshold moved must fail.
    groups = rule_groups()
    for rule in groups[1]["rules"]:
        if rule.get("alert") == "NodeperfDiskLatencyHigh":
            assert "> 0.1\n" in rule["expr"]
            rule["expr"] = rule["expr"].replace("> 0.1\n", "> 0.3\n")
    rc, out = with_rules(groups, lambda d: promtool("test", "rules", "rules_test.yml", cwd=d))
    T.check(rc != 0 and "NodeperfDiskLatencyHigh" in out,
            f"promtool test rules passed with the disk threshold at 300 ms (exit {rc})")


def test_annotations():
    with open(os.path.join(SOURCE_DIR, "docs", "operations.md")) as f:
        doc = f.read()
    # GitHub's anchors: lower case, punctuation dropped, spaces to dashes.
    anchors = {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", doc, re.M)}
    for g in rule_groups():
        for r in g["rules"]:
            if "alert" not in r:
                continue
            name = r["alert"]
            a = r.get("annotations", {})
            T.check(r.get("labels", {}).get("severity") in ("critical", "warning", "info"), f"{name}: severity")
            T.check(a.get("summary") and a.get("description"), f"{name}: summary and description")
            m = re.fullmatch(r"docs/operations\.md#([\w-]+)", a.get("runbook_url", ""))
            T.check(m and m.group(1) in anchors, f"{name}: runbook_url {a.get('runbook_url')!r} has no section in docs/operations.md")
            T.check(r.get("for"), f"{name}: has a `for` duration")


def main():
    global PROMTOOL
    PROMTOOL = require_tool("promtool")
    T.run(test_check, test_unit_tests, test_annotations)
    T.done()


main()
