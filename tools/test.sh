#!/usr/bin/env bash
# Builds kvpack and runs its whole test suite (unit, integration and end-to-end tests; GPU
# tests and benchmarks are tagged and skipped here — tests/gpu/README.md says how to run
# them). Installs the Debian packages it needs first. Ends with one line
# "N passed, M failed" counted from the tests' own reports.
set -uo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh || exit 1

bazel_flags=()
[ -n "${CI:-}" ] && bazel_flags+=(--noshow_progress)
bazel build "${bazel_flags[@]}" //... ; build_rc=$?
bazel test "${bazel_flags[@]}" //... ; test_rc=$?

# Count test cases from the gtest XML reports that Bazel keeps for every test target.
passed=0; failed=0
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
done < <(find -L bazel-testlogs/ -name test.xml 2>/dev/null)
if [ "$build_rc" -ne 0 ] || [ "$test_rc" -ne 0 ]; then
  [ "$failed" -gt 0 ] || failed=1  # a target that failed to build or crashed counts too
fi
[ -n "${CI:-}" ] && bazel shutdown
echo "${passed} passed, ${failed} failed"
[ "$failed" -eq 0 ]
