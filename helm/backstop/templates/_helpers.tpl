{{/*
Names, labels and the values every component shares. Component templates only call these.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "backstop.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* "<release>-<chart>" (just the release name when it already contains the chart name),
truncated so that "<fullname>-controller-tls" and friends stay within 63 characters. */}}
{{- define "backstop.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object. */}}
{{- define "backstop.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "backstop.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: backstop
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Labels that identify the release (selectors never change after install). */}}
{{- define "backstop.selectorLabels" -}}
app.kubernetes.io/name: {{ include "backstop.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* Labels of one component's objects: call with (dict "root" $ "component" "agent"). */}}
{{- define "backstop.componentLabels" -}}
{{ include "backstop.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Selector of one component's pods: call with (dict "root" $ "component" "agent"). */}}
{{- define "backstop.componentSelector" -}}
{{ include "backstop.selectorLabels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The image reference. */}}
{{- define "backstop.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Flags of the top-level `backstop` command that every daemon takes. */}}
{{- define "backstop.globalArgs" -}}
- --log-format=json
- --log-level={{ .Values.logLevel }}
{{- end }}

{{/* The controller Service's in-cluster DNS name (also a SAN its certificate needs). */}}
{{- define "backstop.controllerHost" -}}
{{- printf "%s-controller.%s.svc" (include "backstop.fullname" .) .Release.Namespace }}
{{- end }}

{{/* HOST:PORT that agents and the operator dial. */}}
{{- define "backstop.controllerAddress" -}}
{{- if .Values.controllerAddress }}
{{- .Values.controllerAddress }}
{{- else }}
{{- printf "%s:%d" (include "backstop.controllerHost" .) (int .Values.controller.service.grpcPort) }}
{{- end }}
{{- end }}

{{/* HOST:PORT of node enrolment. */}}
{{- define "backstop.enrolmentAddress" -}}
{{- if .Values.agent.enrolment.address }}
{{- .Values.agent.enrolment.address }}
{{- else }}
{{- printf "%s:%d" (include "backstop.controllerHost" .) (int .Values.controller.service.enrolmentPort) }}
{{- end }}
{{- end }}

{{/* The Secret with the controller's certificate and key. */}}
{{- define "backstop.tlsSecret" -}}
{{- default (printf "%s-controller-tls" (include "backstop.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/* The Secret with the operator's node certificate (node k8s-<clusterName>). */}}
{{- define "backstop.operatorTlsSecret" -}}
{{- default (printf "%s-operator-tls" (include "backstop.fullname" .)) .Values.operator.tls.existingSecret }}
{{- end }}

{{/* The Secret with the nodes' enrolment tokens. */}}
{{- define "backstop.enrolmentTokenSecret" -}}
{{- default (printf "%s-enrolment-tokens" (include "backstop.fullname" .)) .Values.agent.enrolment.tokenSecret }}
{{- end }}

{{/* The ConfigMap with the CA certificate that nodes trust when they enrol. */}}
{{- define "backstop.caConfigMap" -}}
{{- default (printf "%s-ca" (include "backstop.fullname" .)) .Values.agent.enrolment.caConfigMap }}
{{- end }}

{{/* Where the trust policy is mounted: a directory, so edits reach the daemons (a subPath
mount would never be updated). */}}
{{- define "backstop.trustPolicyDir" -}}/etc/backstop/trust{{- end }}

{{/* The path the daemons read the trust policy from. */}}
{{- define "backstop.trustPolicyPath" -}}
{{- printf "%s/%s" (include "backstop.trustPolicyDir" .) .Values.trustPolicy.key }}
{{- end }}

{{/* The volume that holds the trust policy (a pod's `volumes:` entry named trust-policy). */}}
{{- define "backstop.trustPolicyVolume" -}}
- name: trust-policy
{{- if .Values.trustPolicy.existingSecret }}
  secret:
    secretName: {{ .Values.trustPolicy.existingSecret }}
    defaultMode: 0444
{{- else }}
  configMap:
    name: {{ default (printf "%s-trust" (include "backstop.fullname" .)) .Values.trustPolicy.existingConfigMap }}
{{- end }}
{{- end }}

{{/* The controller's --store value. */}}
{{- define "backstop.storeUrl" -}}
{{- if eq .Values.store.type "postgresql" -}}
$(BACKSTOP_STORE_URL)
{{- else -}}
sqlite:///var/lib/backstop/controller.db
{{- end }}
{{- end }}

{{/* Settings that cannot work together stop the install here, with the fix in the message. */}}
{{- define "backstop.validate" -}}
{{- $type := .Values.store.type }}
{{- if not (has $type (list "sqlite" "postgresql")) }}
{{- fail (printf "store.type is %q: it must be sqlite or postgresql" $type) }}
{{- end }}
{{- $replicas := int .Values.controller.replicas }}
{{- if and .Values.controller.enabled (eq $type "sqlite") (gt $replicas 1) }}
{{- fail (printf "controller.replicas is %d, but the SQLite store is one file on one volume that only one controller may open: keep controller.replicas at 1, or set store.type=postgresql with store.postgresql.existingSecret to run several replicas" $replicas) }}
{{- end }}
{{- if and .Values.controller.enabled (lt $replicas 1) }}
{{- fail (printf "controller.replicas is %d: it must be at least 1 (set controller.enabled=false to run no controller)" $replicas) }}
{{- end }}
{{- if and (eq $type "postgresql") (not .Values.store.postgresql.existingSecret) }}
{{- fail "store.type is postgresql but store.postgresql.existingSecret is empty: name the Secret whose key store.postgresql.urlKey holds the postgresql:// URL" }}
{{- end }}
{{- if and (not .Values.controller.enabled) (not .Values.controllerAddress) (or .Values.agent.enabled (and .Values.operator.enabled .Values.operator.controllerLink)) }}
{{- fail "controller.enabled is false, so set controllerAddress (HOST:PORT) for the agents and the operator to dial" }}
{{- end }}
{{- if and .Values.agent.enabled .Values.agent.enrolment.enabled (not .Values.agent.enrolment.address) (not (and .Values.controller.enabled .Values.controller.enrolment.enabled)) }}
{{- fail "agent.enrolment.enabled needs an enrolment port: set controller.enrolment.enabled=true, or agent.enrolment.address, or agent.enrolment.enabled=false to enrol nodes out of band" }}
{{- end }}
{{- $lease := float64 .Values.agent.lease.seconds }}
{{- if and (gt $lease 0.0) (lt $lease (mulf 2.0 (float64 .Values.agent.reportInterval))) }}
{{- fail (printf "agent.lease.seconds is %v: it must be 0 (off) or at least twice agent.reportInterval (%v)" .Values.agent.lease.seconds .Values.agent.reportInterval) }}
{{- end }}
{{- if not (has .Values.agent.appArmorProfile (list "Unconfined" "RuntimeDefault" "Localhost")) }}
{{- fail (printf "agent.appArmorProfile is %q: it must be Unconfined, RuntimeDefault or Localhost" .Values.agent.appArmorProfile) }}
{{- end }}
{{- if and (eq .Values.agent.appArmorProfile "Localhost") (not .Values.agent.appArmorLocalhostProfile) }}
{{- fail "agent.appArmorProfile is Localhost: name the profile in agent.appArmorLocalhostProfile" }}
{{- end }}
{{- end }}
