{{/* Name of the objects the chart creates (aws-node unless overridden). */}}
{{- define "aws-vpc-cni.fullname" -}}
{{- default "aws-node" .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels carried by every object. */}}
{{- define "aws-vpc-cni.labels" -}}
app.kubernetes.io/name: aws-node
app.kubernetes.io/instance: {{ .Release.Name }}
k8s-app: aws-node
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{/* DaemonSet selector (see originalMatchLabels in values.yaml). */}}
{{- define "aws-vpc-cni.selectorLabels" -}}
{{- if .Values.originalMatchLabels -}}
k8s-app: aws-node
{{- else -}}
app.kubernetes.io/name: aws-node
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}
{{- end -}}

{{- define "aws-vpc-cni.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "aws-vpc-cni.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "aws-vpc-cni.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* true when a Go strconv.ParseBool-style string means true. */}}
{{- define "aws-vpc-cni.isTrue" -}}
{{- if has (toString .) (list "1" "t" "T" "TRUE" "true" "True") -}}true{{- end -}}
{{- end -}}

{{/* Environment of the init container: ENABLE_IPv6, ENABLE_V6_EGRESS, HOST_CNI_BIN_PATH from
     .Values.env, overridden by .Values.init.env. Empty values are left out. */}}
{{- define "aws-vpc-cni.initEnv" -}}
{{- $env := dict -}}
{{- range $k := list "ENABLE_IPv6" "ENABLE_V6_EGRESS" "HOST_CNI_BIN_PATH" -}}
{{- if hasKey $.Values.env $k -}}{{- $_ := set $env $k (index $.Values.env $k) -}}{{- end -}}
{{- end -}}
{{- range $k, $v := .Values.init.env -}}{{- $_ := set $env $k $v -}}{{- end -}}
{{- range $k := keys $env | sortAlpha -}}
{{- $v := index $env $k -}}
{{- if ne (toString $v) "" }}
- name: {{ $k }}
  value: {{ $v | quote }}
{{- end -}}
{{- end -}}
{{- end -}}
