#!/usr/bin/env bash
# kvpack_server --config end to end: deploy/config/kvpack.yaml names every flag the server has
# (but --config itself) and runs the server as it is; the command line overrides the file; a
# bad file stops the server with a message naming the file and the line.
#   config_file_test.sh SERVER EXAMPLE_CONFIG
set -euo pipefail
server_bin=$(realpath "$1"); example=$(realpath "$2")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/config-XXXXXX")
cd "$work"
fail() { echo "FAIL: $*" >&2; [ -f server.log ] && sed 's/^/  server: /' server.log >&2; exit 1; }

# Every flag of service/main.cc has its key in the example.
"$server_bin" --helpfull >help.txt 2>&1 || true
sed -n '/Flags from service\/main.cc/,/Flags from /p' help.txt \
  | sed -n 's/^ *--\([a-z0-9_]*\) .*/\1/p' | grep -v '^config$' | sort >flags.txt
[ "$(wc -l <flags.txt)" -ge 20 ] || fail "found only $(wc -l <flags.txt) flags in --helpfull"
sed -n 's/^\([a-z0-9_]*\):.*/\1/p' "$example" | sort >keys.txt
missing=$(comm -23 flags.txt keys.txt)
[ -z "$missing" ] || fail "flags missing from deploy/config/kvpack.yaml: $missing"
extra=$(comm -13 flags.txt keys.txt)
[ -z "$extra" ] || fail "keys of deploy/config/kvpack.yaml that are no flag: $extra"

run_server() {  # run_server ARGS...: starts, waits for the serving line, stops it
  "$server_bin" "$@" >server.log 2>&1 &
  local pid=$!
  for _ in $(seq 100); do
    grep -q "serving on port" server.log && break
    kill -0 $pid 2>/dev/null || break
    sleep 0.1
  done
  grep -q "serving on port" server.log || { kill $pid 2>/dev/null; fail "server did not start: $*"; }
  kill -TERM $pid
  wait $pid || fail "server exited non-zero on SIGTERM"
}

# The example as it is (only its ports and directory moved for the test).
run_server --config="$example" --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 --data_dir=d1
grep -q -- "--config $example: [0-9]* keys" server.log || fail "no config line"
grep -q "codec int8, device cpu, ram 1GiB, disk 16GiB" server.log || fail "example's values"

# The file sets values; the command line overrides them (before or after --config).
cat >my.yaml <<YAML
listen: 127.0.0.1:0
metrics_listen: ""
data_dir: $work/d2
codec: raw
ram_capacity: 3MiB
disk_capacity: 5MiB
YAML
run_server --config=my.yaml
grep -q "data in $work/d2, codec raw, device .*, ram 3MiB, disk 5MiB" server.log \
  || fail "file values not applied"
run_server --ram_capacity=7MiB --config my.yaml --codec=int8
grep -q "codec int8, .*ram 7MiB, disk 5MiB" server.log || fail "command line did not override"

# A bad file: exit 1, the message names the file, the line and the key.
expect_refusal() {  # expect_refusal TEXT MESSAGE
  printf '%s\n' "$1" >bad.yaml
  if "$server_bin" --config=bad.yaml --listen=127.0.0.1:0 --metrics_listen= >server.log 2>&1; then
    fail "server accepted: $1"
  fi
  grep -qF -- "$2" server.log || fail "no '$2' in: $(cat server.log)"
}
expect_refusal $'codec: raw\nram_capcity: 1GiB' "bad.yaml:2: unknown key 'ram_capcity'"
expect_refusal $'ram_capacity: lots' "--ram_capacity: "
expect_refusal $'worker_threads: two' "bad.yaml:1: worker_threads: 'two'"
expect_refusal $'listen: [a, b]' "bad.yaml:1: listen: expected a single value, not a list"
if "$server_bin" --config=/nonexistent.yaml >server.log 2>&1; then fail "missing file accepted"; fi
grep -q "cannot read --config /nonexistent.yaml" server.log || fail "missing file: $(cat server.log)"
echo PASS
