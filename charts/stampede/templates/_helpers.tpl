{{/* ---------------------------------------------------------------- names */}}

{{- define "stampede.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "stampede.fullname" -}}
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

{{/* "<fullname>-<component>", e.g. include "stampede.componentName" (list . "api") */}}
{{- define "stampede.componentName" -}}
{{- $ctx := index . 0 -}}
{{- printf "%s-%s" (include "stampede.fullname" $ctx | trunc 50 | trimSuffix "-") (index . 1) -}}
{{- end -}}

{{- define "stampede.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* --------------------------------------------------------------- labels */}}

{{/* Selector labels: name + instance + component only. They never change. */}}
{{- define "stampede.selectorLabels" -}}
{{- $ctx := index . 0 -}}
app.kubernetes.io/name: {{ include "stampede.name" $ctx }}
app.kubernetes.io/instance: {{ $ctx.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "stampede.labels" -}}
{{- $ctx := index . 0 -}}
{{ include "stampede.selectorLabels" . }}
helm.sh/chart: {{ include "stampede.chart" $ctx }}
app.kubernetes.io/version: {{ $ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ $ctx.Release.Service }}
app.kubernetes.io/part-of: stampede
{{- with $ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* --------------------------------------------------------------- images */}}

{{- define "stampede.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* An image block with an optional tag that defaults to the appVersion: (list . .Values.x.image) */}}
{{- define "stampede.imageOf" -}}
{{- $ctx := index . 0 -}}
{{- $image := index . 1 -}}
{{- printf "%s:%s" $image.repository (default $ctx.Chart.AppVersion ($image.tag | toString)) -}}
{{- end -}}

{{- define "stampede.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "stampede.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/*
The migration Job's hook phases. On a fresh install with the in-chart Postgres the
database only exists after the release's objects are created, hence post-install there;
with an external database, pre-install. pre-upgrade always: before new api pods start.
*/}}
{{- define "stampede.migrations.hooks" -}}
{{- ternary "post-install,pre-upgrade" "pre-install,pre-upgrade" .Values.postgresql.enabled -}}
{{- end -}}

{{/*
The migration Job's ServiceAccount. A pre-install hook runs before the release's own
ServiceAccount exists (Helm creates it after the pre-install hooks), and the
ServiceAccount admission plugin refuses a pod whose account is missing: the chart gives
the Job one of its own, created as an earlier hook. A user-managed account exists anyway.
*/}}
{{- define "stampede.migrations.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- include "stampede.componentName" (list . "migrations") -}}
{{- else -}}
{{- include "stampede.serviceAccountName" . -}}
{{- end -}}
{{- end -}}

{{/*
Whether to render an object of kube-prometheus-stack's operator (monitoring.coreos.com):
true/false force it; "auto" renders it when the cluster serves its kind (.Capabilities;
`helm template` takes --api-versions monitoring.coreos.com/v1/ServiceMonitor).
Usage: include "stampede.monitoring.renders" (list . setting "ServiceMonitor")
*/}}
{{- define "stampede.monitoring.renders" -}}
{{- $ctx := index . 0 -}}
{{- $setting := index . 1 -}}
{{- $kind := index . 2 -}}
{{- if eq (toString $setting) "auto" -}}
{{- if $ctx.Capabilities.APIVersions.Has (printf "monitoring.coreos.com/v1/%s" $kind) }}true{{ end -}}
{{- else if $setting -}}
true
{{- end -}}
{{- end -}}

{{/* Pod-level settings shared by every pod of ours. */}}
{{- define "stampede.podCommon" -}}
serviceAccountName: {{ include "stampede.serviceAccountName" . }}
automountServiceAccountToken: {{ .Values.serviceAccount.automountServiceAccountToken }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A third-party container's security context: ours, with that image's own user. */}}
{{- define "stampede.containerSecurityContextAs" -}}
{{- $ctx := index . 0 -}}
{{- $uid := index . 1 -}}
{{- $sc := deepCopy $ctx.Values.containerSecurityContext -}}
{{- $_ := set $sc "runAsUser" $uid -}}
{{- $_ := set $sc "runAsGroup" $uid -}}
{{- toYaml $sc -}}
{{- end -}}

{{/*
Soft spread over nodes and zones unless the component sets its own list. Each constraint
gets the component's selector unless it names one (so values never hard-code a release
name), and matchLabelKeys: [pod-template-hash], so a rolling update's new pods are spread
among themselves instead of being skewed by the old ReplicaSet's pods.
*/}}
{{- define "stampede.topologySpread" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
{{- $constraints := index . 2 -}}
{{- if not $constraints }}
{{- $constraints = list }}
{{- range $key := list "kubernetes.io/hostname" "topology.kubernetes.io/zone" }}
{{- $constraints = append $constraints (dict "maxSkew" 1 "topologyKey" $key "whenUnsatisfiable" "ScheduleAnyway") }}
{{- end }}
{{- end }}
{{- $selector := dict "matchLabels" (include "stampede.selectorLabels" (list $ctx $component) | fromYaml) }}
{{- $filled := list }}
{{- range $constraints }}
{{- $constraint := deepCopy . }}
{{- if not (hasKey $constraint "labelSelector") }}
{{- $_ := set $constraint "labelSelector" $selector }}
{{- end }}
{{- if not (hasKey $constraint "matchLabelKeys") }}
{{- $_ := set $constraint "matchLabelKeys" (list "pod-template-hash") }}
{{- end }}
{{- $filled = append $filled $constraint }}
{{- end }}
{{- toYaml $filled }}
{{- end -}}

{{/* -------------------------------------------------------------- secrets */}}

{{/*
A value for a chart-managed Secret: the given one, else the one already in the cluster
(so upgrades keep it), else a fresh random one, generated once per render (so two Secrets
that carry the same password, and the checksums of them, agree on a fresh install).
(list . "key" "given value") for the release's Secret, (list . "key" "given value" "secret
name") for another one.
*/}}
{{- define "stampede.secretValue" -}}
{{- $ctx := index . 0 -}}
{{- $key := index . 1 -}}
{{- $given := index . 2 -}}
{{- $secret := include "stampede.fullname" $ctx -}}
{{- if gt (len .) 3 }}{{ $secret = index . 3 }}{{ end -}}
{{- if $given -}}
{{- $given | b64enc -}}
{{- else -}}
{{- $existing := lookup "v1" "Secret" $ctx.Release.Namespace $secret -}}
{{- if and $existing (hasKey $existing.data $key) -}}
{{- index $existing.data $key -}}
{{- else -}}
{{- /* .Values is one map for the whole render: the first template to need the value
makes it, the others read it. */ -}}
{{- $generated := $ctx.Values._generatedSecrets | default dict -}}
{{- $_ := set $ctx.Values "_generatedSecrets" $generated -}}
{{- $id := printf "%s/%s" $secret $key -}}
{{- if not (hasKey $generated $id) -}}
{{- $_ := set $generated $id (randAlphaNum 32 | b64enc) -}}
{{- end -}}
{{- index $generated $id -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------- postgres */}}

{{- define "stampede.postgres.host" -}}
{{- if .Values.postgresql.enabled -}}
{{- include "stampede.componentName" (list . "postgresql") -}}
{{- else -}}
{{- required "externalDatabase.host is required when postgresql.enabled is false" .Values.externalDatabase.host -}}
{{- end -}}
{{- end -}}

{{- define "stampede.postgres.port" -}}
{{- if .Values.postgresql.enabled }}5432{{ else }}{{ .Values.externalDatabase.port }}{{ end -}}
{{- end -}}

{{- define "stampede.postgres.database" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.database }}{{ else }}{{ .Values.externalDatabase.database }}{{ end -}}
{{- end -}}

{{- define "stampede.postgres.username" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.username }}{{ else }}{{ .Values.externalDatabase.username }}{{ end -}}
{{- end -}}

{{- define "stampede.postgres.sslMode" -}}
{{- if .Values.postgresql.enabled }}disable{{ else }}{{ .Values.externalDatabase.sslMode }}{{ end -}}
{{- end -}}

{{- define "stampede.postgres.maxConnections" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.maxConnections }}{{ else }}{{ .Values.externalDatabase.maxConnections }}{{ end -}}
{{- end -}}

{{- define "stampede.postgres.existingSecret" -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.existingSecret }}{{ else }}{{ .Values.externalDatabase.existingSecret }}{{ end -}}
{{- end -}}

{{- define "stampede.postgres.secretName" -}}
{{- default (include "stampede.fullname" .) (include "stampede.postgres.existingSecret" .) -}}
{{- end -}}

{{- define "stampede.postgres.secretKey" -}}
{{- if include "stampede.postgres.existingSecret" . -}}
{{- if .Values.postgresql.enabled }}{{ .Values.postgresql.existingSecretPasswordKey }}{{ else }}{{ .Values.externalDatabase.existingSecretPasswordKey }}{{ end -}}
{{- else -}}
postgres-password
{{- end -}}
{{- end -}}

{{/* Straight to Postgres (migrations, worker, relay LISTEN): never through PgBouncer. */}}
{{- define "stampede.postgres.directUrl" -}}
{{- $ssl := include "stampede.postgres.sslMode" . -}}
{{- printf "postgresql+asyncpg://%s:$(DATABASE_PASSWORD)@%s:%s/%s" (include "stampede.postgres.username" .) (include "stampede.postgres.host" .) (include "stampede.postgres.port" .) (include "stampede.postgres.database" .) -}}
{{- if ne $ssl "disable" }}?ssl={{ $ssl }}{{ end -}}
{{- end -}}

{{/* The api's URL: the PgBouncer sidecar on loopback. */}}
{{- define "stampede.postgres.pgbouncerUrl" -}}
{{- printf "postgresql+asyncpg://%s:$(DATABASE_PASSWORD)@127.0.0.1:%v/%s" (include "stampede.postgres.username" .) .Values.pgbouncer.port (include "stampede.postgres.database" .) -}}
{{- end -}}

{{- define "stampede.env.databasePassword" -}}
- name: DATABASE_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "stampede.postgres.secretName" . }}
      key: {{ include "stampede.postgres.secretKey" . }}
{{- end -}}

{{/* ---------------------------------------------------------------- redis */}}

{{/* (list . "cache"|"broker") */}}
{{- define "stampede.redis.secretName" -}}
{{- $ctx := index . 0 -}}
{{- $role := index $ctx.Values (index . 1) -}}
{{- default (include "stampede.fullname" $ctx) $role.auth.existingSecret -}}
{{- end -}}

{{- define "stampede.redis.secretKey" -}}
{{- $ctx := index . 0 -}}
{{- $role := index $ctx.Values (index . 1) -}}
{{- if $role.auth.existingSecret }}redis-password{{ else }}{{ index . 1 }}-redis-password{{ end -}}
{{- end -}}

{{/* The password env var (CACHE_REDIS_PASSWORD / BROKER_REDIS_PASSWORD) when auth is on. */}}
{{- define "stampede.env.redisPassword" -}}
{{- $ctx := index . 0 -}}
{{- $name := index . 1 -}}
{{- if (index $ctx.Values $name).auth.enabled }}
- name: {{ upper $name }}_REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "stampede.redis.secretName" . }}
      key: {{ include "stampede.redis.secretKey" . }}
{{- end }}
{{- end -}}

{{- define "stampede.redis.url" -}}
{{- $ctx := index . 0 -}}
{{- $name := index . 1 -}}
{{- $host := include "stampede.componentName" (list $ctx $name) -}}
{{- if (index $ctx.Values $name).auth.enabled -}}
redis://:$({{ upper $name }}_REDIS_PASSWORD)@{{ $host }}:6379/0
{{- else -}}
redis://{{ $host }}:6379/0
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------------------ env */}}

{{/* Env every Stampede process gets (before its own): secrets, then URLs using them. */}}
{{- define "stampede.env.backends" -}}
{{ include "stampede.env.databasePassword" . }}
{{- include "stampede.env.redisPassword" (list . "cache") }}
- name: STAMPEDE_REDIS__CACHE_URL
  value: {{ include "stampede.redis.url" (list . "cache") | quote }}
{{- end -}}

{{/* The worker's and the relay's: broker, direct Postgres, SMTP. */}}
{{- define "stampede.env.workerBackends" -}}
{{ include "stampede.env.backends" . }}
{{- include "stampede.env.redisPassword" (list . "broker") }}
- name: STAMPEDE_BROKER__URL
  value: {{ include "stampede.redis.url" (list . "broker") | quote }}
- name: STAMPEDE_DB__URL
  value: {{ include "stampede.postgres.directUrl" . | quote }}
- name: STAMPEDE_DB__MIGRATION_URL
  value: {{ include "stampede.postgres.directUrl" . | quote }}
{{- with .Values.smtp.host }}
- name: STAMPEDE_SMTP__HOST
  value: {{ . | quote }}
{{- end }}
- name: STAMPEDE_SMTP__PORT
  value: {{ .Values.smtp.port | quote }}
- name: STAMPEDE_SMTP__SECURITY
  value: {{ .Values.smtp.security | quote }}
{{- with .Values.smtp.username }}
- name: STAMPEDE_SMTP__USERNAME
  value: {{ . | quote }}
{{- end }}
{{- if or .Values.smtp.existingSecret .Values.smtp.password }}
- name: STAMPEDE_SMTP__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ default (include "stampede.fullname" .) .Values.smtp.existingSecret }}
      key: smtp-password
{{- end }}
{{- end -}}

{{- define "stampede.env.extra" -}}
{{- range $name, $value := . }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- end -}}

{{/* ----------------------------------------------------------- budgets */}}

{{- define "stampede.worker.maxReplicas" -}}
{{- if not .Values.worker.enabled -}}0
{{- else if .Values.worker.keda.enabled -}}{{ .Values.worker.keda.maxReplicaCount }}
{{- else if .Values.worker.autoscaling.enabled -}}{{ .Values.worker.autoscaling.maxReplicas }}
{{- else -}}{{ .Values.worker.replicas }}
{{- end -}}
{{- end -}}

{{- define "stampede.api.maxReplicas" -}}
{{- if .Values.api.autoscaling.enabled }}{{ .Values.api.autoscaling.maxReplicas }}{{ else }}{{ .Values.api.replicas }}{{ end -}}
{{- end -}}

{{/* The api Deployment's rollingUpdate.maxSurge (its pods may run this many extra). */}}
{{- define "stampede.api.deploymentMaxSurge" -}}25%{{- end -}}

{{/*
Pods a rollout of N api replicas adds: the operator's maxSurge, else the Deployment's, as
Kubernetes reads it (a percentage rounds up). (list . N)
*/}}
{{- define "stampede.api.surgePods" -}}
{{- $ctx := index . 0 -}}
{{- $replicas := index . 1 | int -}}
{{- $surge := toString $ctx.Values.operator.api.maxSurge -}}
{{- if eq $surge "" }}{{ $surge = include "stampede.api.deploymentMaxSurge" $ctx }}{{ end -}}
{{- if hasSuffix "%" $surge -}}
{{- $percent := trimSuffix "%" $surge | int -}}
{{- div (add (mul $replicas $percent) 99) 100 -}}
{{- else -}}
{{- $surge | int -}}
{{- end -}}
{{- end -}}

{{/* Connections of the fixed consumers at their maxima: workers + relays (+ migrations
when the operator counts them; without it the reserve holds them). */}}
{{- define "stampede.budget.fixedConnections" -}}
{{- $workers := mul (include "stampede.worker.maxReplicas" . | int) (.Values.worker.dbConnectionsPerPod | int) -}}
{{- $relays := 0 -}}
{{- if .Values.relay.enabled -}}
{{- $relays = mul (.Values.relay.replicas | int) (.Values.relay.dbConnectionsPerPod | int) -}}
{{- end -}}
{{- $migrations := 0 -}}
{{- if and .Values.operator.enabled .Values.migrations.enabled -}}
{{- $migrations = .Values.migrations.dbConnections | int -}}
{{- end -}}
{{- add $workers $relays $migrations -}}
{{- end -}}

{{/* What the ConnectionBudget's spec.postgres.maxConnections says: "auto" with the in-chart
Postgres, the release's share (externalDatabase.maxConnections) with an external one,
unless operator.maxConnections says otherwise. */}}
{{- define "stampede.operator.maxConnections" -}}
{{- $setting := toString .Values.operator.maxConnections -}}
{{- if $setting -}}
{{- $setting -}}
{{- else -}}
{{- ternary "auto" (toString .Values.externalDatabase.maxConnections) .Values.postgresql.enabled -}}
{{- end -}}
{{- end -}}

{{/* Postgres' default superuser_reserved_connections: "auto" leaves them out of the budget
(the operator reads the live value). */}}
{{- define "stampede.postgres.superuserReserved" -}}3{{- end -}}

{{/* The budget as the chart knows it at render time. With the operator: a number it is
given, else (auto) the database's maxConnections less the superuser slots, as the operator
will read it. Without: the database's maxConnections. */}}
{{- define "stampede.budget.connections" -}}
{{- $setting := include "stampede.operator.maxConnections" . -}}
{{- if not .Values.operator.enabled -}}
{{- include "stampede.postgres.maxConnections" . -}}
{{- else if eq $setting "auto" -}}
{{- sub (include "stampede.postgres.maxConnections" . | int) (include "stampede.postgres.superuserReserved" . | int) -}}
{{- else -}}
{{- $setting -}}
{{- end -}}
{{- end -}}

{{/* Where the budget's number comes from, for the guard's message. */}}
{{- define "stampede.budget.source" -}}
{{- if and .Values.operator.enabled (regexMatch "^[0-9]+$" (toString .Values.operator.maxConnections)) -}}
operator.maxConnections
{{- else -}}
{{- ternary "postgresql.maxConnections" "externalDatabase.maxConnections" .Values.postgresql.enabled -}}
{{- end -}}
{{- end -}}

{{/*
The api pods' PgBouncer pool before the operator's first reconcile (and with no running
operator at all): the largest size within [minPoolSize, maxPoolSize] that keeps every api
pod at the HPA's maximum plus a rollout's surge, the fixed consumers and the reserve
within the budget. The guard below makes sure the minimum fits.
*/}}
{{- define "stampede.operator.initialPoolSize" -}}
{{- $pods := include "stampede.api.maxReplicas" . | int -}}
{{- $pods = add $pods (include "stampede.api.surgePods" (list . $pods) | int) -}}
{{- $left := sub (include "stampede.budget.connections" . | int) (add (include "stampede.budget.fixedConnections" . | int) (.Values.connectionBudget.reserve | int)) -}}
{{- $size := div (max $left 0) (max $pods 1) -}}
{{- min (max $size (.Values.operator.api.minPoolSize | int)) (.Values.operator.api.maxPoolSize | int) -}}
{{- end -}}

{{/* The pool size PgBouncer may reach in one pod (its file-descriptor check uses it). */}}
{{- define "stampede.pgbouncer.maxPoolSize" -}}
{{- if .Values.operator.enabled }}{{ .Values.operator.api.maxPoolSize }}{{ else }}{{ .Values.pgbouncer.defaultPoolSize }}{{ end -}}
{{- end -}}

{{/*
The connection budget: fails the render when the worst case (every autoscaler at its
maximum) could open more Postgres connections than the database allows. With the
operator, pools follow the live replica count, so the worst case is every api pod of a
rollout at full scale holding its *minimum* pool; the operator reports (and never
exceeds) a budget its HPA's maximum outgrows.
*/}}
{{- define "stampede.validateConnectionBudget" -}}
{{- if .Values.connectionBudget.enabled -}}
{{- $apiMax := include "stampede.api.maxReplicas" . | int -}}
{{- $workerMax := include "stampede.worker.maxReplicas" . | int -}}
{{- $workers := mul $workerMax (.Values.worker.dbConnectionsPerPod | int) -}}
{{- $relays := 0 -}}
{{- if .Values.relay.enabled -}}
{{- $relays = mul (.Values.relay.replicas | int) (.Values.relay.dbConnectionsPerPod | int) -}}
{{- end -}}
{{- $reserve := .Values.connectionBudget.reserve | int -}}
{{- $budget := include "stampede.budget.connections" . | int -}}
{{- if .Values.operator.enabled -}}
{{- $surge := include "stampede.api.surgePods" (list . $apiMax) | int -}}
{{- $minPool := .Values.operator.api.minPoolSize | int -}}
{{- if gt $minPool (.Values.operator.api.maxPoolSize | int) -}}
{{- fail (printf "operator.api.minPoolSize (%d) is above operator.api.maxPoolSize (%v)" $minPool .Values.operator.api.maxPoolSize) -}}
{{- end -}}
{{- $api := mul (add $apiMax $surge) $minPool -}}
{{- $migrations := 0 -}}
{{- if .Values.migrations.enabled }}{{ $migrations = .Values.migrations.dbConnections | int }}{{ end -}}
{{- $total := add $api $workers $relays $migrations $reserve -}}
{{- if gt $total $budget -}}
{{- $allows := printf "%d" $budget -}}
{{- if eq (include "stampede.operator.maxConnections" .) "auto" -}}
{{- $allows = printf "%d (%s %s less %s superuser slots)" $budget (include "stampede.budget.source" .) (include "stampede.postgres.maxConnections" .) (include "stampede.postgres.superuserReserved" .) -}}
{{- end -}}
{{- fail (printf "\n\nconnection budget exceeded: %d Postgres connections needed at full scale with the smallest pools, but the database allows %s.\n  api:        (%d max replicas + %d rollout surge) x %d minimum PgBouncer pool size (operator.api.minPoolSize) = %d\n  workers:    %d max replicas x %d (worker.dbConnectionsPerPod) = %d\n  relays:     %d\n  migrations: %d (migrations.dbConnections)\n  reserve:    %d (connectionBudget.reserve)\nLower api.autoscaling.maxReplicas, operator.api.minPoolSize or the worker's maximum, or raise %s." $total $allows $apiMax $surge $minPool $api $workerMax (.Values.worker.dbConnectionsPerPod | int) $workers $relays $migrations $reserve (include "stampede.budget.source" .)) -}}
{{- end -}}
{{- else -}}
{{- $pool := .Values.pgbouncer.defaultPoolSize | int -}}
{{- $api := mul $apiMax $pool -}}
{{- $total := add $api $workers $relays $reserve -}}
{{- if gt $total $budget -}}
{{- fail (printf "\n\nconnection budget exceeded: %d Postgres connections needed at full scale, but the database allows %d.\n  api:     %d max replicas x %d PgBouncer pool size (pgbouncer.defaultPoolSize) = %d\n  workers: %d max replicas x %d (worker.dbConnectionsPerPod) = %d\n  relays:  %d\n  reserve: %d (connectionBudget.reserve)\nLower api.autoscaling.maxReplicas, pgbouncer.defaultPoolSize or the worker's maximum, or raise %s." $total $budget $apiMax $pool $api $workerMax (.Values.worker.dbConnectionsPerPod | int) $workers $relays $reserve (ternary "postgresql.maxConnections" "externalDatabase.maxConnections" .Values.postgresql.enabled)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "stampede.validate" -}}
{{- include "stampede.validateConnectionBudget" . -}}
{{- if and .Values.worker.keda.enabled (not .Values.worker.enabled) -}}
{{- fail "worker.keda.enabled needs worker.enabled" -}}
{{- end -}}
{{- if and (not .Values.postgresql.enabled) (not .Values.externalDatabase.existingSecret) (not .Values.externalDatabase.password) -}}
{{- fail "externalDatabase: set existingSecret (recommended) or password" -}}
{{- end -}}
{{- if and .Values.operator.enabled (include "stampede.postgres.existingSecret" .) (not .Values.operator.postgres.existingSecret) -}}
{{- fail (printf "operator.postgres.existingSecret: the database password comes from the Secret %q, which the chart does not copy; give the operator a Secret with keys host, port, database, username, password (or set operator.enabled=false)" (include "stampede.postgres.existingSecret" .)) -}}
{{- end -}}
{{- end -}}

{{/* ------------------------------------------------------ network policy */}}

{{/* An ingress rule: these metrics ports from the namespaces Prometheus may run in. */}}
{{- define "stampede.networkPolicy.metricsRule" -}}
{{- $ctx := index . 0 -}}
- from:
    - namespaceSelector:
        {{- toYaml $ctx.Values.networkPolicy.metricsNamespaceSelector | nindent 8 }}
  ports:
    {{- range $port := index . 1 }}
    - port: {{ $port }}
      protocol: TCP
    {{- end }}
{{- end -}}

{{/* A `from` entry for pods of these components of this release. */}}
{{- define "stampede.networkPolicy.fromComponents" -}}
{{- $ctx := index . 0 -}}
{{- range $component := index . 1 }}
- podSelector:
    matchLabels:
      {{- include "stampede.selectorLabels" (list $ctx $component) | nindent 6 }}
{{- end }}
{{- end -}}

{{/* ------------------------------------------------------ service monitor */}}

{{/* (list . component [port names]) */}}
{{- define "stampede.serviceMonitor" -}}
{{- $ctx := index . 0 -}}
{{- $component := index . 1 -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "stampede.componentName" (list $ctx $component) }}
  labels:
    {{- include "stampede.labels" (list $ctx $component) | nindent 4 }}
    {{- with $ctx.Values.metrics.serviceMonitor.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  selector:
    matchLabels:
      {{- include "stampede.selectorLabels" (list $ctx $component) | nindent 6 }}
  namespaceSelector:
    matchNames: [{{ $ctx.Release.Namespace | quote }}]
  endpoints:
    {{- range $port := index . 2 }}
    - port: {{ $port }}
      path: /metrics
      interval: {{ $ctx.Values.metrics.serviceMonitor.interval }}
      scrapeTimeout: {{ $ctx.Values.metrics.serviceMonitor.scrapeTimeout }}
      # Dashboards and alerts select on release and component (the local stack's
      # Prometheus sets the same labels statically).
      relabelings:
        - sourceLabels: [__meta_kubernetes_service_label_app_kubernetes_io_instance]
          targetLabel: release
        - sourceLabels: [__meta_kubernetes_service_label_app_kubernetes_io_component]
          targetLabel: component
    {{- end }}
{{- end -}}

{{/* ------------------------------------------------------------- operator */}}

{{/* The ConfigMap the operator owns (key pool.ini), %include'd by every api sidecar. */}}
{{- define "stampede.operator.poolConfigMap" -}}
{{- include "stampede.componentName" (list . "pgbouncer-pool") -}}
{{- end -}}

{{/* The Secret with the operator's Postgres access (host, port, database, username, password). */}}
{{- define "stampede.operator.postgresSecret" -}}
{{- default (include "stampede.componentName" (list . "operator-postgres")) .Values.operator.postgres.existingSecret -}}
{{- end -}}

{{/* The Secret with the sidecars' PgBouncer admin user (username, password). */}}
{{- define "stampede.operator.adminSecret" -}}
{{- default (include "stampede.componentName" (list . "pgbouncer-admin")) .Values.operator.pgbouncerAdmin.existingSecret -}}
{{- end -}}

{{- define "stampede.operator.serviceAccountName" -}}
{{- include "stampede.componentName" (list . "operator") -}}
{{- end -}}
