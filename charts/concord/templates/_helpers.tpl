{{/*
Names, labels and the addresses members dial. Every template takes them from here, so --peers,
--advertise, --groups, the Services and the TLS certificate's names cannot drift apart.
*/}}

{{- define "concord.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's prefix for every object: the release name, or <release>-concord. */}}
{{- define "concord.fullname" -}}
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

{{- define "concord.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels every object carries. */}}
{{- define "concord.labels" -}}
helm.sh/chart: {{ include "concord.chart" . }}
{{ include "concord.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: concord
{{- end -}}

{{/* Labels that select this release's objects. */}}
{{- define "concord.selectorLabels" -}}
app.kubernetes.io/name: {{ include "concord.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/*
Selector labels of one consensus group's pods: (dict "ctx" $ "component" "shard" "group" "g1").
The coordinators' group is "meta", as in `concord status`.
*/}}
{{- define "concord.groupSelectorLabels" -}}
{{ include "concord.selectorLabels" .ctx }}
app.kubernetes.io/component: {{ .component }}
concord.io/group: {{ .group }}
{{- end -}}

{{- define "concord.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Coordinators: the StatefulSet, its headless Service (peer DNS) and the client Service. */}}
{{- define "concord.coordinator.name" -}}
{{- printf "%s-coordinator" (include "concord.fullname" .) -}}
{{- end -}}
{{- define "concord.coordinator.peersService" -}}
{{- printf "%s-coordinator-peers" (include "concord.fullname" .) -}}
{{- end -}}
{{- define "concord.coordinator.clientService" -}}
{{- include "concord.coordinator.name" . -}}
{{- end -}}

{{/* A shard group's StatefulSet, which is also the name of its headless Service: (dict "ctx" $ "group" "g1"). */}}
{{- define "concord.shard.name" -}}
{{- printf "%s-shard-%s" (include "concord.fullname" .ctx) .group -}}
{{- end -}}

{{/*
The shard group ids, as a JSON list: `shards.groups` is a count (3: g1, g2, g3) or a list of ids.
Use: include "concord.shard.groupIds" . | fromJsonArray
*/}}
{{- define "concord.shard.groupIds" -}}
{{- $groups := .Values.shards.groups -}}
{{- $ids := list -}}
{{- if kindIs "slice" $groups -}}
{{- $ids = $groups -}}
{{- else -}}
{{- range $i := until (int $groups) -}}
{{- $ids = append $ids (printf "g%d" (add1 $i)) -}}
{{- end -}}
{{- end -}}
{{- toJson $ids -}}
{{- end -}}

{{/* The DNS suffix of a headless Service: <service>.<namespace>.svc.<clusterDomain>. */}}
{{- define "concord.serviceDomain" -}}
{{- printf "%s.%s.svc.%s" .service .ctx.Release.Namespace .ctx.Values.clusterDomain -}}
{{- end -}}

{{/*
The members of one StatefulSet as --peers wants them: <pod>=<pod>.<service>.<ns>.svc.<domain>:<port>,...
The member id is the pod name, so `concord status` names pods as kubectl does.
(dict "ctx" $ "statefulSet" "x" "service" "y" "replicas" 3 "port" 7100)
*/}}
{{- define "concord.peers" -}}
{{- $domain := include "concord.serviceDomain" (dict "ctx" .ctx "service" .service) -}}
{{- $entries := list -}}
{{- range $i := until (int .replicas) -}}
{{- $pod := printf "%s-%d" $.statefulSet $i -}}
{{- $entries = append $entries (printf "%s=%s.%s:%d" $pod $pod $domain (int $.port)) -}}
{{- end -}}
{{- join "," $entries -}}
{{- end -}}

{{/* The replicas' addresses of one StatefulSet, joined by "|" as --groups wants them. */}}
{{- define "concord.addresses" -}}
{{- $domain := include "concord.serviceDomain" (dict "ctx" .ctx "service" .service) -}}
{{- $entries := list -}}
{{- range $i := until (int .replicas) -}}
{{- $entries = append $entries (printf "%s-%d.%s:%d" $.statefulSet $i $domain (int $.port)) -}}
{{- end -}}
{{- join "|" $entries -}}
{{- end -}}

{{/* The coordinators' --groups: g1=<g1-0>:7100|<g1-1>:7100|...,g2=... */}}
{{- define "concord.coordinator.groupsFlag" -}}
{{- $entries := list -}}
{{- range $group := include "concord.shard.groupIds" . | fromJsonArray -}}
{{- $name := include "concord.shard.name" (dict "ctx" $ "group" $group) -}}
{{- $addresses := include "concord.addresses" (dict "ctx" $ "statefulSet" $name "service" $name "replicas" $.Values.shards.replicas "port" $.Values.shards.port) -}}
{{- $entries = append $entries (printf "%s=%s" $group $addresses) -}}
{{- end -}}
{{- join "," $entries -}}
{{- end -}}

{{/*
A StatefulSet name must leave room for the pod ordinal and the controller-revision-hash label
(63 characters): Kubernetes accepts a longer name and then fails to create the pods.
*/}}
{{- define "concord.checkStatefulSetName" -}}
{{- if gt (len .) 52 -}}
{{- fail (printf "StatefulSet name %q is %d characters; at most 52 fit the labels Kubernetes derives from it: shorten fullnameOverride, the release name or the shard group ids" . (len .)) -}}
{{- end -}}
{{- end -}}

{{/* Whether traces are exported, and where. */}}
{{- define "concord.tracing.enabled" -}}
{{- if or .Values.tracing.enabled .Values.jaeger.enabled -}}true{{- end -}}
{{- end -}}

{{- define "concord.jaeger.name" -}}
{{- printf "%s-jaeger" (include "concord.fullname" .) -}}
{{- end -}}

{{- define "concord.tracing.endpoint" -}}
{{- if .Values.tracing.otlpEndpoint -}}
{{- .Values.tracing.otlpEndpoint -}}
{{- else if .Values.jaeger.enabled -}}
{{- $port := ternary 4317 4318 (eq .Values.tracing.protocol "grpc") -}}
{{- printf "http://%s.%s.svc.%s:%d" (include "concord.jaeger.name" .) .Release.Namespace .Values.clusterDomain $port -}}
{{- else -}}
{{- fail "tracing.enabled needs somewhere to send traces: set tracing.otlpEndpoint (an OTLP collector) or jaeger.enabled=true" -}}
{{- end -}}
{{- end -}}

{{/* TLS: the Secret holding tls.crt, tls.key and ca.crt. */}}
{{- define "concord.tls.secretName" -}}
{{- default (printf "%s-tls" (include "concord.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{- define "concord.tls.mountPath" -}}/etc/concord/tls{{- end -}}

{{/*
The names the certificate must hold: every member is dialled at its pod DNS name (a wildcard per
headless Service covers a StatefulSet's pods), clients dial the client Service, and a port-forward
dials localhost.
*/}}
{{- define "concord.tls.dnsNames" -}}
{{- $ns := .Release.Namespace -}}
{{- $domain := .Values.clusterDomain -}}
{{- $client := include "concord.coordinator.clientService" . -}}
{{- $names := list (printf "*.%s" (include "concord.serviceDomain" (dict "ctx" . "service" (include "concord.coordinator.peersService" .)))) -}}
{{- range $group := include "concord.shard.groupIds" . | fromJsonArray -}}
{{- $names = append $names (printf "*.%s" (include "concord.serviceDomain" (dict "ctx" $ "service" (include "concord.shard.name" (dict "ctx" $ "group" $group))))) -}}
{{- end -}}
{{- $names = concat $names (list $client (printf "%s.%s" $client $ns) (printf "%s.%s.svc" $client $ns) (printf "%s.%s.svc.%s" $client $ns $domain) "localhost") -}}
{{- toJson $names -}}
{{- end -}}

{{/* Resources of a role: its own when not empty, else the shared ones. */}}
{{- define "concord.resources" -}}
{{- $own := .role.resources | default dict -}}
{{- if $own -}}
{{- toYaml $own -}}
{{- else -}}
{{- toYaml .ctx.Values.resources -}}
{{- end -}}
{{- end -}}

{{/*
Affinity of one consensus group's pods: the role's own when not empty, else anti-affinity between
the members of the group, so a node failure costs the group at most one member.
(dict "ctx" $ "role" .Values.shards "component" "shard" "group" "g1")
*/}}
{{- define "concord.affinity" -}}
{{- if .role.affinity -}}
{{- toYaml .role.affinity -}}
{{- else if eq .ctx.Values.antiAffinity "soft" -}}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "concord.groupSelectorLabels" . | nindent 12 }}
{{- else if eq .ctx.Values.antiAffinity "hard" -}}
podAntiAffinity:
  requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- include "concord.groupSelectorLabels" . | nindent 10 }}
{{- end -}}
{{- end -}}

{{/* Majority of n members: floor(n/2)+1, the PodDisruptionBudget's minAvailable. */}}
{{- define "concord.majority" -}}
{{- add1 (div (int .) 2) -}}
{{- end -}}

{{/* Pod annotations: Prometheus scraping, then the shared and the role's own. */}}
{{- define "concord.podAnnotations" -}}
{{- $annotations := dict -}}
{{- if and .ctx.Values.metrics.enabled .ctx.Values.metrics.podAnnotations -}}
{{- $_ := set $annotations "prometheus.io/scrape" "true" -}}
{{- $_ := set $annotations "prometheus.io/port" (toString .ctx.Values.metrics.port) -}}
{{- $_ := set $annotations "prometheus.io/path" "/metrics" -}}
{{- end -}}
{{- $annotations = merge (deepCopy (.role.podAnnotations | default dict)) (deepCopy (.ctx.Values.podAnnotations | default dict)) $annotations -}}
{{- if $annotations -}}
{{- toYaml $annotations -}}
{{- end -}}
{{- end -}}

{{/* host:port a server binds in the pod. */}}
{{- define "concord.listen" -}}
{{- if contains ":" .host -}}
{{- printf "[%s]:%d" .host (int .port) -}}
{{- else -}}
{{- printf "%s:%d" .host (int .port) -}}
{{- end -}}
{{- end -}}

{{/*
Probes of a Concord container: gRPC health without TLS; with TLS the same question asked by
`concord health` in the container (an exec probe with the pod's CONCORD_TLS_* files), since
kubelet's gRPC probe cannot present the client certificate the servers require. It dials
localhost, a name the certificate holds.
(dict "ctx" $ "port" 7100 "service" "concord.v1.Shard")
*/}}
{{- define "concord.probes" -}}
{{- $probes := .ctx.Values.probes -}}
livenessProbe:
  {{- if .ctx.Values.tls.enabled }}
  exec:
    command: ["concord", "health", "--addr", "localhost:{{ .port }}"]
  {{- else }}
  grpc:
    port: {{ .port }}
    service: ""
  {{- end }}
  {{- toYaml $probes.liveness | nindent 2 }}
readinessProbe:
  {{- if .ctx.Values.tls.enabled }}
  exec:
    command: ["concord", "health", "--addr", "localhost:{{ .port }}", "--service", {{ .service | quote }}]
  {{- else }}
  grpc:
    port: {{ .port }}
    service: {{ .service }}
  {{- end }}
  {{- toYaml $probes.readiness | nindent 2 }}
{{- end -}}

{{/* Environment every Concord container shares: the pod's identity, tracing, the TLS files. (dict "ctx" $ "role" .Values.shards "serviceName" "concord-shard") */}}
{{- define "concord.env" -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: CONCORD_SERVICE_NAME
  value: {{ .serviceName }}
{{- if include "concord.tracing.enabled" .ctx }}
- name: OTEL_SERVICE_NAME
  value: {{ .serviceName }}
- name: OTEL_TRACES_EXPORTER
  value: otlp
- name: OTEL_EXPORTER_OTLP_ENDPOINT
  value: {{ include "concord.tracing.endpoint" .ctx | quote }}
- name: OTEL_EXPORTER_OTLP_PROTOCOL
  value: {{ .ctx.Values.tracing.protocol | quote }}
- name: OTEL_TRACES_SAMPLER
  value: {{ .ctx.Values.tracing.sampler | quote }}
{{- with .ctx.Values.tracing.samplerArg }}
- name: OTEL_TRACES_SAMPLER_ARG
  value: {{ . | quote }}
{{- end }}
{{- $attributes := list "service.namespace=concord" (printf "service.instance.id=$(POD_NAME)") "k8s.pod.name=$(POD_NAME)" "k8s.namespace.name=$(POD_NAMESPACE)" (printf "helm.release=%s" .ctx.Release.Name) -}}
{{- range $key, $value := .ctx.Values.tracing.resourceAttributes }}
{{- $attributes = append $attributes (printf "%s=%s" $key $value) -}}
{{- end }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ join "," $attributes | quote }}
{{- end }}
{{- if .ctx.Values.tls.enabled }}
{{- include "concord.tlsEnv" .ctx }}
{{- end }}
{{- with .role.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The TLS files, as CONCORD_TLS_* variables rather than flags: `concord serve <role>` and the CLI read
the same variables, so `kubectl exec <pod> -- concord status` speaks mutual TLS without flags.
*/}}
{{- define "concord.tlsEnv" }}
- name: CONCORD_TLS_CERT
  value: {{ include "concord.tls.mountPath" . }}/tls.crt
- name: CONCORD_TLS_KEY
  value: {{ include "concord.tls.mountPath" . }}/tls.key
- name: CONCORD_TLS_CA
  value: {{ include "concord.tls.mountPath" . }}/ca.crt
{{- end -}}


{{/* Volumes every Concord pod mounts besides its data: /tmp (the root filesystem is read-only) and the TLS files. */}}
{{- define "concord.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if .Values.tls.enabled }}
- name: tls
  secret:
    secretName: {{ include "concord.tls.secretName" . }}
    # 0440: read by the owner and the group (fsGroup), by nobody else.
    defaultMode: 288
    # Only what the processes read: the generated Secret also holds the CA's key.
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}

{{- define "concord.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: {{ include "concord.tls.mountPath" . }}
  readOnly: true
{{- end }}
{{- end -}}


{{/*
The first arguments of a Concord container: the image's entrypoint runs `concord serve`, so the
arguments start with the role; the role's flags follow.
*/}}
{{- define "concord.serveArgs" -}}
- {{ . }}
{{- end -}}

{{/*
On an upgrade of an installed release (lookup finds its StatefulSets; it finds nothing under
`helm template` or --dry-run=client), refuses values that would change a group's membership behind
Raft's back: a pod added by scaling up would bootstrap from a --peers list no other member holds,
and a group added to the ring would hold keys the ring already gave to other groups.
*/}}
{{- define "concord.checkUpgrade" -}}
{{- $coordinator := lookup "apps/v1" "StatefulSet" .Release.Namespace (include "concord.coordinator.name" .) -}}
{{- if $coordinator -}}
{{- if ne (int $coordinator.spec.replicas) (int .Values.coordinator.replicas) -}}
{{- fail (printf "coordinator.replicas is %d but the meta group was founded with %d: the chart does not change a Raft group's membership (concord member changes it, one step at a time; see docs/operations.md)" (int .Values.coordinator.replicas) (int $coordinator.spec.replicas)) -}}
{{- end -}}
{{- $installed := list -}}
{{- $existing := lookup "apps/v1" "StatefulSet" .Release.Namespace "" -}}
{{- range $sts := ($existing.items | default list) -}}
{{- $labels := $sts.metadata.labels | default dict -}}
{{- if and (eq (index $labels "app.kubernetes.io/instance" | default "") $.Release.Name) (eq (index $labels "app.kubernetes.io/component" | default "") "shard") -}}
{{- $installed = append $installed (index $labels "concord.io/group") -}}
{{- if ne (int $sts.spec.replicas) (int $.Values.shards.replicas) -}}
{{- fail (printf "shards.replicas is %d but shard group %s was founded with %d: the chart does not change a Raft group's membership (concord member changes it, one step at a time; see docs/operations.md)" (int $.Values.shards.replicas) (index $labels "concord.io/group") (int $sts.spec.replicas)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- $wanted := include "concord.shard.groupIds" . | fromJsonArray -}}
{{- if and $installed (ne (toJson (sortAlpha $installed)) (toJson (sortAlpha $wanted))) -}}
{{- fail (printf "shards.groups is %s but the release was installed with %s: changing the ring needs online resharding, which is not built yet; keep the groups, or install a new release" (toJson $wanted) (toJson (sortAlpha $installed))) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Checks across values that the schema cannot express; each failure names the values to fix.
*/}}
{{- define "concord.checkValues" -}}
{{- $chartFlags := dict
  "coordinator" (list "engine" "member-id" "listen" "advertise" "peers" "data-dir" "groups" "ring-vnodes" "ring-epoch" "tick-ms" "election-ticks" "heartbeat-ticks" "snapshot-every" "sync" "shard-timeout" "log-level" "metrics-listen" "tls-cert" "tls-key" "tls-ca")
  "shards" (list "engine" "group-id" "member-id" "listen" "advertise" "peers" "data-dir" "ring-groups" "ring-vnodes" "ring-epoch" "tick-ms" "election-ticks" "heartbeat-ticks" "snapshot-every" "sync" "read-mode" "log-level" "metrics-listen" "tls-cert" "tls-key" "tls-ca") -}}
{{- range $role, $reserved := $chartFlags -}}
{{- range $arg := (index $.Values $role).extraArgs -}}
{{- $flag := regexReplaceAll "^--([^=]+).*$" $arg "${1}" -}}
{{- if has $flag $reserved -}}
{{- fail (printf "%s.extraArgs: --%s is set by the chart from its values (see values.yaml); set it there rather than twice" $role $flag) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if has "meta" (include "concord.shard.groupIds" . | fromJsonArray) -}}
{{- fail "shards.groups: meta names the coordinators' own group (concord status, concord member ... meta); name the shard group otherwise" -}}
{{- end -}}
{{- range $role := list "coordinator" "shards" -}}
{{- $raft := (index $.Values $role).raft -}}
{{- if ge (int $raft.heartbeatTicks) (int $raft.electionTicks) -}}
{{- fail (printf "%s.raft.heartbeatTicks (%d) must be less than %s.raft.electionTicks (%d): a leader has to be heard from more often than followers time out" $role (int $raft.heartbeatTicks) $role (int $raft.electionTicks)) -}}
{{- end -}}
{{- if and $.Values.metrics.enabled (eq (int $.Values.metrics.port) (int (index $.Values $role).port)) -}}
{{- fail (printf "metrics.port (%d) is also %s.port: the metrics server needs a port of its own" (int $.Values.metrics.port) $role) -}}
{{- end -}}
{{- end -}}
{{- end -}}
