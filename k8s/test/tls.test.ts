/**
 * The chart's secrets and certificates (issue 14, item 6): every secret reaches the pods from a
 * Secret (a secretKeyRef, or a file in a read-only Secret volume), never from a ConfigMap, a
 * literal env value or values.yaml; the gateways' client TLS and its public address in each mode;
 * cert-manager Certificates that name what the pods dial; values-ha.yaml with TLS on everywhere,
 * refusing to render until every certificate Secret is named or issued.
 */
import * as assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { checkServerIdentity, type PeerCertificate } from 'node:tls';
import type { Service } from 'kubernetes-types/core/v1';
import { parse as parseYaml } from 'yaml';
import * as nkeys from '@nats-io/nkeys';
import { roleOf } from '../../common/grpc-tls';
import { CHART_DIR, DEFAULT_NAMESPACE, HA_VALUES, needsHelm, render, renderError, REPO_ROOT, runHelm } from './helm';
import { effectiveEnv, mainContainer, Manifest, podSpec, selects, template } from './manifest';
import { COMPONENTS, HA_NATS_SECRETS, HA_TLS_SECRETS, maxPods, renderVariants, type Variant } from './variants';

interface Certificate {
  apiVersion: string;
  metadata: { name: string };
  spec: {
    secretName: string; commonName?: string; dnsNames?: string[]; ipAddresses?: string[];
    duration?: string; renewBefore?: string; usages?: string[];
    privateKey?: { algorithm?: string; size?: number; rotationPolicy?: string };
    issuerRef: { name: string; kind?: string; group?: string };
  };
}

/** Names of settings that hold a secret themselves (a *_KEY setting names a file; *_FILE too). */
const SECRET_NAME = /(SECRET|PASSWORD|PASSWD|USERNAME|TOKENS?|_KEYS|CREDENTIALS?|CREDS)$/;
const PEM = /-----BEGIN [A-Z0-9 ]+-----/;
/** A URL with a password in it (nats://user:pass@host). */
const URL_PASSWORD = /:\/\/[^/@\s:]+:[^/@\s]*@/;

/**
 * Everything secret the render leaves outside Secrets: a secret-named setting or a certificate or
 * key given inline (not as a file) in a ConfigMap or a literal env value, a file setting (an
 * absolute path) that is not an item of a read-only Secret volume, and a PEM block or a URL with
 * a password in any object but a Secret.
 */
function secretLeaks(m: Manifest): string[] {
  const leaks: string[] = [];
  for (const o of m.objects) {
    if (o.kind === 'Secret') continue;
    const text = JSON.stringify(o);
    if (PEM.test(text)) leaks.push(`${o.kind}/${o.metadata.name}: a PEM block`);
    if (URL_PASSWORD.test(text)) leaks.push(`${o.kind}/${o.metadata.name}: a URL with a password`);
  }
  for (const w of m.workloads()) {
    const spec = podSpec(w);
    // Files an init container copies (`cp <from a read-only Secret mount> <to a memory emptyDir>`).
    const copied = new Map<string, string>();
    for (const init of spec.initContainers ?? []) {
      const [cmd, from, to] = init.command ?? [];
      const fromSecret = init.volumeMounts?.some((v) => v.readOnly && spec.volumes?.find((x) => x.name === v.name)?.secret && from?.startsWith(`${v.mountPath}/`));
      const into = init.volumeMounts?.find((v) => to?.startsWith(`${v.mountPath}/`));
      if (cmd === 'cp' && fromSecret && into && spec.volumes?.find((x) => x.name === into.name)?.emptyDir?.medium === 'Memory') copied.set(to, into.name);
    }
    for (const c of spec.containers) {
      // Files the container can read from Secret volumes: "<mountPath>/<item path>".
      const secretFiles = new Set<string>();
      for (const mount of c.volumeMounts ?? []) {
        for (const [file, volume] of copied) if (volume === mount.name && mount.readOnly && file.startsWith(`${mount.mountPath}/`)) secretFiles.add(file);
        const secret = spec.volumes?.find((v) => v.name === mount.name)?.secret;
        if (!secret || !mount.readOnly || mount.subPath) continue;
        for (const item of secret.items ?? []) secretFiles.add(`${mount.mountPath}/${item.path}`);
      }
      // The settings the chart writes as text: its ConfigMaps' entries, then literal env values.
      const written: Array<[string, string, string]> = [];
      for (const src of c.envFrom ?? []) {
        const cm = src.configMapRef?.name;
        if (cm) for (const [k, v] of Object.entries(m.configMap(cm))) written.push([`ConfigMap/${cm}`, k, v]);
      }
      for (const e of c.env ?? []) if (e.value !== undefined) written.push([`${w.metadata?.name} ${c.name} env`, e.name, e.value]);
      for (const [where, name, value] of written) {
        if (value.startsWith('/')) {
          if (!secretFiles.has(value)) leaks.push(`${where}: ${name}=${value} is not a file of a read-only Secret volume`);
        } else if (SECRET_NAME.test(name) || /_(KEY|CERT|CA)$/.test(name)) {
          leaks.push(`${where}: ${name} is written out`);
        }
      }
    }
  }
  return leaks;
}

function gatewayEnv(m: Manifest): Map<string, string> {
  return effectiveEnv(m, mainContainer(m.workload('gateway')));
}

function mountedSecret(m: Manifest, comp: 'gateway' | 'logic' | 'router', volume: string): string | undefined {
  return podSpec(m.workload(comp)).volumes?.find((v) => v.name === volume)?.secret?.secretName;
}

/** The host of a host:port. */
function host(addr: string): string {
  return addr.replace(/:\d+$/, '');
}

/** Node's own server-name check (what the SDK and grpc-js apply) against a Certificate's SANs. */
function certifies(c: Certificate, hostname: string): boolean {
  const sans = [...(c.spec.dnsNames ?? []).map((d) => `DNS:${d}`), ...(c.spec.ipAddresses ?? []).map((ip) => `IP Address:${ip}`)];
  const peer = { subject: { CN: c.spec.commonName ?? '' }, subjectaltname: sans.join(', ') } as unknown as PeerCertificate;
  return checkServerIdentity(hostname, peer) === undefined;
}

/** Go durations as cert-manager parses them ("720h", "1h30m") -> seconds. */
function goSeconds(d: string): number {
  assert.match(d, /^(\d+(\.\d+)?(h|m|s))+$/, `a Go duration: ${d}`);
  let total = 0;
  for (const [, n, unit] of d.matchAll(/(\d+(?:\.\d+)?)(h|m|s)/g)) total += Number(n) * { h: 3600, m: 60, s: 1 }[unit as 'h' | 'm' | 's'];
  return total;
}

/**
 * Runs the commands k8s/README.md gives for values-ha.yaml's NATS Secrets ("NATS in values-ha.yaml")
 * in a fresh directory: the `node scripts/nats-config.js` lines for real (stdout into the file
 * after `>`), the `kubectl create secret generic` lines as the keys such a Secret gets (a file under
 * KEY= or its name, a directory's files by name). Returns the Secrets and the directory.
 */
function runHaNatsCommands(): { dir: string; secrets: Map<string, Map<string, string>>; namespaces: Set<string> } {
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'k8s', 'README.md'), 'utf8');
  const block = /<!-- ha-nats-commands[^>]*-->\n```sh\n([\s\S]*?)```\n<!-- \/ha-nats-commands -->/.exec(readme);
  assert.ok(block, 'k8s/README.md has the ha-nats-commands block');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-chart-nats-'));
  const secrets = new Map<string, Map<string, string>>();
  const namespaces = new Set<string>();
  // Shell words: "$(cat F)" is F's text as one word, $(cat F) its words, anything else itself.
  const words = (args: string) => [...args.matchAll(/"\$\(cat (\S+)\)"|\$\(cat (\S+)\)|\S+/g)].flatMap(([w, quoted, unquoted]) => {
    if (quoted) return [fs.readFileSync(path.join(dir, quoted), 'utf8').trim()];
    if (unquoted) return fs.readFileSync(path.join(dir, unquoted), 'utf8').split(/\s+/).filter(Boolean);
    return [w];
  });
  for (const line of block[1].split('\n').map((l) => l.replace(/\s+#.*$/, '').trim()).filter(Boolean)) {
    const node = /^node scripts\/nats-config\.js (.*?)(?: > (\S+))?$/.exec(line);
    const kubectl = /^kubectl -n (\S+) create secret generic (\S+) --from-file=(?:([^=\s]+)=)?(\S+)$/.exec(line);
    if (node) {
      const r = spawnSync(process.execPath, [path.join(REPO_ROOT, 'scripts', 'nats-config.js'), ...words(node[1])], { cwd: dir, encoding: 'utf8' });
      assert.equal(r.status, 0, `${line}: ${r.stderr}`);
      if (node[2]) fs.writeFileSync(path.join(dir, node[2]), r.stdout);
    } else if (kubectl) {
      const [, namespace, name, key, from] = kubectl;
      const src = path.join(dir, from);
      namespaces.add(namespace);
      const keys = key ? [[key, src]] : fs.statSync(src).isDirectory() ? fs.readdirSync(src).map((f) => [f, path.join(src, f)]) : [[path.basename(src), src]];
      secrets.set(name, new Map(keys as Array<[string, string]>));
    } else {
      assert.fail(`k8s/README.md ha-nats-commands: a line this test does not know: ${line}`);
    }
  }
  return { dir, secrets, namespaces };
}

/** The users of an authorization block nats-config.js printed: public key -> allowed subjects. */
function natsUsers(block: string): Map<string, { publish: string[]; subscribe: string[] }> {
  const list = (l: string) => [...l.matchAll(/"([^"]*)"/g)].map((x) => x[1]);
  return new Map([...block.matchAll(/\{ nkey: "(U[A-Z2-7]+)", permissions: \{ publish: \{ allow: \[([^\]]*)\] \}, subscribe: \{ allow: \[([^\]]*)\] \} \} \}/g)]
    .map(([, key, pub, sub]) => [key, { publish: list(pub), subscribe: list(sub) }]));
}

const publicKeyOf = (seedFile: string) => nkeys.fromSeed(new TextEncoder().encode(fs.readFileSync(seedFile, 'utf8').trim())).getPublicKey();

describe('Helm chart k8s/im: secrets and TLS', function () {
  this.timeout(180_000);
  let renders: Record<Variant, Manifest>;

  before(function () {
    needsHelm(this);
    renders = renderVariants();
  });

  describe('secrets', () => {
    it('never leave Secrets: no secret in a ConfigMap, a literal env value or any other object; every file setting is a Secret volume item', () => {
      for (const [label, m] of Object.entries(renders)) assert.deepEqual(secretLeaks(m), [], label);
    });

    it('the leak check finds a password in a ConfigMap, a PEM key or file path outside a Secret in env, a URL password', () => {
      const m = renders.extras;
      const doctored = Manifest.parse(m.objects.map((o) => {
        const copy = structuredClone(o) as Record<string, any>;
        if (copy.kind === 'ConfigMap' && copy.metadata.name === m.name('router')) copy.data.IM_X_PASSWORD = 'hunter2';
        if (copy.kind === 'StatefulSet' && copy.metadata.name === m.name('gateway')) {
          const env = copy.spec.template.spec.containers[0].env as Array<{ name: string; value?: string }>;
          env.find((e) => e.name === 'IM_GATEWAY_TLS_KEY')!.value = '/etc/im/elsewhere/tls.key';
          env.push({ name: 'IM_EXTRA', value: '-----BEGIN PRIVATE KEY-----\nMII...' }, { name: 'IM_AUTH_SECRET', value: 'abc' });
        }
        if (copy.kind === 'ConfigMap' && copy.metadata.name === m.name('logic')) copy.data.IM_NATS_URL = 'nats://im:s3cret@nats:4222';
        return copy;
      }).map((o) => JSON.stringify(o)).join('\n---\n'), m.release);
      const leaks = secretLeaks(doctored).join('\n');
      for (const want of [/ConfigMap\/.*-router: IM_X_PASSWORD is written out/, /IM_GATEWAY_TLS_KEY=\/etc\/im\/elsewhere\/tls\.key is not a file of a read-only Secret volume/,
        /StatefulSet\/.*: a PEM block/, /env: IM_AUTH_SECRET is written out/, /ConfigMap\/.*-logic: a URL with a password/]) {
        assert.match(leaks, want);
      }
    });

    it('are refused in extraEnv (it goes into a ConfigMap), naming the value', () => {
      assert.match(renderError({ set: { 'gateway.extraEnv.IM_AUTH_SECRET': 'a-key-of-twenty-chars' } }), /gateway\.extraEnv\.IM_AUTH_SECRET looks like a secret/);
      assert.match(renderError({ set: { 'logic.extraEnv.IM_LOGIC_ADMIN_TOKENS': 't'.repeat(40) } }), /logic\.extraEnv\.IM_LOGIC_ADMIN_TOKENS/);
      assert.match(renderError({ set: { 'logic.extraEnv.IM_NATS_URL': 'nats://im:pass@nats:4222' } }), /logic\.extraEnv\.IM_NATS_URL looks like a secret/);
      assert.match(renderError({ set: { 'router.extraEnv.X': '-----BEGIN PRIVATE KEY-----' } }), /router\.extraEnv\.X/);
      const fine = render({ set: { 'logic.extraEnv.IM_NATS_URL': 'nats://nats-0:4222', 'gateway.extraEnv.IM_RATE_LIMIT': 80 } });
      assert.equal(fine.configMap(fine.name('logic')).IM_NATS_URL, 'nats://nats-0:4222');
    });

    it('values.yaml takes Secret names and their keys, never secret material', () => {
      const offending: string[] = [];
      const walk = (v: unknown, at: string[]) => {
        if (v && typeof v === 'object' && !Array.isArray(v)) {
          for (const [k, child] of Object.entries(v)) walk(child, [...at, k]);
          return;
        }
        const leaf = at[at.length - 1];
        // certManager.privateKey.* are parameters of keys cert-manager generates.
        if (/(secret|password|passwd|token|credential|key)s?$/i.test(leaf) && !/(Secrets?|Key)$/.test(leaf) && !at.includes('privateKey')) offending.push(at.join('.'));
      };
      walk(parseYaml(fs.readFileSync(path.join(CHART_DIR, 'values.yaml'), 'utf8')), []);
      assert.deepEqual(offending, []);
    });
  });

  describe('gateway TLS', () => {
    it('listens on gateway.tls.port with the certificate of gateway.tls.existingSecret, mounted read-only as a directory', () => {
      const m = renders.extras;
      const w = m.workload('gateway');
      const c = mainContainer(w);
      const env = effectiveEnv(m, c);
      const volume = podSpec(w).volumes?.find((v) => v.name === 'gateway-tls');
      const mount = c.volumeMounts?.find((v) => v.name === 'gateway-tls');
      assert.equal(volume?.secret?.secretName, 'my-gateway-tls');
      assert.deepEqual(volume?.secret?.items, [{ key: 'tls.crt', path: 'tls.crt' }, { key: 'tls.key', path: 'tls.key' }], 'the kubernetes.io/tls keys');
      assert.equal(mount?.readOnly, true);
      assert.equal(mount?.subPath, undefined, 'a subPath mount would never see a renewed certificate');
      assert.deepEqual(['IM_GATEWAY_TLS_CERT', 'IM_GATEWAY_TLS_KEY'].map((n) => env.get(n)), [`${mount?.mountPath}/tls.crt`, `${mount?.mountPath}/tls.key`]);
      assert.deepEqual(['IM_GATEWAY_TLS_ADDR', 'IM_GATEWAY_TLS_RELOAD_INTERVAL', 'IM_GATEWAY_PLAINTEXT'].map((n) => env.get(n)), ['0.0.0.0:7443', '30s', undefined]);
      assert.deepEqual(c.ports?.filter((p) => p.name !== 'ws').map((p) => [p.name, p.containerPort]), [['im', 7100], ['im-tls', 7443], ['admin', 9100]]);
      const shared = m.get<Service>('Service', m.name('gateway'));
      assert.deepEqual(shared.spec?.ports?.filter((p) => p.name !== 'ws').map((p) => [p.name, p.port, p.targetPort]), [['im', 7100, 'im'], ['im-tls', 7443, 'im-tls']]);
      const headless = m.get<Service>('Service', (w as { spec: { serviceName: string } }).spec.serviceName);
      assert.deepEqual(headless.spec?.ports?.filter((p) => p.name !== 'ws').map((p) => p.targetPort), ['im', 'im-tls', 'admin']);
      // Off: none of it.
      const off = renders.default;
      const offC = mainContainer(off.workload('gateway'));
      assert.deepEqual([...effectiveEnv(off, offC).keys()].filter((k) => k.startsWith('IM_GATEWAY_TLS') || k === 'IM_GATEWAY_PLAINTEXT'), []);
      assert.equal(offC.ports?.find((p) => p.name === 'im-tls'), undefined);
      assert.equal(podSpec(off.workload('gateway')).volumes?.find((v) => v.name === 'gateway-tls'), undefined);
    });

    it('follows its port values; TLS only drops the plaintext ports and address', () => {
      const m = render({
        set: {
          'gateway.tls.enabled': true, 'gateway.tls.existingSecret': 'gw', 'gateway.tls.plaintext': false,
          'gateway.tls.port': 8443, 'gateway.tls.servicePort': 443, 'gateway.publicAddress.host': 'chat.example.com',
        },
      });
      const c = mainContainer(m.workload('gateway'));
      const env = effectiveEnv(m, c);
      assert.deepEqual(['IM_GATEWAY_TLS_ADDR', 'IM_GATEWAY_TLS_PUBLIC_ADDR', 'IM_GATEWAY_PLAINTEXT', 'IM_GATEWAY_PUBLIC_ADDR'].map((n) => env.get(n)),
        ['0.0.0.0:8443', 'chat.example.com:443', 'false', undefined]);
      assert.deepEqual(c.ports?.filter((p) => p.name !== 'ws').map((p) => p.name), ['im-tls', 'admin']);
      for (const s of m.services().filter((x) => selects(x.spec?.selector, template(m.workload('gateway')).metadata?.labels))) {
        assert.ok(!s.spec?.ports?.some((p) => p.targetPort === 'im'), `${s.metadata?.name}: no plaintext port`);
      }
      assert.deepEqual(m.get<Service>('Service', m.name('gateway')).spec?.ports?.filter((p) => p.name !== 'ws').map((p) => [p.port, p.targetPort]), [[443, 'im-tls']]);
    });

    it('refuses TLS-only without TLS, one port for both listeners, and TLS without a certificate', () => {
      assert.match(renderError({ set: { 'gateway.tls.plaintext': false } }), /gateway\.tls\.plaintext=false needs gateway\.tls\.enabled/);
      assert.match(renderError({ set: { 'gateway.tls.enabled': true, 'gateway.tls.existingSecret': 'gw', 'gateway.tls.port': 7100 } }), /gateway\.tls\.port must differ from gateway\.port/);
      assert.match(renderError({ set: { 'gateway.tls.enabled': true } }), /TLS is on but its Secrets are not named; set: gateway\.tls\.existingSecret/);
    });
  });

  describe('values-ha.yaml', () => {
    it('has TLS on everywhere: clients (TLS only), internal gRPC with roles checked, NATS with per-role credentials, Cassandra', () => {
      for (const label of ['ha', 'haCertManager'] as const) {
        const m = renders[label];
        const gw = gatewayEnv(m);
        assert.equal(gw.get('IM_GATEWAY_TLS_ADDR'), '0.0.0.0:7443', label);
        assert.equal(gw.get('IM_GATEWAY_PLAINTEXT'), 'false', label);
        assert.equal(gw.get('IM_GATEWAY_TLS_PUBLIC_ADDR'), 'gw.example.com:7443', label);
        assert.ok(!mainContainer(m.workload('gateway')).ports?.some((p) => p.name === 'im'), `${label}: no plaintext port`);
        for (const comp of COMPONENTS) {
          const env = effectiveEnv(m, mainContainer(m.workload(comp)));
          assert.match(env.get('IM_GRPC_TLS_CERT') ?? '', /^\/etc\/im\/grpc-tls\//, `${label} ${comp}`);
          assert.equal(env.get('IM_GRPC_TLS_CHECK_ROLES'), 'true', `${label} ${comp}`);
        }
        const logic = effectiveEnv(m, mainContainer(m.workload('logic')));
        assert.deepEqual([logic.get('IM_CASSANDRA_TLS'), logic.get('IM_CASSANDRA_TLS_CA')], ['true', '/etc/im/cassandra-tls/ca.crt'], label);
        assert.equal(mountedSecret(m, 'logic', 'cassandra-tls'), 'im-cassandra-tls', label);
        // NATS: TLS, the servers verified against their CA, and a credential of the role's own (no URL credential).
        for (const comp of ['logic', 'gateway'] as const) {
          const env = effectiveEnv(m, mainContainer(m.workload(comp)));
          assert.equal(env.get('IM_NATS_TLS_CA'), '/etc/im/nats-tls/ca.crt', `${label} ${comp}: NATS over TLS`);
          assert.equal(mountedSecret(m, comp, 'nats-tls'), HA_NATS_SECRETS.ca, `${label} ${comp}`);
          assert.match(env.get('IM_NATS_NKEY_SEED_FILE') ?? '', /^\/etc\/im\/nats-credential\//, `${label} ${comp}: a NATS credential`);
          assert.doesNotMatch(env.get('IM_NATS_URL') ?? '', /@/, `${label} ${comp}: no credential shared in the URL`);
        }
        assert.equal(mountedSecret(m, 'logic', 'nats-credential'), HA_NATS_SECRETS.logic, label);
        assert.equal(mountedSecret(m, 'gateway', 'nats-seeds'), HA_NATS_SECRETS.perPod, `${label}: a seed per gateway pod`);
      }
      assert.equal(mountedSecret(renders.ha, 'gateway', 'gateway-tls'), 'im-gateway-tls');
      assert.equal(renders.ha.all('Certificate').length, 0, 'Secrets named: no Certificate');
    });

    it('the commands k8s/README.md gives make the NATS Secrets it mounts: a seed for every gateway pod up to maxReplicas, each allowed only its own subjects', () => {
      const m = renders.ha;
      const { dir, secrets, namespaces } = runHaNatsCommands();
      try {
        assert.deepEqual([...namespaces], [DEFAULT_NAMESPACE]);
        const volume = (comp: 'logic' | 'gateway', name: string) => podSpec(m.workload(comp)).volumes?.find((v) => v.name === name)?.secret;
        // Every key the render reads from each Secret is in the Secret the commands create.
        for (const [comp, name] of [['logic', 'nats-credential'], ['logic', 'nats-tls'], ['gateway', 'nats-tls']] as const) {
          const v = volume(comp, name);
          for (const item of v?.items ?? []) assert.ok(secrets.get(v!.secretName!)?.has(item.key), `${comp} ${name}: ${v!.secretName}/${item.key}`);
        }
        const users = natsUsers(fs.readFileSync(path.join(dir, 'nats-authorization.conf'), 'utf8'));
        const logicSeed = secrets.get(HA_NATS_SECRETS.logic)!.get(volume('logic', 'nats-credential')!.items![0].key)!;
        assert.deepEqual(users.get(publicKeyOf(logicSeed))?.publish, ['im.gw.>', 'im.store.>', 'im.logic.>'], 'logic publishes pushes');
        // The init container copies gateway-<pod name>.nk: one for every pod the HPA may make.
        const gw = m.workload('gateway');
        const seeds = secrets.get(volume('gateway', 'nats-seeds')!.secretName!);
        assert.ok(seeds, 'the per-pod Secret is created');
        const pods = Array.from({ length: maxPods(gw, m) }, (_, i) => `${gw.metadata!.name}-${i}`);
        assert.equal(pods.length, 320, 'gateway.autoscaling.maxReplicas of values-ha.yaml');
        for (const pod of pods) {
          const seed: string | undefined = seeds.get(`gateway-${pod}.nk`);
          assert.ok(seed, `a seed for ${pod}`);
          assert.deepEqual(users.get(publicKeyOf(seed)), { publish: ['im.kick.>'], subscribe: [`im.gw.${pod}`, `im.kick.${pod}`] }, pod);
        }
        assert.equal(users.size, pods.length + 1, 'no other user (no credential for any gateway)');
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('fails to render until every certificate Secret is named or issued, naming each value to set', () => {
      const bare = renderError({ valuesFiles: [HA_VALUES] });
      for (const value of Object.keys(HA_TLS_SECRETS)) assert.match(bare, new RegExp(value.replace(/\./g, '\\.')), value);
      assert.match(bare, /certManager\.enabled=true/);
      // helm lint says the same (as an [INFO] line: lint does not count template fail/required as errors).
      const lint = runHelm(['lint', '--strict', CHART_DIR, '-f', HA_VALUES]);
      assert.match(lint.stdout + lint.stderr, /TLS is on but its Secrets are not named/);
      // cert-manager without issuers: the issuers, and Cassandra's CA (which cert-manager cannot make).
      const cm = renderError({ valuesFiles: [HA_VALUES], set: { 'certManager.enabled': true } });
      assert.match(cm, /certManager\.gateway\.issuerRef\.name.*certManager\.internal\.issuerRef\.name.*cassandra\.tls\.existingSecret/);
      assert.doesNotMatch(cm, /grpcTls\.\w+Secret \(|gateway\.tls\.existingSecret \(/);
      // Node's public CAs for Cassandra are a choice to make explicitly.
      const publicCas = render({ valuesFiles: [HA_VALUES], set: { ...HA_TLS_SECRETS, 'cassandra.tls.existingSecret': '', 'cassandra.tls.caKey': '' } });
      assert.equal(effectiveEnv(publicCas, mainContainer(publicCas.workload('logic'))).get('IM_CASSANDRA_TLS_CA'), undefined);
    });
  });

  describe('route API HTTPS and wss://', () => {
    it('serves the route API over HTTPS with router.tls.existingSecret, mounted read-only; on in values-ha.yaml at port 443', () => {
      const m = renders.extras;
      const c = mainContainer(m.workload('router'));
      const env = effectiveEnv(m, c);
      const mount = c.volumeMounts?.find((v) => v.name === 'router-tls');
      assert.equal(mountedSecret(m, 'router', 'router-tls'), 'my-router-tls');
      assert.equal(mount?.readOnly, true);
      assert.equal(mount?.subPath, undefined, 'a subPath mount would never see a renewed certificate');
      assert.deepEqual(['IM_ROUTER_HTTP_TLS_CERT', 'IM_ROUTER_HTTP_TLS_KEY', 'IM_ROUTER_HTTP_TLS_RELOAD_INTERVAL'].map((n) => env.get(n)),
        [`${mount?.mountPath}/tls.crt`, `${mount?.mountPath}/tls.key`, '30s']);
      for (const label of ['ha', 'haCertManager'] as const) {
        const ha = renders[label];
        assert.match(effectiveEnv(ha, mainContainer(ha.workload('router'))).get('IM_ROUTER_HTTP_TLS_CERT') ?? '', /^\/etc\/im\/router-tls\//, label);
        assert.equal(ha.get<Service>('Service', `${ha.name('router')}-public`).spec?.ports?.[0].port, 443, label);
      }
      assert.equal(mountedSecret(renders.ha, 'router', 'router-tls'), 'im-router-tls');
      const off = effectiveEnv(renders.default, mainContainer(renders.default.workload('router')));
      assert.deepEqual([...off.keys()].filter((k) => k.startsWith('IM_ROUTER_HTTP_TLS')), []);
    });

    it('issues the route API\'s certificate from the gateways\' issuer for certManager.router.dnsNames, else router.ingress.host, else refuses', () => {
      const cert = (m: Manifest) => m.all<Certificate>('Certificate').find((c) => c.spec.secretName === mountedSecret(m, 'router', 'router-tls'));
      const ha = cert(renders.haCertManager);
      assert.deepEqual([ha?.spec.dnsNames, ha?.spec.issuerRef.name, ha?.spec.usages], [['route.example.com'], 'letsencrypt', ['digital signature', 'key encipherment', 'server auth']]);
      const cm = { 'router.tls.enabled': true, 'certManager.enabled': true, 'certManager.gateway.issuerRef.name': 'le' };
      assert.deepEqual(cert(render({ set: { ...cm, 'router.ingress.enabled': true, 'router.ingress.host': 'route.example.org' } }))?.spec.dnsNames, ['route.example.org']);
      assert.match(renderError({ set: cm }), /certManager\.router\.dnsNames \(or router\.ingress\.host\) is required/);
      assert.match(renderError({ set: { 'router.tls.enabled': true } }), /set: router\.tls\.existingSecret/);
    });

    it('gateway.websocket.tls: wss:// by default when TLS-only, refused without a certificate or as plaintext beside TLS-only', () => {
      const ws = { 'gateway.websocket.port': 7101, 'gateway.tls.enabled': true, 'gateway.tls.existingSecret': 'gw' };
      const only = render({ set: { ...ws, 'gateway.tls.plaintext': false } });
      assert.equal(gatewayEnv(only).get('IM_GATEWAY_WS_TLS'), undefined, 'the gateway\'s own default (wss:// when plaintext is off)');
      assert.equal(gatewayEnv(renders.extras).get('IM_GATEWAY_WS_TLS'), 'true');
      assert.equal(gatewayEnv(render({ set: { ...ws, 'gateway.websocket.tls': false } })).get('IM_GATEWAY_WS_TLS'), 'false');
      assert.match(renderError({ set: { 'gateway.websocket.port': 7101, 'gateway.websocket.tls': true } }), /gateway\.websocket\.tls=true needs gateway\.tls\.enabled/);
      assert.match(renderError({ set: { ...ws, 'gateway.tls.plaintext': false, 'gateway.websocket.tls': false } }), /gateway\.websocket\.tls=false with gateway\.tls\.plaintext=false/);
    });
  });

  describe('cert-manager', () => {
    const certs = (m: Manifest) => m.all<Certificate>('Certificate');

    it('issues each role its internal certificate: the Secret its pods mount, CN naming the role, every name dialled', () => {
      for (const label of ['haCertManager', 'longName'] as const) {
        const m = renders[label];
        const gw = gatewayEnv(m);
        const logicEnv = effectiveEnv(m, mainContainer(m.workload('logic')));
        const dialled: Record<string, string[]> = {
          gateway: [],
          logic: [...gw.get('IM_LOGIC_ADDRS')!.split(',').map(host), m.name('logic'), `${m.name('logic')}.${DEFAULT_NAMESPACE}.svc`],
          router: [host(gw.get('IM_ROUTER_GRPC_ADDR')!), host(logicEnv.get('IM_ROUTER_GRPC_ADDR')!)],
        };
        for (const comp of COMPONENTS) {
          const secret = mountedSecret(m, comp, 'grpc-tls');
          const c = certs(m).find((x) => x.spec.secretName === secret);
          assert.ok(c, `${label} ${comp}: a Certificate writes ${secret}`);
          assert.equal(c.apiVersion, 'cert-manager.io/v1');
          assert.equal(roleOf({ subject: { CN: c.spec.commonName } } as unknown as PeerCertificate), comp, `${label} ${comp}: CN ${c.spec.commonName}`);
          assert.deepEqual(c.spec.issuerRef, { name: 'im-internal-ca', kind: 'Issuer', group: 'cert-manager.io' });
          assert.ok(c.spec.usages?.includes('client auth') || comp === 'router', `${label} ${comp}: client auth`);
          assert.equal(c.spec.usages?.includes('server auth'), comp !== 'gateway', `${label} ${comp}: server auth exactly on servers`);
          for (const name of dialled[comp]) assert.ok(certifies(c, name), `${label} ${comp}: ${name} is not in ${c.spec.dnsNames}`);
          if (comp === 'logic') {
            // Why the chart dials fully qualified pod names: Node refuses a wildcard over one label.
            const short = { ...c, spec: { ...c.spec, dnsNames: [`*.${m.name('logic')}-headless`] } };
            assert.ok(!certifies(short, `${m.name('logic')}-0.${m.name('logic')}-headless`));
          }
          assert.ok(!certifies(c, `${m.name('gateway')}-0.${m.name('gateway')}-headless`), `${label} ${comp}: names nothing else`);
          assert.equal(c.spec.privateKey?.rotationPolicy, 'Always');
          assert.ok(goSeconds(c.spec.duration!) >= 3600 && goSeconds(c.spec.duration!) > goSeconds(c.spec.renewBefore!), `${label} ${comp}: duration`);
          assert.ok(c.metadata.name.length <= 63 && secret!.length <= 63, `${label}: ${secret}`);
        }
      }
    });

    it('issues the gateways\' client certificate for the host clients are told (IM_GATEWAY_TLS_PUBLIC_ADDR)', () => {
      for (const label of ['haCertManager', 'perPodService'] as const) {
        const m = renders[label];
        const secret = mountedSecret(m, 'gateway', 'gateway-tls');
        const c = certs(m).find((x) => x.spec.secretName === secret);
        assert.ok(c, `${label}: a Certificate writes ${secret}`);
        assert.deepEqual(c.spec.issuerRef, { name: 'letsencrypt', kind: 'ClusterIssuer', group: 'cert-manager.io' });
        assert.deepEqual(c.spec.usages, ['digital signature', 'key encipherment', 'server auth']);
        const advertised = host(gatewayEnv(m).get('IM_GATEWAY_TLS_PUBLIC_ADDR')!).replace('<fieldRef:metadata.name>', `${m.name('gateway')}-3`);
        assert.ok(certifies(c, advertised), `${label}: ${advertised} is not in ${c.spec.dnsNames}`);
        assert.ok(!certifies(c, 'other.example.org'), label);
      }
      assert.equal(certs(renders.perPodService).length, 1, 'no internal Certificates without grpcTls');
      // hostPort: nothing to derive names from.
      const hostPort = { 'gateway.publicAddress.mode': 'hostPort', 'gateway.tls.enabled': true, 'certManager.enabled': true, 'certManager.gateway.issuerRef.name': 'le' };
      assert.match(renderError({ set: hostPort }), /certManager\.gateway\.dnsNames is required with gateway\.publicAddress\.mode=hostPort/);
      const listed = certs(render({
        set: {
          ...hostPort, 'certManager.gateway.dnsNames': '{gw.example.com,203.0.113.7}', 'certManager.gateway.issuerRef.kind': 'Issuer',
          'certManager.gateway.duration': '2160h', 'certManager.gateway.renewBefore': '720h',
          'certManager.privateKey.algorithm': 'RSA', 'certManager.privateKey.size': 3072,
        },
      }))[0];
      assert.deepEqual([listed.spec.dnsNames, listed.spec.ipAddresses], [['gw.example.com'], ['203.0.113.7']]);
      assert.deepEqual([listed.spec.issuerRef.kind, listed.spec.duration, listed.spec.renewBefore], ['Issuer', '2160h', '720h']);
      assert.deepEqual(listed.spec.privateKey, { algorithm: 'RSA', size: 3072, rotationPolicy: 'Always' });
      // Empty: the issuer's own lifetime (ACME: 90 days).
      const acme = certs(renders.haCertManager).find((c) => c.spec.secretName === mountedSecret(renders.haCertManager, 'gateway', 'gateway-tls'))!;
      assert.deepEqual([acme.spec.duration, acme.spec.renewBefore, acme.spec.privateKey?.algorithm], [undefined, undefined, 'ECDSA']);
    });

    it('issues nothing a value already names, adds logic.gatewayAddresses to logic\'s names, and refuses a key size that does not fit', () => {
      const m = render({
        set: {
          'grpcTls.enabled': true, 'grpcTls.routerSecret': 'my-router', 'certManager.enabled': true,
          'certManager.internal.issuerRef.name': 'ca', 'logic.gatewayAddresses': '{logic.internal.example:7190}',
        },
      });
      assert.deepEqual(certs(m).map((c) => c.spec.commonName).sort(), ['gateway', 'logic']);
      assert.equal(mountedSecret(m, 'router', 'grpc-tls'), 'my-router');
      assert.ok(certifies(certs(m).find((c) => c.spec.commonName === 'logic')!, 'logic.internal.example'));
      assert.equal(certs(renders.default).length + certs(renders.extras).length, 0, 'off, or every Secret named: none');
      assert.match(renderError({ set: { 'grpcTls.enabled': true, 'certManager.enabled': true, 'certManager.internal.issuerRef.name': 'ca', 'certManager.privateKey.algorithm': 'RSA' } }),
        /certManager\.privateKey\.size must be 2048, 3072 or 4096 with algorithm RSA/);
    });
  });
});
