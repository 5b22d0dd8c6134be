#!/usr/bin/env bash
# Configures and builds nodeperf into a build directory: scripts/build.sh DIR [cmake args].
# Quiet when it works; the compiler's output when it does not.
set -euo pipefail
cd "$(dirname "$0")/.."
dir=${1:-build}
shift || true
log=$(mktemp /tmp/nodeperf-build.XXXXXX.log)
if ! { cmake -S . -B "$dir" -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" && cmake --build "$dir" -j"$(nproc)"; } >"$log" 2>&1; then
  grep -E -A5 'error|Error' "$log" | head -80 >&2 || tail -50 "$log" >&2
  echo "build.sh: build failed in $dir (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
echo "build.sh: built $dir"
