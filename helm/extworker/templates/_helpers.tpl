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
