/**
 * The chart's operational promises, on rendered objects: gateways drain before they stop (grace
 * period vs preStop + drain window + the gateway's own margin), rollouts and disruptions lose no
 * per-pod state, the public address in each mode, logic addressing, autoscaling, the single
 * router, backends wiring, and values-ha.yaml holding 10 million users.
 */
import * as assert from 'node:assert/strict';
import type { StatefulSetSpec, DeploymentSpec } from 'kubernetes-types/apps/v1';
import type { HorizontalPodAutoscaler } from 'kubernetes-types/autoscaling/v2';
import type { Service } from 'kubernetes-types/core/v1';
import type { PodDisruptionBudget } from 'kubernetes-types/policy/v1';
import { SHUTDOWN_MARGIN_MS } from '../../gateway/config';
import { needsHelm, render, renderError } from './helm';
import { durationSeconds, effectiveEnv, mainContainer, Manifest, podSpec, selects, template } from './manifest';
import { bytes, maxPods, minPods, renderVariants, TEN_MILLION, type Variant } from './variants';

/** The gateway bounds its own shutdown at drain window + this; the pod must outlast it. */
const GATEWAY_SHUTDOWN_MARGIN_S = SHUTDOWN_MARGIN_MS / 1000;

describe('Helm chart k8s/im: operations', function () {
  this.timeout(180_000);
  let renders: Record<Variant, Manifest>;

  before(function () {
    needsHelm(this);
    renders = renderVariants();
  });

  describe('gateway', () => {
    it('is a StatefulSet whose node id is the pod name', () => {
      for (const [label, m] of Object.entries(renders)) {
        const w = m.workload('gateway');
        assert.equal(w.kind, 'StatefulSet', label);
        const c = mainContainer(w);
        const nodeId = c.env?.find((e) => e.name === 'IM_NODE_ID');
        assert.equal(nodeId?.valueFrom?.fieldRef?.fieldPath, 'metadata.name', label);
        const headless = m.get<Service>('Service', (w as { spec: { serviceName: string } }).spec.serviceName);
        assert.equal(headless.spec?.clusterIP, 'None', `${label}: governing Service is headless`);
        assert.ok(selects(headless.spec?.selector, template(w).metadata?.labels), label);
      }
    });

    it('gets a grace period covering preStop + drain window + margin, and drains before it stops', () => {
      for (const [label, m] of Object.entries(renders)) {
        const w = m.workload('gateway');
        const c = mainContainer(w);
        const env = effectiveEnv(m, c);
        const drainS = durationSeconds(env.get('IM_DRAIN_WINDOW') ?? assert.fail(`${label}: IM_DRAIN_WINDOW unset`));
        const cmd = c.lifecycle?.preStop?.exec?.command ?? [];
        assert.equal(cmd[0], 'sleep', `${label}: preStop sleeps`);
        const preStopS = Number(cmd[1]);
        assert.ok(preStopS >= 1 && Number.isInteger(preStopS), `${label}: preStop ${cmd.join(' ')}`);
        const grace = podSpec(w).terminationGracePeriodSeconds!;
        // Strictly greater: the process exits on its own before the kubelet's SIGKILL.
        assert.ok(grace > preStopS + drainS + GATEWAY_SHUTDOWN_MARGIN_S,
          `${label}: terminationGracePeriodSeconds ${grace} <= preStop ${preStopS} + drain ${drainS} + the gateway's own margin ${GATEWAY_SHUTDOWN_MARGIN_S}`);
        // Liveness must not kill a pod in the middle of its drain: /healthz, not /readyz.
        assert.equal(c.livenessProbe?.httpGet?.path, '/healthz');
      }
      assert.equal(podSpec(renders.default.workload('gateway')).terminationGracePeriodSeconds, 5 + 30 + 20);
      assert.equal(podSpec(renders.ha.workload('gateway')).terminationGracePeriodSeconds, 10 + 30 + 25);
    });

    it('follows the drain window when it is changed, and refuses a grace period that would cut the drain', () => {
      const m = render({ set: { 'gateway.drain.windowSeconds': 120 } });
      assert.equal(effectiveEnv(m, mainContainer(m.workload('gateway'))).get('IM_DRAIN_WINDOW'), '120s');
      assert.equal(podSpec(m.workload('gateway')).terminationGracePeriodSeconds, 5 + 120 + 20);
      assert.equal(podSpec(render({ set: { 'gateway.terminationGracePeriodSeconds': 600 } }).workload('gateway')).terminationGracePeriodSeconds, 600);
      assert.match(renderError({ set: { 'gateway.terminationGracePeriodSeconds': 54 } }), /below preStopSleepSeconds \+ drain\.windowSeconds/);
    });

    it('loses no per-pod state on rollout: rolling update, PDB, no data volumes', () => {
      for (const [label, m] of Object.entries(renders)) {
        const w = m.workload('gateway');
        assert.equal(w.kind, 'StatefulSet');
        const spec = w.spec as StatefulSetSpec;
        assert.equal(spec.updateStrategy?.type, 'RollingUpdate', `${label}: not OnDelete`);
        assert.equal(spec.updateStrategy?.rollingUpdate?.partition, 0, label);
        assert.equal(spec.podManagementPolicy, 'Parallel', label);
        assert.ok((spec.minReadySeconds ?? 0) > 0, `${label}: a new pod proves itself before the next is replaced`);
        const pdb = m.get<PodDisruptionBudget>('PodDisruptionBudget', m.name('gateway'));
        assert.ok(selects(pdb.spec?.selector?.matchLabels, template(w).metadata?.labels), `${label}: PDB selects the gateways`);
        const maxUnavailable = pdb.spec?.maxUnavailable;
        assert.ok(typeof maxUnavailable === 'number' && maxUnavailable >= 1, `${label}: PDB lets drains proceed`);
        assert.ok(maxUnavailable <= Math.max(1, Math.floor(minPods(w, m) * 0.05)), `${label}: PDB maxUnavailable ${maxUnavailable} is at most 5 % of the gateways`);
        assert.equal(pdb.spec?.minAvailable, undefined);
      }
    });

    it('is exposed by a LoadBalancer Service with externalTrafficPolicy Local by default; NodePort is selectable', () => {
      const svc = renders.default.get<Service>('Service', renders.default.name('gateway'));
      assert.equal(svc.spec?.type, 'LoadBalancer');
      assert.equal(svc.spec?.externalTrafficPolicy, 'Local');
      assert.equal(svc.spec?.ports?.[0].targetPort, 'im');
      const np = renders.hostPortNodePort.get<Service>('Service', renders.hostPortNodePort.name('gateway'));
      assert.equal(np.spec?.type, 'NodePort');
      assert.equal(np.spec?.externalTrafficPolicy, 'Local');
      assert.deepEqual(np.spec?.ports?.filter((p) => p.name !== 'ws').map((p) => [p.name, p.nodePort, p.targetPort]), [['im', 30100, 'im'], ['im-tls', 30443, 'im-tls']]);
    });

    it('advertises a client-reachable public address in each mode', () => {
      const addr = (m: Manifest, name = 'IM_GATEWAY_PUBLIC_ADDR') => effectiveEnv(m, mainContainer(m.workload('gateway'))).get(name);
      const tlsAddr = (m: Manifest) => addr(m, 'IM_GATEWAY_TLS_PUBLIC_ADDR');
      // values-ha.yaml: TLS only, so only the TLS address is advertised.
      assert.deepEqual([addr(renders.ha), tlsAddr(renders.ha)], [undefined, 'gw.example.com:7443']);
      assert.deepEqual([addr(renders.extras), tlsAddr(renders.extras)], ['gw.example.com:7100', 'gw.example.com:443'], 'both, TLS on gateway.tls.publicPort');
      assert.equal(addr(renders.default), 'prod-im-gateway.chat.svc.cluster.local:7100', 'in-cluster fallback without a host');
      assert.equal(tlsAddr(renders.default), undefined);
      // perPodService: pod N advertises <pod>.<domain>, and one LoadBalancer per possible pod selects exactly it.
      const pp = renders.perPodService;
      assert.equal(addr(pp), '<fieldRef:metadata.name>.gw.example.com:7100');
      assert.equal(tlsAddr(pp), '<fieldRef:metadata.name>.gw.example.com:7443');
      const perPod = pp.services().filter((s) => s.spec?.selector?.['statefulset.kubernetes.io/pod-name']);
      assert.equal(perPod.length, 4, 'autoscaling.maxReplicas Services');
      for (const [i, s] of perPod.entries()) {
        const pod = `${pp.name('gateway')}-${i}`;
        assert.equal(s.metadata?.name, pod);
        assert.equal(s.spec?.selector?.['statefulset.kubernetes.io/pod-name'], pod);
        assert.equal(s.spec?.type, 'LoadBalancer');
        assert.equal(s.spec?.externalTrafficPolicy, 'Local');
        assert.equal(s.metadata?.annotations?.['external-dns.alpha.kubernetes.io/hostname'], `${pod}.gw.example.com`);
        assert.deepEqual(s.spec?.ports?.filter((p) => p.name !== 'ws').map((p) => [p.name, p.port, p.targetPort]), [['im', 7100, 'im'], ['im-tls', 7443, 'im-tls']], pod);
      }
      assert.match(renderError({ set: { 'gateway.publicAddress.mode': 'perPodService' } }), /publicAddress\.domain is required/);
      // hostPort: the node's IP and the container port bound on the node.
      const hp = renders.hostPortNodePort;
      assert.equal(addr(hp), '<fieldRef:status.hostIP>:7100');
      assert.equal(tlsAddr(hp), '<fieldRef:status.hostIP>:7443');
      assert.deepEqual(mainContainer(hp.workload('gateway')).ports?.filter((p) => p.hostPort && p.name !== 'ws').map((p) => [p.name, p.hostPort]), [['im', 7100], ['im-tls', 7443]]);
    });

    it('lists every possible logic pod in IM_LOGIC_ADDRS, by the names the logic StatefulSet gives them', () => {
      for (const [label, m] of Object.entries(renders)) {
        const logic = m.workload('logic');
        assert.equal(logic.kind, 'StatefulSet');
        const headless = m.get<Service>('Service', (logic as { spec: { serviceName: string } }).spec.serviceName);
        assert.equal(headless.spec?.clusterIP, 'None');
        const port = mainContainer(logic).ports?.find((p) => p.name === 'grpc')?.containerPort;
        const addrs = effectiveEnv(m, mainContainer(m.workload('gateway'))).get('IM_LOGIC_ADDRS')!.split(',');
        // Fully qualified: a certificate's wildcard covers them (Node refuses *.<one label>).
        const expected = Array.from({ length: maxPods(logic, m) }, (_, i) => `${logic.metadata!.name}-${i}.${headless.metadata!.name}.chat.svc.cluster.local:${port}`);
        assert.deepEqual(addrs, expected, label);
      }
      assert.equal(effectiveEnv(renders.ha, mainContainer(renders.ha.workload('gateway'))).get('IM_LOGIC_ADDRS')!.split(',').length, 128);
    });

    it('autoscales on CPU and, with an adapter, on connections; the HPA owns the replica count', () => {
      const m = renders.ha;
      const hpa = m.get<HorizontalPodAutoscaler>('HorizontalPodAutoscaler', m.name('gateway'));
      assert.deepEqual(hpa.spec?.scaleTargetRef, { apiVersion: 'apps/v1', kind: 'StatefulSet', name: m.name('gateway') });
      assert.deepEqual(hpa.spec?.metrics?.map((x) => x.type), ['Resource', 'Pods']);
      assert.equal(hpa.spec?.metrics?.[1].pods?.metric.name, 'im_gateway_connections');
      assert.equal(m.workload('gateway').spec?.replicas, undefined, 'no replicas field to fight the HPA');
      assert.ok((hpa.spec?.behavior?.scaleDown?.stabilizationWindowSeconds ?? 0) >= 600, 'scale-down (a drain) is slow');
      const logicHpa = m.get<HorizontalPodAutoscaler>('HorizontalPodAutoscaler', m.name('logic'));
      assert.equal(logicHpa.spec?.metrics?.[0].resource?.name, 'cpu');
      assert.equal(renders.default.all('HorizontalPodAutoscaler').length, 0);
      assert.match(renderError({ set: { 'gateway.autoscaling.enabled': true, 'gateway.autoscaling.targetCPUUtilizationPercentage': 0 } }), /needs targetCPUUtilizationPercentage or connections/);
    });
  });

  describe('router and logic', () => {
    it('runs exactly one router, replaced not overlapped (its route table is in memory)', () => {
      for (const [label, m] of Object.entries(renders)) {
        const w = m.workload('router');
        assert.equal(w.kind, 'Deployment', label);
        assert.equal(w.spec?.replicas, 1, label);
        assert.equal((w.spec as DeploymentSpec).strategy?.type, 'Recreate', label);
      }
    });

    it('gives router and logic a grace period above their own shutdown bound', () => {
      for (const [label, m] of Object.entries(renders)) {
        for (const comp of ['logic', 'router'] as const) {
          const w = m.workload(comp);
          const preStop = Number(mainContainer(w).lifecycle?.preStop?.exec?.command?.[1]);
          // logic/main.ts and router/main.ts bound their own stop at 15 s.
          assert.ok(podSpec(w).terminationGracePeriodSeconds! >= preStop + 15, `${label} ${comp}`);
        }
      }
    });

    it('tells the router the gateways\' heartbeat, its trusted proxies and region table', () => {
      for (const [label, m] of Object.entries(renders)) {
        const gw = effectiveEnv(m, mainContainer(m.workload('gateway')));
        const router = effectiveEnv(m, mainContainer(m.workload('router')));
        assert.equal(router.get('IM_HEARTBEAT_INTERVAL'), gw.get('IM_HEARTBEAT_INTERVAL'), label);
      }
      const router = effectiveEnv(renders.extras, mainContainer(renders.extras.workload('router')));
      assert.equal(router.get('IM_HEARTBEAT_INTERVAL'), '45s');
      assert.equal(router.get('IM_TRUSTED_PROXIES'), '10.0.0.0/8,192.168.1.7');
      assert.equal(router.get('IM_REGION_CIDRS'), '203.0.113.0/24=eu-west');
      assert.equal(effectiveEnv(renders.default, mainContainer(renders.default.workload('router'))).get('IM_TRUSTED_PROXIES'), undefined);
    });

    it('gives the gateways their token keys from Secrets only, and aud/iss from values', () => {
      const gw = (v: 'default' | 'extras') => effectiveEnv(renders[v], mainContainer(renders[v].workload('gateway')));
      const extras = gw('extras');
      assert.equal(extras.get('IM_AUTH_SECRET'), '<secret:my-auth/auth-secret>');
      assert.equal(extras.get('IM_AUTH_KEYS'), '<secret:my-auth-keys/keys>');
      assert.deepEqual([extras.get('IM_AUTH_AUDIENCE'), extras.get('IM_AUTH_ISSUER')], ['im', 'https://login.example.com']);
      const plain = gw('default');
      assert.deepEqual(['IM_AUTH_KEYS', 'IM_AUTH_AUDIENCE', 'IM_AUTH_ISSUER'].map((n) => plain.get(n)), [undefined, undefined, undefined]);
    });

    it('exposes the client HTTP API on the logic Service, with the gateways\' token keys from Secrets; none of it when off', () => {
      const logicService = (m: Manifest) => m.services().find((s) => s.metadata?.name === m.name('logic'))!;
      for (const [label, m] of Object.entries(renders)) {
        const c = mainContainer(m.workload('logic'));
        const env = effectiveEnv(m, c);
        assert.equal(c.ports?.find((p) => p.name === 'http')?.containerPort, 7191, label);
        assert.equal(env.get('IM_HTTP_ADDR'), '0.0.0.0:7191', label);
        assert.deepEqual([env.get('IM_HTTP_MAX_BODY_BYTES'), env.get('IM_HTTP_RATE'), env.get('IM_HTTP_BURST')], ['262144', '20', '40'], label);
        assert.match(env.get('IM_AUTH_SECRET')!, /^<secret:/, `${label}: the signing key comes from a Secret`);
        const port = logicService(m).spec?.ports?.find((p) => p.name === 'http');
        assert.deepEqual([port?.port, port?.targetPort], [7191, 'http'], label);
      }
      const extras = effectiveEnv(renders.extras, mainContainer(renders.extras.workload('logic')));
      assert.deepEqual(['IM_AUTH_SECRET', 'IM_AUTH_KEYS', 'IM_AUTH_AUDIENCE', 'IM_AUTH_ISSUER'].map((n) => extras.get(n)),
        ['<secret:my-auth/auth-secret>', '<secret:my-auth-keys/keys>', 'im', 'https://login.example.com']);

      const moved = render({ set: { 'logic.http.port': 8443, 'logic.service.httpPort': 443, 'logic.http.rate': 0 } });
      const movedEnv = effectiveEnv(moved, mainContainer(moved.workload('logic')));
      assert.deepEqual([movedEnv.get('IM_HTTP_ADDR'), movedEnv.get('IM_HTTP_RATE')], ['0.0.0.0:8443', '0']);
      const movedPort = logicService(moved).spec?.ports?.find((p) => p.name === 'http');
      assert.deepEqual([movedPort?.port, movedPort?.targetPort], [443, 'http']);

      const off = render({ set: { 'logic.http.enabled': false } });
      const offC = mainContainer(off.workload('logic'));
      const offEnv = effectiveEnv(off, offC);
      assert.deepEqual(['IM_HTTP_ADDR', 'IM_AUTH_SECRET'].map((n) => offEnv.get(n)), [undefined, undefined]);
      assert.equal(offC.ports?.find((p) => p.name === 'http'), undefined);
      assert.equal(logicService(off).spec?.ports?.find((p) => p.name === 'http'), undefined);
      assert.match(renderError({ set: { 'logic.http.maxBodyBytes': 10 } }), /maxBodyBytes/);
    });

    it('wires logic to Cassandra and NATS from values and secrets', () => {
      const env = effectiveEnv(renders.ha, mainContainer(renders.ha.workload('logic')));
      assert.equal(env.get('IM_STORE'), 'cassandra');
      assert.equal(env.get('IM_CASSANDRA_DC'), 'dc1');
      assert.equal(env.get('IM_CASSANDRA_CONSISTENCY'), 'LOCAL_QUORUM');
      assert.equal(env.get('IM_CASSANDRA_USERNAME'), '<secret:im-cassandra/username>');
      assert.equal(env.get('IM_NATS_URL')!.split(',').length, 3);
      const extras = effectiveEnv(renders.extras, mainContainer(renders.extras.workload('logic')));
      assert.equal(extras.get('IM_NATS_URL'), '<secret:my-nats/url>');
      assert.equal(extras.get('OTEL_SERVICE_NAME'), 'im-logic');
      assert.equal(extras.get('OTEL_EXPORTER_OTLP_ENDPOINT'), 'http://otel-collector:4318');
      assert.match(extras.get('OTEL_RESOURCE_ATTRIBUTES')!, /^k8s\.pod\.name=<fieldRef:metadata\.name>,/);
      assert.equal(effectiveEnv(renders.default, mainContainer(renders.default.workload('logic'))).get('OTEL_SDK_DISABLED'), 'true');
    });
  });

  describe('values-ha.yaml', () => {
    it('holds 10 million connections at <= 80 % fill, and after losing one of three zones', () => {
      const m = renders.ha;
      const gw = m.workload('gateway');
      const perPod = Number(effectiveEnv(m, mainContainer(gw)).get('IM_MAX_CONNECTIONS'));
      assert.ok(minPods(gw, m) * perPod * 0.8 >= TEN_MILLION, `min ${minPods(gw, m)} pods x ${perPod}`);
      assert.ok(Math.floor(maxPods(gw, m) * 2 / 3) * perPod >= TEN_MILLION, `max ${maxPods(gw, m)} pods, two zones left`);
      // ~7 KB per idle connection measured (k8s/README.md), 20 KB budgeted with traffic.
      assert.ok(perPod * 20 * 1024 <= bytes(mainContainer(gw).resources?.limits?.memory), 'gateway memory per connection');
    });

    it('gives the router room for the whole route table (~500 B per session measured, 1.2 devices per user)', () => {
      const c = mainContainer(renders.ha.workload('router'));
      const heap = Number(/--max-old-space-size=(\d+)/.exec(effectiveEnv(renders.ha, c).get('NODE_OPTIONS')!)![1]) * 2 ** 20;
      assert.ok(heap >= TEN_MILLION * 1.2 * 500 * 1.5, `router heap ${heap} for 12 M sessions with 50 % headroom`);
    });
  });

});
