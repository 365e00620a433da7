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
{{- $gateway := dict "filters" .Values.gateway.filters "clusters" (merge (deepCopy .Values.gateway.extraClusters) $clusters) "routes" (concat .Values.gateway.extraRoutes $routes) -}}
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
{{- /* models: the registry's providers and seed */ -}}
{{- $registry := dict "providers" .Values.registry.providers -}}
{{- if .Values.registry.seed -}}
{{- $_ := set $registry "seed_file" "/etc/llmgw/config/registry-seed.yaml" -}}
{{- end -}}
{{- $_ := set $cfg "registry" $registry -}}
{{- toYaml (mustMergeOverwrite $cfg (deepCopy .Values.config)) -}}
{{- end -}}
