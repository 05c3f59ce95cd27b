{{/*
Names. Kubernetes names that become DNS labels (Service, pods) must stay
within 63 characters, so the full name is cut to 63 and every suffixed name
cuts the full name to leave room for its suffix.
*/}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ferry.fullname" -}}
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

{{/* ferry.suffixed (list . "suffix") is "<fullname>-suffix" within 63 characters. */}}
{{- define "ferry.suffixed" -}}
{{- $ctx := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $max := sub 62 (len $suffix) | int -}}
{{- printf "%s-%s" (include "ferry.fullname" $ctx | trunc $max | trimSuffix "-") $suffix -}}
{{- end -}}

{{/*
ferry.clusterName (list . "suffix") names what is cluster-scoped, or lives
in a namespace other releases share: "<release namespace>-<fullname>-suffix"
within 63 characters, so releases of the same name in two namespaces do not
collide.
*/}}
{{- define "ferry.clusterName" -}}
{{- $ctx := index . 0 -}}
{{- $suffix := index . 1 -}}
{{- $max := sub 62 (len $suffix) | int -}}
{{- $base := printf "%s-%s" $ctx.Release.Namespace (include "ferry.fullname" $ctx) | trunc $max | trimSuffix "-" -}}
{{- printf "%s-%s" $base $suffix -}}
{{- end -}}

{{- define "ferry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ferry.labels" -}}
helm.sh/chart: {{ include "ferry.chart" . }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | trunc 63 | trimSuffix "-" | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferry
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ferry.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding ferry's secrets: the user's, or the chart's. */}}
{{- define "ferry.secretName" -}}
{{- default (include "ferry.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{/* Namespace of the agent pods and the provisioner's Lease. */}}
{{- define "ferry.agentsNamespace" -}}
{{- dig "agents" "namespace" "" .Values.config | default "ferry-agents" -}}
{{- end -}}

{{/* Namespace of the promoter's Lease. */}}
{{- define "ferry.leaseNamespace" -}}
{{- dig "promotion" "leaseNamespace" "" .Values.config | default .Release.Namespace -}}
{{- end -}}

{{/*
ferry.agentsRBACNamespaces is a JSON list of the namespaces where ferry
gets the provisioner's rights: the agents namespace when the provisioner
is on, the image builds' namespace when they are on (kaniko pods need the
same rights: pods, and listing the push Secret), and rbac.extraNamespaces;
sorted, without repeats.
*/}}
{{- define "ferry.agentsRBACNamespaces" -}}
{{- $out := list -}}
{{- if dig "agents" "enabled" false .Values.config -}}
{{- $out = append $out (include "ferry.agentsNamespace" .) -}}
{{- end -}}
{{- if dig "images" "enabled" false .Values.config -}}
{{- $out = append $out (dig "images" "namespace" "" .Values.config | default (include "ferry.agentsNamespace" .)) -}}
{{- end -}}
{{- range .Values.rbac.extraNamespaces -}}
{{- $out = append $out . -}}
{{- end -}}
{{- $out | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/*
ferry.promotionRBACNamespaces is a JSON list of the namespaces where ferry
gets the promoter's rights: every promotion environment's namespace in
this cluster (an environment with a kubeconfig context is in another
cluster) when the promoter is on, and rbac.extraNamespaces; sorted,
without repeats.
*/}}
{{- define "ferry.promotionRBACNamespaces" -}}
{{- $out := list -}}
{{- if dig "promotion" "enabled" false .Values.config -}}
{{- range $app := (dig "promotion" "apps" list .Values.config) -}}
{{- range $env := (get $app "environments" | default list) -}}
{{- if and (get $env "namespace") (not (get $env "context")) -}}
{{- $out = append $out (get $env "namespace") -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range .Values.rbac.extraNamespaces -}}
{{- $out = append $out . -}}
{{- end -}}
{{- $out | uniq | sortAlpha | toJson -}}
{{- end -}}

{{/* Where a registryCredentials Secret is mounted. */}}
{{- define "ferry.registryDir" -}}/etc/ferry/registry{{- end -}}

{{/*
ferry.config renders ferry's configuration file from .Values.config with
the settings the chart owns. Secret values are refused (empty ones, as in
examples/ferry.yaml, pass): a ConfigMap is no place for them.
*/}}
{{- define "ferry.config" -}}
{{- $cfg := deepCopy (.Values.config | default dict) -}}
{{- $forbidden := dict
  "jenkins" (list (list "apiToken" "secrets.jenkinsApiToken" "jenkins-api-token"))
  "github" (list (list "token" "secrets.githubToken" "github-token") (list "webhookSecrets" "secrets.githubWebhookSecrets" "github-webhook-secrets"))
  "gitlab" (list (list "token" "secrets.gitlabToken" "gitlab-token") (list "webhookTokens" "secrets.gitlabWebhookTokens" "gitlab-webhook-tokens"))
  "promotion" (list (list "apiToken" "secrets.promotionApiToken" "promotion-api-token"))
  "deliveries" (list (list "apiToken" "secrets.deliveriesApiToken" "deliveries-api-token"))
  "ui" (list (list "sessionKey" "secrets.uiSessionKey" "ui-session-key"))
-}}
{{- range $section, $fields := $forbidden -}}
{{- range $f := $fields -}}
{{- if get (get $cfg $section | default dict) (index $f 0) -}}
{{- fail (printf "config.%s.%s: a secret does not belong in config (it is rendered into a ConfigMap); set %s, or the key %s of secrets.existingSecret" $section (index $f 0) (index $f 1) (index $f 2)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if get (dig "store" "redis" dict $cfg) "password" -}}
{{- fail "config.store.redis.password: a secret does not belong in config (it is rendered into a ConfigMap); set secrets.redisPassword, or the key redis-password of secrets.existingSecret" -}}
{{- end -}}
{{- if get (dig "store" "redis" "sentinel" dict $cfg) "password" -}}
{{- fail "config.store.redis.sentinel.password: a secret does not belong in config (it is rendered into a ConfigMap); set secrets.redisSentinelPassword, or the key redis-sentinel-password of secrets.existingSecret" -}}
{{- end -}}
{{- if hasKey (get $cfg "server" | default dict) "listen" -}}
{{- fail "config.server.listen: the chart sets it from containerPort (the port the probes and the Service use); set containerPort instead" -}}
{{- end -}}
{{- $server := get $cfg "server" | default dict -}}
{{- $_ := set $server "listen" (printf ":%d" (int .Values.containerPort)) -}}
{{- $_ := set $cfg "server" $server -}}
{{- $agents := get $cfg "agents" | default dict -}}
{{- $_ := set $agents "namespace" (include "ferry.agentsNamespace" .) -}}
{{- $_ := set $cfg "agents" $agents -}}
{{- $promotion := get $cfg "promotion" | default dict -}}
{{- $_ := set $promotion "leaseNamespace" (include "ferry.leaseNamespace" .) -}}
{{- if .Values.registryCredentials.existingSecret -}}
{{- $_ := set $promotion "dockerConfig" (printf "%s/.dockerconfigjson" (include "ferry.registryDir" .)) -}}
{{- end -}}
{{- $_ := set $cfg "promotion" $promotion -}}
{{- $deliveries := get $cfg "deliveries" | default dict -}}
{{- $recovery := get $deliveries "recovery" | default dict -}}
{{- $_ := set $recovery "leaseNamespace" (get $recovery "leaseNamespace" | default .Release.Namespace) -}}
{{- $_ := set $deliveries "recovery" $recovery -}}
{{- $_ := set $cfg "deliveries" $deliveries -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/*
ferry.secretEnv lists the Secret keys ferry reads and the environment
variable each becomes: key, variable, the secrets.* value.
*/}}
{{- define "ferry.secretKeys" -}}
- [jenkins-api-token, FERRY_JENKINS_API_TOKEN, jenkinsApiToken]
- [github-webhook-secrets, FERRY_GITHUB_WEBHOOK_SECRETS, githubWebhookSecrets]
- [github-token, FERRY_GITHUB_TOKEN, githubToken]
- [gitlab-webhook-tokens, FERRY_GITLAB_WEBHOOK_TOKENS, gitlabWebhookTokens]
- [gitlab-token, FERRY_GITLAB_TOKEN, gitlabToken]
- [redis-password, FERRY_REDIS_PASSWORD, redisPassword]
- [redis-sentinel-password, FERRY_REDIS_SENTINEL_PASSWORD, redisSentinelPassword]
- [promotion-api-token, FERRY_PROMOTION_API_TOKEN, promotionApiToken]
- [deliveries-api-token, FERRY_DELIVERIES_API_TOKEN, deliveriesApiToken]
- [ui-session-key, FERRY_UI_SESSION_KEY, uiSessionKey]
{{- end -}}

{{/* ferry.checks fails the release on combinations that cannot work. */}}
{{- define "ferry.checks" -}}
{{- $backend := dig "store" "backend" "" .Values.config -}}
{{- $redis := dig "store" "redis" dict .Values.config -}}
{{- $addr := or (get $redis "addr") (dig "sentinel" "addrs" list $redis) (dig "cluster" "addrs" list $redis) -}}
{{- if and (gt (int .Values.replicaCount) 1) (or (eq $backend "memory") (and (eq $backend "") (not $addr))) -}}
{{- fail (printf "replicaCount is %d but ferry would use its in-memory store, which replicas cannot share (events would be lost and built twice): set config.store.redis.addr (or redis.sentinel.addrs or redis.cluster.addrs), or replicaCount: 1" (int .Values.replicaCount)) -}}
{{- end -}}
{{- if .Values.secrets.existingSecret -}}
{{- range $k := include "ferry.secretKeys" . | fromYamlArray -}}
{{- if index $.Values.secrets (index $k 2) -}}
{{- fail (printf "secrets.%s is set together with secrets.existingSecret: put it in that Secret under the key %s instead" (index $k 2) (index $k 0)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
