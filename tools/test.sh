#!/usr/bin/env bash
# Builds kvpack and runs its whole test suite (unit, integration and end-to-end tests; GPU
# tests and benchmarks are tagged and skipped here — tests/gpu/run_on_device.sh and
# server_on_device.sh run them on a GPU machine), then the same tests under ASan+UBSan and every fuzz target for a bounded time
# (tests/fuzz/README.md). Installs the Debian packages it needs first. Ends with one line
# "N passed, M failed" counted from the tests' own reports; a fuzz target counts as one test,
# failed when it found a crash.
#
# KVPACK_FUZZ_SECONDS: seconds per fuzz target (default 30). KVPACK_SKIP_SANITIZERS=1 runs the
# normal suite only (a quicker local check; CI always runs everything).
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh || exit 1

bazel_flags=()
[ -n "${CI:-}" ] && bazel_flags+=(--noshow_progress)
bazel build "${bazel_flags[@]}" //... ; build_rc=$?
bazel test "${bazel_flags[@]}" //... ; test_rc=$?

passed=0; failed=0
# Adds the test cases of the gtest XML reports under $1 (Bazel keeps one per test target).
count_test_xml() {
  local xml header tests failures errors disabled bad
  while IFS= read -r xml; do
    # gtest fills in <testsuites ...>; Bazel's own report for other tests has the figures on
    # its single <testsuite ...>.
    header=$(grep -o -m1 '<testsuites [^>]*>' "$xml" || grep -o -m1 '<testsuite [^>]*>' "$xml" || true)
    [ -n "$header" ] || continue
    tests=$(sed -n 's/.* tests="\([0-9]*\)".*/\1/p' <<<"$header")
    failures=$(sed -n 's/.* failures="\([0-9]*\)".*/\1/p' <<<"$header")
    errors=$(sed -n 's/.* errors="\([0-9]*\)".*/\1/p' <<<"$header")
    disabled=$(sed -n 's/.* disabled="\([0-9]*\)".*/\1/p' <<<"$header")
    bad=$(( ${failures:-0} + ${errors:-0} ))
    passed=$(( passed + ${tests:-0} - ${disabled:-0} - bad ))
    failed=$(( failed + bad ))
  done < <(find -L "$1" -name test.xml 2>/dev/null)
}
count_test_xml bazel-testlogs/
if [ "$build_rc" -ne 0 ] || [ "$test_rc" -ne 0 ]; then
  [ "$failed" -gt 0 ] || failed=1  # a target that failed to build or crashed counts too
fi

if [ "${KVPACK_SKIP_SANITIZERS:-0}" != 1 ]; then
  # The sanitizer builds use clang in an output base of their own (tests/fuzz/sanitizer_bazel.sh),
  # so they never evict the main build's outputs.
  sanitizer_bazel=tests/fuzz/sanitizer_bazel.sh
  # ASan+UBSan run of the tests the normal suite runs (no `gpu`, no `benchmark` targets), with
  # CUDA off (--config=clang-asan: no GPU code runs in CI anyway). Left out as well: tests
  # tagged `no_asan`, and //tests/overload:overload_test, whose assertions are latency and
  # server-RSS bounds that ASan's slowdown, shadow memory and quarantine break (measured:
  # refusal p99 4.6 s against its 3 s bound, RSS 525 MiB against 400 MiB).
  # Target patterns name the top-level folders, so that //... cannot wander into the main
  # output base through the workspace's bazel-* links.
  patterns=$(find . -mindepth 1 -maxdepth 1 -type d ! -name '.*' ! -name 'bazel-*' -printf '//%P/...\n' | sort)
  asan_start=$SECONDS
  # shellcheck disable=SC2086
  "$sanitizer_bazel" test "${bazel_flags[@]}" --config=clang-asan --build_tests_only \
    --test_tag_filters=-benchmark,-gpu,-no_asan -- $patterns -//tests/overload:overload_test
  asan_rc=$?
  before=$failed
  asan_logs=$("$sanitizer_bazel" info --config=clang-asan bazel-testlogs 2>/dev/null)
  [ -n "$asan_logs" ] && count_test_xml "$asan_logs/"
  if [ "$asan_rc" -ne 0 ] && [ "$failed" -eq "$before" ]; then failed=$((failed + 1)); fi
  echo "ASan+UBSan tests took $((SECONDS - asan_start)) s"

  # Every fuzz target for a bounded time, from its checked-in corpus.
  fuzz_start=$SECONDS
  fuzz_out=$(mktemp)
  fuzz_work=$(mktemp -d /tmp/kvpack-fuzz.XXXXXX)
  FUZZ_WORK_DIR=$fuzz_work tests/fuzz/run_fuzzers.sh "${KVPACK_FUZZ_SECONDS:-30}" 1 2>&1 |
    tee "$fuzz_out"
  fuzz_rc=${PIPESTATUS[0]}
  # Kept when a target failed: it holds the saved inputs and logs the report names.
  [ "$fuzz_rc" -eq 0 ] && rm -rf "$fuzz_work"
  fuzz_passed=$(grep -c '^fuzz: PASS ' "$fuzz_out")
  fuzz_failed=$(grep '^fuzz: FAIL ' "$fuzz_out" | awk '{print $3}' | sort -u | wc -l)
  rm -f "$fuzz_out"
  passed=$((passed + fuzz_passed))
  failed=$((failed + fuzz_failed))
  if [ "$fuzz_rc" -ne 0 ] && [ "$fuzz_failed" -eq 0 ]; then failed=$((failed + 1)); fi
  echo "fuzzing took $((SECONDS - fuzz_start)) s"
  [ -n "${CI:-}" ] && "$sanitizer_bazel" shutdown
fi

[ -n "${CI:-}" ] && bazel shutdown
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
