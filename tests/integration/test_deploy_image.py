"""deploy/Dockerfile cannot be built here (no Docker engine), so what can go
wrong in it is checked offline: both stages are Debian 12; every file the
build stage copies from the context exists and is not left out by
deploy/Dockerfile.dockerignore; the build stage installs the packages
scripts/setup.sh installs to build; the runtime stage copies the binary the
build stage makes to where ENTRYPOINT runs it; and the runtime stage's
packages are exactly the packages of the shared libraries `ldd nodeperf`
lists (dpkg -S), so the image runs the binary and carries nothing else."""

import fnmatch
import os
import re
import shlex
import subprocess
import sys

sys.path.insert(0, os.path.dirname(__file__))
from harness import BIN, SOURCE_DIR, Checks, require_tool  # noqa: E402

T = Checks()
DOCKERFILE = os.path.join(SOURCE_DIR, "deploy", "Dockerfile")
# setup.sh packages that are not needed to build the binary: the openssl
# CLI makes the tests' certificates.
NOT_FOR_BUILD = {"openssl"}


def instructions():
    """[(INSTRUCTION, arguments)] with line continuations joined."""
    with open(DOCKERFILE) as f:
        text = re.sub(r"\\\n", " ", f.read())
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def stages():
    """[{name, base, steps}] in order."""
    out = []
    for ins, args in instructions():
        if ins == "FROM":
            m = re.fullmatch(r"(\S+)(?:\s+AS\s+(\S+))?", args, re.I)
            out.append({"base": m.group(1), "name": m.group(2), "steps": []})
        elif out:
            out[-1]["steps"].append((ins, args))
    return out


def apt_packages(stage):
    pkgs = []
    for ins, args in stage["steps"]:
        if ins == "RUN":
            for m in re.finditer(r"apt-get install ((?:\s*-\S+)*)((?:\s+[a-z0-9][a-z0-9.+-]*)+)", args):
                pkgs += m.group(2).split()
    return pkgs


def setup_build_packages():
    """Packages of setup.sh's build sections (from '# build' to '# tests')."""
    with open(os.path.join(SOURCE_DIR, "scripts", "setup.sh")) as f:
        text = f.read()
    block = text[text.index("  # build"):text.index("  # tests")]
    return {w for line in block.splitlines() if not line.strip().startswith("#") for w in line.split()} - NOT_FOR_BUILD


def ignored(path, patterns):
    return any(fnmatch.fnmatch(path, p.rstrip("/")) or fnmatch.fnmatch(path.split("/")[0], p.rstrip("/"))
               for p in patterns)


def test_stages():
    st = stages()
    T.check(len(st) == 2, f"two stages: {[s['base'] for s in st]}")
    for s in st:
        T.check(re.fullmatch(r"debian:(12|bookworm)(-slim)?(@sha256:[0-9a-f]{64})?", s["base"]), f"Debian 12 base: {s['base']}")
    build, runtime = st
    T.check(runtime["base"].split("@")[0].endswith("-slim"), "slim runtime base")
    missing = setup_build_packages() - set(apt_packages(build))
    T.check(not missing, f"build stage lacks setup.sh's build packages {sorted(missing)}")
    with open(os.path.join(SOURCE_DIR, "deploy", "Dockerfile.dockerignore")) as f:
        patterns = [line.strip() for line in f if line.strip() and not line.startswith("#")]
    copied = 0
    for ins, args in build["steps"]:
        if ins != "COPY":
            continue
        parts = [p for p in shlex.split(args) if not p.startswith("--")]
        for src in parts[:-1]:
            path = os.path.join(SOURCE_DIR, src)
            T.check(os.path.exists(path), f"COPY {src}: no such file in the repository")
            T.check(not ignored(src.rstrip("/"), patterns), f"COPY {src}: excluded by Dockerfile.dockerignore")
            copied += 1
    # Everything CMakeLists.txt builds the binary from is copied.
    with open(os.path.join(SOURCE_DIR, "CMakeLists.txt")) as f:
        cmake = f.read()
    dirs = {d for d in re.findall(r"\b([a-z]+)/[\w./]+\.(?:cpp|cmake|h)\b", cmake)} | {"bpf"}
    sources = {p.rstrip("/") for ins, a in build["steps"] if ins == "COPY" for p in shlex.split(a)[:-1]}
    T.check(dirs <= sources, f"source folders not copied: {sorted(dirs - sources)}")
    # The runtime stage takes the build stage's binary and runs it.
    copies = [shlex.split(a) for ins, a in runtime["steps"] if ins == "COPY"]
    T.check(copies == [["--from=" + build["name"], "/nodeperf", "/usr/bin/nodeperf"]], f"runtime COPY: {copies}")
    T.check(any(ins == "RUN" and "-o /nodeperf build/nodeperf" in a for ins, a in build["steps"]),
            "build stage writes /nodeperf from the nodeperf target")
    entry = [a for ins, a in runtime["steps"] if ins == "ENTRYPOINT"]
    T.check(entry == ['["/usr/bin/nodeperf"]'], f"ENTRYPOINT {entry}")
    print(f"{copied} COPY sources present; build packages cover setup.sh's")


def ldd_packages():
    r = subprocess.run(["ldd", BIN], capture_output=True, text=True, check=True, timeout=30)
    libs = re.findall(r"(?:=>\s*)?(/\S+)\s+\(0x", r.stdout)
    pkgs = {}
    for lib in libs:
        real = os.path.realpath(lib)
        for candidate in (real, lib, real.removeprefix("/usr"), "/usr" + lib):
            q = subprocess.run(["dpkg", "-S", candidate], capture_output=True, text=True, timeout=30)
            if q.returncode == 0:
                pkgs[lib] = q.stdout.split(":")[0]
                break
        else:
            pkgs[lib] = None
    return pkgs


def test_runtime_libraries():
    require_tool("ldd")
    require_tool("dpkg")
    pkgs = ldd_packages()
    T.check(all(pkgs.values()), f"libraries no package owns: {[k for k, v in pkgs.items() if not v]}")
    need = set(filter(None, pkgs.values()))
    runtime = stages()[-1]
    have = set(apt_packages(runtime))
    T.check(need <= have, f"runtime stage lacks {sorted(need - have)} (ldd: {pkgs})")
    T.check(have <= need, f"runtime stage installs what the binary does not link: {sorted(have - need)}")
    print(f"ldd: {len(pkgs)} libraries from {len(need)} packages, all installed by the runtime stage: {sorted(need)}")


def main():
    T.run(test_stages, test_runtime_libraries)
    T.done()


main()
