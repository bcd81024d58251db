#!/usr/bin/env bash
# The operator's path with authentication: kvpack_token makes tokens and their lines,
# kvpack_server --auth_tokens enforces them, the kvpack CLI sends one with --token_file, SIGHUP
# reloads the file (a malformed one is refused and the old grants stay), and a malformed file
# at startup is an error naming its line.
set -euo pipefail
server_bin=$(realpath "$1")
cli_bin=$(realpath "$2")
token_bin=$(realpath "$3")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/token-cli-XXXXXX")
cd "$work"

fail() { echo "FAIL: $*" >&2; [ -f server.log ] && sed 's/^/  server: /' server.log >&2; exit 1; }

# Waits until server.log has matched $1 more than $2 times.
await_log() {
  for _ in $(seq 100); do
    [ "$(grep -c "$1" server.log || true)" -gt "$2" ] && return 0
    sleep 0.1
  done
  fail "no '$1' in the server's log"
}

"$token_bin" new --rights=read,write,delete --namespaces=cli --token_out=tok1 >line1 \
  2>new.err || fail "kvpack_token new"
grep -q "^sha256:[0-9a-f]\{64\} read,write,delete cli$" line1 || fail "line: $(cat line1)"
[ "$(stat -c %a tok1)" = 600 ] || fail "token file mode $(stat -c %a tok1)"
grep -q "$(cat tok1)" line1 && fail "the grant line holds the token itself"
# `line` gives the same line for the same token.
"$token_bin" line --rights=read,write,delete --namespaces=cli <tok1 >line1b || fail "line"
cmp line1 line1b || fail "kvpack_token line differs from new's line"
# Without --token_out, the token then the line.
"$token_bin" new --rights=read --namespaces=cli >printed 2>/dev/null || fail "new, printed"
[ "$(wc -l <printed)" -eq 2 ] && grep -q "^kvp_" printed || fail "printed: $(cat printed)"
"$token_bin" new --rights=raed --namespaces=cli >/dev/null 2>&1 && fail "bad right accepted"

{ echo "# kvpack grants"; cat line1; } >tokens
"$server_bin" --listen=127.0.0.1:0 --metrics_listen= --data_dir=data --auth_tokens=tokens \
  --auth_reload_seconds=0 >server.log 2>&1 &
server_pid=$!
await_log "serving on port" 0
port=$(sed -n 's/.*serving on port \([0-9]*\).*/\1/p' server.log)
grep -q "tokens: 1 grants" server.log || fail "no grant count in the log"
cli=("$cli_bin" --server=127.0.0.1:$port --namespace=cli --connect_timeout=5)

python3 -c 'import os; open("block.bin","wb").write(os.urandom(8192))'
key=00112233445566778899aabbccddeeff
shape=(--layers=2 --kv_heads=2 --head_dim=64 --tokens=8 --dtype=bf16 --codec=raw)
if "${cli[@]}" put --key=$key "${shape[@]}" --input=block.bin >out 2>err; then
  fail "a put without a token was accepted"
fi
grep -q "UNAUTHENTICATED: no token" err || fail "no-token put said: $(cat err)"
"${cli[@]}" --token_file=tok1 put --key=$key "${shape[@]}" --input=block.bin >out 2>err \
  || fail "put with the token: $(cat err)"
"${cli[@]}" --token_file=tok1 get --key=$key --output=got.bin >out 2>err || fail "get: $(cat err)"
cmp block.bin got.bin || fail "round trip differs"
if "${cli[@]}" --token_file=tok1 --namespace=other lookup --keys=$key >out 2>err; then
  fail "a lookup outside the grant was accepted"
fi
grep -q PERMISSION_DENIED err || fail "outside the grant: $(cat err)"
"${cli[@]}" --token_file=tok1 stats >stats.txt 2>err || fail "stats: $(cat err)"
grep -q "^namespaces=cli$" stats.txt || fail "stats: $(cat stats.txt)"
grep -q "default_codec= " stats.txt || fail "a non-admin saw server-wide stats: $(cat stats.txt)"

# A second token, added while the server runs: SIGHUP puts it in force.
"$token_bin" new --rights=read --namespaces='cl*' --token_out=tok2 >line2 2>/dev/null
cat tokens line2 >tokens.new && mv tokens.new tokens
"${cli[@]}" --token_file=tok2 lookup --keys=$key >out 2>&1 && fail "tok2 worked before SIGHUP"
kill -HUP "$server_pid"
await_log "reloaded" 0
"${cli[@]}" --token_file=tok2 lookup --keys=$key >out 2>err || fail "tok2 after SIGHUP: $(cat err)"
grep -q "prefix_length=1" out || fail "lookup: $(cat out)"

# A malformed file: refused, logged with its line, the grants stay.
{ cat tokens; echo "sha256:nothex read cli"; } >tokens.new && mv tokens.new tokens
kill -HUP "$server_pid"
await_log "kept the grants in force" 0
grep -q "tokens:4: " server.log || fail "the log does not name the bad line"
"${cli[@]}" --token_file=tok1 lookup --keys=$key >out 2>err || fail "tok1 after a bad file"

kill -TERM "$server_pid"
wait "$server_pid" || fail "server exited with $? on SIGTERM"

# At startup a malformed file is an error naming the file and line.
if "$server_bin" --listen=127.0.0.1:0 --metrics_listen= --data_dir=data2 --auth_tokens=tokens \
     >start.log 2>&1; then
  fail "the server started with a malformed token file"
fi
grep -q "tokens:4: " start.log || fail "startup error: $(cat start.log)"
echo PASS
