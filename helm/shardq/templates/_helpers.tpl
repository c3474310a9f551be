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

{{- define "shardq.workerName" -}}
{{- printf "%s-worker-%s" (include "shardq.fullname" .ctx) .pool.name | trunc 63 | trimSuffix "-" -}}
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
