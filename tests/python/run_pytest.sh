#!/usr/bin/env bash
# Installs python/ with pip into a fresh virtual environment (offline: --no-index,
# --no-build-isolation, the system's numpy and pytest through --system-site-packages), with
# libkvpack.so copied into the package, and runs tests/python/ against two real servers.
#   run_pytest.sh LIBKVPACK SERVER_BIN WITH_SERVERS PYTHON_DIR TESTS_DIR
set -euo pipefail
lib=$(readlink -f "$1"); server=$(readlink -f "$2"); with_servers=$(readlink -f "$3")
src=$(readlink -f "$4"); tests=$(readlink -f "$5")
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/kvpack-py-XXXXXX")
cp -rL "$src" "$work/python"
chmod -R u+w "$work/python"
cp "$lib" "$work/python/kvpack/libkvpack.so"
/usr/bin/python3 -m venv --system-site-packages "$work/venv"
"$work/venv/bin/pip" install --quiet --no-index --no-build-isolation "$work/python"
cd "$work"  # import the installed package, not the source tree
unset KVPACK_LIBRARY
"$with_servers" "$server" 2 "$work/venv/bin/python" -m pytest -q -p no:cacheprovider \
  "$tests"
