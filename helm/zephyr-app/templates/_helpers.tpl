{{/* The chart's name, or nameOverride. */}}
{{- define "zephyr-app.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* <release>-<chart> (or fullnameOverride), at most 52 characters: suffixes fit in 63. */}}
{{- define "zephyr-app.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "zephyr-app.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every object; call with (dict "root" $ "component" "web"). */}}
{{- define "zephyr-app.labels" -}}
helm.sh/chart: {{ include "zephyr-app.chart" .root }}
{{ include "zephyr-app.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Values.image.tag | default .root.Chart.AppVersion | quote }}
app.kubernetes.io/part-of: {{ include "zephyr-app.name" .root }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
{{- end }}

{{- define "zephyr-app.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zephyr-app.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The object's metadata: name, namespace (explicit, for GitOps tools), labels. */}}
{{- define "zephyr-app.metadata" -}}
name: {{ include "zephyr-app.fullname" .root }}{{ if ne .component "web" }}-{{ .component }}{{ end }}
namespace: {{ .root.Release.Namespace }}
labels:
  {{- include "zephyr-app.labels" . | nindent 2 }}
{{- end }}

{{- define "zephyr-app.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "zephyr-app.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The image, by digest when one is set; the tag defaults to appVersion. */}}
{{- define "zephyr-app.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{/* Where the secrets are mounted, one file per setting (ZEPHYR_SECRETS_DIR). */}}
{{- define "zephyr-app.secretsDir" -}}
/etc/zephyr/secrets
{{- end }}

{{- define "zephyr-app.heartbeatFile" -}}
/tmp/worker-heartbeat
{{- end }}

{{/* Whether any pod mounts secrets: existingSecret, or Flower's own. */}}
{{- define "zephyr-app.hasSecrets" -}}
{{- if or .Values.existingSecret (and (include "zephyr-app.flowerEnabled" .) .Values.flower.basicAuth.existingSecret) }}true{{ end }}
{{- end }}

{{/* Whether the pods are pointed at a Redis of the user's own: redis.url, existingSecret
     (its JOB_QUEUE_URL and CACHE_URL keys), or JOB_QUEUE_URL/CACHE_URL in settings. */}}
{{- define "zephyr-app.externalRedis" -}}
{{- $settings := .Values.settings | default dict }}
{{- if or .Values.redis.url .Values.existingSecret (hasKey $settings "JOB_QUEUE_URL") (hasKey $settings "CACHE_URL") }}true{{ end }}
{{- end }}

{{/* Whether the built-in Redis is deployed: redis.enabled true, or "auto" (the default)
     while no Redis of the user's own is configured, so a bare install works. */}}
{{- define "zephyr-app.builtInRedis" -}}
{{- $enabled := toString .Values.redis.enabled }}
{{- if or (eq $enabled "true") (and (eq $enabled "auto") (not (include "zephyr-app.externalRedis" .))) }}true{{ end }}
{{- end }}

{{/* The Redis the ConfigMap hands the pods and KEDA reads: the built-in one, else
     redis.url (may be empty). The built-in one by its namespaced Service name, so KEDA's
     operator (in its own namespace) resolves it too. It has no password: not secret. */}}
{{- define "zephyr-app.redisURL" -}}
{{- if include "zephyr-app.builtInRedis" . }}
{{- printf "redis://%s-redis.%s.svc:6379" (include "zephyr-app.fullname" .) .Release.Namespace }}
{{- else }}
{{- .Values.redis.url }}
{{- end }}
{{- end }}

{{/* What a chart Redis URL names: "sentinel" (sentinel:// or sentinels:// parts joined
     by ";"), "cluster" (redis+cluster://, refused), "single" (redis://, rediss://) or
     "" (empty). Call with the URL. */}}
{{- define "zephyr-app.redisKind" -}}
{{- $scheme := . | splitList "://" | first | lower }}
{{- if not . }}
{{- else if has $scheme (list "sentinel" "sentinels") }}sentinel
{{- else if hasSuffix "+cluster" $scheme }}cluster
{{- else }}single
{{- end }}
{{- end }}

{{/* The URL KEDA reads the queues from: worker.autoscaling.redisUrl (when the pods' URLs
     are in existingSecret), else the pods' own (redisURL). */}}
{{- define "zephyr-app.queueRedisURL" -}}
{{- .Values.worker.autoscaling.redisUrl | default (include "zephyr-app.redisURL" .) }}
{{- end }}

{{/* A Sentinel URL's Sentinels as KEDA's "addresses": host:port,host:port. */}}
{{- define "zephyr-app.sentinelAddresses" -}}
{{- $addresses := list }}
{{- range . | splitList ";" }}
{{- $addresses = append $addresses (. | splitList "://" | last) }}
{{- end }}
{{- join "," $addresses }}
{{- end }}

{{/* Stop the render on a Redis URL the chart cannot hand on: the value's name, what is
     wrong, what is accepted. The URL itself is never quoted (it may hold a password).
     Call with (dict "name" "redis.url" "url" $url). */}}
{{- define "zephyr-app.checkRedisURL" -}}
{{- $name := .name }}
{{- $url := .url }}
{{- $kind := include "zephyr-app.redisKind" $url }}
{{- $accepted := "redis://host:6379, rediss://host:6380, or Sentinels as sentinel://h1:26379;sentinel://h2:26379 (sentinels:// over TLS) with redis.sentinelMaster" }}
{{- if contains "@" $url }}
{{- fail (printf "%s must not hold a password or user name (it is written into a ConfigMap and a ScaledObject): a Redis with a password gets its URLs as JOB_QUEUE_URL and CACHE_URL keys of existingSecret (KEDA then reads worker.autoscaling.redisUrl, the password from worker.autoscaling.passwordKey), the Sentinels' own password a REDIS_SENTINEL_PASSWORD key (KEDA: worker.autoscaling.sentinelPasswordKey); accepted here: %s" $name $accepted) }}
{{- end }}
{{- if eq $kind "cluster" }}
{{- fail (printf "%s is a Redis Cluster URL (redis+cluster://): a Cluster serves caches only, and JOB_QUEUE_URL (Celery's broker) needs one keyspace; put a Cluster CACHE_URL in existingSecret or settings, and give %s one of: %s" $name $name $accepted) }}
{{- end }}
{{- if eq $kind "sentinel" }}
{{- $schemes := list }}
{{- range $part := $url | splitList ";" }}
{{- if not (regexMatch "^sentinels?://[^@/?#;\\s]+$" $part) }}
{{- fail (printf "%s: each ;-separated part of a Sentinel URL must be sentinel://host:port (or sentinels://), without a database, path or query: the chart appends the databases (/0 jobs, /1 caches) and the master name comes from redis.sentinelMaster" $name) }}
{{- end }}
{{- $schemes = append $schemes ($part | splitList "://" | first) | uniq }}
{{- end }}
{{- if gt (len $schemes) 1 }}
{{- fail (printf "%s mixes sentinel:// and sentinels://: use one scheme for every Sentinel" $name) }}
{{- end }}
{{- else if and $url (not (regexMatch "^rediss?://[^@/?#;\\s]+$" $url)) }}
{{- fail (printf "%s: expected %s, without a database, path or query (the chart appends /0 for jobs and /1 for caches)" $name $accepted) }}
{{- end }}
{{- end }}

{{- define "zephyr-app.flowerEnabled" -}}
{{- if and .Values.jobs .Values.flower.enabled }}true{{ end }}
{{- end }}

{{/* Restricted Pod Security Standard, pod level. */}}
{{- define "zephyr-app.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Restricted Pod Security Standard, container level. */}}
{{- define "zephyr-app.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* Pod-level settings every component shares; call with (dict "root" $ "component" "web"). */}}
{{- define "zephyr-app.podCommon" -}}
{{- $root := .root -}}
serviceAccountName: {{ include "zephyr-app.serviceAccountName" $root }}
# No pod calls the Kubernetes API.
automountServiceAccountToken: false
{{- with $root.Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- include "zephyr-app.podSecurityContext" . | nindent 2 }}
{{- with $root.Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with $root.Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if $root.Values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- range $root.Values.topologySpreadConstraints }}
  - maxSkew: {{ .maxSkew }}
    topologyKey: {{ .topologyKey }}
    whenUnsatisfiable: {{ .whenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "zephyr-app.selectorLabels" (dict "root" $root "component" $.component) | nindent 8 }}
  {{- end }}
{{- end }}
volumes:
  - name: tmp
    emptyDir:
      sizeLimit: 256Mi
  {{- if include "zephyr-app.hasSecrets" $root }}
  - name: secrets
    projected:
      # Group-readable by the pod's fsGroup (10001), nobody else.
      defaultMode: 0440
      sources:
        {{- with $root.Values.existingSecret }}
        - secret:
            name: {{ . }}
        {{- end }}
        {{- if and (eq .component "flower") $root.Values.flower.basicAuth.existingSecret }}
        - secret:
            name: {{ $root.Values.flower.basicAuth.existingSecret }}
            items:
              - key: {{ $root.Values.flower.basicAuth.key }}
                path: FLOWER_BASIC_AUTH
        {{- end }}
  {{- end }}
{{- end }}

{{/* Container settings every component shares: image, settings, mounts, security. */}}
{{- define "zephyr-app.containerCommon" -}}
{{- $root := .root -}}
image: {{ include "zephyr-app.image" $root | quote }}
imagePullPolicy: {{ $root.Values.image.pullPolicy }}
envFrom:
  - configMapRef:
      name: {{ include "zephyr-app.fullname" $root }}
{{- if or (include "zephyr-app.hasSecrets" $root) .env }}
env:
  {{- if include "zephyr-app.hasSecrets" $root }}
  - name: ZEPHYR_SECRETS_DIR
    value: {{ include "zephyr-app.secretsDir" $root }}
  {{- end }}
  {{- range .env }}
  - name: {{ .name }}
    value: {{ .value | quote }}
  {{- end }}
{{- end }}
securityContext:
  {{- include "zephyr-app.containerSecurityContext" . | nindent 2 }}
volumeMounts:
  - name: tmp
    mountPath: /tmp
  {{- if include "zephyr-app.hasSecrets" $root }}
  - name: secrets
    mountPath: {{ include "zephyr-app.secretsDir" $root }}
    readOnly: true
  {{- end }}
{{- end }}

{{/* Pod annotations: a changed ConfigMap, or another existingSecret, rolls the pods.
     (Not every value: changing replicas must not restart anything. The Secret's
     contents are not known here: after rotating it, `kubectl rollout restart`.) */}}
{{- define "zephyr-app.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
checksum/secret-name: {{ printf "%s/%s" .Values.existingSecret .Values.flower.basicAuth.existingSecret | sha256sum | trunc 16 }}
{{- with .Values.podAnnotations }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Checks no schema can express: they stop the render, naming the values. */}}
{{- define "zephyr-app.validate" -}}
{{- if gt (int .Values.autoscaling.minReplicas) (int .Values.autoscaling.maxReplicas) }}
{{- fail (printf "autoscaling.minReplicas (%v) must not exceed autoscaling.maxReplicas (%v)" .Values.autoscaling.minReplicas .Values.autoscaling.maxReplicas) }}
{{- end }}
{{- if gt (int .Values.worker.autoscaling.minReplicas) (int .Values.worker.autoscaling.maxReplicas) }}
{{- fail (printf "worker.autoscaling.minReplicas (%v) must not exceed worker.autoscaling.maxReplicas (%v)" .Values.worker.autoscaling.minReplicas .Values.worker.autoscaling.maxReplicas) }}
{{- end }}
{{- if and .Values.worker.autoscaling.enabled (eq .Values.worker.autoscaling.type "hpa") (lt (int .Values.worker.autoscaling.minReplicas) 1) }}
{{- fail "worker.autoscaling.minReplicas (0) needs type keda: an HPA cannot scale to zero" }}
{{- end }}
{{- if and .Values.flower.enabled (not .Values.jobs) }}
{{- fail "flower.enabled needs jobs (the jobs module Flower watches)" }}
{{- end }}
{{- if and (include "zephyr-app.flowerEnabled" .) (not .Values.existingSecret) (not .Values.flower.basicAuth.existingSecret) }}
{{- fail "flower.enabled needs a login: set flower.basicAuth.existingSecret, or existingSecret with a FLOWER_BASIC_AUTH key" }}
{{- end }}
{{- if and .Values.flower.ingress.enabled (not .Values.flower.ingress.host) }}
{{- fail "flower.ingress.enabled needs flower.ingress.host (the host name Flower answers on)" }}
{{- end }}
{{- $redisEnabled := toString .Values.redis.enabled }}
{{- if and (eq $redisEnabled "true") .Values.redis.url }}
{{- fail "redis.enabled is true and redis.url is set: choose the built-in Redis or an external one (leave redis.enabled at auto and the built-in one stays off while redis.url is set)" }}
{{- end }}
{{- if and (eq $redisEnabled "false") (not (include "zephyr-app.externalRedis" .)) }}
{{- fail "redis.enabled is false and no Redis is configured: the pods would look for one at localhost and never be ready; set existingSecret (a Secret with JOB_QUEUE_URL and CACHE_URL) or redis.url (redis://host:6379, no password), or leave redis.enabled at auto for the built-in trial Redis" }}
{{- end }}
{{- include "zephyr-app.checkRedisURL" (dict "name" "redis.url" "url" .Values.redis.url) }}
{{- $scaling := .Values.worker.autoscaling }}
{{- include "zephyr-app.checkRedisURL" (dict "name" "worker.autoscaling.redisUrl" "url" $scaling.redisUrl) }}
{{- $sentinel := or (eq (include "zephyr-app.redisKind" .Values.redis.url) "sentinel") (eq (include "zephyr-app.redisKind" $scaling.redisUrl) "sentinel") }}
{{- if and $sentinel (not .Values.redis.sentinelMaster) }}
{{- fail "redis.sentinelMaster is required with a Sentinel URL (sentinel:// or sentinels://) in redis.url or worker.autoscaling.redisUrl: the name the Sentinels monitor the master under (sentinel monitor <name> ...), e.g. --set redis.sentinelMaster=mymaster" }}
{{- end }}
{{- if and .Values.redis.sentinelMaster (eq (include "zephyr-app.redisKind" .Values.redis.url) "single") }}
{{- fail "redis.sentinelMaster is set but redis.url names one server (redis:// or rediss://): give redis.url the Sentinels (sentinel://h1:26379;sentinel://h2:26379), or leave redis.sentinelMaster empty" }}
{{- end }}
{{- range $setting := list "JOB_QUEUE_URL" "JOB_RESULT_URL" }}
{{- if eq (include "zephyr-app.redisKind" (toString (get ($.Values.settings | default dict) $setting))) "cluster" }}
{{- fail (printf "settings.%s is a Redis Cluster URL (redis+cluster://): Celery's broker and result backend need one keyspace; use one server or Sentinel (a Cluster serves CACHE_URL only)" $setting) }}
{{- end }}
{{- end }}
{{- range $key := list "passwordKey" "sentinelPasswordKey" }}
{{- if and (get $scaling $key) (not $.Values.existingSecret) }}
{{- fail (printf "worker.autoscaling.%s names a key of existingSecret, and existingSecret is empty: set existingSecret (the Secret holding that key)" $key) }}
{{- end }}
{{- end }}
{{- if and .Values.jobs $scaling.enabled (eq $scaling.type "keda") }}
{{- $queueKind := include "zephyr-app.redisKind" (include "zephyr-app.queueRedisURL" .) }}
{{- if not $queueKind }}
{{- fail "worker.autoscaling.type keda reads the queue from Redis: set redis.url (host and port, or the Sentinels with redis.sentinelMaster), worker.autoscaling.redisUrl (when the pods' URLs are in existingSecret), or redis.enabled=true for the built-in one" }}
{{- end }}
{{- if and (gt (int ($scaling.databaseIndex | default 0)) 0) (not $scaling.redisUrl) }}
{{- fail (printf "worker.autoscaling.databaseIndex (%v) goes with worker.autoscaling.redisUrl: the queue KEDA reads through redis.url or the built-in Redis is database 0 (the ConfigMap's JOB_QUEUE_URL)" $scaling.databaseIndex) }}
{{- end }}
{{- if and $scaling.sentinelPasswordKey (ne $queueKind "sentinel") }}
{{- fail "worker.autoscaling.sentinelPasswordKey is set but KEDA reads one Redis server, not Sentinels: give redis.url (or worker.autoscaling.redisUrl) the Sentinels, or leave sentinelPasswordKey empty" }}
{{- end }}
{{- end }}
{{- end }}
