{{/* Names ------------------------------------------------------------------------------ */}}

{{- define "sluice.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The resource-name prefix; component suffixes are at most 11 characters. */}}
{{- define "sluice.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 52 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels: (dict "ctx" $ "component" "envoy") */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" .ctx }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: sluice
{{- end -}}

{{- define "sluice.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "sluice.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Images: (dict "image" .Values.x.image "default" tag) */}}
{{- define "sluice.imageRef" -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository (default .default .image.tag) -}}
{{- end -}}
{{- end -}}

{{- define "sluice.image" -}}
{{- include "sluice.imageRef" (dict "image" .Values.image "default" .Chart.AppVersion) -}}
{{- end -}}

{{/* Addresses ------------------------------------------------------------------------- */}}

{{- define "sluice.svcHost" -}}
{{- printf "%s-%s.%s.svc.%s" (include "sluice.fullname" .ctx) .component .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}

{{- define "sluice.xdsFleetAddr" -}}
{{- printf "%s:%d" (include "sluice.svcHost" (dict "ctx" . "component" "xds")) (int .Values.xds.fleetPort) -}}
{{- end -}}

{{- define "sluice.dispatcherAddr" -}}
{{- printf "%s:%d" (include "sluice.svcHost" (dict "ctx" . "component" "dispatcher")) (int .Values.dispatcher.port) -}}
{{- end -}}

{{/* The extproc socket, shared by Envoy (client) and extproc (server) through an emptyDir. */}}
{{- define "sluice.socketDir" -}}/var/run/sluice{{- end -}}
{{- define "sluice.socketAddr" -}}unix:{{ include "sluice.socketDir" . }}/extproc.sock{{- end -}}

{{/* Where Envoy reaches extproc: the socket (mode envoy) or the extproc Service (mode istio). */}}
{{- define "sluice.extprocAddr" -}}
{{- if eq .Values.mode "istio" -}}
{{- printf "%s:%d" (include "sluice.svcHost" (dict "ctx" . "component" "extproc")) (int .Values.istio.extproc.port) -}}
{{- else -}}
{{- include "sluice.socketAddr" . -}}
{{- end -}}
{{- end -}}

{{/*
mode: "envoy" (the chart's Envoy with the extproc sidecar) or "istio" (an Istio ingress
gateway is the data plane; extproc runs standalone). Validated here as well as in the schema.
*/}}
{{- define "sluice.istio" -}}
{{- if eq .Values.mode "istio" -}}true
{{- else if ne .Values.mode "envoy" -}}{{ fail (printf "mode %q: want envoy or istio" .Values.mode) }}
{{- end -}}
{{- end -}}

{{/* The NetworkPolicy peer of the Istio gateway pods (mode istio). */}}
{{- define "sluice.istioGatewayPeer" -}}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ .Values.istio.gateway.namespace }}
  podSelector:
    matchLabels:
      {{- toYaml .Values.istio.gateway.labels | nindent 6 }}
{{- end -}}

{{/* Store: "bundled" (redis.enabled), "external" (externalRedis) or "file". */}}
{{- define "sluice.store" -}}
{{- $external := or .Values.externalRedis.url .Values.externalRedis.existingSecret -}}
{{- if and .Values.redis.enabled $external -}}
{{- fail "set either redis.enabled or externalRedis, not both" -}}
{{- else if .Values.redis.enabled -}}bundled
{{- else if $external -}}external
{{- else -}}file
{{- end -}}
{{- end -}}

{{/*
SLUICE_REDIS_URL for xds (its config store) and for extproc and the dispatcher (the budget and
rate-limit counters, shared by every replica; the two use separate key prefixes in one Redis).
Bundled: the kubelet assembles the URL from the generated password's Secret; external: the URL
comes from a Secret. Either way the pod spec holds no password. Empty without Redis.
*/}}
{{- define "sluice.redisEnv" -}}
{{- $store := include "sluice.store" . -}}
{{- if eq $store "bundled" }}
- name: REDIS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "sluice.fullname" . }}-redis
      key: password
- name: SLUICE_REDIS_URL
  value: {{ printf "redis://:$(REDIS_PASSWORD)@%s:6379/0" (include "sluice.svcHost" (dict "ctx" . "component" "redis")) }}
{{- else if eq $store "external" }}
- name: SLUICE_REDIS_URL
  valueFrom:
    secretKeyRef:
      {{- if .Values.externalRedis.existingSecret }}
      name: {{ .Values.externalRedis.existingSecret }}
      key: {{ .Values.externalRedis.existingSecretKey }}
      {{- else }}
      name: {{ include "sluice.fullname" . }}-redis-url
      key: url
      {{- end }}
{{- end }}
{{- end -}}

{{/*
The data plane's counter flags (extproc and the dispatcher): what a request under a budget or
rate limit meets when the counters cannot answer (no Redis, or Redis down).
*/}}
{{- define "sluice.counterArgs" -}}
- --counter-failure-mode
- {{ .Values.counters.failureMode }}
{{- end -}}

{{/* Secrets ---------------------------------------------------------------------------- */}}

{{- define "sluice.secretName" -}}
{{- default (printf "%s-secrets" (include "sluice.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "sluice.secretDir" -}}/var/run/secrets/sluice{{- end -}}

{{/*
The secret volume of one component, with only the keys it needs:
(dict "ctx" $ "keys" (list "pepper" …))
*/}}
{{- define "sluice.secretVolume" -}}
- name: secrets
  secret:
    secretName: {{ include "sluice.secretName" .ctx }}
    defaultMode: 0440
    items:
      {{- range .keys }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- end -}}

{{/* The SLUICE_*_FILE variables for the same keys. */}}
{{- define "sluice.secretEnv" -}}
{{- $vars := dict "pepper" "SLUICE_PEPPER_FILE" "master-key" "SLUICE_MASTER_KEY_FILE" "admin-token" "SLUICE_ADMIN_TOKEN_FILE" "fleet-token" "SLUICE_FLEET_TOKEN_FILE" "ctx-key" "SLUICE_CTX_KEY_FILE" -}}
{{- range .keys }}
- name: {{ get $vars . }}
  value: {{ printf "%s/%s" (include "sluice.secretDir" $.ctx) . }}
{{- end }}
{{- end -}}

{{/* Environment every Sluice process gets. */}}
{{- define "sluice.commonEnv" -}}
{{- if .Values.otlp.endpoint }}
- name: SLUICE_OTLP_ENDPOINT
  value: {{ .Values.otlp.endpoint | quote }}
{{- end }}
{{- end -}}

{{/* Security ---------------------------------------------------------------------------- */}}

{{/*
Every pod runs as uid/gid 65532 (the Sluice image's user). Envoy runs as the same uid in its
pod so it may connect to the socket extproc creates.
*/}}
{{- define "sluice.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{- define "sluice.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop: [ALL]
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Scheduling: (dict "ctx" $ "v" .Values.envoy "component" "envoy") */}}
{{- define "sluice.scheduling" -}}
{{- with .v.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .v.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- if .v.spreadAcrossNodes }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: ScheduleAnyway
    labelSelector:
      matchLabels:
        {{- include "sluice.selectorLabels" (dict "ctx" .ctx "component" .component) | nindent 8 }}
{{- end }}
{{- end -}}

{{- define "sluice.podCommon" -}}
serviceAccountName: {{ include "sluice.serviceAccountName" . }}
automountServiceAccountToken: false
enableServiceLinks: false
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- range . }}
  - name: {{ . }}
  {{- end }}
{{- end }}
{{- end -}}

{{/*
The extproc container, the same in both modes: the Envoy pod's sidecar (mode envoy, ext_proc on
the shared Unix socket) and the standalone Deployment (mode istio, ext_proc on a TCP port).
(dict "ctx" $ "listen" addr "grpcPort" 0|port "healthPort" port "preStopSeconds" n
      "resources" {...} "socketDir" ""|dir)
*/}}
{{- define "sluice.extprocContainer" -}}
{{- $ctx := .ctx -}}
- name: extproc
  image: {{ include "sluice.image" $ctx }}
  imagePullPolicy: {{ $ctx.Values.image.pullPolicy }}
  command: [/usr/local/bin/sluice]
  args:
    - extproc
    - --listen
    - {{ .listen | quote }}
    - --health-listen
    - {{ printf ":%d" (int .healthPort) | quote }}
    - --xds
    - {{ include "sluice.xdsFleetAddr" $ctx }}
    - --state-dir
    - /var/lib/sluice
    {{- include "sluice.counterArgs" $ctx | nindent 4 }}
    - --log-level
    - {{ $ctx.Values.logLevel }}
  env:
    {{- include "sluice.secretEnv" (dict "ctx" $ctx "keys" (list "pepper" "ctx-key" "fleet-token")) | trim | nindent 4 }}
    {{- with (include "sluice.commonEnv" $ctx | trim) }}{{ . | nindent 4 }}{{ end }}
    {{- with (include "sluice.redisEnv" $ctx | trim) }}{{ . | nindent 4 }}{{ end }}
  ports:
    {{- if .grpcPort }}
    # ext_proc (gRPC, plaintext HTTP/2); also serves gRPC health.
    - name: grpc
      containerPort: {{ .grpcPort }}
      protocol: TCP
    {{- end }}
    - name: health
      containerPort: {{ .healthPort }}
      protocol: TCP
  startupProbe:
    httpGet:
      path: /healthz
      port: health
    periodSeconds: 2
    failureThreshold: 30
  livenessProbe:
    httpGet:
      path: /healthz
      port: health
    periodSeconds: 10
    failureThreshold: 3
  # Ready once it holds a configuration (from xds or its snapshot).
  readinessProbe:
    httpGet:
      path: /readyz
      port: health
    periodSeconds: 5
    failureThreshold: 3
  lifecycle:
    preStop:
      sleep:
        seconds: {{ .preStopSeconds }}
  resources:
    {{- toYaml .resources | nindent 4 }}
  securityContext:
    {{- include "sluice.containerSecurityContext" $ctx | nindent 4 }}
  volumeMounts:
    {{- with .socketDir }}
    - name: extproc-socket
      mountPath: {{ . }}
    {{- end }}
    - name: state
      mountPath: /var/lib/sluice
    - name: secrets
      mountPath: {{ include "sluice.secretDir" $ctx }}
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end -}}

{{/* The extproc pod's volumes besides the socket. */}}
{{- define "sluice.extprocVolumes" -}}
- name: state
  emptyDir:
    sizeLimit: 64Mi
- name: tmp
  emptyDir:
    sizeLimit: 64Mi
{{ include "sluice.secretVolume" (dict "ctx" . "keys" (list "pepper" "ctx-key" "fleet-token")) }}
{{- end -}}
