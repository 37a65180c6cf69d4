{{/* Names: "<release>" when the release name already says plugin-operator, else "<release>-plugin-operator". */}}
{{- define "po.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "po.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else if contains (include "po.name" .) .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name (include "po.name" .) | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "po.gatewayName" -}}{{ include "po.fullname" . }}-gateway{{- end -}}

{{- define "po.operatorServiceAccount" -}}
{{- default (include "po.fullname" .) .Values.serviceAccounts.operator.name -}}
{{- end -}}
{{- define "po.gatewayServiceAccount" -}}
{{- default (include "po.gatewayName" .) .Values.serviceAccounts.gateway.name -}}
{{- end -}}

{{- define "po.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "po.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ include "po.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: plugin-operator
{{- end -}}

{{/* Selector labels of one component (operator | gateway): stable across upgrades. */}}
{{- define "po.selectorLabels" -}}
app.kubernetes.io/name: {{ include "po.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* The namespaces whose Plugins this release serves; empty means the whole cluster. */}}
{{- define "po.clusterWide" -}}
{{- if eq (len .Values.plugins.namespaces) 0 }}true{{ end -}}
{{- end -}}

{{/* The gateway watches one namespace or all of them (its --namespace takes one). */}}
{{- define "po.gatewayClusterWide" -}}
{{- if ne (len .Values.plugins.namespaces) 1 }}true{{ end -}}
{{- end -}}

{{/* Watched namespaces plus the release's own (where the gateway runs and receives sidecars). */}}
{{- define "po.roleNamespaces" -}}
{{- $all := concat (list .Release.Namespace) .Values.plugins.namespaces | uniq -}}
{{- toJson $all -}}
{{- end -}}

{{- define "po.artifactsUrl" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "po.fullname" .) .Release.Namespace .Values.clusterDomain (int .Values.operator.ports.artifacts) -}}
{{- end -}}

{{/* The gateways' copies of the verified archives (the gateway Service's artifacts port). */}}
{{- define "po.artifactMirrorUrl" -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "po.gatewayName" .) .Release.Namespace .Values.clusterDomain (int .Values.gateway.artifactMirror.port) -}}
{{- end -}}

{{/* Paths of trusted key files inside the operator container. */}}
{{- define "po.trustedKeyPaths" -}}
{{- $paths := list -}}
{{- range $file, $_ := .Values.operator.trustedKeys.inline }}{{ $paths = append $paths (printf "/etc/plugin-operator/keys/inline/%s" $file) }}{{ end -}}
{{- range .Values.operator.trustedKeys.keys }}{{ $paths = append $paths (printf "/etc/plugin-operator/keys/external/%s" .) }}{{ end -}}
{{- toJson $paths -}}
{{- end -}}

{{/* Cross-field checks the schema cannot express, failing with what to change. */}}
{{- define "po.validate" -}}
{{- if eq .Values.image.tag "latest" -}}
{{- fail "image.tag: do not use \"latest\": Kubernetes then pulls on every start (pullPolicy Always), which fails on nodes without a registry. Use a version tag, e.g. the chart's appVersion" -}}
{{- end -}}
{{- $keys := .Values.operator.trustedKeys -}}
{{- if and $keys.existingSecret $keys.existingConfigMap -}}
{{- fail "operator.trustedKeys: set existingSecret or existingConfigMap, not both" -}}
{{- end -}}
{{- if and (or $keys.existingSecret $keys.existingConfigMap) (not $keys.keys) -}}
{{- fail "operator.trustedKeys.keys: list the file names (keys) of the trusted public keys in the Secret/ConfigMap you named, e.g. keys: [team.asc]" -}}
{{- end -}}
{{- if and $keys.keys (not (or $keys.existingSecret $keys.existingConfigMap)) -}}
{{- fail "operator.trustedKeys.keys is set but no existingSecret or existingConfigMap says where the keys are" -}}
{{- end -}}
{{- if and .Values.plugins.createNamespaces (has .Release.Namespace .Values.plugins.namespaces) -}}
{{- fail (printf "plugins.namespaces contains the release namespace %q, which Helm cannot create with Pod Security labels: use a separate namespace for plugins, or set plugins.createNamespaces=false and label %q yourself" .Release.Namespace .Release.Namespace) -}}
{{- end -}}
{{- end -}}

{{/* The prometheus.io/* annotations, when enabled. */}}
{{- define "po.scrapeAnnotations" -}}
{{- if .root.Values.monitoring.scrapeAnnotations -}}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}

{{- define "po.hasPrometheusOperator" -}}
{{- if and .Values.monitoring.prometheusOperator.enabled (.Capabilities.APIVersions.Has "monitoring.coreos.com/v1") }}true{{ end -}}
{{- end -}}
