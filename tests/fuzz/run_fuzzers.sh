#!/usr/bin/env bash
# Runs every kvpack fuzz target for a bounded time and reports, per target, executions,
# exec/s, coverage and crashes. Exits non-zero when any target crashed, leaked, timed out or
# ran out of memory (libFuzzer saves the input: the report says where and how to replay it).
#
# usage: tests/fuzz/run_fuzzers.sh SECONDS_PER_TARGET [JOBS]
#        tests/fuzz/run_fuzzers.sh --bundle DIR
#
#   SECONDS_PER_TARGET  wall time each target runs (libFuzzer -max_total_time)
#   JOBS                fuzzing processes per target (default 1). They share the target's
#                       growing corpus, so a 16-core machine runs e.g. `... 3600 16`.
#   --bundle DIR        builds the targets and packs them into DIR with their shared libraries
#                       (all but the C/C++ runtime), the seed corpus, the dictionaries and this
#                       script, to run on another machine: `DIR/run_fuzzers.sh 3600 16`.
#
# Environment (all optional):
#   FUZZ_BIN_DIR       the fuzz binaries. Default: in a bundle, its bin/; else they are built
#                      here (tests/fuzz/sanitizer_bazel.sh build --config=fuzz).
#   FUZZ_CORPUS_DIR    seed corpus, one subdirectory per target, only read (default
#                      tests/fuzz/corpus, or the bundle's corpus/).
#   FUZZ_DICT_DIR      libFuzzer dictionaries, <target>.dict (default tests/fuzz/dict).
#   FUZZ_WORK_DIR      per target: the corpus grown by this run, logs, saved crash inputs
#                      (default: a new directory under /tmp; kept, and named at the end).
#   FUZZ_TARGETS       space-separated target names to run (default: every *_fuzzer binary).
#   FUZZ_RSS_LIMIT_MB  per process (default 2048); FUZZ_TIMEOUT_S per input (default 30).
#   FUZZ_MERGE=1       at the end, also write a minimized corpus to <work>/<target>/merged.
#
# Every output line about a target starts with "fuzz: PASS <target>" or "fuzz: FAIL <target>";
# tools/test.sh counts them.
set -uo pipefail

here=$(cd "$(dirname "$0")" && pwd)
bundle=""
if [ "${1:-}" = "--bundle" ]; then
  [ $# -eq 2 ] || { echo "usage: $0 --bundle DIR" >&2; exit 2; }
  bundle=$2
elif [ $# -lt 1 ] || [ $# -gt 2 ] || ! [[ "$1" =~ ^[0-9]+$ ]] || ! [[ "${2:-1}" =~ ^[1-9][0-9]*$ ]]; then
  sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//' >&2
  exit 2
fi
seconds=${1:-0}
jobs=${2:-1}

# In a bundle (bin/ beside this script) everything is relative to it.
if [ -z "${FUZZ_BIN_DIR:-}" ] && [ -d "$here/bin" ]; then
  FUZZ_BIN_DIR=$here/bin
  : "${FUZZ_CORPUS_DIR:=$here/corpus}"
  : "${FUZZ_DICT_DIR:=$here/dict}"
  [ -d "$here/lib" ] && export LD_LIBRARY_PATH="$here/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
: "${FUZZ_CORPUS_DIR:=$here/corpus}"
: "${FUZZ_DICT_DIR:=$here/dict}"
rss_limit=${FUZZ_RSS_LIMIT_MB:-2048}
timeout_s=${FUZZ_TIMEOUT_S:-30}

# Builds the fuzz binaries in the sanitizer output base; sets FUZZ_BIN_DIR.
build_targets() {
  local bazel=("$here/sanitizer_bazel.sh") flags=(--config=fuzz) targets bin
  [ -n "${CI:-}" ] && flags+=(--noshow_progress)
  targets=$("${bazel[@]}" query --noshow_progress 'attr(tags, "\bfuzz\b", //tests/fuzz:*)' 2>/dev/null) \
    || { echo "fuzz: cannot list the fuzz targets (bazel query failed)" >&2; return 1; }
  # shellcheck disable=SC2086
  "${bazel[@]}" build "${flags[@]}" $targets || { echo "fuzz: build failed" >&2; return 1; }
  bin=$("${bazel[@]}" info "${flags[@]}" bazel-bin 2>/dev/null) || return 1
  FUZZ_BIN_DIR=$bin/tests/fuzz
}

if [ -z "${FUZZ_BIN_DIR:-}" ]; then
  build_targets || { echo "fuzz: FAIL build: the fuzz targets did not build"; exit 1; }
fi

if [ -z "${FUZZ_TARGETS:-}" ]; then
  FUZZ_TARGETS=$(cd "$FUZZ_BIN_DIR" && for f in *_fuzzer; do [ -x "$f" ] && echo "$f"; done | sort | tr '\n' ' ')
fi
[ -n "${FUZZ_TARGETS// /}" ] || { echo "fuzz: FAIL none: no *_fuzzer binaries in $FUZZ_BIN_DIR"; exit 1; }

if [ -n "$bundle" ]; then
  rm -rf "$bundle" && mkdir -p "$bundle/bin" "$bundle/lib" "$bundle/corpus" "$bundle/dict" || exit 1
  for t in $FUZZ_TARGETS; do
    cp -L "$FUZZ_BIN_DIR/$t" "$bundle/bin/"
    ldd "$FUZZ_BIN_DIR/$t" | awk '/=> \// {print $3}' | while read -r lib; do
      case "$(basename "$lib")" in
        libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++.so*|libgcc_s.so*) ;;
        *) [ -e "$bundle/lib/$(basename "$lib")" ] || cp -L "$lib" "$bundle/lib/";;
      esac
    done
    [ -d "$FUZZ_CORPUS_DIR/$t" ] && cp -r "$FUZZ_CORPUS_DIR/$t" "$bundle/corpus/"
    [ -f "$FUZZ_DICT_DIR/$t.dict" ] && cp "$FUZZ_DICT_DIR/$t.dict" "$bundle/dict/"
  done
  cp "$0" "$bundle/run_fuzzers.sh"
  echo "fuzz: bundled $(echo $FUZZ_TARGETS | wc -w) targets into $bundle ($(du -sh "$bundle" | cut -f1))"
  echo "run there: $bundle/run_fuzzers.sh SECONDS_PER_TARGET JOBS   (FUZZ_WORK_DIR=... to keep results)"
  exit 0
fi

work=${FUZZ_WORK_DIR:-$(mktemp -d /tmp/kvpack-fuzz.XXXXXX)}
mkdir -p "$work" || exit 1
export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=0:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

# Sums the `stat::NAME: value` lines of the given libFuzzer logs.
sum_stat() {
  local name=$1; shift
  cat "$@" 2>/dev/null | awk -v n="stat::$name:" '$1 == n {s += $2} END {print s + 0}'
}

passed=0; failed=0
echo "fuzz: ${seconds}s x ${jobs} job(s) per target; work dir $work"
for t in $FUZZ_TARGETS; do
  bin=$FUZZ_BIN_DIR/$t
  dir=$work/$t
  mkdir -p "$dir/corpus" "$dir/artifacts"
  rm -f "$dir"/log.* "$dir"/cpu.*
  seeds=()
  [ -d "$FUZZ_CORPUS_DIR/$t" ] && seeds=("$FUZZ_CORPUS_DIR/$t")
  options=(-max_total_time="$seconds" -rss_limit_mb="$rss_limit" -timeout="$timeout_s"
           -print_final_stats=1 -artifact_prefix="$dir/artifacts/")
  [ -f "$FUZZ_DICT_DIR/$t.dict" ] && options+=(-dict="$FUZZ_DICT_DIR/$t.dict")
  if [ ! -x "$bin" ]; then
    echo "fuzz: FAIL $t: no binary $bin"; failed=$((failed + 1)); continue
  fi
  touch "$dir/started"  # crash inputs of earlier runs in the same work dir are not counted
  pids=()
  for ((j = 0; j < jobs; j++)); do
    # Each worker writes new inputs into the shared corpus (first directory) and reloads what
    # the others found; the seed corpus is only read.
    ( TIMEFORMAT='%3U %3S'
      time "$bin" "${options[@]}" "$dir/corpus" "${seeds[@]}" > "$dir/log.$j" 2>&1 ) 2> "$dir/cpu.$j" &
    pids+=($!)
  done
  bad_exit=0
  for pid in "${pids[@]}"; do wait "$pid" || bad_exit=$((bad_exit + 1)); done

  execs=$(sum_stat number_of_executed_units "$dir"/log.*)
  rate=$(sum_stat average_exec_per_sec "$dir"/log.*)
  cpu=$(cat "$dir"/cpu.* 2>/dev/null | awk 'NF == 2 {s += $1 + $2} END {printf "%.0f", s}')
  # Coverage of everything this run kept: replay the merged corpus once.
  cov_line=$("$bin" -runs=0 -rss_limit_mb="$rss_limit" -timeout="$timeout_s" \
             "$dir/corpus" "${seeds[@]}" 2>&1 | grep -m1 'INITED\|DONE' || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$cov_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$cov_line")
  inputs=$(find "$dir/corpus" "${seeds[@]}" -type f | wc -l)
  mapfile -t found < <(find "$dir/artifacts" -type f -newer "$dir/started" \( -name 'crash-*' \
                          -o -name 'leak-*' -o -name 'timeout-*' -o -name 'oom-*' \) | sort)
  summary="${execs} execs, ${rate} exec/s, ${cpu}s CPU (${jobs} x ${seconds}s), cov ${cov:-?} ft ${ft:-?}, ${inputs} inputs, ${#found[@]} crashes"
  if [ "$bad_exit" -eq 0 ] && [ "${#found[@]}" -eq 0 ]; then
    echo "fuzz: PASS $t: $summary"
    passed=$((passed + 1))
  else
    echo "fuzz: FAIL $t: $summary, $bad_exit process(es) failed"
    failed=$((failed + 1))
    grep -h -m3 -E 'invariant failed|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error|SUMMARY' \
      "$dir"/log.* | sed "s/^/fuzz: FAIL $t:   /"
    for f in "${found[@]}"; do echo "fuzz: FAIL $t:   saved input $f (replay: $bin $f)"; done
    echo "fuzz: FAIL $t:   logs: $dir/log.*"
  fi
  if [ "${FUZZ_MERGE:-0}" = 1 ]; then
    mkdir -p "$dir/merged"
    "$bin" -merge=1 -rss_limit_mb="$rss_limit" -timeout="$timeout_s" "$dir/merged" \
      "$dir/corpus" "${seeds[@]}" > "$dir/merge.log" 2>&1
    echo "fuzz: merged corpus of $t: $(find "$dir/merged" -type f | wc -l) inputs in $dir/merged"
  fi
done
echo "fuzz: ${passed} targets passed, ${failed} failed (work dir $work)"
[ "$failed" -eq 0 ]
