// Validates every object of a multi-document YAML file (helm template's output) against the
// Kubernetes API schemas of the npm package kubernetes-models (and the Prometheus Operator's
// for monitoring.coreos.com). Prints one line per object and a count by kind; exits 1 if any
// object is invalid or of a kind no schema covers.
//   node validate_k8s.mjs RENDERED.yaml   (run where node_modules holds tools/ops/package.json's)
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const file = process.argv[2];
const docs = parseAllDocuments(readFileSync(file, "utf8"));
let failures = 0;
const counts = {};
for (const doc of docs) {
  if (doc.errors.length > 0) {
    console.log(`FAIL YAML: ${doc.errors[0].message}`);
    failures++;
    continue;
  }
  const obj = doc.toJS();
  if (obj === null || obj === undefined) continue;  // an empty document
  const { apiVersion, kind } = obj;
  const name = `${kind} ${obj.metadata?.name} (${apiVersion})`;
  const module = apiVersion?.startsWith("monitoring.coreos.com/")
    ? `@kubernetes-models/prometheus-operator/${apiVersion}`
    : `kubernetes-models/${apiVersion}`;
  let model;
  try {
    model = (await import(module))[kind];
  } catch (e) {
    model = undefined;
  }
  if (typeof model !== "function") {
    console.log(`FAIL ${name}: no schema for this apiVersion and kind`);
    failures++;
    continue;
  }
  try {
    new model(obj).validate();
    console.log(`ok   ${name}`);
    counts[kind] = (counts[kind] ?? 0) + 1;
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    failures++;
  }
}
const total = Object.values(counts).reduce((a, b) => a + b, 0);
console.log(`${total} valid objects (${Object.entries(counts).map(([k, n]) => `${n} ${k}`).join(", ")}), ${failures} invalid`);
process.exit(failures > 0 || total === 0 ? 1 : 0);
