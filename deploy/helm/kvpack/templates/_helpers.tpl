{{- define "kvpack.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "kvpack.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "kvpack.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kvpack.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "kvpack.labels" -}}
{{ include "kvpack.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "kvpack.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "kvpack.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The server's configuration file: the user's keys, then the ones the chart owns. */}}
{{- define "kvpack.config" -}}
{{- $owned := dict
  "listen" (printf "0.0.0.0:%d" (int .Values.service.grpcPort))
  "metrics_listen" (printf "0.0.0.0:%d" (int .Values.service.metricsPort))
  "data_dir" "/var/lib/kvpack"
  "insecure_plaintext_on_network" .Values.insecure.plaintextOnNetwork
  "insecure_no_auth_on_network" .Values.insecure.noAuthOnNetwork -}}
{{- if .Values.tls.enabled -}}
{{- $_ := set $owned "tls_cert" "/etc/kvpack/tls/tls.crt" -}}
{{- $_ := set $owned "tls_key" "/etc/kvpack/tls/tls.key" -}}
{{- if .Values.tls.clientCA -}}
{{- $_ := set $owned "tls_client_ca" "/etc/kvpack/tls/ca.crt" -}}
{{- end -}}
{{- end -}}
{{- if .Values.auth.enabled -}}
{{- $_ := set $owned "auth_tokens" (printf "/etc/kvpack/auth/%s" .Values.auth.key) -}}
{{- end -}}
{{- with .Values.calibrations.files -}}
{{- $paths := list -}}
{{- range . -}}{{- $paths = append $paths (printf "/etc/kvpack/calibrations/%s" .) -}}{{- end -}}
{{- $_ := set $owned "calibrations" (join "," $paths) -}}
{{- end -}}
{{- if and (eq (int .Values.gpu.count) 0) (not (hasKey .Values.config "device")) -}}
{{- $_ := set $owned "device" "cpu" -}}
{{- end -}}
{{- toYaml (merge $owned (deepCopy .Values.config)) -}}
{{- end -}}

{{/* gRPC health probes: the kubelet's own gRPC probe on a plaintext port; a TCP check when
     the port serves TLS (the kubelet's gRPC probe cannot speak TLS). */}}
{{- define "kvpack.probeAction" -}}
{{- if .Values.tls.enabled -}}
tcpSocket:
  port: grpc
{{- else -}}
grpc:
  port: {{ .Values.service.grpcPort }}
{{- end -}}
{{- end -}}
