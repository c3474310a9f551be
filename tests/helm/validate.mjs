// Validate rendered Kubernetes manifests (multi-document YAML on stdin or in
// a file) against the Kubernetes API schemas shipped by `kubernetes-models`,
// offline. Exits 1 naming each invalid object; 0 when all are valid.
// Also enforces chart conventions: standard app.kubernetes.io labels on
// every object and minimal selector labels; and limits the API does not
// check at admission: label values of at most 63 characters, StatefulSet
// names of at most 52.
import { readFileSync } from "node:fs";
import { parseAllDocuments } from "yaml";

const src = readFileSync(process.argv[2] ?? 0, "utf8");
const docs = parseAllDocuments(src).map((d) => d.toJS()).filter((o) => o && o.kind);

const required = [
  "app.kubernetes.io/name",
  "app.kubernetes.io/instance",
  "app.kubernetes.io/component",
  "app.kubernetes.io/managed-by",
  "helm.sh/chart",
];

function modulePath(apiVersion) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  return group ? `kubernetes-models/${group}/${version}` : `kubernetes-models/${version}`;
}

let failures = 0;
const kinds = {};
for (const obj of docs) {
  const where = `${obj.kind}/${obj.metadata?.name ?? "?"}`;
  kinds[obj.kind] = (kinds[obj.kind] ?? 0) + 1;
  let mod;
  try {
    mod = await import(modulePath(obj.apiVersion));
  } catch (e) {
    console.error(`${where}: unknown apiVersion ${obj.apiVersion}`);
    failures++;
    continue;
  }
  const Cls = mod[obj.kind];
  if (!Cls) {
    console.error(`${where}: unknown kind in ${obj.apiVersion}`);
    failures++;
    continue;
  }
  try {
    new Cls(obj).validate();
  } catch (e) {
    console.error(`${where}: ${e.message}`);
    failures++;
  }
  const labels = obj.metadata?.labels ?? {};
  for (const key of required) {
    if (!labels[key]) {
      console.error(`${where}: missing label ${key}`);
      failures++;
    }
  }
  // Label values are at most 63 characters, on the object and its pods.
  const podLabels = obj.spec?.template?.metadata?.labels ?? {};
  for (const [key, value] of [...Object.entries(labels), ...Object.entries(podLabels)]) {
    if (String(value).length > 63) {
      console.error(`${where}: label ${key} is ${String(value).length} characters (63 at most)`);
      failures++;
    }
  }
  // The StatefulSet controller labels each pod controller-revision-hash=
  // <name>-<10-character hash>: a longer name never gets a pod.
  if (obj.kind === "StatefulSet" && obj.metadata.name.length > 52) {
    console.error(`${where}: name is ${obj.metadata.name.length} characters (52 at most)`);
    failures++;
  }
  const sel = obj.spec?.selector?.matchLabels;
  if (sel && Object.keys(sel).some((k) => !k.startsWith("app.kubernetes.io/"))) {
    console.error(`${where}: selector has non-standard labels ${JSON.stringify(sel)}`);
    failures++;
  }
}
if (docs.length === 0) {
  console.error("no Kubernetes objects found");
  failures++;
}
console.log(`validated ${docs.length} objects: ${JSON.stringify(kinds)}`);
process.exit(failures ? 1 : 0);
