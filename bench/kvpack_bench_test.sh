#!/usr/bin/env bash
# kvpack_bench against a real kvpack_server on a free port: each codec/want combination that
# bench/run_e2e.sh runs prints its put, get and compression lines and exits 0; a bad command
# line exits 2 and an unreachable server exits 1, each with a message.
set -euo pipefail
server_bin=$(realpath "$1")
bench_bin=$(realpath "$2")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/kvpack-bench-XXXXXX")
cd "$work"

server_pid=""
cleanup() { [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null; wait 2>/dev/null || true; }
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; [ -f server.log ] && sed 's/^/  server: /' server.log >&2; exit 1; }

"$server_bin" --listen=127.0.0.1:0 --metrics_listen= --data_dir=data >server.log 2>&1 &
server_pid=$!
port=""
for _ in $(seq 100); do
  port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' server.log 2>/dev/null)
  [ -n "$port" ] && break
  kill -0 "$server_pid" 2>/dev/null || fail "server exited at start"
  sleep 0.1
done
[ -n "$port" ] || fail "server did not start"

# 2 layers x 2 kv heads x 64 head_dim x 16 tokens, bf16: 16 KiB blocks.
shape=(--layers=2 --kv_heads=2 --head_dim=64 --tokens=16)
for run in "raw decoded" "int8 decoded" "int8 encoded"; do
  set -- $run
  "$bench_bin" --server=127.0.0.1:$port --namespace=bench-test --blocks=16 --concurrency=4 \
    --codec=$1 --want=$2 "${shape[@]}" >out.txt 2>err.txt ||
    fail "codec=$1 want=$2 exited non-zero: $(cat err.txt)"
  for phase in put get; do
    grep -Eq "^$phase: [0-9.]+ GB/s  p50 [0-9.]+ ms  p99 [0-9.]+ ms  \(16 ops" out.txt ||
      fail "codec=$1 want=$2: no $phase line in: $(cat out.txt)"
  done
  grep -q "^compression: " out.txt || fail "codec=$1 want=$2: no compression line"
done

# One phase at a time: a put leaves its blocks under its run id; a get of that run finds them
# all (verified raw bytes), a get of another run finds none.
"$bench_bin" --server=127.0.0.1:$port --namespace=phases --blocks=8 --codec=raw --phases=put \
  --run_id=77 "${shape[@]}" >out.txt 2>err.txt || fail "--phases=put: $(cat err.txt)"
grep -q "^put: " out.txt && ! grep -q "^get: " out.txt || fail "--phases=put ran: $(cat out.txt)"
"$bench_bin" --server=127.0.0.1:$port --namespace=phases --blocks=8 --codec=raw --phases=get \
  --run_id=77 "${shape[@]}" >out.txt 2>err.txt || fail "--phases=get: $(cat err.txt)"
grep -q "^get: .*(8 ops" out.txt && ! grep -q "^put: " out.txt || fail "--phases=get: $(cat out.txt)"
rc=0
"$bench_bin" --server=127.0.0.1:$port --namespace=phases --blocks=8 --phases=get --run_id=78 \
  "${shape[@]}" >/dev/null 2>err.txt || rc=$?
[ "$rc" -eq 1 ] && grep -q "not found" err.txt || fail "a get of another run: rc $rc, $(cat err.txt)"
rc=0
"$bench_bin" --server=127.0.0.1:$port --phases=get "${shape[@]}" 2>err.txt || rc=$?
[ "$rc" -eq 2 ] || fail "--phases=get without --run_id exited $rc, want 2"

"$bench_bin" --help >help.txt || fail "--help exited non-zero"
grep -q -- "--concurrency" help.txt || fail "--help lists no --concurrency"
grep -q -- "--server" help.txt || fail "--help lists no global --server"

rc=0
"$bench_bin" --server=127.0.0.1:$port --want=sideways "${shape[@]}" 2>err.txt || rc=$?
[ "$rc" -eq 2 ] || fail "--want=sideways exited $rc, want 2"
grep -q "sideways" err.txt || fail "unclear error for a bad --want: $(cat err.txt)"
rc=0
"$bench_bin" --bogus_flag 2>err.txt || rc=$?
[ "$rc" -eq 2 ] || fail "an unknown flag exited $rc, want 2"

kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
rc=0
"$bench_bin" --server=127.0.0.1:$port --connect_timeout=0.5 --timeout=2 --blocks=1 \
  "${shape[@]}" >/dev/null 2>err.txt || rc=$?
[ "$rc" -eq 1 ] || fail "an unreachable server exited $rc, want 1"
grep -q "^kvpack_bench: UNAVAILABLE\|^kvpack_bench: DEADLINE_EXCEEDED" err.txt ||
  fail "unclear error for an unreachable server: $(cat err.txt)"
echo PASS
