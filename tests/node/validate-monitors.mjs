// Validates Prometheus Operator objects against the operator's API schemas,
// as compiled into @kubernetes-models/prometheus-operator (generated from
// prometheus-operator's pkg/apis/monitoring Go types, the source of its CRDs).
//
// usage: node validate-monitors.mjs < documents.json
//   stdin: a JSON array of objects (tests/deploy.rs converts the YAML).
// Prints one line per object; exits 1 if any object is invalid or of a kind
// this script does not know.
import { readFileSync } from "node:fs";
import { PodMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PodMonitor";
import { ServiceMonitor } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor";
import { PrometheusRule } from "@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule";

const kinds = { PodMonitor, ServiceMonitor, PrometheusRule };
const docs = JSON.parse(readFileSync(0, "utf8"));
let failed = 0;
for (const doc of docs) {
  const name = `${doc.kind}/${doc.metadata?.name}`;
  if (doc.apiVersion !== "monitoring.coreos.com/v1" || !(doc.kind in kinds)) {
    console.log(`FAIL ${name}: not a monitoring.coreos.com/v1 kind this script knows (${doc.apiVersion})`);
    failed++;
    continue;
  }
  try {
    new kinds[doc.kind](doc).validate();
    console.log(`OK ${name}`);
  } catch (e) {
    console.log(`FAIL ${name}: ${e.message}`);
    if (e.errors) console.log(JSON.stringify(e.errors, null, 1));
    failed++;
  }
}
process.exit(failed ? 1 : 0);
