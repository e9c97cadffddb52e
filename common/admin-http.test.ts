import * as assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import { AdminServer, loadAdminAddr } from './admin-http';
import { ConfigError } from './config';
import { metrics, SourcedGauge } from './metrics';
import { parsePrometheusText, sampleSum } from './metrics-text.test-support';

async function get(port: number, path: string, method = 'GET'): Promise<{ status: number; type: string; body: string }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { method });
  return { status: res.status, type: res.headers.get('content-type') ?? '', body: await res.text() };
}

describe('admin http: /healthz /readyz /metrics', () => {
  let server: AdminServer;
  let port: number;
  let checks: Record<string, boolean>;
  const registry = new Registry();
  const counter = new Counter({ name: 'test_things_total', help: 'things', labelNames: ['kind'] as const, registers: [registry] });
  const gauge = new SourcedGauge(registry, 'test_queue_bytes', 'bytes queued');

  beforeEach(async () => {
    checks = { logicStream: true, bus: true };
    server = new AdminServer({ host: '127.0.0.1', port: 0, registry, readiness: () => checks });
    port = await server.start();
  });
  afterEach(() => server.stop());

  it('answers liveness whatever readiness says', async () => {
    checks.bus = false;
    const r = await get(port, '/healthz');
    assert.equal(r.status, 200);
    assert.equal(r.body, 'ok\n');
  });

  it('answers 200 while every check passes, and 503 naming the failing check otherwise', async () => {
    const ok = await get(port, '/readyz');
    assert.equal(ok.status, 200);
    assert.deepEqual(JSON.parse(ok.body), { ready: true, checks: { logicStream: true, bus: true } });
    checks.logicStream = false;
    const down = await get(port, '/readyz');
    assert.equal(down.status, 503);
    assert.deepEqual(JSON.parse(down.body), { ready: false, checks: { logicStream: false, bus: true } });
  });

  it('answers 503 when the readiness function throws', async () => {
    const s = new AdminServer({ host: '127.0.0.1', port: 0, registry, readiness: () => { throw new Error('boom'); } });
    try {
      assert.equal((await get(await s.start(), '/readyz')).status, 503);
    } finally {
      await s.stop();
    }
  });

  it('serves Prometheus text that parses, with values as they change', async () => {
    counter.inc({ kind: 'a' }, 3);
    const owner = { bytes: 100 };
    const remove = gauge.add(owner, (o) => o.bytes);
    const other = gauge.add({}, () => 20);
    let r = await get(port, '/metrics');
    assert.equal(r.status, 200);
    assert.match(r.type, /^text\/plain; version=0\.0\.4/);
    let scrape = parsePrometheusText(r.body);
    assert.equal(sampleSum(scrape, 'test_things_total', { kind: 'a' }), 3);
    assert.equal(scrape.types.get('test_things_total'), 'counter');
    assert.equal(sampleSum(scrape, 'test_queue_bytes'), 120);

    owner.bytes = 5;
    remove();
    other();
    counter.inc({ kind: 'a' });
    scrape = parsePrometheusText((await get(port, '/metrics')).body);
    assert.equal(sampleSum(scrape, 'test_things_total', { kind: 'a' }), 4);
    assert.equal(sampleSum(scrape, 'test_queue_bytes'), 0);
  });

  it('serves the process registry, with Node.js process metrics, by default', async () => {
    const s = new AdminServer({ host: '127.0.0.1', port: 0 });
    try {
      const scrape = parsePrometheusText((await get(await s.start(), '/metrics')).body);
      assert.equal(scrape.types.get('im_gateway_push_latency_seconds'), 'histogram');
      assert.equal(scrape.types.get('im_logic_sends_total'), 'counter');
      assert.ok(scrape.samples.some((x) => x.name === 'process_cpu_user_seconds_total'), 'process metrics present');
      assert.equal(metrics().registry, metrics().registry);
    } finally {
      await s.stop();
    }
  });

  it('refuses other paths and methods', async () => {
    assert.equal((await get(port, '/')).status, 404);
    assert.equal((await get(port, '/metrics', 'POST')).status, 405);
    assert.equal((await get(port, '/healthz', 'HEAD')).status, 200);
  });

  it('stops idempotently and stops listening', async () => {
    await Promise.all([server.stop(), server.stop()]);
    await assert.rejects(get(port, '/healthz'));
    await assert.rejects(server.start(), /stopped/);
  });
});

describe('admin http: IM_ADMIN_ADDR', () => {
  it('is off when unset, a host:port when set, and a bad value names the variable', () => {
    assert.equal(loadAdminAddr({}, []), undefined);
    assert.deepEqual(loadAdminAddr({ IM_ADMIN_ADDR: '127.0.0.1:9100' }, []), { host: '127.0.0.1', port: 9100 });
    assert.deepEqual(loadAdminAddr({}, ['--admin-addr', '0.0.0.0:9200']), { host: '0.0.0.0', port: 9200 });
    assert.throws(() => loadAdminAddr({ IM_ADMIN_ADDR: 'nine-one-hundred' }, []),
      (err: unknown) => err instanceof ConfigError && err.field === 'IM_ADMIN_ADDR');
  });
});
