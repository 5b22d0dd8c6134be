#!/usr/bin/env bash
# Sets up the machine, builds nodeperf and runs the agent in the foreground
# with its built-in defaults (Prometheus endpoint on :19100). Extra arguments
# go to `nodeperf agent`, e.g. scripts/run.sh --tick=5s.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
exec build/nodeperf agent "$@"
