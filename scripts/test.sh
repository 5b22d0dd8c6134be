#!/usr/bin/env bash
# Sets up the machine, builds nodeperf and runs the whole test suite: unit
# and integration tests on the normal build, then the unit and HTTP tests
# again on an AddressSanitizer + UndefinedBehaviorSanitizer build, then each
# libFuzzer target for a short bounded run over its corpus (scripts/fuzz.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
scripts/build.sh build
scripts/build.sh build-asan -DNODEPERF_SANITIZE=ON

status=0
echo "== tests (RelWithDebInfo build)"
(cd build && ctest --output-on-failure --timeout 600) || status=1
echo "== unit and HTTP tests under ASan+UBSan"
(cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
  ctest --output-on-failure --timeout 600 -R '^(unit|test_http)$') || status=1
echo "== fuzzing: each parser of outside input for ${NODEPERF_FUZZ_SECONDS:-15} s (clang, libFuzzer, ASan+UBSan)"
scripts/fuzz.sh "${NODEPERF_FUZZ_SECONDS:-15}" || status=1
if ((status)); then echo "test.sh: FAILED" >&2; else echo "test.sh: all tests passed"; fi
exit $status
