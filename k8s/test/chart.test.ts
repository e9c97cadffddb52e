/**
 * The Helm chart in k8s/im, checked with the real helm: lint --strict with the default and HA
 * values, template for every variant (variants.ts), every rendered object type-checked against the
 * Kubernetes API types, then what holds for every workload and Service: probes, security context,
 * resources, config checksums and wiring, and the README's values table. The gateway's drain and
 * rollout promises and the HA sizing are in operations.test.ts.
 */
import * as assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { Service } from 'kubernetes-types/core/v1';
import { parse as parseYaml } from 'yaml';
import * as nkeys from '@nats-io/nkeys';
import { loadAdminAddr } from '../../common/admin-http';
import { loadBusConfig, type BusConfig } from '../../bus/config';
import { loadTelemetryConfig } from '../../common/telemetry';
import { loadGatewayConfig } from '../../gateway/config';
import { loadLogicProcessConfig } from '../../logic/config';
import { loadRouterConfig } from '../../router/config';
import { CHART_DIR, DEFAULT_NAMESPACE, needsHelm, render, renderError, REPO_ROOT, runHelm, templateArgs } from './helm';
import { effectiveEnv, mainContainer, Manifest, podSpec, selects, template, type K8sObject } from './manifest';
import { makeTestPki, signed, signServerCert, type TestPki } from '../../test/tls-certs';
import { typecheckObjects } from './typecheck';
import { bytes, COMPONENTS, GATEWAY_TLS, GRPC_TLS, maxPods, NATS_SECRETS, probeCheck, renderVariants, VARIANTS, type Variant } from './variants';

/** The Secret volume logic reads its admin tokens from (logic.adminTokens). */
const ADMIN_TOKENS_VOLUME = 'admin-tokens';
const CASSANDRA_TLS_VOLUME = 'cassandra-tls';
const GRPC_TLS_VOLUME = 'grpc-tls';
/** The Secret volumes of a role's NATS credential (an nkey seed) and of the NATS servers' CA. */
const NATS_CREDENTIAL_VOLUME = 'nats-credential';
const NATS_TLS_VOLUME = 'nats-tls';
const NATS_AUTH_SETTINGS = /^IM_NATS_(USER|PASSWORD|NKEY_SEED_FILE|TLS_CA)$/;
const GATEWAY_TLS_VOLUME = 'gateway-tls';
const ROUTER_TLS_VOLUME = 'router-tls';
/** Every gateway pod's NATS seed (nats.credentials.gateway.perPodSecret), mounted in the init container only. */
const NATS_SEEDS_VOLUME = 'nats-seeds';
/** The Secret volumes a pod may have besides /tmp, each mounted read-only. */
const SECRET_VOLUMES = [ADMIN_TOKENS_VOLUME, CASSANDRA_TLS_VOLUME, GRPC_TLS_VOLUME, GATEWAY_TLS_VOLUME, ROUTER_TLS_VOLUME, NATS_CREDENTIAL_VOLUME, NATS_SEEDS_VOLUME, NATS_TLS_VOLUME];
/** perPodSecret: the pod's own seed, in memory, written only by the init container of the same name. */
const isPerPodSeed = (v: { name: string; emptyDir?: { medium?: string } }) => v.name === NATS_CREDENTIAL_VOLUME && v.emptyDir?.medium === 'Memory';
/** Variants with Cassandra TLS (values-ha.yaml has it on). */
const CASSANDRA_TLS: readonly Variant[] = ['ha', 'haCertManager', 'extras'];

/** The Secret a variant mounts for a TLS volume: the name its values give, else cert-manager's. */
function tlsSecretName(label: Variant, m: Manifest, volume: string, comp: string): string {
  const names: Record<string, Record<string, string>> = {
    [GRPC_TLS_VOLUME]: { ha: `im-grpc-${comp}`, extras: `my-grpc-${comp}` },
    [GATEWAY_TLS_VOLUME]: { ha: 'im-gateway-tls', hostPortNodePort: 'my-gateway-tls', extras: 'my-gateway-tls' },
  };
  const fullname = m.name('gateway').replace(/-gateway$/, '');
  return names[volume]?.[label] ?? (volume === GRPC_TLS_VOLUME ? `${fullname}-grpc-${comp}` : `${fullname}-gateway-tls`);
}

/** Settings the chart passes that the services do not read yet (see k8s/README.md). */
const ENV_PENDING_IN_CODE = new Set<string>();

/** IM_* names the services read, from their sources (not tests). */
function envNamesReadByCode(): Set<string> {
  const names = new Set<string>();
  const read = (abs: string): void => {
    for (const e of fs.readdirSync(abs, { withFileTypes: true })) {
      const f = path.join(abs, e.name);
      if (e.isDirectory()) read(f);
      else if (e.name.endsWith('.ts') && !/\.test(-support)?\.ts$/.test(e.name)) {
        for (const m of fs.readFileSync(f, 'utf8').matchAll(/['"`](IM_[A-Z0-9_]+)['"`]/g)) names.add(m[1]);
      }
    }
  };
  for (const dir of ['common', 'bus', 'telemetry', 'gateway', 'router', 'logic', 'storage', 'embedded', 'proto']) {
    const abs = path.join(REPO_ROOT, dir);
    if (fs.existsSync(abs)) read(abs);
  }
  return names;
}

describe('Helm chart k8s/im', function () {
  this.timeout(180_000);
  let renders: Record<Variant, Manifest>;

  before(function () {
    needsHelm(this);
    renders = renderVariants();
  });

  /** The TLS Secrets' files, as their volumes would hold them: a CA, a certificate per role, a client-facing one. */
  let pki: TestPki;
  let tlsFiles: (volume: string, comp: string) => Record<string, string>;
  /** A NATS nkey seed, as the credential Secret's volume would hold it. */
  let seedFile: string;
  before(() => {
    pki = makeTestPki(fs.mkdtempSync(path.join(os.tmpdir(), 'im-chart-tls-')));
    for (const comp of COMPONENTS) signed(pki.dir, comp, 'ca', 'extendedKeyUsage=serverAuth,clientAuth\n');
    const gw = signServerCert(pki, 'gateway-public');
    const at = (f: string) => path.join(pki.dir, f);
    tlsFiles = (volume, comp) => {
      const byVolume: Record<string, Record<string, string>> = {
        [CASSANDRA_TLS_VOLUME]: { 'ca.crt': pki.caPem, 'tls.crt': pki.clientCert, 'tls.key': pki.clientKey },
        [GRPC_TLS_VOLUME]: { 'ca.crt': pki.caPem, 'tls.crt': at(`${comp}.pem`), 'tls.key': at(`${comp}.key`) },
        [GATEWAY_TLS_VOLUME]: { 'tls.crt': gw.cert, 'tls.key': gw.key },
        [ROUTER_TLS_VOLUME]: { 'tls.crt': gw.cert, 'tls.key': gw.key },
      };
      return byVolume[volume] ?? {};
    };
    seedFile = path.join(pki.dir, 'nkey-seed');
    fs.writeFileSync(seedFile, new TextDecoder().decode(nkeys.createUser().getSeed()));
  });
  after(() => { if (pki) fs.rmSync(pki.dir, { recursive: true, force: true }); });
  // What the kubelet would fill in for the downward API and Secrets.
  const podValues = (env: Map<string, string>, component: string): Record<string, string> => Object.fromEntries([...env].map(([k, v]) => [k, v
    .replace(/<fieldRef:metadata\.name>/g, `${component}-0`)
    .replace(/<fieldRef:metadata\.namespace>/g, 'chat')
    .replace(/<fieldRef:status\.hostIP>/g, '10.1.2.3')
    .replace(/^<secret:[^>]*\/url>$/, 'nats://user:pass@nats-0.nats:4222')
    .replace(/^<secret:[^>]*\/keys>$/, 'k1:a-rotation-key-0123456789')
    .replace(/^<secret:[^>]*>$/, 'a-secret-value-0123456789')
    .replace(/^\/etc\/im\/nats-credential\/.+$/, seedFile)
    .replace(/^\/etc\/im\/nats-tls\/.+$/, pki.caPem)
    .replace(/^\/etc\/im\/([a-z]+-tls)\/(.+)$/, (_, volume: string, f: string) => tlsFiles(volume, component)[f] ?? `no test file for ${volume}/${f}`)]));

  describe('helm lint --strict', () => {
    for (const [label, o] of Object.entries(VARIANTS)) {
      it(`passes with the ${label} values`, () => {
        // template's arguments after the release and chart (helm lint takes no release name).
        const r = runHelm(['lint', '--strict', CHART_DIR, ...templateArgs(o).slice(3)]);
        assert.equal(r.status, 0, `helm lint failed:\n${r.stdout}\n${r.stderr}`);
        assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
      });
    }

    it('fails on a misspelt value (values.schema.json rejects unknown keys)', () => {
      const r = runHelm(['lint', '--strict', CHART_DIR, '--set', 'gateway.replica=3']);
      assert.notEqual(r.status, 0);
      assert.match(r.stdout + r.stderr, /replica/);
    });

    it('rejects bad values by schema: unquoted quantities, a writable root filesystem, an unknown Service type', () => {
      assert.match(renderError({ set: { 'gateway.resources.requests.cpu': 2 } }), /cpu.*want string|string.*cpu/s);
      assert.match(renderError({ set: { 'securityContext.readOnlyRootFilesystem': false } }), /readOnlyRootFilesystem/);
      assert.match(renderError({ set: { 'gateway.service.type': 'ExternalName' } }), /type/);
    });

    it('rejects Cassandra TLS keys without their Secret, a certificate without its key, and a Secret with no key named', () => {
      const on = { 'cassandra.tls.enabled': true };
      assert.match(renderError({ set: { ...on, 'cassandra.tls.certKey': 'tls.crt', 'cassandra.tls.keyKey': 'tls.key' } }), /existingSecret, which is empty/);
      assert.match(renderError({ set: { ...on, 'cassandra.tls.existingSecret': 's', 'cassandra.tls.certKey': 'tls.crt' } }), /go together/);
      assert.match(renderError({ set: { ...on, 'cassandra.tls.existingSecret': 's', 'cassandra.tls.caKey': '' } }), /all empty/);
    });
  });

  describe('rendered objects', () => {
    it('type-check against the Kubernetes 1.30 API types, every variant', () => {
      const problems = typecheckObjects(Object.entries(renders).map(([label, m]) => ({ label, objects: m.objects })), REPO_ROOT);
      assert.deepEqual(problems, [], problems.map((p) => `${p.object}: ${p.message}`).join('\n'));
    });

    it('the type check catches a misspelt field, a wrong type and an unknown kind', () => {
      // The compiler reports the first problem of each object literal, so one defect per copy.
      const misspelt = structuredClone(renders.default.workload('gateway')) as unknown as Record<string, any>;
      misspelt.spec.template.spec.containers[0].readinesProbe = { httpGet: { path: '/readyz', port: 'admin' } };
      const wrongType = structuredClone(renders.default.workload('gateway')) as unknown as Record<string, any>;
      wrongType.spec.template.spec.containers[0].resources.limits.memory = 1024;
      const odd = { apiVersion: 'example.com/v1', kind: 'Widget', metadata: { name: 'w' } };
      const problems = typecheckObjects([{ label: 'broken', objects: [misspelt, wrongType, odd] as K8sObject[] }], REPO_ROOT);
      const text = problems.map((p) => `${p.object}: ${p.message}`).join('\n');
      assert.match(text, /readinesProbe/);
      assert.match(text, /number.*not assignable to type 'string'/);
      assert.match(text, /no type known for example.com\/v1 Widget/);
    });

    it('have names Kubernetes accepts, even for the longest release name', () => {
      for (const [label, m] of Object.entries(renders)) {
        for (const o of m.objects) {
          assert.ok(/^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(o.metadata.name) && o.metadata.name.length <= 63, `${label}: ${o.kind}/${o.metadata.name}`);
          if (o.kind === 'Service') assert.ok(/^[a-z]/.test(o.metadata.name), `${label}: Service names start with a letter`);
        }
        // A StatefulSet's pods carry controller-revision-hash "<name>-<10 chars>", a 63-char label value.
        for (const w of m.workloads()) if (w.kind === 'StatefulSet') assert.ok(w.metadata!.name!.length <= 52, `${label}: ${w.metadata!.name}`);
      }
    });
  });

  describe('every workload', () => {

    it('runs the service main from the one image, with probes on the admin port', () => {
      for (const [label, m] of Object.entries(renders)) {
        const images = new Set<string>();
        for (const comp of COMPONENTS) {
          const w = m.workload(comp);
          const c = mainContainer(w);
          images.add(c.image!);
          assert.deepEqual(c.args, [`dist/${comp}/main.js`], `${label} ${comp}`);
          assert.ok(fs.existsSync(path.join(REPO_ROOT, comp, 'main.ts')), `${comp}/main.ts exists`);
          assert.equal(c.command, undefined, 'the image entrypoint (node) is kept');
          probeCheck(c.startupProbe, '/healthz', `${label} ${comp} startup`);
          probeCheck(c.livenessProbe, '/healthz', `${label} ${comp} liveness`);
          probeCheck(c.readinessProbe, '/readyz', `${label} ${comp} readiness`);
          const admin = c.ports?.find((p) => p.name === 'admin');
          const env = effectiveEnv(m, c);
          assert.equal(env.get('IM_ADMIN_ADDR'), `0.0.0.0:${admin?.containerPort}`, `${label} ${comp}: admin listens where probed`);
        }
        assert.equal(images.size, 1, `${label}: one image for all services`);
      }
    });

    it('is non-root with a read-only root filesystem, no privileges, and only a /tmp emptyDir', () => {
      for (const [label, m] of Object.entries(renders)) {
        for (const w of m.workloads()) {
          const spec = podSpec(w);
          const what = `${label} ${w.metadata!.name}`;
          assert.equal(spec.securityContext?.runAsNonRoot, true, what);
          assert.ok((spec.securityContext?.runAsUser ?? 0) > 0, what);
          assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault', what);
          assert.equal(spec.automountServiceAccountToken, false, `${what}: no API token`);
          assert.equal(spec.hostNetwork, undefined, what);
          for (const c of [...spec.containers, ...(spec.initContainers ?? [])]) {
            const sc = c.securityContext;
            assert.equal(sc?.readOnlyRootFilesystem, true, what);
            assert.equal(sc?.allowPrivilegeEscalation, false, what);
            assert.equal(sc?.runAsNonRoot, true, what);
            assert.deepEqual(sc?.capabilities?.drop, ['ALL'], what);
            assert.equal(sc?.capabilities?.add, undefined, what);
            // The admin-token and TLS Secrets (when given) are the other volumes, read-only.
            const writable = (c.volumeMounts ?? []).filter((v) => !(SECRET_VOLUMES.includes(v.name) && v.readOnly)
              && !(c.name === NATS_CREDENTIAL_VOLUME && v.name === NATS_CREDENTIAL_VOLUME && spec.initContainers?.includes(c)));
            assert.deepEqual(writable, [{ name: 'tmp', mountPath: '/tmp' }], `${what}: only /tmp is writable`);
          }
          const volumes = (spec.volumes ?? []).filter((v) => !(SECRET_VOLUMES.includes(v.name) && v.secret) && !isPerPodSeed(v));
          assert.equal(volumes.length, 1, what);
          const tmp = volumes[0];
          assert.equal(tmp.name, 'tmp');
          assert.ok(tmp.emptyDir?.sizeLimit, `${what}: /tmp is a bounded emptyDir`);
          if (w.kind === 'StatefulSet') assert.equal(w.spec?.volumeClaimTemplates, undefined, `${what}: no per-pod volumes to lose`);
        }
      }
    });

    it('has cpu and memory requests, a memory limit, and a V8 heap bound under it', () => {
      for (const [label, m] of Object.entries(renders)) {
        for (const comp of COMPONENTS) {
          const c = mainContainer(m.workload(comp));
          const what = `${label} ${comp}`;
          assert.ok(c.resources?.requests?.cpu && c.resources.requests.memory && c.resources.limits?.memory, what);
          const nodeOptions = effectiveEnv(m, c).get('NODE_OPTIONS') ?? '';
          const heap = /--max-old-space-size=(\d+)/.exec(nodeOptions);
          assert.ok(heap, `${what}: heap bound set`);
          // The young generation is two semi-spaces and a new large-object space of the same size
          // on top of old space (V8's heap_size_limit grows by 3 × the semi-space).
          const young = 3 * Number(/--max-semi-space-size=(\d+)/.exec(nodeOptions)?.[1] ?? 16);
          const mib = Number(heap[1]) + young;
          assert.ok(mib * 2 ** 20 <= 0.85 * bytes(c.resources.limits.memory), `${what}: heap ${mib}Mi (old ${heap[1]}, young ${young}) leaves room under ${c.resources.limits.memory}`);
          // Logic and gateways run with the young generation the bench measured them with (bench/servers.ts).
          if (label === 'default' && comp !== 'router') assert.match(nodeOptions, comp === 'logic' ? /--max-semi-space-size=128\b/ : /--max-semi-space-size=32\b/, what);
          assert.ok(bytes(c.resources.requests.memory) <= bytes(c.resources.limits.memory), what);
        }
      }
    });

    it('rolls when its ConfigMap changes, and only then (checksum annotation)', () => {
      const base = renders.default;
      const changed = render({ set: { 'gateway.maxConnections': 12345 } });
      const sum = (m: Manifest, comp: string) => template(m.workload(comp as 'gateway')).metadata?.annotations?.['checksum/config'];
      for (const comp of COMPONENTS) {
        assert.match(sum(base, comp) ?? '', /^[0-9a-f]{64}$/, comp);
        // The checksum is of the rendered ConfigMap itself.
        const cmText = runHelm([...templateArgs({}), '--show-only', `templates/${comp}/configmap.yaml`]).stdout;
        const body = cmText.replace(/^---\n# Source: [^\n]*\n/, ''); // helm's document header
        assert.equal(sum(base, comp), createHash('sha256').update(body).digest('hex'), `${comp}: checksum of its ConfigMap`);
      }
      assert.notEqual(sum(changed, 'gateway'), sum(base, 'gateway'), 'a gateway setting rolls gateways');
      assert.equal(sum(changed, 'logic'), sum(base, 'logic'), 'but not logic');
      assert.equal(sum(changed, 'router'), sum(base, 'router'), 'nor the router');
      // A chart version bump alone must not roll the gateways (that would reconnect every client).
      const podLabels = template(base.workload('gateway')).metadata?.labels ?? {};
      assert.equal(podLabels['helm.sh/chart'], undefined);
      assert.equal(podLabels['app.kubernetes.io/version'], undefined);
    });

    it('reads only settings the services know (env names checked against the sources)', () => {
      const known = envNamesReadByCode();
      const unknown = new Set<string>();
      for (const m of Object.values(renders)) {
        for (const comp of COMPONENTS) {
          for (const name of effectiveEnv(m, mainContainer(m.workload(comp))).keys()) {
            if (name.startsWith('IM_') && !known.has(name) && !ENV_PENDING_IN_CODE.has(name)) unknown.add(`${comp}: ${name}`);
          }
        }
      }
      assert.deepEqual([...unknown], [], 'the chart sets IM_* variables no service reads');
      const notYet = [...ENV_PENDING_IN_CODE].filter((n) => !known.has(n));
      if (notYet.length > 0) process.stdout.write(`      (the chart sets ${notYet.join(', ')}, not read by the services yet)\n`);
    });

    it('gives each service an environment its own config loader accepts', () => {
      for (const [label, m] of Object.entries(renders)) {
        const env = (comp: 'gateway' | 'logic' | 'router') => podValues(effectiveEnv(m, mainContainer(m.workload(comp))), comp);
        const gw = loadGatewayConfig(env('gateway'), []);
        const gwPorts = mainContainer(m.workload('gateway')).ports ?? [];
        assert.equal(gw.listen.host, '0.0.0.0', label);
        assert.equal(gw.logicAddresses.length, maxPods(m.workload('logic'), m), label);
        assert.equal(gw.plaintext, gwPorts.some((p) => p.name === 'im'), `${label}: a plaintext port exactly when the plaintext listener is on`);
        assert.ok(gw.plaintext ? gw.publicAddr : gw.tls?.publicAddr, `${label}: a public address is advertised`);
        assert.equal(gw.tls?.listen.port, gwPorts.find((p) => p.name === 'im-tls')?.containerPort, `${label}: the TLS listener on its port`);
        assert.equal(gw.tls !== undefined, GATEWAY_TLS.includes(label as Variant), `${label}: gateway TLS as the values say`);
        const logic = loadLogicProcessConfig(env('logic'), [], () => `${'t'.repeat(40)}\n`);
        assert.equal(logic.store.kind, 'cassandra', label);
        assert.equal(logic.http?.port, mainContainer(m.workload('logic')).ports?.find((p) => p.name === 'http')?.containerPort, label);
        assert.equal(logic.bus.kind, 'nats', label);
        const gwBus = loadBusConfig(env('gateway'), []);
        const natsAuth = (b: BusConfig) => (b.kind === 'nats' ? [b.auth?.credentials?.kind, b.auth?.tlsCa !== undefined] : []);
        const natsWanted: Partial<Record<string, unknown>> = {
          natsAuth: [['nkey', true], ['password', true]], natsPerPod: [[undefined, false], ['nkey', false]],
          ha: [['nkey', true], ['nkey', true]], haCertManager: [['nkey', true], ['nkey', true]],
        };
        assert.deepEqual([natsAuth(logic.bus), natsAuth(gwBus)], natsWanted[label] ?? [[undefined, false], [undefined, false]], `${label}: NATS credentials`);
        const router = loadRouterConfig(env('router'), [], () => { throw new Error('no region file in the chart'); });
        assert.equal(router.httpHost, '0.0.0.0', label);
        assert.equal(router.httpTls !== undefined, ['ha', 'haCertManager', 'extras'].includes(label), `${label}: route API HTTPS as the values say`);
        assert.equal(gw.ws?.tls ?? false, label === 'extras', `${label}: wss:// as the values say`);
        for (const [comp, tls] of [['gateway', gw.grpcTls], ['logic', logic.grpcTls], ['router', router.grpcTls]] as const) {
          assert.equal(tls !== undefined, GRPC_TLS.includes(label as Variant), `${label} ${comp}: internal gRPC mTLS as the values say`);
        }
        for (const comp of COMPONENTS) {
          assert.equal(loadAdminAddr(env(comp), [])?.port, mainContainer(m.workload(comp)).ports?.find((p) => p.name === 'admin')?.containerPort);
          const tracing = loadTelemetryConfig(comp, env(comp));
          assert.equal(tracing.enabled, label === 'extras', `${label} ${comp}: tracing ${tracing.reason}`);
        }
      }
    });

    it('serves the admin API only with a token Secret, mounted read-only as a file, never in a ConfigMap', () => {
      for (const [label, m] of Object.entries(renders)) {
        const spec = podSpec(m.workload('logic'));
        const c = mainContainer(m.workload('logic'));
        const env = effectiveEnv(m, c);
        assert.equal(env.get('IM_LOGIC_ADMIN_TOKENS'), undefined, `${label}: no token in the environment`);
        const volume = spec.volumes?.find((v) => v.name === ADMIN_TOKENS_VOLUME);
        if (label !== 'extras') {
          assert.equal(env.get('IM_LOGIC_ADMIN_TOKEN_FILE'), undefined, `${label}: no Secret named, no admin API`);
          assert.equal(volume, undefined, label);
          continue;
        }
        assert.equal(volume?.secret?.secretName, 'my-admin-tokens');
        const mount = c.volumeMounts?.find((v) => v.name === ADMIN_TOKENS_VOLUME);
        assert.equal(mount?.readOnly, true);
        assert.equal(mount?.subPath, undefined, 'a subPath mount would never see the Secret change');
        assert.equal(env.get('IM_LOGIC_ADMIN_TOKEN_FILE'), `${mount?.mountPath}/${volume?.secret?.items?.[0].path}`);
        const cm = m.configMap(c.envFrom![0].configMapRef!.name!);
        assert.ok(!Object.keys(cm).some((k) => k.startsWith('IM_LOGIC_ADMIN_TOKEN')), 'not from the ConfigMap');
      }
    });

    it('gives logic Cassandra TLS files only from a Secret mounted read-only, never from a ConfigMap', () => {
      for (const [label, m] of Object.entries(renders)) {
        const spec = podSpec(m.workload('logic'));
        const c = mainContainer(m.workload('logic'));
        const env = effectiveEnv(m, c);
        const volume = spec.volumes?.find((v) => v.name === CASSANDRA_TLS_VOLUME);
        const cm = m.configMap(c.envFrom![0].configMapRef!.name!);
        assert.ok(!Object.keys(cm).some((k) => /^IM_CASSANDRA_TLS_(CA|CERT|KEY)$/.test(k)), `${label}: no TLS file in the ConfigMap`);
        if (!CASSANDRA_TLS.includes(label as Variant)) {
          assert.equal(env.get('IM_CASSANDRA_TLS'), undefined, `${label}: TLS off unless asked for`);
          assert.equal(volume, undefined, label);
          continue;
        }
        assert.equal(cm.IM_CASSANDRA_TLS, 'true');
        assert.equal(volume?.secret?.secretName, label === 'extras' ? 'my-cassandra-tls' : 'im-cassandra-tls');
        const mount = c.volumeMounts?.find((v) => v.name === CASSANDRA_TLS_VOLUME);
        assert.equal(mount?.readOnly, true);
        const files = Object.fromEntries((volume?.secret?.items ?? []).map((i) => [i.key, `${mount?.mountPath}/${i.path}`]));
        assert.deepEqual(
          [env.get('IM_CASSANDRA_TLS_CA'), env.get('IM_CASSANDRA_TLS_CERT'), env.get('IM_CASSANDRA_TLS_KEY')],
          [files['ca.crt'], files['tls.crt'], files['tls.key']]);
      }
    });

    it('gives every service its internal gRPC certificate from its own Secret, mounted read-only, never from a ConfigMap', () => {
      for (const [label, m] of Object.entries(renders)) {
        for (const comp of COMPONENTS) {
          const c = mainContainer(m.workload(comp));
          const env = effectiveEnv(m, c);
          const volume = podSpec(m.workload(comp)).volumes?.find((v) => v.name === GRPC_TLS_VOLUME);
          const cm = m.configMap(c.envFrom![0].configMapRef!.name!);
          assert.ok(!Object.keys(cm).some((k) => k.startsWith('IM_GRPC_TLS')), `${label} ${comp}: nothing from the ConfigMap`);
          if (!GRPC_TLS.includes(label as Variant)) {
            assert.equal(env.get('IM_GRPC_TLS_CA'), undefined, `${label} ${comp}: plaintext unless asked for`);
            assert.equal(volume, undefined, `${label} ${comp}`);
            continue;
          }
          assert.equal(volume?.secret?.secretName, tlsSecretName(label as Variant, m, GRPC_TLS_VOLUME, comp), `${label} ${comp}: its own role's Secret`);
          const mount = c.volumeMounts?.find((v) => v.name === GRPC_TLS_VOLUME);
          assert.equal(mount?.readOnly, true);
          assert.equal(mount?.subPath, undefined, 'a subPath mount would never see a renewed certificate');
          const files = Object.fromEntries((volume?.secret?.items ?? []).map((i) => [i.key, `${mount?.mountPath}/${i.path}`]));
          assert.deepEqual(
            [env.get('IM_GRPC_TLS_CA'), env.get('IM_GRPC_TLS_CERT'), env.get('IM_GRPC_TLS_KEY'), env.get('IM_GRPC_TLS_CHECK_ROLES')],
            [files['ca.crt'], files['tls.crt'], files['tls.key'], String(label !== 'extras')], `${label} ${comp}`);
        }
      }
      const missing = renderError({ set: { 'grpcTls.enabled': true, 'grpcTls.logicSecret': 'only-logic' } });
      assert.match(missing, /grpcTls\.gatewaySecret.*grpcTls\.routerSecret/);
      assert.doesNotMatch(missing, /grpcTls\.logicSecret/);
    });

    it('gives logic and gateways their NATS credentials and CA from Secrets only, the router none', () => {
      const CREDENTIAL_SETTINGS = /^IM_NATS_(USER|PASSWORD|NKEY_SEED_FILE)$/;
      for (const [label, m] of Object.entries(renders) as Array<[Variant, Manifest]>) {
        const want = NATS_SECRETS[label] ?? {};
        for (const comp of COMPONENTS) {
          const c = mainContainer(m.workload(comp));
          const cm = m.configMap(c.envFrom![0].configMapRef!.name!);
          assert.ok(!Object.keys(cm).some((k) => NATS_AUTH_SETTINGS.test(k)), `${label} ${comp}: no NATS credential in the ConfigMap`);
          const env = effectiveEnv(m, c);
          if (comp === 'router') {
            assert.deepEqual([...env.keys()].filter((k) => NATS_AUTH_SETTINGS.test(k)), [], `${label} router`);
            continue;
          }
          const spec = podSpec(m.workload(comp));
          const file = (volumeName: string) => {
            const volume = spec.volumes?.find((v) => v.name === volumeName);
            const mount = c.volumeMounts?.find((v) => v.name === volumeName);
            assert.equal(mount?.readOnly, true, `${label} ${comp} ${volumeName} read-only`);
            return { secret: volume?.secret?.secretName, path: `${mount?.mountPath}/${volume?.secret?.items?.[0].path}` };
          };
          if (want.ca) assert.deepEqual(file(NATS_TLS_VOLUME), { secret: want.ca, path: env.get('IM_NATS_TLS_CA') }, `${label} ${comp}`);
          else assert.equal(env.get('IM_NATS_TLS_CA'), undefined, `${label} ${comp}: plaintext NATS`);
          if (comp === 'logic' && want.logic) {
            assert.deepEqual(file(NATS_CREDENTIAL_VOLUME), { secret: want.logic, path: env.get('IM_NATS_NKEY_SEED_FILE') }, label);
          } else if (comp === 'gateway' && want.perPod) {
            // Its own seed only: copied by the init container from the Secret of every pod's seeds.
            const init = spec.initContainers?.find((i) => i.name === NATS_CREDENTIAL_VOLUME);
            const seedDir = init?.volumeMounts?.find((v) => v.name === NATS_SEEDS_VOLUME);
            assert.deepEqual(init?.command, ['cp', `${seedDir?.mountPath}/gateway-$(POD_NAME).nk`, env.get('IM_NATS_NKEY_SEED_FILE')], label);
            assert.equal(init?.env?.find((e) => e.name === 'POD_NAME')?.valueFrom?.fieldRef?.fieldPath, 'metadata.name');
            assert.equal(seedDir?.readOnly, true);
            assert.equal(spec.volumes?.find((v) => v.name === NATS_SEEDS_VOLUME)?.secret?.secretName, want.perPod, label);
            assert.ok(isPerPodSeed(spec.volumes!.find((v) => v.name === NATS_CREDENTIAL_VOLUME)!), `${label}: the seed in memory`);
            assert.deepEqual(c.volumeMounts?.filter((v) => v.name.startsWith('nats-') && v.name !== NATS_TLS_VOLUME),
              [{ name: NATS_CREDENTIAL_VOLUME, mountPath: '/etc/im/nats-credential', readOnly: true }], `${label}: the gateway container never mounts the other pods' seeds`);
            assert.equal(env.get('IM_NODE_ID'), '<fieldRef:metadata.name>', 'the node id (its NATS subject) is the pod name its seed is for');
          } else if (comp === 'gateway' && want.gateway) {
            assert.deepEqual([env.get('IM_NATS_USER'), env.get('IM_NATS_PASSWORD')], [`<secret:${want.gateway}/user>`, `<secret:${want.gateway}/password>`], label);
            assert.equal(spec.volumes?.find((v) => v.name === NATS_CREDENTIAL_VOLUME), undefined, 'no seed volume with a password');
          } else {
            assert.deepEqual([...env.keys()].filter((k) => CREDENTIAL_SETTINGS.test(k)), [], `${label} ${comp}: no NATS credential`);
          }
        }
      }
      assert.match(renderError({ set: { 'nats.credentials.logic.existingSecret': 's', 'nats.credentials.logic.userKey': 'u' } }), /go together/);
      assert.match(renderError({ set: { 'nats.credentials.gateway.userKey': 'u', 'nats.credentials.gateway.passwordKey': 'p' } }),
        /existingSecret, which is empty/);
      assert.match(renderError({ set: { 'nats.credentials.gateway.perPodSecret': 'a', 'nats.credentials.gateway.existingSecret': 'b' } }), /perPodSecret replaces existingSecret/);
    });

    it('references only ConfigMaps the chart renders and Secrets it renders or was given', () => {
      for (const [label, m] of Object.entries(renders)) {
        // Secrets the values name (extras variant, values-ha.yaml) exist before the install.
        const given = new Set(['my-auth', 'my-auth-keys', 'my-nats', 'my-cassandra', 'im-auth', 'im-cassandra', 'my-router-tls', 'im-router-tls',
          ...Object.values(NATS_SECRETS).flatMap((n) => Object.values(n)),
          'my-admin-tokens', 'my-cassandra-tls', 'my-gateway-tls', ...COMPONENTS.map((c) => `my-grpc-${c}`),
          'im-cassandra-tls', 'im-gateway-tls', ...COMPONENTS.map((c) => `im-grpc-${c}`)]);
        // ...or the Secrets the chart's cert-manager Certificates write.
        const issued = new Set(m.all<{ spec: { secretName: string } }>('Certificate').map((c) => c.spec.secretName));
        for (const comp of COMPONENTS) {
          const c = mainContainer(m.workload(comp));
          for (const src of c.envFrom ?? []) assert.ok(m.find('ConfigMap', src.configMapRef!.name!), `${label} ${comp}: ConfigMap ${src.configMapRef!.name}`);
          for (const e of c.env ?? []) {
            const ref = e.valueFrom?.secretKeyRef;
            if (!ref) continue;
            const secret = m.find<{ data?: Record<string, string> }>('Secret', ref.name!);
            assert.ok(secret ? secret.data?.[ref.key] : given.has(ref.name!), `${label} ${comp}: Secret ${ref.name}/${ref.key}`);
          }
          for (const v of podSpec(m.workload(comp)).volumes ?? []) {
            if (v.secret) assert.ok(given.has(v.secret.secretName!) || issued.has(v.secret.secretName!), `${label} ${comp}: volume Secret ${v.secret.secretName}`);
          }
          // $(VAR) in env values only expands variables defined before it.
          const env = effectiveEnv(m, c);
          for (const [k, v] of env) assert.ok(!/\$\([A-Za-z_]/.test(v), `${label} ${comp}: ${k}=${v} has an unexpandable reference`);
        }
      }
    });
  });

  describe('services and monitoring', () => {
    it('every Service selects pods of one workload and targets ports they declare', () => {
      for (const [label, m] of Object.entries(renders)) {
        for (const s of m.services()) {
          // The StatefulSet controller adds the pod-name label; check it names a pod that can exist.
          const { 'statefulset.kubernetes.io/pod-name': podName, ...selector } = s.spec?.selector ?? {};
          const owners = m.workloads().filter((w) => selects(selector, template(w).metadata?.labels));
          if (podName !== undefined) {
            assert.equal(owners[0]?.kind, 'StatefulSet', `${label}: ${s.metadata?.name}`);
            const ordinal = Number(podName.slice(owners[0].metadata!.name!.length + 1));
            assert.ok(podName.startsWith(`${owners[0].metadata!.name}-`) && ordinal >= 0 && ordinal < maxPods(owners[0], m), `${label}: ${podName}`);
          }
          assert.equal(owners.length, 1, `${label}: Service ${s.metadata?.name} selects ${owners.length} workloads`);
          const ports = mainContainer(owners[0]).ports ?? [];
          for (const p of s.spec?.ports ?? []) {
            assert.ok(ports.some((cp) => cp.name === p.targetPort || cp.containerPort === p.targetPort), `${label}: ${s.metadata?.name} -> ${p.targetPort}`);
          }
        }
      }
    });

    it('exposes the WebSocket port only when gateway.websocket.port is set: container, Services, hostPort, and the setting the gateway reads', () => {
      const expected: Record<Variant, { port: number; url?: string } | undefined> = {
        default: undefined, ha: undefined, haCertManager: undefined, longName: undefined, natsAuth: undefined, natsPerPod: undefined,
        perPodService: { port: 7101 }, hostPortNodePort: { port: 7101 }, extras: { port: 8443, url: 'wss://im.example.com/ws' },
      };
      for (const [label, m] of Object.entries(renders) as Array<[Variant, Manifest]>) {
        const want = expected[label];
        const gw = m.workload('gateway');
        const ws = mainContainer(gw).ports?.find((p) => p.name === 'ws');
        const env = effectiveEnv(m, mainContainer(gw));
        // The client-facing ones (the headless Service only names pods).
        const clientServices = m.services().filter((s) => s.spec?.clusterIP !== 'None' && s.spec?.ports?.some((p) => p.targetPort === 'im' || p.targetPort === 'im-tls'));
        assert.ok(clientServices.length > 0, label);
        if (!want) {
          assert.equal(ws, undefined, `${label}: no ws container port`);
          assert.equal(env.get('IM_GATEWAY_WS_ADDR'), undefined, label);
          for (const s of clientServices) assert.ok(!s.spec?.ports?.some((p) => p.targetPort === 'ws'), `${label}: ${s.metadata?.name}`);
          continue;
        }
        assert.equal(ws?.containerPort, want.port, label);
        assert.equal(ws?.hostPort, label === 'hostPortNodePort' ? want.port : undefined, `${label}: hostPort only in hostPort mode`);
        for (const s of clientServices) {
          assert.equal(s.spec?.ports?.find((p) => p.targetPort === 'ws')?.port, want.port, `${label}: ${s.metadata?.name} exposes ws`);
        }
        const cfg = loadGatewayConfig({ ...podValues(env, 'gateway'), IM_AUTH_SECRET: 'a-secret-value-0123456789' }, []);
        assert.deepEqual(cfg.ws, { host: '0.0.0.0', port: want.port, tls: label === 'extras', ...(want.url ? { publicUrl: want.url } : {}) }, label);
      }
    });

    it('ServiceMonitor scrapes /metrics on the admin port every component exposes', () => {
      const m = renders.extras;
      const sm = m.all<{ spec: { selector: { matchLabels: Record<string, string> }; endpoints: Array<{ port: string; path: string }> } }>('ServiceMonitor')[0];
      assert.deepEqual(sm.spec.endpoints.map((e) => [e.port, e.path]), [['admin', '/metrics']]);
      for (const comp of COMPONENTS) {
        const exposing = m.services().filter((s) => selects(sm.spec.selector.matchLabels, s.metadata?.labels as Record<string, string>)
          && s.spec?.ports?.some((p) => p.name === 'admin') && selects(s.spec?.selector, template(m.workload(comp)).metadata?.labels));
        assert.equal(exposing.length, 1, `${comp}: one Service with an admin port`);
      }
      assert.equal(renders.default.all('ServiceMonitor').length, 0);
    });

    it('keeps the client IP on the route API Service', () => {
      const s = renders.default.get<Service>('Service', `${renders.default.name('router')}-public`);
      assert.equal(s.spec?.type, 'LoadBalancer');
      assert.equal(s.spec?.externalTrafficPolicy, 'Local');
      assert.equal(s.spec?.ports?.[0].targetPort, 'http');
    });
  });

  describe('k8s/README.md', () => {
    it('documents every value in its values table', () => {
      const readme = fs.readFileSync(path.join(REPO_ROOT, 'k8s', 'README.md'), 'utf8');
      const table = /\n## Values\n([\s\S]*?)(\n## |$)/.exec(readme)?.[1] ?? assert.fail('no "## Values" section');
      // `{gateway,logic}.pdb.enabled` documents the key under each of those.
      const expand = (key: string): string[] => {
        const m = /^\{([^}]+)\}(.*)$/.exec(key);
        return m ? m[1].split(',').map((c) => `${c}${m[2]}`) : [key];
      };
      const documented = new Set([...table.matchAll(/^\| `([^`]+)` \|/gm)].flatMap((x) => expand(x[1])));
      const leaves: string[] = [];
      const walk = (v: unknown, prefix: string) => {
        if (v && typeof v === 'object' && !Array.isArray(v) && Object.keys(v).length > 0) {
          for (const [k, child] of Object.entries(v)) walk(child, prefix ? `${prefix}.${k}` : k);
        } else {
          leaves.push(prefix);
        }
      };
      walk(parseYaml(fs.readFileSync(path.join(CHART_DIR, 'values.yaml'), 'utf8')), '');
      // A documented parent (e.g. `gateway.resources`) covers its children.
      const missing = leaves.filter((k) => ![...documented].some((d) => k === d || k.startsWith(`${d}.`)));
      assert.deepEqual(missing, [], 'values.yaml keys missing from the README table');
      const stale = [...documented].filter((d) => !leaves.some((k) => k === d || k.startsWith(`${d}.`)));
      assert.deepEqual(stale, [], 'README documents keys values.yaml does not have');
    });
  });
});
