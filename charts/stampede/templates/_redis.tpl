{{/*
The cache and the broker are the same Redis with different settings; each has its own
statefulset.yaml/service.yaml/networkpolicy.yaml/servicemonitor.yaml that include these.
*/}}

{{- define "stampede.redis.args" -}}
{{- $ctx := index . 0 -}}
{{- $name := index . 1 -}}
{{- $role := index $ctx.Values $name -}}
- redis-server
- --port
- "6379"
- --bind
- "0.0.0.0"
{{- if not $role.auth.enabled }}
# No password: the NetworkPolicy is the only guard, and protected mode would refuse pods.
- --protected-mode
- "no"
{{- end }}
- --dir
- /data
# No RDB snapshots: the cache keeps nothing, the broker's AOF already has every write.
- --save
- ""
{{- if eq $name "cache" }}
- --maxmemory
- {{ $role.maxmemory | quote }}
- --maxmemory-policy
- {{ $role.maxmemoryPolicy | quote }}
- --appendonly
- "no"
{{- else }}
# A lost message is a lost job: never evict, log every write.
- --maxmemory
- {{ $role.maxmemory | quote }}
- --maxmemory-policy
- {{ $role.maxmemoryPolicy | quote }}
- --appendonly
- "yes"
- --appendfsync
- {{ $role.appendfsync | quote }}
{{- end }}
{{- end -}}

{{- define "stampede.redis.statefulset" -}}
{{- $ctx := index . 0 -}}
{{- $name := index . 1 -}}
{{- $role := index $ctx.Values $name -}}
{{- $persistent := and (eq $name "broker") $role.persistence.enabled -}}
{{- $probe := list "sh" "-c" "redis-cli -h 127.0.0.1 -p 6379 ping | grep -q PONG" -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ include "stampede.componentName" (list $ctx $name) }}
  labels:
    {{- include "stampede.labels" (list $ctx $name) | nindent 4 }}
spec:
  replicas: 1
  serviceName: {{ include "stampede.componentName" (list $ctx $name) }}
  selector:
    matchLabels:
      {{- include "stampede.selectorLabels" (list $ctx $name) | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "stampede.labels" (list $ctx $name) | nindent 8 }}
      annotations:
        checksum/secret: {{ include (print $ctx.Template.BasePath "/secret.yaml") $ctx | sha256sum }}
        {{- with $role.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      {{- include "stampede.podCommon" $ctx | nindent 6 }}
      securityContext:
        {{- $pod := deepCopy $ctx.Values.podSecurityContext }}
        {{- $_ := set $pod "runAsUser" $ctx.Values.redis.runAsUser }}
        {{- $_ := set $pod "runAsGroup" $ctx.Values.redis.runAsUser }}
        {{- $_ := set $pod "fsGroup" $ctx.Values.redis.runAsUser }}
        {{- toYaml $pod | nindent 8 }}
      terminationGracePeriodSeconds: 30
      containers:
        - name: redis
          image: {{ printf "%s:%s" $ctx.Values.redis.image.repository $ctx.Values.redis.image.tag }}
          imagePullPolicy: {{ $ctx.Values.redis.image.pullPolicy }}
          # The password goes into a config file on a memory volume, never into argv (which
          # every process on the node can read); redis-server reads that file first.
          command:
            - sh
            - -c
            - |
              set -eu
              umask 077
              {{- if $role.auth.enabled }}
              printf 'requirepass "%s"\n' "$(printf '%s' "$REDIS_PASSWORD" | sed 's/[\\"]/\\&/g')" \
                > /run/redis/auth.conf
              {{- else }}
              : > /run/redis/auth.conf
              {{- end }}
              exec "$0" /run/redis/auth.conf "$@"
          args:
            {{- include "stampede.redis.args" (list $ctx $name) | nindent 12 }}
          {{- if $role.auth.enabled }}
          env:
            - name: REDIS_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ include "stampede.redis.secretName" (list $ctx $name) }}
                  key: {{ include "stampede.redis.secretKey" (list $ctx $name) }}
            # redis-cli (the probes) reads it from here.
            - name: REDISCLI_AUTH
              valueFrom:
                secretKeyRef:
                  name: {{ include "stampede.redis.secretName" (list $ctx $name) }}
                  key: {{ include "stampede.redis.secretKey" (list $ctx $name) }}
          {{- end }}
          ports:
            - name: redis
              containerPort: 6379
          startupProbe:
            exec: {command: {{ toJson $probe }}}
            periodSeconds: 2
            # The broker replays its append-only file before it answers.
            failureThreshold: {{ ternary 30 150 (eq $name "cache") }}
          livenessProbe:
            exec: {command: {{ toJson $probe }}}
            periodSeconds: 15
            timeoutSeconds: 5
            failureThreshold: 3
          readinessProbe:
            exec: {command: {{ toJson $probe }}}
            periodSeconds: 5
            timeoutSeconds: 3
          resources:
            {{- toYaml $role.resources | nindent 12 }}
          securityContext:
            {{- include "stampede.containerSecurityContextAs" (list $ctx $ctx.Values.redis.runAsUser) | nindent 12 }}
          volumeMounts:
            - {name: data, mountPath: /data}
            - {name: config, mountPath: /run/redis}
        {{- if $ctx.Values.metrics.enabled }}
        {{- $exporter := $ctx.Values.metrics.redisExporter }}
        - name: redis-exporter
          image: {{ printf "%s:%s" $exporter.image.repository $exporter.image.tag }}
          imagePullPolicy: {{ $exporter.image.pullPolicy }}
          env:
            - name: REDIS_ADDR
              value: redis://127.0.0.1:6379
            - name: REDIS_EXPORTER_WEB_LISTEN_ADDRESS
              value: ":{{ $exporter.port }}"
            {{- if $role.auth.enabled }}
            - name: REDIS_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: {{ include "stampede.redis.secretName" (list $ctx $name) }}
                  key: {{ include "stampede.redis.secretKey" (list $ctx $name) }}
            {{- end }}
          ports:
            - name: metrics
              containerPort: {{ $exporter.port }}
          livenessProbe:
            httpGet: {path: /health, port: metrics}
            periodSeconds: 15
          readinessProbe:
            httpGet: {path: /health, port: metrics}
            periodSeconds: 15
          resources:
            {{- toYaml $exporter.resources | nindent 12 }}
          securityContext:
            {{- include "stampede.containerSecurityContextAs" (list $ctx $exporter.runAsUser) | nindent 12 }}
        {{- end }}
      volumes:
        - name: config
          emptyDir: {medium: Memory, sizeLimit: 1Mi}
        {{- if not $persistent }}
        - name: data
          emptyDir: {}
        {{- end }}
      {{- with $role.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $role.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $role.affinity }}
      affinity:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  {{- if $persistent }}
  volumeClaimTemplates:
    - metadata:
        name: data
        labels:
          {{- include "stampede.selectorLabels" (list $ctx $name) | nindent 10 }}
      spec:
        accessModes:
          {{- toYaml $role.persistence.accessModes | nindent 10 }}
        {{- with $role.persistence.storageClass }}
        storageClassName: {{ . | quote }}
        {{- end }}
        resources:
          requests:
            storage: {{ $role.persistence.size }}
  {{- end }}
{{- end -}}

{{- define "stampede.redis.service" -}}
{{- $ctx := index . 0 -}}
{{- $name := index . 1 -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "stampede.componentName" (list $ctx $name) }}
  labels:
    {{- include "stampede.labels" (list $ctx $name) | nindent 4 }}
spec:
  # Headless: the StatefulSet's pod answers at this name.
  clusterIP: None
  selector:
    {{- include "stampede.selectorLabels" (list $ctx $name) | nindent 4 }}
  ports:
    - name: redis
      port: 6379
      targetPort: redis
    {{- if $ctx.Values.metrics.enabled }}
    - name: metrics
      port: {{ $ctx.Values.metrics.redisExporter.port }}
      targetPort: metrics
    {{- end }}
{{- end -}}

{{/* (list . name [client components]) */}}
{{- define "stampede.redis.networkPolicy" -}}
{{- $ctx := index . 0 -}}
{{- $name := index . 1 -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "stampede.componentName" (list $ctx $name) }}
  labels:
    {{- include "stampede.labels" (list $ctx $name) | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "stampede.selectorLabels" (list $ctx $name) | nindent 6 }}
  policyTypes: [Ingress]
  ingress:
    - from:
        {{- include "stampede.networkPolicy.fromComponents" (list $ctx (index . 2)) | nindent 8 }}
        {{- if and (eq $name "broker") $ctx.Values.worker.keda.enabled }}
        # KEDA's operator reads the queue length.
        - namespaceSelector:
            matchLabels:
              kubernetes.io/metadata.name: {{ $ctx.Values.worker.keda.operatorNamespace }}
        {{- end }}
      ports:
        - {port: redis, protocol: TCP}
    {{- if $ctx.Values.metrics.enabled }}
    {{- include "stampede.networkPolicy.metricsRule" (list $ctx (list "metrics")) | nindent 4 }}
    {{- end }}
{{- end -}}
