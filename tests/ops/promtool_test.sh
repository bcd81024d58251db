#!/usr/bin/env bash
# deploy/prometheus: the alert rules pass `promtool check rules` and their unit tests
# (`promtool test rules`), and the dashboard JSON parses with every panel target holding an
# expression.
#   promtool_test.sh ALERTS ALERTS_TEST DASHBOARD
set -euo pipefail
alerts=$(realpath "$1"); alerts_test=$(realpath "$2"); dashboard=$(realpath "$3")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/promtool-XXXXXX")
# promtool resolves rule_files relative to the test file: put both side by side.
cp "$alerts" "$alerts_test" "$work/"
promtool check rules "$work/$(basename "$alerts")"
promtool test rules "$work/$(basename "$alerts_test")"
/usr/bin/python3 - "$dashboard" <<'PY'
import json, sys
dash = json.load(open(sys.argv[1]))
targets = [t for p in dash["panels"] for t in p.get("targets", [])]
assert targets, "no panel targets"
for t in targets:
    assert t.get("expr", "").strip(), f"empty expression in {t}"
print(f"dashboard: {len(dash['panels'])} panels, {len(targets)} expressions")
PY
