{{/* Chart name, truncated to the 63-character label limit. */}}
{{- define "shardq.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: release-chart unless the release already names the chart. */}}
{{- define "shardq.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Standard labels on every resource. Call with (dict "ctx" $ "component" "broker"). */}}
{{- define "shardq.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" }}
{{ include "shardq.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: shardq
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Minimal selector labels: name, instance, component. */}}
{{- define "shardq.selectorLabels" -}}
app.kubernetes.io/name: {{ include "shardq.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "shardq.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Secret and key holding the database DSN. */}}
{{- define "shardq.dbSecretName" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecret -}}
{{- else -}}
{{- printf "%s-db" (include "shardq.fullname" .) -}}
{{- end -}}
{{- end -}}

{{- define "shardq.dbSecretKey" -}}
{{- if .Values.database.existingSecret -}}
{{- .Values.database.existingSecretKey -}}
{{- else -}}
dsn
{{- end -}}
{{- end -}}

{{/* SHARDQ_DB from the Secret; with the in-chart PostgreSQL also
     PGPASSWORD, which libpq reads when the DSN carries no password. */}}
{{- define "shardq.dbEnv" -}}
- name: SHARDQ_DB
  valueFrom:
    secretKeyRef:
      name: {{ include "shardq.dbSecretName" . }}
      key: {{ include "shardq.dbSecretKey" . }}
{{- if and .Values.postgresql.enabled (not .Values.database.existingSecret) }}
- name: PGPASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "shardq.fullname" . }}-postgresql
      key: password
{{- end }}
{{- end -}}

{{- define "shardq.brokerHost" -}}
{{- printf "%s-broker" (include "shardq.fullname" .) -}}
{{- end -}}

{{/* A pool's StatefulSet (and headless Service) name, cut to 52
     characters: the StatefulSet controller labels each pod with
     controller-revision-hash=<name>-<10-character hash>, and a label value
     over 63 characters stops it creating any pod. Call with
     (dict "ctx" $ "pool" $pool). */}}
{{- define "shardq.workerName" -}}
{{- regexReplaceAll "-+$" (printf "%s-worker-%s" (include "shardq.fullname" .ctx) .pool.name | trunc 52) "" -}}
{{- end -}}

{{/* Fail the render when two pools would get one StatefulSet (their names
     alike, or the same in their first 52 characters with the prefix). */}}
{{- define "shardq.checkWorkerNames" -}}
{{- $seen := dict -}}
{{- range $pool := .Values.pools -}}
{{- $name := include "shardq.workerName" (dict "ctx" $ "pool" $pool) -}}
{{- if hasKey $seen $name -}}
{{- fail (printf "pools %q and %q would both be StatefulSet %q (StatefulSet names are cut to 52 characters so that their pods can be labelled): give the pools names that differ sooner, or the release a shorter name or fullnameOverride" (get $seen $name) $pool.name $name) -}}
{{- end -}}
{{- $_ := set $seen $name $pool.name -}}
{{- end -}}
{{- end -}}

{{/* A pool's replicas: at install the values' (pools[].replicas); on an
     upgrade the StatefulSet's live spec.replicas, which the scheduler owns
     (through the scale subresource) and an upgrade must not reset. Helm's
     lookup sees the cluster only when it talks to one (install, upgrade,
     --dry-run=server); `helm template` renders the values' count. Call with
     (dict "ctx" $ "pool" $pool "name" $name). */}}
{{- define "shardq.workerReplicas" -}}
{{- $live := lookup "apps/v1" "StatefulSet" .ctx.Release.Namespace .name -}}
{{- if $live -}}
{{- $live.spec.replicas | default 0 | int -}}
{{- else -}}
{{- .pool.replicas | int -}}
{{- end -}}
{{- end -}}

{{- define "shardq.schedulerServiceAccount" -}}
{{- if .Values.scheduler.serviceAccount.create -}}
{{- default (printf "%s-scheduler" (include "shardq.fullname" .)) .Values.scheduler.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.scheduler.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* What every pod of shardq's image carries: the pull secrets, and the
     pod security context (the image's non-root user, and the group that
     owns mounted volumes such as /adapters). */}}
{{- define "shardq.podCommon" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.podSecurityContext }}
securityContext:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A probe's timing from its values (livenessProbe, startupProbe). */}}
{{- define "shardq.probeTiming" -}}
initialDelaySeconds: {{ .initialDelaySeconds | default 0 }}
periodSeconds: {{ .periodSeconds }}
timeoutSeconds: {{ .timeoutSeconds }}
failureThreshold: {{ .failureThreshold }}
{{- end -}}

{{/* GET /healthz on the container's metrics port: 200 once the process's
     own loop has answered, 503 when it does not within 8 s
     (docs/broker.md). Call with the probe's values. */}}
{{- define "shardq.healthzProbe" -}}
httpGet:
  path: /healthz
  port: metrics
{{ include "shardq.probeTiming" . }}
{{- end -}}

{{- define "shardq.metricsAnnotations" -}}
{{- if and .ctx.Values.metrics.podAnnotations (gt (int .port) 0) }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
{{- end }}
{{- end -}}

{{/* Migrations run as a pre-install/pre-upgrade hook Job against an
     external database; with the in-chart PostgreSQL (created after hooks)
     the broker runs them in an init container instead. */}}
{{- define "shardq.migrateByHook" -}}
{{- if and .Values.migrations.enabled (not .Values.postgresql.enabled) -}}true{{- end -}}
{{- end -}}
