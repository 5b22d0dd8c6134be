#!/usr/bin/env python3
"""The JSON API (docs/api.md) against the real agent: /api/v1/snapshot holds
exactly what /metrics serves for the same tick, ?time= reaches back through
the history, /api/v1/history grows to its bound and stays there, bad input
gets a one-line 400, HEAD works, and /metrics is unchanged."""

import json
import math
import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(__file__))
from harness import Agent, Checks, http_get  # noqa: E402

checks = Checks()
check = checks.check
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}


def strict_json(body):
    """Parses strict JSON: UTF-8, and no NaN or Infinity literals."""
    def refuse(name):
        raise ValueError(f"non-JSON constant {name}")
    return json.loads(body.decode("utf-8"), parse_constant=refuse)


def get_json(url):
    status, headers, body = http_get(url)
    assert status == 200, f"{url}: status {status}: {body[:200]!r}"
    assert headers.get("Content-Type") == "application/json", f"{url}: Content-Type {headers.get('Content-Type')}"
    return strict_json(body)


def exposition_of(doc):
    """The Prometheus text lines the snapshot document describes: comment
    lines as text, sample lines as (series text, value or None)."""
    def esc_label(v):
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    lines = []
    for f in doc["families"]:
        lines.append(f"# HELP {f['name']} " + f["help"].replace("\\", "\\\\").replace("\n", "\\n"))
        lines.append(f"# TYPE {f['name']} {f['type']}")
        for s in f["samples"]:
            labels = ",".join(f'{k}="{esc_label(v)}"' for k, v in s["labels"].items())
            lines.append((f["name"] + s.get("suffix", "") + (f"{{{labels}}}" if labels else ""), s["value"]))
    return lines


def exposition_lines(text):
    out = []
    for line in text.splitlines():
        if line.startswith("#"):
            out.append(line)
        else:
            series, _, value = line.rpartition(" ")
            v = float(value)
            out.append((series, v if math.isfinite(v) else None))
    return out


def test_same_as_metrics():
    with Agent("--tick=1s") as agent:
        # /metrics between two snapshot documents of the same time serves
        # that tick's snapshot: all three describe the same samples.
        for _ in range(20):
            before = get_json(agent.url + "/api/v1/snapshot")
            status, headers, body = http_get(agent.url + "/metrics")
            after = get_json(agent.url + "/api/v1/snapshot")
            if before["time"] == after["time"]:
                break
        else:
            check(False, "no /metrics scrape fell within one tick in 20 tries")
            return
        check(before == after, "two snapshot documents of the same time are equal")
        check(headers.get("Content-Type") == "text/plain; version=0.0.4; charset=utf-8",
              f"/metrics Content-Type unchanged: {headers.get('Content-Type')}")
        want = exposition_lines(body.decode())
        got = exposition_of(before)
        n_samples = sum(1 for x in want if isinstance(x, tuple))
        check(n_samples > 50, f"/metrics has samples: {n_samples}")
        if not check(got == want, "the snapshot document is /metrics line for line, value for value"):
            for i, (g, w) in enumerate(zip(got, want)):
                if g != w:
                    print(f"  first difference at line {i}: json {g!r} vs /metrics {w!r}")
                    break
            print(f"  {len(got)} lines from JSON, {len(want)} from /metrics")

        names = [f["name"] for f in before["families"]]
        check(names == sorted(names), "families are sorted by name")
        check(all(f["type"] in TYPES for f in before["families"]), "every type is one of the five")
        check(all(s.get("suffix", "x") != "" for f in before["families"] for s in f["samples"]),
              "suffix is left out when empty")
        check(before["tick_seconds"] == 1, f"tick_seconds: {before['tick_seconds']}")
        check(before["hostname"] == socket.gethostname(), f"hostname: {before['hostname']!r}")
        check(abs(before["time"] - time.time()) < 5, f"time is now: {before['time']} vs {time.time()}")

        # HEAD: the headers GET would send, no body.
        for path in ("/api/v1/snapshot", "/api/v1/history"):
            status, headers, body = http_get(agent.url + path, method="HEAD")
            check(status == 200 and body == b"" and int(headers.get("Content-Length", 0)) > 0
                  and headers.get("Content-Type") == "application/json",
                  f"HEAD {path}: {status} {headers} {body[:80]!r}")

        # Bad ?time: 400 with one line naming the parameter.
        for bad in ("abc", "", "nan", "inf", "-inf", "1e999", "1,5", "%31", "12abc"):
            status, _, body = http_get(agent.url + "/api/v1/snapshot?time=" + bad)
            text = body.decode(errors="replace")
            check(status == 400 and text.count("\n") == 1 and text.endswith("\n") and "time" in text,
                  f"?time={bad}: want a one-line 400 naming time, got {status} {text!r}")
        status, _, body = http_get(agent.url + "/api/v1/snapshot?time")
        check(status == 400, f"?time without a value: {status}")
        status, _, _ = http_get(agent.url + "/api/v1/snapshot?other=1&time=1e12")
        check(status == 200, f"other parameters are ignored: {status}")

        status, _, body = http_get(agent.url + "/")
        check(b"/api/v1/snapshot" in body and b"/api/v1/history" in body, "the index page lists the API")


def test_history():
    tick, bound = 0.1, 20  # --history=2s at --tick=100ms
    with Agent("--tick=100ms", "--history=2s") as agent:
        counts = []
        deadline = time.monotonic() + 3.5
        while time.monotonic() < deadline:
            h = get_json(agent.url + "/api/v1/history")
            counts.append(h["count"])
            time.sleep(0.05)
        check(counts[0] < bound, f"history starts small: {counts[0]}")
        check(counts == sorted(counts), f"history count never shrinks: {counts}")
        check(counts[-1] == bound and counts.count(bound) >= 5, f"history count stops at {bound}: {counts}")
        check(h["tick_seconds"] == tick, f"tick_seconds: {h['tick_seconds']}")
        span = h["newest"] - h["oldest"]
        check(abs(span - (bound - 1) * tick) < 0.5, f"newest - oldest is {bound - 1} ticks: {span:.3f}s")
        time.sleep(0.5)
        h2 = get_json(agent.url + "/api/v1/history")
        check(h2["count"] == bound and h2["oldest"] > h["oldest"], f"the ring moves on: {h} then {h2}")

        # The newest snapshot, asked for again by its time a few ticks later:
        # the same document (values are kept exactly).
        newest = get_json(agent.url + "/api/v1/snapshot")
        time.sleep(0.35)
        again = get_json(agent.url + f"/api/v1/snapshot?time={newest['time']!r}")
        check(again == newest, f"?time=<a snapshot's time> gives that snapshot back: {again['time']} vs {newest['time']}")
        later = get_json(agent.url + "/api/v1/snapshot")
        check(later["time"] > newest["time"], "the newest moved on meanwhile")

        # Times stepping back through the history give older snapshots,
        # each taken at or before the time asked for.
        h = get_json(agent.url + "/api/v1/history")
        asked = [h["newest"] - 1.5 + 0.2 * i for i in range(8)]
        got = [get_json(agent.url + f"/api/v1/snapshot?time={t!r}")["time"] for t in asked]
        check(all(g <= t for g, t in zip(got, asked)), f"each at or before the time asked: {got} vs {asked}")
        check(all(t - g < 0.5 for g, t in zip(got, asked)), f"each the newest before: {got} vs {asked}")
        check(got == sorted(got) and got[-1] > got[0], f"later times give later snapshots: {got}")

        oldest = get_json(agent.url + "/api/v1/snapshot?time=0")
        check(oldest["time"] >= h["oldest"] and oldest["time"] < asked[0], f"?time=0 gives the oldest: {oldest['time']}")
        future = get_json(agent.url + "/api/v1/snapshot?time=1e12")
        check(future["time"] >= later["time"], "a time past the newest gives the newest")


def test_no_history():
    with Agent("--tick=100ms", "--history=0s") as agent:
        counts = []
        for _ in range(10):
            counts.append(get_json(agent.url + "/api/v1/history")["count"])
            time.sleep(0.05)
        check(set(counts) == {1}, f"--history=0s keeps the newest only: {counts}")
        h = get_json(agent.url + "/api/v1/history")
        check(h["oldest"] == h["newest"], f"one entry: {h}")
        s = get_json(agent.url + "/api/v1/snapshot?time=0")
        check(s["time"] >= h["newest"], "?time=0 gives the newest, the only one")


def main():
    checks.run(test_same_as_metrics, test_history, test_no_history)
    checks.done()


if __name__ == "__main__":
    main()
