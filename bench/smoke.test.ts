import { strict as assert } from 'node:assert';
import { CASSANDRA_WARMUP_MS, parseBenchOptions, STEADY_WARMUP_MS } from './options';
import { renderTables } from './report';
import { renderMarkdown } from './results';
import { runBench } from './run';

describe('bench options', () => {
  it('warms a distributed run on Cassandra up past the write-behind by default, others for 1 s', () => {
    assert.equal(parseBenchOptions(['one-to-one', '--target', 'distributed']).warmupMs, CASSANDRA_WARMUP_MS);
    assert.ok(CASSANDRA_WARMUP_MS >= STEADY_WARMUP_MS);
    assert.equal(parseBenchOptions(['one-to-one', '--target', 'distributed', '--no-db']).warmupMs, 1000);
    assert.equal(parseBenchOptions(['one-to-one']).warmupMs, 1000);
    assert.equal(parseBenchOptions(['group', '--target', 'distributed', '--warmup', '2s']).warmupMs, 2000);
  });
});

describe('bench smoke: one-to-one against embedded for ~2 s', function () {
  this.timeout(120_000);

  it('runs over real TCP and returns a complete result with nothing lost or duplicated', async () => {
    const options = parseBenchOptions(['one-to-one', '--users', '20', '--duration', '2s', '--warmup', '0', '--no-ceiling', '--quiet', '--no-write']);
    const lines: string[] = [];
    const r = await runBench(options, { log: (l) => lines.push(l), env: process.env });
    const json = JSON.parse(JSON.stringify(r)); // what lands in bench/results/<id>.json

    assert.equal(json.schema, 'im-bench/1');
    assert.equal(json.scenario, 'one-to-one');
    assert.equal(json.target.kind, 'embedded');
    assert.equal(json.setup.connections, 20);
    assert.equal(json.phases.length, 1);
    const p = json.phases[0];
    assert.equal(p.mode, 'max');
    assert.ok(p.acceptedPerS > 0, 'sends were accepted');
    assert.ok(p.deliveriesPerS > 0, 'pushes were delivered');
    for (const k of ['p50', 'p95', 'p99', 'max']) assert.equal(typeof p.e2eMs[k], 'number', `e2eMs.${k}`);
    assert.ok(p.e2eMs.count > 0 && p.ackMs.count > 0);
    assert.ok(p.processes.some((x: { role: string }) => x.role === 'embedded'), 'server process sampled');
    assert.ok(p.processes.some((x: { role: string }) => x.role === 'loadgen'), 'load generator sampled');

    assert.ok(json.check.expected > 0);
    assert.equal(json.check.lost, 0, `lost: ${JSON.stringify(json.check)}`);
    assert.equal(json.check.duplicated, 0);
    assert.equal(json.check.unexpected, 0);
    assert.equal(json.check.delivered, json.check.expected);
    assert.ok(json.goals.some((g: { name: string }) => g.name === 'lost deliveries'));
    assert.ok(Array.isArray(json.environment.topBefore));
    assert.match(renderMarkdown(r), /\*\*lost 0\*\*/);
  });
});

describe('bench smoke: --tls (a throwaway CA, gateways TLS only)', function () {
  this.timeout(120_000);
  const run = async (argv: string[]) => {
    const r = await runBench(parseBenchOptions([...argv, '--quiet', '--no-write']), { log: () => {}, env: process.env });
    return { r, json: JSON.parse(JSON.stringify(r)) };
  };

  it('handshake --tls: full TLS handshakes, then resumed ones, each with CPU per set-up', async () => {
    const concurrency = 4;
    const { r, json } = await run(['handshake', '--tls', '--users', '10', '--duration', '1s', '--warmup', '0', '--concurrency', String(concurrency)]);
    assert.match(json.id, /-handshake-embedded-tls-ec$/);
    assert.equal(json.tls.keyType, 'ec');
    assert.equal(json.tls.key, 'ECDSA P-256');
    assert.match(json.tls.protocol, /^TLSv1\.[23]$/, 'the connections negotiated TLS');
    assert.deepEqual(json.handshake.map((h: { name: string }) => h.name), ['full', 'resumed']);
    const [full, resumed] = json.handshake;
    for (const h of [full, resumed]) {
      assert.ok(h.setups > 0, `${h.name}: set-ups happened`);
      assert.equal(h.failed, 0, `${h.name}: ${JSON.stringify(h.errors)}`);
      assert.ok(h.cpuUsPerSetup.embedded > 0, `${h.name}: server CPU per set-up measured`);
      assert.ok(h.perGatewayCoreS > 0);
    }
    assert.equal(full.resumed, 0, 'the full phase offers no session');
    // Each lane's first connection has no session to offer; every later one resumes.
    assert.ok(resumed.setups - resumed.resumed <= concurrency, `resumed ${resumed.resumed} of ${resumed.setups}`);
    assert.match(renderMarkdown(r), /\| resumed \|/);
    assert.match(renderTables([r]), /Handshakes \(embedded\+tls-ec,/);
  });

  it('handshake without --tls: one plaintext phase, nothing about TLS in the result', async () => {
    const { json } = await run(['handshake', '--users', '4', '--duration', '500ms', '--warmup', '0', '--concurrency', '2']);
    assert.equal(json.tls, undefined);
    assert.deepEqual(json.handshake.map((h: { name: string }) => h.name), ['plaintext']);
    assert.ok(json.handshake[0].setups > 0);
    assert.equal(json.handshake[0].failed, 0);
  });

  it('idle --tls --tls-key rsa: memory per idle TLS connection, the key type recorded', async () => {
    const { json } = await run(['idle', '--tls', '--tls-key', 'rsa', '--users', '10', '--duration', '1s', '--no-ceiling']);
    assert.match(json.id, /-idle-embedded-tls-rsa$/);
    assert.deepEqual([json.tls.keyType, json.tls.key], ['rsa', 'RSA-2048']);
    assert.equal(json.idle.connections, 10);
    assert.equal(json.idle.failed, 0);
    assert.equal(typeof json.idle.gatewayRssPerConnBytes, 'number');
  });

  it('one-to-one --tls at a fixed rate: nothing lost, CPU per accepted send by role', async () => {
    const { json } = await run(['one-to-one', '--tls', '--users', '10', '--rate', '200', '--duration', '2s', '--warmup', '0', '--no-ceiling']);
    assert.equal(json.tls.keyType, 'ec');
    assert.equal(json.check.lost, 0, JSON.stringify(json.check));
    assert.equal(json.check.duplicated, 0);
    assert.ok(json.phases[0].acceptedPerS > 0);
    assert.ok(json.phases[0].cpuUsPerSend.embedded > 0);
    // The SQLite store's worker threads name themselves, so their CPU is told apart from the loop's.
    const threads = json.phases[0].processes.find((p: { role: string }) => p.role === 'embedded').threadsCpuS;
    assert.ok(threads.main > 0, JSON.stringify(threads));
    assert.ok('sqlite-write' in threads && 'sqlite-ckpt' in threads, JSON.stringify(threads));
  });

  it('refuses TLS options that do not fit', () => {
    assert.throws(() => parseBenchOptions(['idle', '--tls-key', 'rsa']), /--tls-key needs --tls/);
    assert.throws(() => parseBenchOptions(['idle', '--tls', '--tls-key', 'dsa']), /--tls-key must be ec or rsa/);
    assert.throws(() => parseBenchOptions(['idle', '--tls', '--tls-ca', 'ca.pem']), /--tls-ca applies to --target URL only/);
    assert.throws(() => parseBenchOptions(['handshake', '--tls', '--sweep']), /--sweep does not apply to handshake/);
    const o = parseBenchOptions(['handshake', '--target', 'http://127.0.0.1:7180', '--tls', '--tls-ca', 'ca.pem'], '/tmp');
    assert.deepEqual([o.tls, o.tlsCa], [true, '/tmp/ca.pem']);
  });
});
