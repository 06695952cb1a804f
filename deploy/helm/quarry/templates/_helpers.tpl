{{/* Names, labels, images, addresses and render-time checks shared by every template. */}}

{{- define "quarry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix. Kept short: StatefulSet pods add "-worker-<g>-<r>" and a controller-revision hash label. */}}
{{- define "quarry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "quarry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "quarry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "quarry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "quarry.labels" -}}
helm.sh/chart: {{ include "quarry.chart" . }}
{{ include "quarry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: quarry
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Router: selector and full labels. */}}
{{- define "quarry.router.selectorLabels" -}}
{{ include "quarry.selectorLabels" . }}
app.kubernetes.io/component: router
{{- end -}}

{{- define "quarry.router.labels" -}}
{{ include "quarry.labels" . }}
app.kubernetes.io/component: router
{{- end -}}

{{- define "quarry.router.fullname" -}}
{{ include "quarry.fullname" . }}-router
{{- end -}}

{{/* Worker group g: call with (dict "root" $ "group" g). */}}
{{- define "quarry.worker.groupName" -}}
{{ include "quarry.fullname" .root }}-worker-{{ .group }}
{{- end -}}

{{- define "quarry.worker.selectorLabels" -}}
{{ include "quarry.selectorLabels" .root }}
app.kubernetes.io/component: worker
quarry/ep-group: {{ .group | quote }}
{{- end -}}

{{- define "quarry.worker.labels" -}}
{{ include "quarry.labels" .root }}
app.kubernetes.io/component: worker
quarry/ep-group: {{ .group | quote }}
{{- end -}}

{{/* Stable DNS name of rank r of group g: (dict "root" $ "group" g "rank" r). */}}
{{- define "quarry.worker.rankHost" -}}
{{- $svc := include "quarry.worker.groupName" . -}}
{{ $svc }}-{{ .rank }}.{{ $svc }}.{{ .root.Release.Namespace }}.svc.{{ .root.Values.clusterDomain }}
{{- end -}}

{{/* Every rank of every group, host:port, comma-separated: the router's --workers. */}}
{{- define "quarry.worker.addresses" -}}
{{- $root := . -}}
{{- $out := list -}}
{{- range $g := until (int .Values.workers.groups) -}}
{{- range $r := until (int $root.Values.workers.ranksPerGroup) -}}
{{- $out = append $out (printf "%s:%d" (include "quarry.worker.rankHost" (dict "root" $root "group" $g "rank" $r)) (int $root.Values.workers.port)) -}}
{{- end -}}
{{- end -}}
{{- join "," $out -}}
{{- end -}}

{{- define "quarry.config.name" -}}
{{ include "quarry.fullname" . }}-config
{{- end -}}

{{- define "quarry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "quarry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Image reference from {repository, tag, digest}: call with (dict "image" .Values.x.image "root" $). */}}
{{- define "quarry.image" -}}
{{- if .image.digest -}}
{{ .image.repository }}@{{ .image.digest }}
{{- else -}}
{{ .image.repository }}:{{ default .root.Chart.AppVersion .image.tag }}
{{- end -}}
{{- end -}}

{{- define "quarry.model.dir" -}}
{{ trimSuffix "/" .Values.model.volume.mountPath }}/{{ .Values.model.dir }}
{{- end -}}

{{- define "quarry.model.claimName" -}}
{{- if .Values.model.volume.pvc.existingClaim -}}
{{ .Values.model.volume.pvc.existingClaim }}
{{- else -}}
{{ include "quarry.fullname" . }}-models
{{- end -}}
{{- end -}}

{{/* The model volume (pod spec .volumes entry). */}}
{{- define "quarry.model.volume" -}}
- name: model
{{- if eq .Values.model.volume.type "pvc" }}
  persistentVolumeClaim:
    claimName: {{ include "quarry.model.claimName" . }}
{{- else if eq .Values.model.volume.type "hostPath" }}
  hostPath:
    path: {{ .Values.model.volume.hostPath.path }}
    type: DirectoryOrCreate
{{- else }}
  emptyDir:
    sizeLimit: {{ .Values.model.volume.emptyDir.sizeLimit }}
{{- end }}
{{- end -}}

{{/* Optional init container that fills the model volume (see values model.fetch). */}}
{{- define "quarry.model.fetchInitContainer" -}}
{{- if .Values.model.fetch.enabled }}
- name: fetch-model
  image: {{ include "quarry.image" (dict "image" .Values.model.fetch.image "root" .) }}
  imagePullPolicy: {{ .Values.model.fetch.image.pullPolicy }}
  command: ["/bin/sh", "/etc/quarry/fetch-model.sh"]
  env:
    - name: QUARRY_MODEL_DIR
      value: {{ include "quarry.model.dir" . | quote }}
    - name: HOME
      value: /tmp
    {{- with .Values.model.fetch.env }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  resources:
    {{- toYaml .Values.model.fetch.resources | nindent 4 }}
  volumeMounts:
    - name: model
      mountPath: {{ .Values.model.volume.mountPath }}
    - name: config
      mountPath: /etc/quarry
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end -}}

{{/* gRPC probes on a port for the named health services. Call with (dict "port" p "probes" .Values.x.probes). */}}
{{- define "quarry.grpcProbes" -}}
startupProbe:
  grpc:
    port: {{ .port }}
    service: readiness
  periodSeconds: {{ .probes.startup.periodSeconds }}
  timeoutSeconds: {{ .probes.startup.timeoutSeconds }}
  failureThreshold: {{ .probes.startup.failureThreshold }}
readinessProbe:
  grpc:
    port: {{ .port }}
    service: readiness
  periodSeconds: {{ .probes.readiness.periodSeconds }}
  timeoutSeconds: {{ .probes.readiness.timeoutSeconds }}
  failureThreshold: {{ .probes.readiness.failureThreshold }}
livenessProbe:
  grpc:
    port: {{ .port }}
    service: liveness
  periodSeconds: {{ .probes.liveness.periodSeconds }}
  timeoutSeconds: {{ .probes.liveness.timeoutSeconds }}
  failureThreshold: {{ .probes.liveness.failureThreshold }}
{{- end -}}

{{/* The worker engine (--device): workers.engine.device, with auto resolved. */}}
{{- define "quarry.worker.device" -}}
{{- $w := .Values.workers -}}
{{- if ne $w.engine.device "auto" -}}
{{- $w.engine.device -}}
{{- else if $w.gpu.enabled -}}
cuda
{{- else -}}
cpu
{{- end -}}
{{- end -}}

{{/* Render-time checks that the schema cannot express. */}}
{{- define "quarry.validate" -}}
{{- $r := .Values.router -}}
{{- if le (int $r.terminationGracePeriodSeconds) (add (int $r.preStopSleepSeconds) (int (ceil $r.drainGraceSeconds)) 5 | int) -}}
{{- fail (printf "router.terminationGracePeriodSeconds (%d) must exceed router.preStopSleepSeconds + router.drainGraceSeconds + 5 (%d)" (int $r.terminationGracePeriodSeconds) (add (int $r.preStopSleepSeconds) (int (ceil $r.drainGraceSeconds)) 5 | int)) -}}
{{- end -}}
{{- $budget := mul (int $r.probes.startup.periodSeconds) (int $r.probes.startup.failureThreshold) -}}
{{- if le (int $budget) (int (ceil $r.waitWorkersSeconds)) -}}
{{- fail (printf "router startup probe budget (periodSeconds x failureThreshold = %d s) must exceed router.waitWorkersSeconds (%v): the router reports ready only after it" (int $budget) $r.waitWorkersSeconds) -}}
{{- end -}}
{{- $w := .Values.workers -}}
{{- if le (int $w.terminationGracePeriodSeconds) (add (int (ceil $w.drainGraceSeconds)) 5 | int) -}}
{{- fail (printf "workers.terminationGracePeriodSeconds (%d) must exceed workers.drainGraceSeconds + 5 (%d)" (int $w.terminationGracePeriodSeconds) (add (int (ceil $w.drainGraceSeconds)) 5 | int)) -}}
{{- end -}}
{{- if and (eq .Values.model.volume.type "emptyDir") (not .Values.model.fetch.enabled) -}}
{{- fail "model.volume.type emptyDir starts empty: enable model.fetch (or use pvc / hostPath)" -}}
{{- end -}}
{{- if and .Values.model.fetch.enabled (not .Values.model.fetch.script) -}}
{{- fail "model.fetch.enabled needs model.fetch.script (a /bin/sh script that fills $QUARRY_MODEL_STAGING)" -}}
{{- end -}}
{{- if has (int $w.masterPort) (list (int $w.port) (int $w.metricsPort)) -}}
{{- fail "workers.masterPort must differ from workers.port and workers.metricsPort" -}}
{{- end -}}
{{- if and (gt (int $w.metricsPort) 0) (eq (int $w.metricsPort) (int $w.port)) -}}
{{- fail "workers.metricsPort must differ from workers.port" -}}
{{- end -}}
{{- if and (eq $w.engine.device "cuda") (not $w.gpu.enabled) -}}
{{- fail "workers.engine.device=cuda needs workers.gpu.enabled=true (a GPU per rank)" -}}
{{- end -}}
{{- if and (gt (int $r.metricsPort) 0) (eq (int $r.metricsPort) (int $r.port)) -}}
{{- fail "router.metricsPort must differ from router.port" -}}
{{- end -}}
{{- end -}}

{{/* NCCL / Gloo environment of the workers as a YAML map (rendered into the ConfigMap, read by the workers). */}}
{{- define "quarry.nccl.env" -}}
{{- $n := .Values.workers.nccl -}}
NCCL_DEBUG: {{ $n.debug | quote }}
{{- with $n.debugSubsys }}
NCCL_DEBUG_SUBSYS: {{ . | quote }}
{{- end }}
{{- with $n.socketIfname }}
NCCL_SOCKET_IFNAME: {{ . | quote }}
GLOO_SOCKET_IFNAME: {{ . | quote }}
{{- end }}
{{- with $n.ibHca }}
NCCL_IB_HCA: {{ . | quote }}
{{- end }}
{{- range $k, $v := $n.extraEnv }}
{{ $k }}: {{ $v | toString | quote }}
{{- end }}
{{- end -}}
