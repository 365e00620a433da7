{{/* Names, labels and the pieces every component's objects share. */}}

{{- define "llmgw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "llmgw.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The name of one component's objects: (dict "root" $ "name" "gateway"). The
prefix is cut so that "<prefix>-finetuning-headless" still fits a DNS label. */}}
{{- define "llmgw.componentName" -}}
{{- printf "%s-%s" (include "llmgw.fullname" .root | trunc 43 | trimSuffix "-") .name -}}
{{- end -}}

{{- define "llmgw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "llmgw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "llmgw.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "llmgw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: llmgw
{{- end -}}

{{/* Labels of one component: (dict "root" $ "name" "gateway"). */}}
{{- define "llmgw.componentSelectorLabels" -}}
{{ include "llmgw.selectorLabels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "llmgw.componentLabels" -}}
{{ include "llmgw.labels" .root }}
app.kubernetes.io/component: {{ .name }}
{{- end -}}

{{- define "llmgw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "llmgw.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "llmgw.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* The in-cluster DNS name of a component's headless Service. */}}
{{- define "llmgw.headlessHost" -}}
{{- printf "%s-headless.%s.svc.%s" (include "llmgw.componentName" .) .root.Release.Namespace .root.Values.clusterDomain -}}
{{- end -}}

{{/* Secret names: the chart's own Secret unless an existing one is named. */}}
{{- define "llmgw.secretName" -}}
{{- include "llmgw.fullname" . -}}
{{- end -}}

{{- define "llmgw.databaseSecret" -}}
{{- default (include "llmgw.secretName" .) .Values.database.existingSecret -}}
{{- end -}}

{{- define "llmgw.redisSecret" -}}
{{- default (include "llmgw.secretName" .) .Values.redis.existingSecret -}}
{{- end -}}

{{- define "llmgw.kafkaSaslSecret" -}}
{{- default (include "llmgw.secretName" .) .Values.kafka.sasl.existingSecret -}}
{{- end -}}

{{- define "llmgw.secretsKeysSecret" -}}
{{- default (include "llmgw.secretName" .) .Values.registry.secretsKeysExistingSecret -}}
{{- end -}}

{{- define "llmgw.providersSecret" -}}
{{- default (include "llmgw.componentName" (dict "root" . "name" "providers")) .Values.providers.existingSecret -}}
{{- end -}}

{{- define "llmgw.jwtSecret" -}}
{{- default (include "llmgw.componentName" (dict "root" . "name" "jwt")) .Values.gateway.auth.jwt.existingSecret -}}
{{- end -}}

{{- define "llmgw.hasDatabase" -}}
{{- if or .Values.database.url .Values.database.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "llmgw.hasRedis" -}}
{{- if or .Values.redis.url .Values.redis.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "llmgw.hasSecretsKeys" -}}
{{- if or .Values.registry.secretsKeys .Values.registry.secretsKeysExistingSecret -}}true{{- end -}}
{{- end -}}

{{- define "llmgw.hasProviderKeys" -}}
{{- if or .Values.providers.apiKeys .Values.providers.existingSecret -}}true{{- end -}}
{{- end -}}

{{- define "llmgw.hasJwtKeys" -}}
{{- if or .Values.gateway.auth.jwt.keys .Values.gateway.auth.jwt.existingSecret -}}true{{- end -}}
{{- end -}}

{{/* Non-empty when JWTs are accepted; fails on an incomplete JWT configuration. */}}
{{- define "llmgw.jwtEnabled" -}}
{{- $jwt := .Values.gateway.auth.jwt -}}
{{- $keys := include "llmgw.hasJwtKeys" . -}}
{{- if or $jwt.issuer $jwt.audience $jwt.jwksUrl $keys -}}
{{- if not (and $jwt.issuer $jwt.audience) -}}
{{- fail "gateway.auth.jwt needs both issuer and audience" -}}
{{- end -}}
{{- if and $keys $jwt.jwksUrl -}}
{{- fail "gateway.auth.jwt takes the JWKS from keys/existingSecret or from jwksUrl, not both" -}}
{{- end -}}
{{- if not (or $keys $jwt.jwksUrl) -}}
{{- fail "gateway.auth.jwt needs a JWKS: keys, existingSecret or jwksUrl" -}}
{{- end -}}
{{- if and $jwt.keys (not $jwt.existingSecret) (not (hasKey $jwt.keys $jwt.jwksKey)) -}}
{{- fail (printf "gateway.auth.jwt.keys must hold the JWKS under gateway.auth.jwt.jwksKey (%s)" $jwt.jwksKey) -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* Whether the chart renders its own Secret (some value is given inline). */}}
{{- define "llmgw.ownSecretData" -}}
{{- if and .Values.database.url (not .Values.database.existingSecret) }}
{{ .Values.database.existingSecretKey }}: {{ .Values.database.url | b64enc | quote }}
{{- end }}
{{- if and .Values.redis.url (not .Values.redis.existingSecret) }}
{{ .Values.redis.existingSecretKey }}: {{ .Values.redis.url | b64enc | quote }}
{{- end }}
{{- if and .Values.kafka.sasl.mechanism (not .Values.kafka.sasl.existingSecret) }}
{{ .Values.kafka.sasl.usernameKey }}: {{ .Values.kafka.sasl.username | b64enc | quote }}
{{ .Values.kafka.sasl.passwordKey }}: {{ .Values.kafka.sasl.password | b64enc | quote }}
{{- end }}
{{- if and .Values.registry.secretsKeys (not .Values.registry.secretsKeysExistingSecret) }}
{{ .Values.registry.secretsKeysExistingSecretKey }}: {{ .Values.registry.secretsKeys | b64enc | quote }}
{{- end }}
{{- end -}}

{{/* Environment every process (and the migrations Job) gets: the connection URLs
and Kafka SASL credentials, each from a Secret. */}}
{{- define "llmgw.commonEnv" -}}
{{- if include "llmgw.hasDatabase" . }}
- name: DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "llmgw.databaseSecret" . }}
      key: {{ .Values.database.existingSecretKey }}
{{- end }}
{{- if include "llmgw.hasRedis" . }}
- name: REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ include "llmgw.redisSecret" . }}
      key: {{ .Values.redis.existingSecretKey }}
{{- end }}
{{- if .Values.kafka.sasl.mechanism }}
- name: KAFKA_SASL_USERNAME
  valueFrom:
    secretKeyRef:
      name: {{ include "llmgw.kafkaSaslSecret" . }}
      key: {{ .Values.kafka.sasl.usernameKey }}
- name: KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "llmgw.kafkaSaslSecret" . }}
      key: {{ .Values.kafka.sasl.passwordKey }}
{{- end }}
{{- end -}}

{{/* Volumes every pod mounts: the config, writable scratch space, the Kafka CA. */}}
{{- define "llmgw.commonVolumes" -}}
- name: config
  configMap:
    name: {{ include "llmgw.componentName" (dict "root" . "name" "config") }}
- name: tmp
  emptyDir: {}
- name: data
  emptyDir: {}
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ .Values.kafka.tls.caSecret }}
    items:
      - key: {{ .Values.kafka.tls.caKey }}
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "llmgw.commonVolumeMounts" -}}
- name: config
  mountPath: /etc/llmgw/config
  readOnly: true
- name: tmp
  mountPath: /tmp
- name: data
  mountPath: /var/lib/llmgw
{{- if .Values.kafka.tls.caSecret }}
- name: kafka-ca
  mountPath: /etc/llmgw/kafka-ca
  readOnly: true
{{- end }}
{{- end -}}

{{/* The env of one component's container: (dict "root" $ "name" "models" "component" $c). */}}
{{- define "llmgw.containerEnv" -}}
{{- include "llmgw.commonEnv" .root }}
{{- if eq .name "gateway" }}
{{- include "llmgw.filtersEnv" .root }}
{{- end }}
{{- if and (eq .name "models") (include "llmgw.hasSecretsKeys" .root) }}
- name: LLMGW_SECRETS_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ include "llmgw.secretsKeysSecret" .root }}
      key: {{ .root.Values.registry.secretsKeysExistingSecretKey }}
{{- end }}
{{- with .component.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* What the pods' checksum/secret annotation covers: every secret given inline. */}}
{{- define "llmgw.inlineSecrets" -}}
{{ include "llmgw.ownSecretData" . }}
{{ toYaml .Values.providers.apiKeys }}
{{ toYaml .Values.gateway.auth.jwt.keys }}
{{- end -}}
