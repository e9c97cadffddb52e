/**
 * The renders the chart suites share: each variant of values is rendered once per test process
 * (helm is the slow part), plus the small helpers both suites use.
 */
import * as assert from 'node:assert/strict';
import type { HorizontalPodAutoscaler } from 'kubernetes-types/autoscaling/v2';
import type { Probe } from 'kubernetes-types/core/v1';
import { HA_VALUES, render, type RenderOptions } from './helm';
import type { Manifest, Workload } from './manifest';

export const COMPONENTS = ['gateway', 'logic', 'router'] as const;
export const TEN_MILLION = 10_000_000;

/** The certificate Secrets values-ha.yaml leaves for the operator to name (it has TLS on everywhere). */
export const HA_TLS_SECRETS = {
  'gateway.tls.existingSecret': 'im-gateway-tls', 'cassandra.tls.existingSecret': 'im-cassandra-tls',
  'grpcTls.gatewaySecret': 'im-grpc-gateway', 'grpcTls.logicSecret': 'im-grpc-logic', 'grpcTls.routerSecret': 'im-grpc-router',
  'router.tls.existingSecret': 'im-router-tls',
} as const;

/** The NATS Secrets values-ha.yaml names (the operator creates them: k8s/README.md, "NATS in values-ha.yaml"). */
export const HA_NATS_SECRETS = { logic: 'im-nats-logic', perPod: 'im-nats-gateways', ca: 'im-nats-ca' } as const;

/** cert-manager instead: the Secrets the chart's Certificates write (Cassandra's CA is outside the chart). */
export const HA_CERT_MANAGER = {
  'certManager.enabled': true, 'certManager.gateway.issuerRef.name': 'letsencrypt',
  'certManager.internal.issuerRef.name': 'im-internal-ca', 'cassandra.tls.existingSecret': 'im-cassandra-tls',
} as const;

/** Values the suites render with; each one exercises a mode or an option. */
export const VARIANTS = {
  default: {},
  ha: { valuesFiles: [HA_VALUES], set: HA_TLS_SECRETS },
  haCertManager: { valuesFiles: [HA_VALUES], set: HA_CERT_MANAGER },
  perPodService: {
    set: {
      'gateway.publicAddress.mode': 'perPodService', 'gateway.publicAddress.domain': 'gw.example.com',
      'gateway.websocket.port': 7101,
      'gateway.autoscaling.enabled': true, 'gateway.autoscaling.minReplicas': 2, 'gateway.autoscaling.maxReplicas': 4,
      // Both listeners; the TLS certificate (*.gw.example.com) from cert-manager.
      'gateway.tls.enabled': true, 'certManager.enabled': true, 'certManager.gateway.issuerRef.name': 'letsencrypt',
    },
  },
  hostPortNodePort: {
    set: {
      'gateway.publicAddress.mode': 'hostPort', 'gateway.service.type': 'NodePort', 'gateway.service.nodePort': 30100,
      'gateway.websocket.port': 7101,
      'router.publicService.type': 'ClusterIP',
      'gateway.tls.enabled': true, 'gateway.tls.existingSecret': 'my-gateway-tls', 'gateway.tls.nodePort': 30443,
    },
  },
  extras: {
    set: {
      'otel.enabled': true, 'otel.endpoint': 'http://otel-collector:4318', 'serviceMonitor.enabled': true,
      'router.ingress.enabled': true, 'router.ingress.host': 'route.example.com', 'router.publicService.enabled': false,
      'auth.existingSecret': 'my-auth', 'auth.keysSecret': 'my-auth-keys', 'auth.audience': 'im', 'auth.issuer': 'https://login.example.com',
      'nats.existingSecret': 'my-nats', 'cassandra.existingSecret': 'my-cassandra',
      'logic.adminTokens.existingSecret': 'my-admin-tokens',
      'cassandra.tls.enabled': true, 'cassandra.tls.existingSecret': 'my-cassandra-tls',
      'cassandra.tls.certKey': 'tls.crt', 'cassandra.tls.keyKey': 'tls.key',
      // The config-loader check below has one test client certificate for every role: roles off.
      'grpcTls.enabled': true, 'grpcTls.gatewaySecret': 'my-grpc-gateway', 'grpcTls.logicSecret': 'my-grpc-logic',
      'grpcTls.routerSecret': 'my-grpc-router', 'grpcTls.checkRoles': false,
      'gateway.tls.enabled': true, 'gateway.tls.existingSecret': 'my-gateway-tls', 'gateway.tls.reloadInterval': '30s',
      'gateway.tls.publicPort': 443,
      'logic.autoscaling.enabled': true, 'logic.autoscaling.maxReplicas': 5, 'gateway.extraEnv.IM_RATE_LIMIT': 80,
      'gateway.publicAddress.host': 'gw.example.com', 'gateway.heartbeatInterval': '45s',
      'gateway.websocket.port': 8443, 'gateway.websocket.publicUrl': 'wss://im.example.com/ws', 'gateway.websocket.tls': true,
      'router.tls.enabled': true, 'router.tls.existingSecret': 'my-router-tls', 'router.tls.reloadInterval': '30s',
      'router.trustedProxies': '{10.0.0.0/8,192.168.1.7}', 'router.regionCidrs.203\\.0\\.113\\.0/24': 'eu-west',
    },
  },
  // Per-role NATS credentials (a seed for logic, a user and password for the gateways) and TLS.
  natsAuth: {
    set: {
      'nats.credentials.logic.existingSecret': 'my-nats-logic',
      'nats.credentials.gateway.existingSecret': 'my-nats-gateway', 'nats.credentials.gateway.userKey': 'user',
      'nats.credentials.gateway.passwordKey': 'password', 'nats.tls.existingSecret': 'my-nats-ca',
    },
  },
  // A NATS credential per gateway pod (each subscribes to its own subjects only).
  natsPerPod: { set: { 'nats.credentials.gateway.perPodSecret': 'my-nats-gateways' } },
  // Helm's longest release name (53 characters), with the longest names the chart makes (cert-manager's Secrets).
  longName: {
    release: 'a-release-name-that-is-exactly-fifty-three-chars-long',
    set: { 'grpcTls.enabled': true, 'certManager.enabled': true, 'certManager.internal.issuerRef.name': 'im-internal-ca' },
  },
} satisfies Record<string, RenderOptions>;

export type Variant = keyof typeof VARIANTS;

/** The variants with the gateways' TLS listener, and those with internal gRPC mTLS. */
export const GATEWAY_TLS: readonly Variant[] = ['ha', 'haCertManager', 'perPodService', 'hostPortNodePort', 'extras'];
export const GRPC_TLS: readonly Variant[] = ['ha', 'haCertManager', 'extras', 'longName'];

/**
 * The NATS Secrets each variant names: logic's credential, the gateways' (one for all, or one seed
 * per pod), the NATS servers' CA. Variants not listed connect without credentials, in plaintext.
 */
export const NATS_SECRETS: Partial<Record<Variant, { logic?: string; gateway?: string; perPod?: string; ca?: string }>> = {
  natsAuth: { logic: 'my-nats-logic', gateway: 'my-nats-gateway', ca: 'my-nats-ca' },
  natsPerPod: { perPod: 'my-nats-gateways' },
  ha: HA_NATS_SECRETS,
  haCertManager: HA_NATS_SECRETS,
};

let cache: Record<Variant, Manifest> | undefined;

/** Every variant, rendered on first use (call after needsHelm). */
export function renderVariants(): Record<Variant, Manifest> {
  cache ??= Object.fromEntries(Object.entries(VARIANTS).map(([label, o]) => [label, render(o)])) as Record<Variant, Manifest>;
  return cache;
}

export function probeCheck(p: Probe | undefined, pathWanted: string, what: string): void {
  assert.ok(p, `${what}: probe missing`);
  assert.equal(p.httpGet?.path, pathWanted, `${what}: path`);
  assert.equal(p.httpGet?.port, 'admin', `${what}: probes the admin port`);
  assert.ok((p.periodSeconds ?? 0) >= 1 && (p.failureThreshold ?? 0) >= 1, `${what}: period and threshold set`);
}

/** Pods a workload may have: its HPA's maximum, else replicas. */
export function maxPods(w: Workload, m: Manifest): number {
  const hpa = m.all<HorizontalPodAutoscaler>('HorizontalPodAutoscaler').find((h) => h.spec?.scaleTargetRef.name === w.metadata?.name);
  return hpa ? hpa.spec!.maxReplicas : w.spec!.replicas!;
}

/** Pods a workload has at least: its HPA's minimum, else replicas. */
export function minPods(w: Workload, m: Manifest): number {
  const hpa = m.all<HorizontalPodAutoscaler>('HorizontalPodAutoscaler').find((h) => h.spec?.scaleTargetRef.name === w.metadata?.name);
  return hpa ? hpa.spec!.minReplicas! : w.spec!.replicas!;
}

/** Bytes of a quantity ("2Gi", "768Mi", "1G"). */
export function bytes(q: string | undefined): number {
  const m = /^(\d+(?:\.\d+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q ?? '');
  if (!m) throw new Error(`not a memory quantity: ${q}`);
  const f = { Ki: 2 ** 10, Mi: 2 ** 20, Gi: 2 ** 30, Ti: 2 ** 40, k: 1e3, M: 1e6, G: 1e9, T: 1e12 }[m[2] ?? ''] ?? 1;
  return Number(m[1]) * f;
}
