#!/usr/bin/env bash
# deploy/helm/kvpack with a real helm (tools/ops/install.sh): `helm lint --strict` and
# `helm template` with the default and the production values, every rendered object validated
# against the Kubernetes API schemas (validate_k8s.mjs), the chart's refusals of unsafe or
# malformed values, and the rendered config file accepted by kvpack_server --config.
#   helm_chart_test.sh CHART_FILE PRODUCTION_VALUES VALIDATOR SERVER
set -euo pipefail
chart=$(dirname "$(realpath "$1")")
production=$(realpath "$2"); validator=$(realpath "$3"); server_bin=$(realpath "$4")
tools=${KVPACK_OPS_TOOLS:-/opt/kvpack-ops-tools}
helm="$tools/helm/helm"
[ -x "$helm" ] || { echo "FAIL: no $helm: run tools/ops/install.sh (tools/setup.sh does)"; exit 1; }
work=$(mktemp -d "${TEST_TMPDIR:-/tmp}/helm-XXXXXX")
cd "$work"
export HOME="$work" XDG_CACHE_HOME="$work/cache" XDG_CONFIG_HOME="$work/config" XDG_DATA_HOME="$work/data"
fail() { echo "FAIL: $*" >&2; exit 1; }
cp "$validator" validate_k8s.mjs
ln -s "$tools/node_modules" node_modules

"$helm" lint --strict "$chart" || fail "helm lint (default values)"
"$helm" lint --strict -f "$production" "$chart" || fail "helm lint (production values)"

for values in default production; do
  args=()
  [ "$values" = production ] && args=(-f "$production")
  "$helm" template kvpack "$chart" --namespace kv "${args[@]}" >"$values.yaml" \
    || fail "helm template ($values values)"
  echo "== $values values"
  node validate_k8s.mjs "$values.yaml" || fail "invalid objects with $values values"
done

# What the production values must have produced.
grep -q 'nvidia.com/gpu: 1' production.yaml || fail "no GPU limit in production"
grep -q 'kind: ServiceMonitor' production.yaml || fail "no ServiceMonitor in production"
grep -q 'kind: PodDisruptionBudget' production.yaml || fail "no PodDisruptionBudget in production"
grep -q 'secretName: kvpack-tls' production.yaml || fail "TLS secret not mounted in production"
grep -q 'tls_client_ca: /etc/kvpack/tls/ca.crt' production.yaml || fail "no client CA in production config"
grep -q 'kind: ServiceMonitor' default.yaml && fail "ServiceMonitor rendered by default"
grep -q 'kind: Secret$' default.yaml production.yaml && fail "the chart must not create Secrets"

# Calibration files: mounted from the given volume and listed in the config.
"$helm" template kvpack "$chart" --namespace kv --set-json 'calibrations.files=["m1.kvcal","m2.kvcal"]' \
  --set-json 'calibrations.volume={"persistentVolumeClaim":{"claimName":"kvpack-calibrations"}}' \
  >calibrated.yaml || fail "helm template (calibrations)"
node validate_k8s.mjs calibrated.yaml || fail "invalid objects with calibrations"
grep -q 'calibrations: /etc/kvpack/calibrations/m1.kvcal,/etc/kvpack/calibrations/m2.kvcal' \
  calibrated.yaml || fail "calibrations not in the config: $(grep -n calibrations calibrated.yaml)"
grep -q 'mountPath: /etc/kvpack/calibrations' calibrated.yaml || fail "calibrations not mounted"
grep -q 'claimName: kvpack-calibrations' calibrated.yaml || fail "calibrations volume missing"
grep -q 'calibrations' default.yaml && fail "calibrations rendered by default"

# Values the chart must refuse, each with its reason.
refuse() {
  local why=$1; shift
  if "$helm" template kvpack "$chart" "$@" >refused.txt 2>&1; then
    fail "accepted: $* ($why)"
  fi
  grep -qi -- "$why" refused.txt || fail "refused $* without saying '$why': $(cat refused.txt)"
}
refuse "greater than or equal to 1" --set replicas=0
refuse "tls.secretName" --set tls.enabled=true
refuse "insecure.plaintextOnNetwork" --set insecure.plaintextOnNetwork=false
refuse "insecure.noAuthOnNetwork" --set insecure.noAuthOnNetwork=false
refuse "Must not validate" --set config.listen=0.0.0.0:1
refuse "Additional property" --set config.no_such_key=1
refuse "device" --set config.device=tpu
refuse "calibrations.volume" --set-json 'calibrations.files=["m.kvcal"]'
refuse "Additional property" --set config.calibrations=/x.kvcal
refuse "does not match pattern" --set-json 'calibrations.files=["../m.kvcal"]'

# The config file in the default ConfigMap runs kvpack_server (loopback ports for the test).
/usr/bin/python3 - default.yaml >kvpack.yaml <<'PY'
import sys, yaml
for doc in yaml.safe_load_all(open(sys.argv[1])):
    if doc and doc["kind"] == "ConfigMap":
        print(doc["data"]["kvpack.yaml"], end="")
PY
grep -q '^ram_capacity: 1GiB' kvpack.yaml || fail "unexpected config: $(cat kvpack.yaml)"
"$server_bin" --config=kvpack.yaml --listen=127.0.0.1:0 --metrics_listen=127.0.0.1:0 \
  --data_dir="$work/data-dir" >server.log 2>&1 &
pid=$!
for _ in $(seq 100); do grep -q "serving on port" server.log && break; sleep 0.1; done
grep -q "serving on port.*codec int8.*ram 1GiB, disk 16GiB" server.log \
  || { kill $pid 2>/dev/null; fail "server with the chart's config: $(cat server.log)"; }
kill -TERM $pid; wait $pid || fail "server exited non-zero"
echo "PASS"
