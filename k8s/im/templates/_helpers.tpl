{{/*
Names. The release prefix is cut to 40 characters so that "<prefix>-gateway" stays within 52:
a StatefulSet's pods carry a controller-revision-hash label "<name>-<10-char hash>" that must fit
in 63, and each pod name "<name>-<ordinal>" must be a valid hostname label.
*/}}
{{- define "im.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 40 | trimSuffix "-" -}}
{{- end -}}

{{- define "im.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* "<fullname>-<component>"; call with (dict "root" $ "component" "gateway"). */}}
{{- define "im.componentName" -}}
{{- printf "%s-%s" (include "im.fullname" .root) .component -}}
{{- end -}}

{{- define "im.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "im.labels" -}}
helm.sh/chart: {{ include "im.chart" . }}
app.kubernetes.io/name: {{ include "im.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: im
{{- with .Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of one component; (dict "root" $ "component" "gateway"). Never change them: selectors are immutable. */}}
{{- define "im.selectorLabels" -}}
app.kubernetes.io/name: {{ include "im.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "im.componentLabels" -}}
{{ include "im.labels" .root }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "im.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "im.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "im.image" -}}
{{- $tag := default .Chart.AppVersion .Values.image.tag -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret holding the token signing key (IM_AUTH_SECRET). */}}
{{- define "im.authSecretName" -}}
{{- default (printf "%s-auth" (include "im.fullname" .)) .Values.auth.existingSecret -}}
{{- end -}}

{{/* The token keys as container env entries, from Secrets only (gateways, and logic's HTTP API). */}}
{{- define "im.authKeyEnv" -}}
- name: IM_AUTH_SECRET
  valueFrom:
    secretKeyRef:
      name: {{ include "im.authSecretName" . }}
      key: {{ .Values.auth.existingSecretKey }}
{{- with .Values.auth.keysSecret }}
- name: IM_AUTH_KEYS
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.auth.keysSecretKey }}
{{- end }}
{{- end -}}

{{/* The token aud/iss checks as ConfigMap lines (gateways, and logic's HTTP API). */}}
{{- define "im.authClaimsEnv" -}}
{{- with .Values.auth.audience }}
IM_AUTH_AUDIENCE: {{ . | quote }}
{{- end }}
{{- with .Values.auth.issuer }}
IM_AUTH_ISSUER: {{ . | quote }}
{{- end }}
{{- end -}}

{{/* In-cluster addresses services dial. */}}
{{- define "im.routerGrpcAddr" -}}
{{- printf "%s:%d" (include "im.componentName" (dict "root" . "component" "router")) (int .Values.router.grpcPort) -}}
{{- end -}}

{{- define "im.logicHeadless" -}}
{{- printf "%s-headless" (include "im.componentName" (dict "root" . "component" "logic")) -}}
{{- end -}}

{{- define "im.gatewayHeadless" -}}
{{- printf "%s-headless" (include "im.componentName" (dict "root" . "component" "gateway")) -}}
{{- end -}}

{{/*
How many pods a StatefulSet may have: the HPA's maximum when autoscaling, else replicas.
Call with the component's values.
*/}}
{{- define "im.maxPods" -}}
{{- if .autoscaling.enabled -}}{{ int .autoscaling.maxReplicas }}{{- else -}}{{ int .replicas }}{{- end -}}
{{- end -}}

{{/*
IM_LOGIC_ADDRS for gateways. The gateway keeps one stream per listed address and spreads calls
round-robin over the streams that are up, so it must list every logic pod by its stable
StatefulSet name; ordinals not running yet (below the HPA maximum) are retried quietly and join
the rotation when their pod becomes ready. Fully qualified, so one wildcard SAN
(*.<headless>.<namespace>.svc.<clusterDomain>) covers them under mTLS: Node refuses a wildcard
over a single label (*.<headless>), and it resolves without the search-path round trips.
*/}}
{{- define "im.logicPodDomain" -}}
{{- printf "%s.%s.svc.%s" (include "im.logicHeadless" .) .Release.Namespace .Values.clusterDomain -}}
{{- end -}}

{{- define "im.logicAddrs" -}}
{{- if .Values.logic.gatewayAddresses -}}
{{- join "," .Values.logic.gatewayAddresses -}}
{{- else -}}
{{- $sts := include "im.componentName" (dict "root" . "component" "logic") -}}
{{- $svc := include "im.logicPodDomain" . -}}
{{- $addrs := list -}}
{{- range $i := until (int (include "im.maxPods" .Values.logic)) -}}
{{- $addrs = append $addrs (printf "%s-%d.%s:%d" $sts $i $svc (int $.Values.logic.port)) -}}
{{- end -}}
{{- join "," $addrs -}}
{{- end -}}
{{- end -}}

{{/* NODE_OPTIONS: the V8 heap bounds (old space, young generation), sized under the container's memory limit. */}}
{{- define "im.nodeOptions" -}}
{{- $parts := list -}}
{{- if .maxOldSpaceMiB -}}{{- $parts = append $parts (printf "--max-old-space-size=%d" (int .maxOldSpaceMiB)) -}}{{- end -}}
{{- if .maxSemiSpaceMiB -}}{{- $parts = append $parts (printf "--max-semi-space-size=%d" (int .maxSemiSpaceMiB)) -}}{{- end -}}
{{- with .nodeOptions -}}{{- $parts = append $parts . -}}{{- end -}}
{{- join " " $parts -}}
{{- end -}}

{{/*
Environment shared by every service's ConfigMap. Call with (dict "root" $ "component" "gateway").
*/}}
{{- define "im.commonEnv" -}}
{{- $v := .root.Values -}}
IM_LOG_LEVEL: {{ $v.logLevel | quote }}
IM_ADMIN_ADDR: {{ printf "0.0.0.0:%d" (int $v.admin.port) | quote }}
NODE_ENV: "production"
{{- if $v.otel.enabled }}
OTEL_SERVICE_NAME: {{ printf "im-%s" .component | quote }}
{{- with $v.otel.endpoint }}
OTEL_EXPORTER_OTLP_ENDPOINT: {{ . | quote }}
{{- end }}
OTEL_EXPORTER_OTLP_PROTOCOL: {{ $v.otel.protocol | quote }}
OTEL_TRACES_SAMPLER: {{ $v.otel.tracesSampler | quote }}
OTEL_TRACES_SAMPLER_ARG: {{ $v.otel.tracesSamplerArg | quote }}
{{- range $k, $val := $v.otel.env }}
{{ $k }}: {{ $val | toString | quote }}
{{- end }}
{{- else }}
OTEL_SDK_DISABLED: "true"
{{- end }}
{{- end -}}

{{/* IM_BUS/IM_NATS_URL (the URL moves to a secretKeyRef when nats.existingSecret is set). */}}
{{- define "im.natsEnv" -}}
IM_BUS: "nats"
{{- if not .Values.nats.existingSecret }}
IM_NATS_URL: {{ .Values.nats.url | quote }}
{{- end }}
{{- end -}}

{{/* Pod-level env: identity from the downward API plus secret references. (dict "root" $ "component" "gateway") */}}
{{- define "im.podEnv" -}}
{{- $v := .root.Values -}}
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
{{- if $v.otel.enabled }}
- name: OTEL_RESOURCE_ATTRIBUTES
  value: {{ printf "k8s.pod.name=$(POD_NAME),k8s.namespace.name=$(POD_NAMESPACE),service.namespace=%s%s" .root.Release.Name (include "im.otelResourceAttributes" $v.otel.resourceAttributes) | quote }}
{{- end }}
{{- if and $v.nats.existingSecret (ne .component "router") }}
- name: IM_NATS_URL
  valueFrom:
    secretKeyRef:
      name: {{ $v.nats.existingSecret }}
      key: {{ $v.nats.existingSecretKey }}
{{- end }}
{{- if $v.grpcTls.enabled }}
{{- include "im.tlsCheck" .root }}
# Mutual TLS on internal gRPC: paths into the Secret volume grpc-tls (re-read on change).
{{- range $env, $key := dict "IM_GRPC_TLS_CA" $v.grpcTls.caKey "IM_GRPC_TLS_CERT" $v.grpcTls.certKey "IM_GRPC_TLS_KEY" $v.grpcTls.keyKey }}
- name: {{ $env }}
  value: {{ printf "/etc/im/grpc-tls/%s" $key | quote }}
{{- end }}
- name: IM_GRPC_TLS_CHECK_ROLES
  value: {{ $v.grpcTls.checkRoles | quote }}
- name: IM_GRPC_TLS_RELOAD_INTERVAL
  value: {{ $v.grpcTls.reloadInterval | quote }}
{{- end }}
{{- end -}}

{{/*
TLS Secrets: a value names each one, or cert-manager makes it (certificates.yaml). "im.tlsCheck"
fails, listing every value still to set, when TLS is on somewhere without its Secret; each
template that mounts one calls it first, so the message is the same whichever renders first.
*/}}
{{- define "im.tlsCheck" -}}
{{- $v := .Values -}}
{{- $cm := $v.certManager -}}
{{- $missing := list -}}
{{- if and $v.gateway.tls.enabled (not $v.gateway.tls.existingSecret) -}}
{{- if not $cm.enabled -}}
{{- $missing = append $missing "gateway.tls.existingSecret (a kubernetes.io/tls Secret with tls.crt and tls.key; or certManager.enabled=true)" -}}
{{- else if not $cm.gateway.issuerRef.name -}}
{{- $missing = append $missing "certManager.gateway.issuerRef.name (the issuer of the gateways' client-facing certificate; or gateway.tls.existingSecret)" -}}
{{- end -}}
{{- end -}}
{{- if $v.grpcTls.enabled -}}
{{- range $comp := list "gateway" "logic" "router" -}}
{{- if not (index $v.grpcTls (printf "%sSecret" $comp)) -}}
{{- if not $cm.enabled -}}
{{- $missing = append $missing (printf "grpcTls.%sSecret (the internal CA, the %s certificate and its key; or certManager.enabled=true)" $comp $comp) -}}
{{- else if not $cm.internal.issuerRef.name -}}
{{- $missing = append $missing "certManager.internal.issuerRef.name (the issuer of the internal CA; or the grpcTls.*Secret values)" -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- if and $v.router.tls.enabled (not $v.router.tls.existingSecret) -}}
{{- if not $cm.enabled -}}
{{- $missing = append $missing "router.tls.existingSecret (a kubernetes.io/tls Secret with tls.crt and tls.key for the route API; or certManager.enabled=true)" -}}
{{- else if not $cm.gateway.issuerRef.name -}}
{{- $missing = append $missing "certManager.gateway.issuerRef.name (it issues the route API's certificate too; or router.tls.existingSecret)" -}}
{{- end -}}
{{- end -}}
{{- $ct := $v.cassandra.tls -}}
{{- if and $ct.enabled (not $ct.existingSecret) $ct.caKey -}}
{{- $missing = append $missing "cassandra.tls.existingSecret (the Cassandra nodes' CA under cassandra.tls.caKey; or cassandra.tls.caKey=\"\" to trust Node's public CAs)" -}}
{{- end -}}
{{- with uniq $missing -}}
{{- fail (printf "TLS is on but its Secrets are not named; set: %s. See k8s/README.md, \"TLS\"." (join "; " .)) -}}
{{- end -}}
{{- end -}}

{{/*
extraEnv lands in a ConfigMap, readable by anyone who may read ConfigMaps: refuse what looks like
a secret there (a secret-named variable, a PEM block, a URL with a password).
(dict "where" "gateway.extraEnv.X" "name" "X" "value" "...")
*/}}
{{- define "im.notSecret" -}}
{{- $s := toString .value -}}
{{- if or (regexMatch "(?i)(SECRET|PASSWORD|PASSWD|TOKENS?|_KEYS|CREDENTIALS?|CREDS)$" .name) (contains "-----BEGIN" $s) (regexMatch "://[^/@\\s]+:[^/@\\s]*@" $s) -}}
{{- fail (printf "%s looks like a secret, and extraEnv goes into a ConfigMap: give it through a Secret (auth.existingSecret, auth.keysSecret, nats.existingSecret, cassandra.existingSecret, logic.adminTokens, the TLS Secrets)" .where) -}}
{{- end -}}
{{- end -}}

{{/* The gateways' client-facing TLS Secret: gateway.tls.existingSecret, else cert-manager's. */}}
{{- define "im.gatewayTlsSecret" -}}
{{- default (printf "%s-gateway-tls" (include "im.fullname" .)) .Values.gateway.tls.existingSecret -}}
{{- end -}}

{{/* The route API's TLS Secret: router.tls.existingSecret, else cert-manager's. */}}
{{- define "im.routerTlsSecret" -}}
{{- default (printf "%s-router-tls" (include "im.fullname" .)) .Values.router.tls.existingSecret -}}
{{- end -}}

{{/* A role's internal gRPC Secret: grpcTls.<component>Secret, else cert-manager's. (dict "root" $ "component" "logic") */}}
{{- define "im.grpcTlsSecret" -}}
{{- default (printf "%s-grpc-%s" (include "im.fullname" .root) .component) (index .root.Values.grpcTls (printf "%sSecret" .component)) -}}
{{- end -}}

{{/* The grpc-tls volume mount (a Secret, read-only, not subPath: renewals reach the files). */}}
{{- define "im.grpcTlsMount" -}}
{{- if .Values.grpcTls.enabled -}}
- name: grpc-tls
  mountPath: /etc/im/grpc-tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* The grpc-tls volume: the component's Secret (grpcTls.<component>Secret). */}}
{{- define "im.grpcTlsVolume" -}}
{{- $t := .root.Values.grpcTls -}}
{{- if $t.enabled -}}
- name: grpc-tls
  secret:
    secretName: {{ include "im.grpcTlsSecret" . }}
    defaultMode: 0440
    items:
      {{- range $key := list $t.caKey $t.certKey $t.keyKey }}
      - key: {{ $key }}
        path: {{ $key }}
      {{- end }}
{{- end }}
{{- end -}}

{{/*
A role's NATS credential and the NATS CA, from Secrets only (dict "root" $ "role" "logic"|"gateway"):
env (im.natsAuthEnv), volume mounts (im.natsAuthMounts) and volumes (im.natsAuthVolumes). A seed and
the CA are files in read-only Secret volumes; a user and password are secretKeyRefs.
*/}}
{{- define "im.natsAuthEnv" -}}
{{- $n := .root.Values.nats -}}
{{- $c := index $n.credentials .role -}}
{{- if and $c.perPodSecret (or $c.existingSecret $c.userKey) }}
{{- fail "nats.credentials.gateway.perPodSecret replaces existingSecret (one credential for all gateways): set one of them" }}
{{- end }}
{{- if $c.perPodSecret }}
# This pod's own seed, which the init container nats-credential copied from perPodSecret.
- name: IM_NATS_NKEY_SEED_FILE
  value: "/etc/im/nats-credential/nkey-seed"
{{- end }}
{{- if ne (empty $c.userKey) (empty $c.passwordKey) }}
{{- fail (printf "nats.credentials.%s.userKey and passwordKey go together (a user and its password)" .role) }}
{{- end }}
{{- if and $c.userKey (not $c.existingSecret) }}
{{- fail (printf "nats.credentials.%s.userKey/passwordKey name keys of nats.credentials.%s.existingSecret, which is empty" .role .role) }}
{{- end }}
{{- if and $c.existingSecret $c.userKey }}
- name: IM_NATS_USER
  valueFrom:
    secretKeyRef:
      name: {{ $c.existingSecret }}
      key: {{ $c.userKey }}
- name: IM_NATS_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $c.existingSecret }}
      key: {{ $c.passwordKey }}
{{- else if $c.existingSecret }}
- name: IM_NATS_NKEY_SEED_FILE
  value: {{ printf "/etc/im/nats-credential/%s" $c.nkeySeedKey | quote }}
{{- end }}
{{- if $n.tls.existingSecret }}
- name: IM_NATS_TLS_CA
  value: {{ printf "/etc/im/nats-tls/%s" $n.tls.caKey | quote }}
{{- end }}
{{- end -}}

{{- define "im.natsAuthMounts" -}}
{{- $n := .root.Values.nats -}}
{{- $c := index $n.credentials .role -}}
{{- if or $c.perPodSecret (and $c.existingSecret (not $c.userKey)) }}
- name: nats-credential
  mountPath: /etc/im/nats-credential
  readOnly: true
{{- end }}
{{- if $n.tls.existingSecret }}
- name: nats-tls
  mountPath: /etc/im/nats-tls
  readOnly: true
{{- end }}
{{- end -}}

{{- define "im.natsAuthVolumes" -}}
{{- $n := .root.Values.nats -}}
{{- $c := index $n.credentials .role -}}
{{- if $c.perPodSecret }}
# This pod's seed only (in memory); every pod's seeds (nats-seeds) reach the init container alone.
- name: nats-credential
  emptyDir:
    medium: Memory
    sizeLimit: 64Ki
- name: nats-seeds
  secret:
    secretName: {{ $c.perPodSecret }}
    defaultMode: 0440
{{- else if and $c.existingSecret (not $c.userKey) }}
- name: nats-credential
  secret:
    secretName: {{ $c.existingSecret }}
    defaultMode: 0440
    items:
      - key: {{ $c.nkeySeedKey }}
        path: {{ $c.nkeySeedKey }}
{{- end }}
{{- if $n.tls.existingSecret }}
- name: nats-tls
  secret:
    secretName: {{ $n.tls.existingSecret }}
    items:
      - key: {{ $n.tls.caKey }}
        path: {{ $n.tls.caKey }}
{{- end }}
{{- end -}}

{{/*
The init container of a gateway pod with nats.credentials.gateway.perPodSecret: copies the seed
under gateway-<pod name>.nk (and nothing else) into the memory volume the gateway reads. No key
for this pod: the copy fails and the pod does not start. (dict "root" $)
*/}}
{{- define "im.natsPerPodInit" -}}
{{- $c := .root.Values.nats.credentials.gateway -}}
{{- if $c.perPodSecret -}}
- name: nats-credential
  image: {{ include "im.image" .root }}
  imagePullPolicy: {{ .root.Values.image.pullPolicy }}
  command: ["cp", "/etc/im/nats-seeds/gateway-$(POD_NAME).nk", "/etc/im/nats-credential/nkey-seed"]
  env:
    - name: POD_NAME
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
  resources:
    requests:
      cpu: 10m
      memory: 16Mi
    limits:
      memory: 16Mi
  securityContext:
    {{- include "im.containerSecurityContext" .root | nindent 4 }}
  volumeMounts:
    {{- include "im.tmpMount" .root | nindent 4 }}
    - name: nats-seeds
      mountPath: /etc/im/nats-seeds
      readOnly: true
    - name: nats-credential
      mountPath: /etc/im/nats-credential
{{- end -}}
{{- end -}}

{{- define "im.otelResourceAttributes" -}}
{{- range $k, $val := . -}},{{ $k }}={{ $val }}{{- end -}}
{{- end -}}

{{/* The container securityContext every service uses. */}}
{{- define "im.containerSecurityContext" -}}
{{ toYaml .Values.securityContext }}
{{- end -}}

{{/* Volumes: only a small writable /tmp; the root filesystem is read-only and nothing else is written. */}}
{{- define "im.tmpVolume" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit }}
{{- end -}}

{{- define "im.tmpMount" -}}
- name: tmp
  mountPath: /tmp
{{- end -}}

{{/* HTTP probes on the admin port. (dict "probe" .Values.gateway.probes.readiness "path" "/readyz") */}}
{{- define "im.httpProbe" -}}
httpGet:
  path: {{ .path }}
  port: admin
periodSeconds: {{ .probe.periodSeconds }}
timeoutSeconds: {{ .probe.timeoutSeconds }}
failureThreshold: {{ .probe.failureThreshold }}
{{- with .probe.initialDelaySeconds }}
initialDelaySeconds: {{ . }}
{{- end }}
{{- end -}}

{{/* Scheduling fields shared by the pod specs; call with the component's values. */}}
{{- define "im.scheduling" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .priorityClassName }}
priorityClassName: {{ . }}
{{- end }}
{{- end -}}

{{/* Spread over zones and nodes; (dict "root" $ "component" "gateway" "spread" .Values.gateway.topologySpread) */}}
{{- define "im.topologySpread" -}}
{{- if .spread.enabled }}
topologySpreadConstraints:
  - maxSkew: 1
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ .spread.zoneWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "im.selectorLabels" (dict "root" .root "component" .component) | nindent 8 }}
  - maxSkew: 1
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ .spread.hostWhenUnsatisfiable }}
    labelSelector:
      matchLabels:
        {{- include "im.selectorLabels" (dict "root" .root "component" .component) | nindent 8 }}
{{- end }}
{{- end -}}

{{/* Duration seconds -> the "<n>s" strings the services parse. */}}
{{- define "im.seconds" -}}
{{- printf "%ds" (int .) -}}
{{- end -}}

{{/*
Gateway shutdown arithmetic. Kubernetes counts terminationGracePeriodSeconds from the start of
the preStop hook, so the pod needs: preStop sleep (the load balancers stop sending new
connections) + the drain window (clients get Disconnect DRAINING, spread over it) + a margin for
closing the bus, router and logic streams. An explicit value below that fails the render.
*/}}
{{- define "im.gatewayGraceSeconds" -}}
{{- $d := .Values.gateway.drain -}}
{{- $need := add (int $d.preStopSleepSeconds) (int $d.windowSeconds) (int $d.shutdownMarginSeconds) -}}
{{- if .Values.gateway.terminationGracePeriodSeconds -}}
{{- if lt (int .Values.gateway.terminationGracePeriodSeconds) (int $need) -}}
{{- fail (printf "gateway.terminationGracePeriodSeconds=%d is below preStopSleepSeconds + drain.windowSeconds + drain.shutdownMarginSeconds = %d: pods would be killed mid-drain" (int .Values.gateway.terminationGracePeriodSeconds) (int $need)) -}}
{{- end -}}
{{- int .Values.gateway.terminationGracePeriodSeconds -}}
{{- else -}}
{{- $need -}}
{{- end -}}
{{- end -}}

{{/* The same for router and logic: preStop + the process's own shutdown bound + margin. (values of the component) */}}
{{- define "im.serviceGraceSeconds" -}}
{{- add (int .preStopSleepSeconds) (int .shutdownTimeoutSeconds) (int .shutdownMarginSeconds) -}}
{{- end -}}

{{/* IM_GATEWAY_PUBLIC_ADDR, by publicAddress.mode. */}}
{{- define "im.gatewayPublicPort" -}}
{{- $pa := .Values.gateway.publicAddress -}}
{{- if $pa.port -}}{{ int $pa.port }}{{- else if eq $pa.mode "hostPort" -}}{{ int .Values.gateway.port }}{{- else -}}{{ int .Values.gateway.service.port }}{{- end -}}
{{- end -}}

{{/* The port of IM_GATEWAY_TLS_PUBLIC_ADDR: gateway.tls.publicPort, else as above for the TLS port. */}}
{{- define "im.gatewayTlsPublicPort" -}}
{{- $t := .Values.gateway.tls -}}
{{- if $t.publicPort -}}{{ int $t.publicPort }}{{- else if eq .Values.gateway.publicAddress.mode "hostPort" -}}{{ int $t.port }}{{- else -}}{{ int $t.servicePort }}{{- end -}}
{{- end -}}

{{/* shared mode: the host every gateway advertises (the in-cluster Service name when publicAddress.host is empty). */}}
{{- define "im.gatewaySharedHost" -}}
{{- default (printf "%s.%s.svc.%s" (include "im.componentName" (dict "root" . "component" "gateway")) .Release.Namespace .Values.clusterDomain) .Values.gateway.publicAddress.host -}}
{{- end -}}

{{/*
Pod template labels: selector labels plus part-of, not the chart version. A label that changes
with every chart release would roll every gateway (and so reconnect every client) even when
nothing in the pod changed.
*/}}
{{- define "im.podLabels" -}}
{{ include "im.selectorLabels" . }}
app.kubernetes.io/part-of: im
{{- end -}}

{{/* A Certificate's privateKey and issuerRef; (dict "root" $ "issuerRef" .Values.certManager.internal.issuerRef) */}}
{{- define "im.certificateKeyAndIssuer" -}}
{{- $k := .root.Values.certManager.privateKey -}}
{{- if and (eq $k.algorithm "RSA") (lt (int $k.size) 2048) -}}
{{- fail "certManager.privateKey.size must be 2048, 3072 or 4096 with algorithm RSA" -}}
{{- else if and (eq $k.algorithm "ECDSA") (not (has (int $k.size) (list 256 384 521))) -}}
{{- fail "certManager.privateKey.size must be 256, 384 or 521 with algorithm ECDSA" -}}
{{- end -}}
privateKey:
  algorithm: {{ .root.Values.certManager.privateKey.algorithm }}
  size: {{ .root.Values.certManager.privateKey.size }}
  rotationPolicy: Always
issuerRef:
  name: {{ .issuerRef.name }}
  kind: {{ .issuerRef.kind }}
  group: {{ .issuerRef.group }}
{{- end -}}
