{{- define "extworker.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "extworker.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "extworker.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .group }}
{{- end -}}

{{- define "extworker.redisSecret" -}}
{{- if .Values.redis.existingSecret -}}{{ .Values.redis.existingSecret }}{{- else -}}{{ include "extworker.fullname" . }}-redis{{- end -}}
{{- end -}}

{{- define "extworker.secretKeySecret" -}}
{{- if .Values.secretKey.existingSecret -}}{{ .Values.secretKey.existingSecret }}{{- else -}}{{ include "extworker.fullname" . }}-secret-key{{- end -}}
{{- end -}}

{{- define "extworker.image" -}}
{{- $tag := .root.Values.image.tag | default .root.Chart.AppVersion -}}
{{- if eq .group "gpu" -}}
{{- $tag = .root.Values.image.gpuTag | default (printf "%s-cuda" $tag) -}}
{{- end -}}
{{ .root.Values.image.repository }}:{{ $tag }}
{{- end -}}

{{- define "extworker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}{{ .Values.serviceAccount.name | default (include "extworker.fullname" .) }}{{- else -}}{{ .Values.serviceAccount.name }}{{- end -}}
{{- end -}}

{{/* Pods that reach blobs: the API's and the cpu and gpu workers' (at their most). */}}
{{- define "extworker.blobPods" -}}
{{- $n := 0 -}}
{{- $a := .Values.api -}}
{{- if $a.enabled -}}{{- $n = add $n (ternary $a.autoscaling.maxReplicas $a.replicas $a.autoscaling.enabled) -}}{{- end -}}
{{- range $group := list "cpu" "gpu" -}}
{{- $w := index $.Values.workers $group -}}
{{- if $w.enabled -}}
{{- if $w.autoscaling.keda.enabled -}}{{- $n = add $n $w.autoscaling.keda.maxReplicaCount -}}
{{- else if $w.autoscaling.hpa.enabled -}}{{- $n = add $n $w.autoscaling.hpa.maxReplicas -}}
{{- else -}}{{- $n = add $n $w.replicas -}}{{- end -}}
{{- end -}}
{{- end -}}
{{- $n -}}
{{- end -}}

{{/* Refuse several pods on pod-local storage: the API's uploads would be invisible to the workers. */}}
{{- define "extworker.checkBlobs" -}}
{{- $pods := include "extworker.blobPods" . | int -}}
{{- if and (gt $pods 1) (not .Values.blobs.url) (not .Values.blobs.volume.claimName) -}}
{{- fail (printf "blobs: %d pods reach blob storage (the API and the cpu/gpu workers) but it is pod-local — each pod would keep its own files and none could read another's. Set blobs.url (s3://bucket/prefix, with blobs.endpoint for MinIO and the like) or blobs.volume.claimName (a ReadWriteMany PersistentVolumeClaim), or run one such pod." $pods) -}}
{{- end -}}
{{- end -}}

{{/* Storage for every pod: EXTWORKER_BLOB_URL with the standard AWS configuration, and whether Redis must persist. */}}
{{- define "extworker.storageEnv" -}}
{{- $b := .Values.blobs -}}
{{- $pub := .Values.api.publicUrl -}}
{{- if not $pub }}
{{- if and .Values.api.ingress.enabled .Values.api.ingress.host }}
{{- $pub = printf "%s://%s" (ternary "https" "http" (gt (len .Values.api.ingress.tls) 0)) .Values.api.ingress.host -}}
{{- else }}
{{- $pub = printf "http://%s-api:%v" (include "extworker.fullname" .) .Values.api.service.port -}}
{{- end }}
{{- end }}
- name: EXTWORKER_API_URL
  value: {{ $pub | quote }}
{{- if or .Values.store.existingSecret .Values.store.url }}
- name: EXTWORKER_STORE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.store.existingSecret | default (printf "%s-store" (include "extworker.fullname" .)) | quote }}
      key: {{ .Values.store.existingSecretKey | quote }}
{{- end }}
{{- if $b.url }}
- name: EXTWORKER_BLOB_URL
  value: {{ $b.url | quote }}
{{- else if $b.volume.claimName }}
- name: EXTWORKER_BLOB_URL
  value: {{ printf "file://%s" $b.volume.mountPath | quote }}
{{- end }}
{{- if $b.endpoint }}
- name: AWS_ENDPOINT_URL
  value: {{ $b.endpoint | quote }}
{{- end }}
{{- if $b.region }}
- name: AWS_DEFAULT_REGION
  value: {{ $b.region | quote }}
{{- end }}
{{- if $b.credentials.existingSecret }}
- name: AWS_ACCESS_KEY_ID
  valueFrom:
    secretKeyRef: {name: {{ $b.credentials.existingSecret | quote }}, key: {{ $b.credentials.accessKeyIdKey | quote }}}
- name: AWS_SECRET_ACCESS_KEY
  valueFrom:
    secretKeyRef: {name: {{ $b.credentials.existingSecret | quote }}, key: {{ $b.credentials.secretAccessKeyKey | quote }}}
{{- end }}
{{- if .Values.redisPersistence.require }}
- name: EXTWORKER_REQUIRE_PERSISTENT_REDIS
  value: "true"
{{- end }}
{{- end -}}

{{- define "extworker.blobsMount" -}}
{{- if and .Values.blobs.volume.claimName (not .Values.blobs.url) }}
- name: blobs
  mountPath: {{ .Values.blobs.volume.mountPath }}
{{- end }}
{{- end -}}

{{- define "extworker.blobsVolume" -}}
{{- if and .Values.blobs.volume.claimName (not .Values.blobs.url) }}
- name: blobs
  persistentVolumeClaim:
    claimName: {{ .Values.blobs.volume.claimName }}
{{- end }}
{{- end -}}

{{- define "extworker.serviceAccount" -}}
{{- with include "extworker.serviceAccountName" . }}
serviceAccountName: {{ . }}
{{- end }}
{{- end -}}
