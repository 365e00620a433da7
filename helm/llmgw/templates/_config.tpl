{{/*
The configuration file every process reads (`llmgw serve NAME --config ...`).

One document configures the whole suite: each process takes the kernel's
sections and its own, and sets the other processes' sections aside. Listen
addresses and ports come from the command line. No secret goes here: URLs with
passwords and keys reach the processes as environment variables from Secrets.
*/}}
{{- define "llmgw.config" -}}
{{- $root := . -}}
{{- $cfg := dict "logging" (dict "level" .Values.logLevel) -}}
{{- $_ := set $cfg "server" (dict "grace_period_seconds" .Values.gracePeriodSeconds) -}}
{{- $_ := set $cfg "metrics" (dict "enabled" true) -}}
{{- if not (include "llmgw.hasDatabase" .) -}}
{{- $_ := set $cfg "database_url" "sqlite+aiosqlite:////var/lib/llmgw/llmgw.db" -}}
{{- end -}}
{{- $kafka := dict "bootstrap_servers" .Values.kafka.bootstrapServers "client_id" .Values.kafka.clientId "security_protocol" .Values.kafka.securityProtocol -}}
{{- if .Values.kafka.sasl.mechanism -}}
{{- $_ := set $kafka "sasl_mechanism" .Values.kafka.sasl.mechanism -}}
{{- $_ := set $kafka "sasl_username_env" "KAFKA_SASL_USERNAME" -}}
{{- $_ := set $kafka "sasl_password_env" "KAFKA_SASL_PASSWORD" -}}
{{- end -}}
{{- if .Values.kafka.tls.caSecret -}}
{{- $_ := set $kafka "ssl_cafile" "/etc/llmgw/kafka-ca/ca.crt" -}}
{{- end -}}
{{- $_ := set $cfg "kafka" $kafka -}}
{{- /* gateway: one cluster per enabled backend, found through its headless Service */ -}}
{{- $clusters := dict -}}
{{- $routes := list -}}
{{- $apis := dict "inference" "llmgw.inference.v1.InferenceService" "models" "llmgw.models.v1.ModelRegistryService" "finetuning" "llmgw.finetuning.v1.FineTuningService" "usage" "llmgw.usage.v1.UsageService" -}}
{{- range $name := list "inference" "models" "finetuning" "usage" -}}
{{- $component := index $root.Values.components $name -}}
{{- if $component.enabled -}}
{{- $dns := dict "name" (include "llmgw.headlessHost" (dict "root" $root "name" $name)) "port" (int $component.port) "refresh_seconds" $root.Values.gateway.dnsRefreshSeconds -}}
{{- $_ := set $clusters $name (merge (dict "dns" $dns) (deepCopy $root.Values.gateway.clusterDefaults)) -}}
{{- $route := dict "match" (dict "service" (index $apis $name)) "cluster" $name -}}
{{- if eq $name "inference" -}}
{{- $_ := set $route "timeout_seconds" $root.Values.gateway.inferenceTimeoutSeconds -}}
{{- end -}}
{{- $routes = append $routes $route -}}
{{- end -}}
{{- end -}}
{{- $gateway := dict "clusters" (merge (deepCopy .Values.gateway.extraClusters) $clusters) "routes" (concat .Values.gateway.extraRoutes $routes) -}}
{{- /* the filter chain; with Redis filters it holds $(REDIS_URL) and travels in the
gateway's environment instead (see llmgw.filtersEnv), so no Redis password lands here */ -}}
{{- if not (include "llmgw.filtersNeedRedisUrl" .) -}}
{{- $_ := set $gateway "filters" (include "llmgw.filters" . | fromJsonArray) -}}
{{- end -}}
{{- /* the HTTP edge: off unless enabled (the gateway's default would pick a random port) */ -}}
{{- $http := dict "enabled" .Values.gateway.http.enabled -}}
{{- if .Values.gateway.http.enabled -}}
{{- $_ := set $http "host" "0.0.0.0" -}}
{{- $_ := set $http "port" (int .Values.gateway.http.port) -}}
{{- $_ := set $http "max_body_bytes" (int64 .Values.gateway.http.maxBodyBytes) -}}
{{- end -}}
{{- $_ := set $gateway "http" $http -}}
{{- /* security: the admin API's polling, audit topic, spend ledger, JWTs, bootstrap key */ -}}
{{- $sec := .Values.gateway.security -}}
{{- $security := dict "poll_interval_seconds" $sec.pollIntervalSeconds "audit_topic" $sec.auditTopic "spend_namespace" $sec.spendNamespace "bootstrap_project" $sec.bootstrapProject -}}
{{- if $sec.bootstrapKey.existingSecret -}}
{{- $_ := set $security "bootstrap_key_file" "/etc/llmgw/bootstrap/admin.key" -}}
{{- end -}}
{{- $jwt := .Values.gateway.auth.jwt -}}
{{- if include "llmgw.jwtEnabled" . -}}
{{- $jwtConfig := dict "issuer" $jwt.issuer "audience" $jwt.audience "subject_claim" $jwt.claims.subject "project_claim" $jwt.claims.project "scopes_claim" $jwt.claims.scopes "name_claim" $jwt.claims.name -}}
{{- if include "llmgw.hasJwtKeys" . -}}
{{- $_ := set $jwtConfig "jwks_file" (printf "%s/jwks.json" (trimSuffix "/" $jwt.mountPath)) -}}
{{- else -}}
{{- $_ := set $jwtConfig "jwks_url" $jwt.jwksUrl -}}
{{- end -}}
{{- $_ := set $security "jwt" $jwtConfig -}}
{{- end -}}
{{- $_ := set $gateway "security" $security -}}
{{- if .Values.gateway.tls.enabled -}}
{{- $tls := dict "cert_file" "/etc/llmgw/tls/tls.crt" "key_file" "/etc/llmgw/tls/tls.key" -}}
{{- if .Values.gateway.tls.clientCaKey -}}
{{- $_ := set $tls "client_ca_file" "/etc/llmgw/tls/client-ca.crt" -}}
{{- end -}}
{{- $_ := set $gateway "listener" (dict "tls" $tls) -}}
{{- end -}}
{{- $_ := set $cfg "gateway" $gateway -}}
{{- /* inference: the routing table from the registry (or a file), usage spool on disk */ -}}
{{- if .Values.inference.followRegistry -}}
{{- $_ := set $cfg "routing" (dict "registry_address" (printf "%s:%d" (include "llmgw.componentName" (dict "root" $root "name" "models")) (int .Values.components.models.port))) -}}
{{- else -}}
{{- $_ := set $cfg "routing" (dict "file" "/etc/llmgw/config/routing.yaml") -}}
{{- end -}}
{{- $_ := set $cfg "usage" (dict "spool_dir" "/var/lib/llmgw/spool/usage") -}}
{{- /* usage: the audit topic and spend ledger the gateway uses too */ -}}
{{- $_ := set $cfg "pipeline" (dict "audit_topic" .Values.gateway.security.auditTopic "spend_namespace" .Values.gateway.security.spendNamespace) -}}
{{- /* models: the registry's providers and seed */ -}}
{{- $registry := dict "providers" .Values.registry.providers -}}
{{- if .Values.registry.seed -}}
{{- $_ := set $registry "seed_file" "/etc/llmgw/config/registry-seed.yaml" -}}
{{- end -}}
{{- $_ := set $cfg "registry" $registry -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.config)) -}}
{{- end -}}


{{/* The gateway's filter chain as JSON: gateway.filters, where rate_limit and budget
get the release's Redis ($(REDIS_URL), expanded by the kubelet from the Secret-backed
variable), gateway.onRedisError and the spend namespace unless their config sets
them; without Redis they are left out. */}}
{{- define "llmgw.filters" -}}
{{- $root := . -}}
{{- $filters := list -}}
{{- range .Values.gateway.filters -}}
{{- if has .name (list "rate_limit" "budget") -}}
{{- if include "llmgw.hasRedis" $root -}}
{{- $config := deepCopy (default (dict) .config) -}}
{{- if not (hasKey $config "redis_url") -}}
{{- $_ := set $config "redis_url" "$(REDIS_URL)" -}}
{{- end -}}
{{- if not (hasKey $config "on_redis_error") -}}
{{- $_ := set $config "on_redis_error" $root.Values.gateway.onRedisError -}}
{{- end -}}
{{- if not (hasKey $config "namespace") -}}
{{- $_ := set $config "namespace" $root.Values.gateway.security.spendNamespace -}}
{{- end -}}
{{- $filters = append $filters (merge (dict "config" $config) (deepCopy .)) -}}
{{- end -}}
{{- else -}}
{{- $filters = append $filters (deepCopy .) -}}
{{- end -}}
{{- end -}}
{{- toJson $filters -}}
{{- end -}}

{{/* Non-empty when the chain names the Redis URL (it then goes into the environment). */}}
{{- define "llmgw.filtersNeedRedisUrl" -}}
{{- if contains "$(REDIS_URL)" (include "llmgw.filters" .) -}}true{{- end -}}
{{- end -}}

{{/* The gateway's LLMGW_GATEWAY__FILTERS variable, after REDIS_URL in its env. */}}
{{- define "llmgw.filtersEnv" -}}
{{- if include "llmgw.filtersNeedRedisUrl" . }}
- name: LLMGW_GATEWAY__FILTERS
  value: {{ include "llmgw.filters" . | toJson }}
{{- end }}
{{- end -}}
