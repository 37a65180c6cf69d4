{{/*
RBAC rules, one place, each with what it is for. Rendered into ClusterRoles when the release
serves the whole cluster, into Roles in each plugin namespace otherwise.
*/}}

{{- define "po.operatorRules" -}}
# Reconcile Plugins and DataSourceInstances: kopf watches them and patches its finalizer and
# bookkeeping annotations onto them.
- apiGroups: [plugin-operator.dev]
  resources: [plugins, datasourceinstances, grafanaattachments]
  verbs: [get, list, watch, patch, update]
# Report phase, conditions, health and failures.
- apiGroups: [plugin-operator.dev]
  resources: [plugins/status, datasourceinstances/status, grafanaattachments/status]
  verbs: [get, patch, update]
# Backend pods carry an owner reference with blockOwnerDeletion to their Plugin, which the
# OwnerReferencesPermissionEnforcement admission plugin allows only with this.
- apiGroups: [plugin-operator.dev]
  resources: [plugins/finalizers, datasourceinstances/finalizers, grafanaattachments/finalizers]
  verbs: [update]
# Backend pods: created and replaced by the operator itself (no ReplicaSet); it watches them
# through the rule on pods below, and patches an annotation onto a pod to remember which of
# its container restarts it has already counted in the Plugin's status.restarts.
- apiGroups: [""]
  resources: [pods]
  verbs: [create, delete, patch]
# One Service per Plugin in front of its backend pods.
- apiGroups: [""]
  resources: [services]
  verbs: [get, list, watch, create, patch, update, delete]
# Plugin archives from configMapRef sources; app plugins' secureJsonDataFrom and the Secrets
# DataSourceInstances point at (their changes bump settingsVersion).
- apiGroups: [""]
  resources: [configmaps, secrets]
  verbs: [get, list, watch]
# GrafanaAttachments: the datasource provisioning file for an attached Grafana (secure values
# only as references to the Secrets, never copied), and the NetworkPolicy that lets the
# attached Grafana's pods reach the attach port of its plugins' backends.
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, patch, delete]
- apiGroups: [networking.k8s.io]
  resources: [networkpolicies]
  verbs: [get, create, patch, delete]
{{ include "po.operatorWorkloadRules" . }}
{{- end -}}

{{- define "po.operatorWorkloadRules" -}}
# Sidecar mode: the operator adds backend containers to the target workload's pod template
# with server-side apply (its own field manager), after listing the sidecar Plugins that
# target the same workload. GrafanaAttachments add their init containers, mounts and
# environment to the attached Grafana workload the same way, under a field manager of theirs.
- apiGroups: [plugin-operator.dev]
  resources: [plugins]
  verbs: [get, list, watch]
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, list, watch]
# Only the workloads named in operator.workloadNames, when it lists any (RBAC can narrow
# patch, not list or watch, to names).
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [patch]
  {{- with .Values.operator.workloadNames }}
  resourceNames: {{ toJson . }}
  {{- end }}
# Backend pods and pods with sidecars: readiness, restarts, exit codes, termination messages.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Kubernetes events on Plugins and workloads (why a plugin was rejected, restarts, ...).
- apiGroups: ["", events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{- define "po.gatewayRules" -}}
# Route requests: datasource uid -> DataSourceInstance -> Plugin -> ready backend pods.
- apiGroups: [plugin-operator.dev]
  resources: [plugins, datasourceinstances]
  verbs: [get, list, watch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
# Decrypted secure settings for each request's PluginContext (secureJsonDataFrom).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch]
{{- end -}}

{{- define "po.gatewaySidecarRules" -}}
# Sidecar backends live in the gateway's own pods; it finds their ports there.
- apiGroups: [""]
  resources: [pods]
  verbs: [get, list, watch]
{{- end -}}
