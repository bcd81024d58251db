#!/usr/bin/env bash
# The operator's path: kvpack_server started with no flags at all (defaults: 127.0.0.1:50051,
# /metrics on 127.0.0.1:9464, ./kvpack-data), driven by the kvpack CLI; SIGTERM drains and
# exits 0; a restarted server still has the durable block.
set -euo pipefail
server_bin=$(realpath "$1")
cli_bin=$(realpath "$2")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/server-cli-XXXXXX")
cd "$work"

fail() { echo "FAIL: $*" >&2; [ -f server.log ] && sed 's/^/  server: /' server.log >&2; exit 1; }

start_server() {
  "$server_bin" >server.log 2>&1 &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q "serving on port" server.log 2>/dev/null && return 0
    kill -0 "$server_pid" 2>/dev/null || fail "server exited at start"
    sleep 0.1
  done
  fail "server did not start"
}

stop_server() {
  kill -TERM "$server_pid"
  local rc=0
  wait "$server_pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "server exited with $rc on SIGTERM"
  grep -q "stopped cleanly" server.log || fail "no clean-stop message"
}

start_server
[ -d kvpack-data ] || fail "default data directory ./kvpack-data was not created"

# 2 layers x 2 kv heads x 64 head_dim x 8 tokens, bf16 = 8192 bytes.
python3 - <<'PY'
import random, struct
random.seed(1)
vals = [random.gauss(0, 1) for _ in range(4096)]
raw = b"".join(struct.pack("<f", v)[2:] for v in vals)  # truncate fp32 to bf16
open("block.bin", "wb").write(raw)
PY
key=00112233445566778899aabbccddeeff
shape=(--layers=2 --kv_heads=2 --head_dim=64 --tokens=8 --dtype=bf16)
"$cli_bin" --namespace=cli put --key=$key "${shape[@]}" --input=block.bin --codec=raw --durable \
  || fail "put"
"$cli_bin" --namespace=cli get --key=$key --output=out.bin || fail "get"
cmp block.bin out.bin || fail "raw round trip differs"
# Outputs go to files before grep: with pipefail, `grep -q` closing the pipe early makes the
# writer die of SIGPIPE and the pipeline fail even though the text was there.
"$cli_bin" --namespace=cli lookup --keys=$key,ffff >lookup.txt || fail "lookup"
grep -q "1" lookup.txt || fail "lookup printed: $(cat lookup.txt)"
"$cli_bin" stats >stats.txt || fail "stats"
curl -sf --noproxy '*' -o metrics.txt http://127.0.0.1:9464/metrics || fail "/metrics: curl exit $?"
grep -q kvpack_requests_total metrics.txt || fail "/metrics has no kvpack_requests_total"

# Bad input: a clear message and a non-zero exit, and the server keeps serving.
if "$cli_bin" --namespace=cli put --key=$key "${shape[@]}" --tokens=9 --input=block.bin \
     >bad.txt 2>&1; then
  fail "a payload that does not match its shape was accepted"
fi
grep -qi "bytes" bad.txt || fail "unclear error for a wrong payload size: $(cat bad.txt)"
if "$cli_bin" --namespace=cli put --key=$key "${shape[@]}" --input=block.bin --codec=zip9 \
     >bad.txt 2>&1; then
  fail "an unknown codec was accepted"
fi
grep -q "zip9" bad.txt || fail "unclear error for an unknown codec: $(cat bad.txt)"

for cmd in put get lookup delete stats; do
  "$cli_bin" $cmd --help >help.txt 2>&1 || fail "$cmd --help exited non-zero"
  grep -q -- "--" help.txt || fail "$cmd --help lists no flags"
done

stop_server
start_server
"$cli_bin" --namespace=cli get --key=$key --output=after.bin || fail "get after restart"
cmp block.bin after.bin || fail "durable block changed across a restart"
"$cli_bin" --namespace=cli delete --keys=$key || fail "delete"
if "$cli_bin" --namespace=cli get --key=$key --output=gone.bin 2>/dev/null; then
  fail "a deleted block was served"
fi
stop_server
echo "PASS"
