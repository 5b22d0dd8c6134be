#!/usr/bin/env bash
# Installs every Debian package nodeperf needs to build, run and test.
# Idempotent and quiet: prints one line when done, the apt log on failure.
set -euo pipefail

packages=(
  # build
  build-essential cmake pkg-config
  libboost-dev libyaml-cpp-dev zlib1g-dev libssl-dev openssl libcrypt-dev
  # nodeperf top: the terminal UI, and the agent's JSON it reads
  libncurses-dev nlohmann-json3-dev
  # eBPF: clang compiles bpf/*.bpf.c, bpftool makes skeletons, libbpf loads them
  clang llvm libbpf-dev bpftool
  # tests and benchmarks: Catch2, promtool and a real Prometheus, a peer exporter
  catch2 python3 curl procps tmux
  # fuzzing (scripts/fuzz.sh): libFuzzer and the sanitizer runtimes for clang
  libclang-rt-14-dev
  prometheus prometheus-node-exporter
  # volume tests: a real FUSE file system (bindfs over a directory)
  bindfs
  # eBPF tests and benchmarks: peers and load generators
  libbpf-tools bpftrace fio stress-ng linux-perf iproute2 util-linux mount e2fsprogs
  # fault tests: the running agent's wall clock stepped (libfaketime, LD_PRELOAD)
  faketime
  # deployment tests: manifests read in Python, validated offline with npm's
  # kubernetes-models (tests/deploy/package.json), capabilities cut with setpriv
  python3-yaml nodejs
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup.sh: must run as root (it installs Debian packages)" >&2
  exit 1
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
done

if ((${#missing[@]})); then
  log=$(mktemp /tmp/nodeperf-setup.XXXXXX.log)
  export DEBIAN_FRONTEND=noninteractive
  # Keep package maintainer scripts from starting the packaged prometheus and
  # node_exporter services: tests start their own on loopback ports.
  guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    guard=/usr/sbin/policy-rc.d
  fi
  trap '[[ -n "$guard" ]] && rm -f "$guard"' EXIT
  if ! { apt-get update -q && apt-get install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "setup.sh: apt-get failed installing: ${missing[*]} (full log: $log)" >&2
    exit 1
  fi
  rm -f "$log"
  echo "setup.sh: installed ${missing[*]}"
else
  echo "setup.sh: all ${#packages[@]} packages present"
fi

# npm: Debian's nodejs leaves it to the npm package; a nodejs that bundles
# its own npm (and conflicts with Debian's) is kept as it is.
if ! command -v npm >/dev/null; then
  if ! { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm; } \
      >/tmp/nodeperf-setup-npm.log 2>&1; then
    tail -n 30 /tmp/nodeperf-setup-npm.log >&2
    echo "setup.sh: apt-get failed installing npm" >&2
    exit 1
  fi
  echo "setup.sh: installed npm"
fi

# The offline manifest validator's npm packages, pinned by
# tests/deploy/package-lock.json, into tests/deploy/node_modules (ignored by
# git). `npm ci` runs again only when the lock file changed.
deploy_dir="$(cd "$(dirname "$0")/.." && pwd)/tests/deploy"
stamp="$deploy_dir/node_modules/.nodeperf-lock.sha256"
want=$(sha256sum "$deploy_dir/package-lock.json" | cut -d' ' -f1)
if [[ ! -f "$stamp" || "$(cat "$stamp")" != "$want" ]]; then
  log=$(mktemp /tmp/nodeperf-setup-npm.XXXXXX.log)
  if ! (cd "$deploy_dir" && npm ci --no-audit --no-fund --loglevel=error) >"$log" 2>&1; then
    tail -n 30 "$log" >&2
    echo "setup.sh: npm ci failed in $deploy_dir (full log: $log)" >&2
    exit 1
  fi
  rm -f "$log"
  echo "$want" > "$stamp"
  echo "setup.sh: npm ci in tests/deploy"
fi
