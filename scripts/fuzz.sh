#!/usr/bin/env bash
# Builds the libFuzzer targets (fuzz/, clang++ with ASan and UBSan) into
# build-fuzz and runs each for a bounded time over its checked-in corpus:
#   scripts/fuzz.sh [SECONDS per target, default 20] [TARGET...]
# Prints each target's executions, exec/s and coverage (libFuzzer's cov: and
# ft:). New inputs go to build-fuzz/corpus/TARGET (the checked-in corpus is
# only read); a crash leaves its input in build-fuzz/artifacts and fails the
# script. docs/fuzzing.md says how to turn a crash into a regression test.
# JOBS=N limits the build's parallelism (default: every CPU).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-20}
shift || true
targets=("$@")
((${#targets[@]})) || targets=(fuzz_procfs fuzz_cgroups fuzz_k8s_paths fuzz_mountinfo fuzz_config fuzz_kubelet_json fuzz_http fuzz_web_config)
dir=build-fuzz

start=$(date +%s)
log=$(mktemp /tmp/nodeperf-fuzz-build.XXXXXX.log)
# -O1 and line tables: libFuzzer's usual trade between speed and stack
# traces; asserts stay on (no NDEBUG).
if ! { cmake -S . -B "$dir" -DCMAKE_CXX_COMPILER=clang++ -DCMAKE_BUILD_TYPE=RelWithDebInfo \
         "-DCMAKE_CXX_FLAGS_RELWITHDEBINFO=-O1 -gline-tables-only" -DNODEPERF_FUZZ=ON -DBUILD_TESTING=OFF &&
       cmake --build "$dir" -j"${JOBS:-$(nproc)}" --target fuzz_targets; } >"$log" 2>&1; then
  grep -E -A5 'error|Error' "$log" | head -80 >&2 || tail -50 "$log" >&2
  echo "fuzz.sh: build failed in $dir (full log: $log)" >&2
  exit 1
fi
rm -f "$log"
echo "fuzz.sh: built $dir in $(($(date +%s) - start)) s; ${seconds} s per target"

status=0
mkdir -p "$dir/artifacts"
printf '%-18s %10s %9s %6s %6s %s\n' target execs exec/s cov ft result
for t in "${targets[@]}"; do
  mkdir -p "$dir/corpus/$t"
  out="$dir/artifacts/$t.log"
  # The scratch corpus first: libFuzzer writes what it finds to the first directory.
  set +e
  ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 UBSAN_OPTIONS=print_stacktrace=1 \
    "$dir/fuzz/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -max_len=16384 \
    -print_final_stats=1 -artifact_prefix="$dir/artifacts/$t-" "$dir/corpus/$t" "fuzz/corpus/$t" >"$out" 2>&1
  rc=$?
  set -e
  last=$(grep -E '^#[0-9]+' "$out" | tail -n 1)
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+).*/\1/p' "$out")
  speed=$(sed -nE 's/^stat::average_exec_per_sec: *([0-9]+).*/\1/p' "$out")
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  if ((rc == 0)); then result=ok; else result="FAILED (exit $rc; $out)"; status=1; fi
  printf '%-18s %10s %9s %6s %6s %s\n' "$t" "${execs:-?}" "${speed:-?}" "${cov:-?}" "${ft:-?}" "$result"
  if ((rc != 0)); then
    grep -E 'ERROR|SUMMARY|==[0-9]+==|runtime error|Test unit written' "$out" | head -20 >&2 || tail -30 "$out" >&2
  fi
done
if ((status)); then echo "fuzz.sh: FAILED (inputs in $dir/artifacts)" >&2; else echo "fuzz.sh: no crash in $(($(date +%s) - start)) s"; fi
exit $status
