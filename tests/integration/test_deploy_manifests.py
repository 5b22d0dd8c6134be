"""deploy/ as `kubectl apply -f deploy/` reads it, checked offline: every
manifest validates against the Kubernetes API schemas and the Prometheus
Operator's CRD schemas (tests/deploy/validate.mjs: kubernetes-models'
validators, plus every key looked up in the schema's properties), and the
validator is shown to reject a wrong type, a missing required field and a
misspelled key. Then what the issue asks of the DaemonSet, Service and
ServiceMonitor, and the agent's own word that the DaemonSet's arguments are
a valid configuration (`nodeperf agent --config.check`)."""

import copy
import os
import re
import shutil
import subprocess
import sys
import tempfile


sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, Checks  # noqa: E402
from deploy_util import VALIDATOR_DIR, find, load_manifests, manifest_files, require_validator, yaml  # noqa: E402

EXPECTED_KINDS = {"Namespace", "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "DaemonSet", "Service",
                  "ServiceMonitor", "PrometheusRule"}
NAMESPACED = {"ServiceAccount", "DaemonSet", "Service", "ServiceMonitor", "PrometheusRule"}


def validate(node, files):
    r = subprocess.run([node, os.path.join(VALIDATOR_DIR, "validate.mjs"), *files],
                       capture_output=True, text=True, timeout=120)
    return r.returncode, r.stdout + r.stderr


def privileged_variant(path):
    """docs/operations.md's variant for kernels older than 5.8 or without
    BTF: the container's securityContext replaced by privileged, and no
    btf volume. Written to `path`, to be validated like the rest."""
    docs = [d for _, d in load_manifests() if d["kind"] == "DaemonSet"]
    (ds,) = copy.deepcopy(docs)
    pod = ds["spec"]["template"]["spec"]
    (c,) = pod["containers"]
    c["securityContext"] = {"privileged": True, "readOnlyRootFilesystem": True}
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["name"] != "btf"]
    pod["volumes"] = [v for v in pod["volumes"] if v["name"] != "btf"]
    ds["metadata"]["name"] = "nodeperf-privileged"
    with open(path, "w") as f:
        yaml.safe_dump(ds, f, sort_keys=False)


def test_schemas():
    t, node = T, NODE
    files = manifest_files()
    tmp = tempfile.mkdtemp(prefix="nodeperf-deploy-")
    variant = os.path.join(tmp, "privileged-variant.yaml")
    privileged_variant(variant)
    rc, out = validate(node, files + [variant])
    shutil.rmtree(tmp, ignore_errors=True)
    print(out.strip().replace(tmp + "/", ""))
    t.check(rc == 0, f"deploy/ manifests (or the documented privileged variant) do not validate (exit {rc})")
    kinds = {d["kind"] for _, d in load_manifests()}
    t.check(kinds == EXPECTED_KINDS, f"kinds in deploy/: {sorted(kinds)}, want {sorted(EXPECTED_KINDS)}")
    for f, d in load_manifests():
        if d["kind"] in NAMESPACED:
            t.check(d["metadata"].get("namespace") == "nodeperf",
                    f"{os.path.basename(f)} {d['kind']}: namespace {d['metadata'].get('namespace')!r}, want nodeperf")
    # kubectl applies the files in name order: the Namespace must come first.
    first = load_manifests()[0][1]
    t.check(first["kind"] == "Namespace", f"first object kubectl applies is a {first['kind']}, not the Namespace")


def mutate(text, old, new):
    assert text.count(old) == 1, f"mutation anchor {old!r} found {text.count(old)} times"
    return text.replace(old, new)


def test_rejections():
    """Each kind of mistake, made once in a copy of a real manifest, is
    rejected with an error naming the place."""
    t, node = T, NODE
    with open(os.path.join(os.path.dirname(manifest_files()[0]), "daemonset.yaml")) as f:
        ds = f.read()
    with open(os.path.join(os.path.dirname(manifest_files()[0]), "servicemonitor.yaml")) as f:
        sm = f.read()
    with open(os.path.join(os.path.dirname(manifest_files()[0]), "prometheusrule.yaml")) as f:
        pr = f.read()
    cases = [
        ("wrong type", ds, "containerPort: 19100", 'containerPort: "19100"',
         r"/spec/template/spec/containers/0/ports/0/containerPort: must be integer"),
        ("missing required field", ds, "        - name: agent\n          image:", "        - image:",
         r"/spec/template/spec/containers/0: must have required property name"),
        ("misspelled key", ds, "hostPID: true", "hostPid: true",
         r"unknown field: /spec/template/spec/hostPid \(did you mean hostPID\?\)"),
        ("misspelled key, deep", ds, "readOnlyRootFilesystem: true", "readOnlyRootFileSystem: true",
         r"unknown field: /spec/template/spec/containers/0/securityContext/readOnlyRootFileSystem"),
        ("unknown capability field", ds, "drop: [\"ALL\"]", "remove: [\"ALL\"]",
         r"unknown field: .*/capabilities/remove"),
        ("CRD: misspelled key", sm, "targetLabel: node", "target_label: node",
         r"unknown field: /spec/endpoints/0/relabelings/0/target_label"),
        ("CRD: wrong type", sm, "honorLabels: true", "honorLabels: 1",
         r"/spec/endpoints/0/honorLabels: must be boolean"),
        ("CRD: missing required field", pr, "    - name: nodeperf.alerts\n", "    - nam: nodeperf.alerts\n",
         r"(must have required property name|unknown field: /spec/groups/1/nam)"),
        ("CRD: bad duration", pr, "for: 10m\n          labels:\n            severity: warning\n          annotations:\n"
         "            summary: nodeperf collector",
         "for: ten minutes\n          labels:\n            severity: warning\n          annotations:\n"
         "            summary: nodeperf collector",
         r"/spec/groups/1/rules/2/for: must match pattern"),
    ]
    # A YAML duplicate key: the API server would take the last one silently.
    cases.append(("duplicate key", ds, "      hostPID: true\n", "      hostPID: true\n      hostPID: false\n",
                  r"yaml: Map keys must be unique"))
    tmp = tempfile.mkdtemp(prefix="nodeperf-deploy-")
    try:
        paths = []
        for what, text, old, new, _ in cases:
            paths.append(os.path.join(tmp, re.sub(r"\W+", "-", what) + ".yaml"))
            with open(paths[-1], "w") as f:
                f.write(mutate(text, old, new))
        # One run for all (the TypeScript checker takes seconds to start):
        # each file must fail, and with its own error.
        rc, out = validate(node, paths)
        t.check(rc == 1, f"validator exit {rc} on the broken copies")
        for (what, _, _, _, want), path in zip(cases, paths):
            fails = [line for line in out.splitlines() if line.startswith(f"FAIL {path}#")]
            hit = [line for line in fails if re.search(want, line)]
            t.check(hit, f"{what}: not rejected as expected: {fails or out.strip()[-500:]}")
            if hit:
                print(f"rejected ({what}): {hit[0].removeprefix('FAIL ').replace(tmp + '/', '')}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_daemonset():
    t = T
    ds = find("DaemonSet", "nodeperf")
    pod = ds["spec"]["template"]["spec"]
    t.check(pod.get("hostPID") is True, "hostPID")
    t.check(pod.get("hostNetwork") is True, "hostNetwork (so /proc/net is the node's)")
    t.check(pod.get("priorityClassName") == "system-node-critical", "priorityClassName")
    t.check({"operator": "Exists"} in pod.get("tolerations", []), "a toleration of every taint")
    t.check(pod.get("serviceAccountName") == "nodeperf", "service account")
    strategy = ds["spec"]["updateStrategy"]
    t.check(strategy["type"] == "RollingUpdate" and strategy["rollingUpdate"].get("maxUnavailable"),
            f"RollingUpdate with maxUnavailable: {strategy}")
    (c,) = pod["containers"]
    sc = c["securityContext"]
    t.check(sc.get("privileged") in (None, False), "not privileged")
    t.check(sc.get("allowPrivilegeEscalation") is False, "allowPrivilegeEscalation false")
    t.check(sc.get("readOnlyRootFilesystem") is True, "read-only root filesystem")
    t.check(sc["capabilities"]["drop"] == ["ALL"], "drops every capability")
    t.check(sorted(sc["capabilities"]["add"]) == ["BPF", "PERFMON", "SYS_RESOURCE"],
            f"adds exactly BPF, PERFMON, SYS_RESOURCE: {sc['capabilities']['add']}")
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in pod["volumes"]}
    for host, where in [("/proc", "/host/proc"), ("/sys", "/host/sys"), ("/sys/fs/cgroup", "/host/sys/fs/cgroup"),
                        ("/var/lib/kubelet/pods", "/host/var/lib/kubelet/pods"),
                        ("/sys/kernel/btf", "/sys/kernel/btf")]:
        m = mounts.get(where)
        t.check(m and m.get("readOnly") is True and volumes[m["name"]]["hostPath"]["path"] == host,
                f"host {host} mounted read-only at {where}: {m}")
    t.check(all(m.get("readOnly") for m in c["volumeMounts"]), "every mount read-only")
    t.check("--host-root=/host" in c["args"], "the host root is passed to the agent")
    env = {e["name"]: e for e in c.get("env", [])}
    t.check(env.get("NODE_NAME", {}).get("valueFrom", {}).get("fieldRef", {}).get("fieldPath") == "spec.nodeName",
            "NODE_NAME from the downward API")
    port = {p["name"]: p["containerPort"] for p in c["ports"]}
    t.check(port.get("metrics") == 19100, f"named port metrics = 19100: {port}")
    t.check(c["livenessProbe"]["httpGet"]["path"] == "/healthz", "liveness probe on /healthz")
    t.check(c["readinessProbe"]["httpGet"]["path"] == "/readyz", "readiness probe on /readyz")
    res = c["resources"]
    t.check(all(k in res.get(w, {}) for w in ("requests", "limits") for k in ("cpu", "memory")),
            f"cpu and memory requests and limits: {res}")
    # The kubelet RBAC: get on nodes/proxy, nothing else.
    role = find("ClusterRole", "nodeperf")
    t.check(role["rules"] == [{"apiGroups": [""], "resources": ["nodes/proxy"], "verbs": ["get"]}],
            f"least RBAC for the kubelet's /pods: {role['rules']}")
    binding = find("ClusterRoleBinding", "nodeperf")
    t.check(binding["subjects"] == [{"kind": "ServiceAccount", "name": "nodeperf", "namespace": "nodeperf"}]
            and binding["roleRef"]["name"] == "nodeperf", "binding of the role to the service account")
    ns = find("Namespace", "nodeperf")
    t.check(ns["metadata"]["labels"].get("pod-security.kubernetes.io/enforce") == "privileged",
            "namespace admits the agent's host access (Pod Security Admission)")


def test_service_and_monitor():
    t = T
    ds = find("DaemonSet", "nodeperf")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    svc = find("Service", "nodeperf")
    t.check(svc["spec"].get("clusterIP") == "None", "headless Service")
    t.check(all(pod_labels.get(k) == v for k, v in svc["spec"]["selector"].items()), "Service selects the agent pods")
    (port,) = svc["spec"]["ports"]
    t.check(port["name"] == "metrics" and port["targetPort"] == "metrics", f"Service port: {port}")
    sm = find("ServiceMonitor", "nodeperf")
    t.check(all(svc["metadata"]["labels"].get(k) == v for k, v in sm["spec"]["selector"]["matchLabels"].items()),
            "ServiceMonitor selects the Service")
    t.check(sm["spec"]["namespaceSelector"]["matchNames"] == ["nodeperf"], "ServiceMonitor's namespace selector")
    (ep,) = sm["spec"]["endpoints"]
    t.check(ep["port"] == "metrics", "ServiceMonitor scrapes the named port")
    node_rule = [r for r in ep["relabelings"] if r.get("targetLabel") == "node"]
    t.check(node_rule and node_rule[0]["sourceLabels"] == ["__meta_kubernetes_pod_node_name"],
            "relabelling puts the node name on every series")


def test_agent_accepts_args():
    """The DaemonSet's args, as Kubernetes expands them, are a valid
    configuration of this build of the agent."""
    t = T
    (c,) = find("DaemonSet", "nodeperf")["spec"]["template"]["spec"]["containers"]
    # The host root is the container's mount point: a directory stands in.
    host_root = tempfile.mkdtemp(prefix="nodeperf-hostroot-")
    args = [a.replace("$(NODE_NAME)", "node-1").replace("=/host", "=" + host_root) for a in c["args"]]
    t.check(args[0] == "agent", f"first argument is the subcommand: {args[0]}")
    r = subprocess.run([BIN, *args, "--config.check"], capture_output=True, text=True, timeout=30,
                       env={**os.environ, "NODE_NAME": "node-1"})
    t.check(r.returncode == 0, f"nodeperf {' '.join(args)} --config.check: exit {r.returncode}: {r.stderr.strip()}")
    bad = copy.deepcopy(args) + ["--web.listen-adress=:1"]
    r = subprocess.run([BIN, *bad, "--config.check"], capture_output=True, text=True, timeout=30)
    t.check(r.returncode == 2, f"--config.check accepts a misspelled flag (exit {r.returncode})")
    os.rmdir(host_root)


T = Checks()
NODE = None


def main():
    global NODE
    NODE = require_validator()
    T.run(test_schemas, test_rejections, test_daemonset, test_service_and_monitor, test_agent_accepts_args)
    T.done()


main()
