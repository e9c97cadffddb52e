/**
 * Observability across services, in one process over real wiring: router, logic (SQLite store),
 * two gateways on a private nats-server, real gRPC and TCP between them. One message's trace
 * runs from the sender's gateway through logic, the store and the bus to the receiving gateway;
 * /metrics is scraped over HTTP; /readyz flips when a gateway starts draining.
 * IM_PRINT_TRACE=1 prints the trace tree.
 */
import * as assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SpanKind } from '@opentelemetry/api';
import { InMemorySpanExporter, SimpleSpanProcessor, type ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { AdminServer } from '../common/admin-http';
import { gatewaySubject, type BusHeaders } from '../bus/bus';
import { NatsBus } from '../bus/nats';
import { signToken } from '../common/jwt';
import { parsePrometheusText, sampleSum, type Scrape } from '../common/metrics-text.test-support';
import { startTelemetry, type Telemetry } from '../common/telemetry';
import { LogicClient } from '../gateway/logic-client';
import { Gateway } from '../gateway/server';
import { OpRegistry, registerClientOps } from '../logic/ops';
import { LogicServer } from '../logic/server';
import { LogicService } from '../logic/service';
import { Op } from '../proto/wire';
import { RouterClient } from '../router/client';
import { RouterService } from '../router/service';
import { SqliteStore } from '../storage/sqlite/store';
import { RawClient, tempDir } from './harness';
import { freePort, needs, startNatsServer, stopNatsServer } from './infra';
import { killAll, launchMain, type Launched } from './launch';
import { startOtlpCollector, type OtlpCollector } from './otlp-collector';
import { eventually } from './wait';

const HOST = '127.0.0.1';
const SECRET = 'telemetry-test-secret';

async function httpGet(port: number, p: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`http://${HOST}:${port}${p}`);
  return { status: res.status, body: await res.text() };
}

describe('observability: one process, real NATS + gRPC + SQLite', function () {
  this.timeout(60_000);
  const exporter = new InMemorySpanExporter();
  const ns = randomBytes(3).toString('hex');
  const uid = (name: string) => `${name}_${ns}`;
  const nodes = [`gw-tel-${ns}-0`, `gw-tel-${ns}-1`];
  const stops: Array<() => unknown> = [];
  let telemetry: Telemetry | undefined;
  let nats: ChildProcess | undefined;
  let natsUrl: string;
  let router: RouterService;
  let routerAddr: string;
  let logicAddr: string;
  const gateways: Gateway[] = [];
  const gatewayPorts = new Map<Gateway, number>();
  let admin: AdminServer;
  let adminPort: number;
  let alice: RawClient;
  let bob: RawClient;
  /** Headers of every bus message reaching gateway 1's subject, seen by an extra subscriber. */
  const observed: Array<BusHeaders | undefined> = [];

  before(async function () {
    await needs(this, 'nats');
    telemetry = startTelemetry({ enabled: true, serviceName: 'im-test', reason: 'test' },
      { spanProcessors: [new SimpleSpanProcessor(exporter)], instrumentations: false });
    stops.push(() => telemetry?.shutdown());
    const natsPort = await freePort();
    nats = await startNatsServer(natsPort);
    stops.push(() => nats && stopNatsServer(nats));
    natsUrl = `nats://${HOST}:${natsPort}`;

    const dir = tempDir('im-telemetry-');
    stops.push(() => fs.rmSync(dir, { recursive: true, force: true }));
    const store = SqliteStore.open({ path: path.join(dir, 'im.db') });
    stops.push(() => store.close());
    router = new RouterService({ grpcHost: HOST, grpcPort: 0, httpHost: HOST, httpPort: 0 });
    routerAddr = `${HOST}:${(await router.start()).grpcPort}`;
    stops.push(() => router.stop());

    const logicBus = await NatsBus.connect({ servers: natsUrl, name: 'logic' });
    stops.push(() => logicBus.close());
    const logicRouter = new RouterClient({ address: routerAddr });
    stops.push(() => logicRouter.close());
    const service = new LogicService({ store, bus: logicBus, router: logicRouter });
    stops.push(() => service.close());
    const registry = new OpRegistry();
    registerClientOps(registry, service);
    const logicServer = new LogicServer({ registry, host: HOST, port: 0 });
    logicAddr = `${HOST}:${await logicServer.start()}`;
    stops.push(() => logicServer.stop());

    for (const node of nodes) {
      const bus = await NatsBus.connect({ servers: natsUrl, name: node });
      stops.push(() => bus.close());
      const routerClient = new RouterClient({ address: routerAddr });
      stops.push(() => routerClient.close());
      const logic = new LogicClient({ addresses: [logicAddr] });
      logic.start();
      stops.push(() => logic.close());
      const gateway = new Gateway({ node, host: HOST, port: 0, auth: { secret: SECRET }, logic, router: routerClient, bus });
      gatewayPorts.set(gateway, (await gateway.start()).port);
      stops.push(() => gateway.stop());
      await bus.flush();
      assert.ok(await logic.whenUp(10_000), 'logic stream up');
      gateways.push(gateway);
    }
    const observer = await NatsBus.connect({ servers: natsUrl, name: 'observer' });
    stops.push(() => observer.close());
    observer.subscribe(gatewaySubject(nodes[1]), (_data, headers) => observed.push(headers));
    await observer.flush();

    admin = new AdminServer({ host: HOST, port: 0, readiness: () => gateways[0].readinessChecks() });
    adminPort = await admin.start();
    stops.push(() => admin.stop());

    alice = await authed(gateways[0], 'alice');
    bob = await authed(gateways[1], 'bob');
    // Binds reach the router asynchronously: pushes need both sessions known.
    await eventually(() => (router.table.lookup([uid('alice'), uid('bob')]).length === 2 ? true : undefined), 'both sessions bound', 10_000);
  });

  after(async () => {
    alice?.destroy();
    bob?.destroy();
    for (const stop of stops.splice(0).reverse()) await stop();
  });

  async function authed(gateway: Gateway, name: string): Promise<RawClient> {
    const c = await RawClient.connect(HOST, gatewayPorts.get(gateway)!);
    const reply = await c.request(Op.AUTH, 'Auth', { token: signToken(SECRET, uid(name), 3600), deviceId: 'd1', lastSeq: 0 });
    assert.equal(reply.error ?? null, null);
    return c;
  }

  async function send(from: RawClient, to: string, clientMsgId: string, text: string) {
    const reply = await from.request(Op.SEND, 'SendReq', { to: uid(to), clientMsgId, content: Buffer.from(text) });
    assert.equal(reply.error ?? null, null, `send ${clientMsgId} failed: ${reply.error?.message}`);
    return reply;
  }

  async function scrape(): Promise<Scrape> {
    const r = await httpGet(adminPort, '/metrics');
    assert.equal(r.status, 200);
    return parsePrometheusText(r.body);
  }

  it('traces one message from the sender\'s gateway through logic, store and NATS to the receiving gateway', async () => {
    exporter.reset();
    const pushesBefore = bob.frames.filter((f) => f.op === Op.PUSH).length;
    await send(alice, 'bob', `trace-${ns}`, 'traced hello');
    await bob.waitFor((f) => f.op === Op.PUSH && bob.frames.filter((x) => x.op === Op.PUSH).length > pushesBefore);

    const request = await eventually(() => exporter.getFinishedSpans().find((s) =>
      s.name === 'im.gateway.request' && s.attributes['im.node'] === nodes[0]), 'the request span', 10_000);
    const traceId = request.spanContext().traceId;
    const inTrace = () => exporter.getFinishedSpans().filter((s) => s.spanContext().traceId === traceId);
    const push = await eventually(() =>
      inTrace().find((s) => s.name === 'im.gateway.push' && s.attributes['im.node'] === nodes[1]), 'the receiving gateway\'s push span', 10_000);
    const publish = await eventually(() => inTrace().find((s) => s.name === 'im.bus.publish'), 'the publish span', 10_000);
    const spans = inTrace();
    const one = (name: string) => {
      const found = spans.filter((s) => s.name === name);
      assert.equal(found.length, 1, `one ${name} span in the trace, got ${found.length}`);
      return found[0];
    };
    const logic = one('im.logic.send');
    const store = one('im.store.append');
    const lookup = one('im.router.lookup');
    const parentOf = (s: ReadableSpan) => s.parentSpanContext?.spanId;
    const idOf = (s: ReadableSpan) => s.spanContext().spanId;

    assert.equal(parentOf(request), undefined, 'the request span is the root');
    assert.equal(parentOf(logic), idOf(request));
    assert.equal(parentOf(store), idOf(logic));
    assert.equal(parentOf(publish), idOf(logic));
    // The recipients' routes: a request on logic's lookup stream, traced as its own span.
    assert.equal(parentOf(lookup), idOf(logic));
    assert.equal(lookup.kind, SpanKind.CLIENT);
    assert.equal(parentOf(push), idOf(publish));
    assert.deepEqual([request.kind, logic.kind, store.kind, publish.kind, push.kind],
      [SpanKind.SERVER, SpanKind.SERVER, SpanKind.CLIENT, SpanKind.PRODUCER, SpanKind.CONSUMER]);
    // The NATS message to the receiving node carried the publish span in its headers too.
    const expected = `00-${traceId}-${idOf(publish)}-01`;
    await eventually(() => (observed.some((h) => h?.traceparent === expected) ? true : undefined), 'the traceparent header', 10_000);

    if (process.env.IM_PRINT_TRACE) printTree(spans);
  });

  it('exports counters, histograms and gauges on /metrics that move with traffic and carry no user labels', async () => {
    const before = await scrape();
    const n = 3;
    const bobPushes = () => bob.frames.filter((f) => f.op === Op.PUSH).length;
    const pushesBefore = bobPushes();
    for (let i = 0; i < n; i++) await send(alice, 'bob', `m-${ns}-${i}`, `hello ${i}`);
    await eventually(() => (bobPushes() >= pushesBefore + n ? true : undefined), 'bob\'s pushes', 10_000);
    const dup = await send(alice, 'bob', `m-${ns}-0`, 'hello 0'); // an idempotent retry
    assert.ok(dup);
    const bad = await alice.request(Op.SEND, 'SendReq', { to: uid('bob'), clientMsgId: '' });
    assert.equal(bad.error?.code, 2000);
    // Only bob is pushed: alice's sending connection gets no copy of her own sends.
    const after = await eventually(async () => {
      const s = await scrape();
      return sampleSum(s, 'im_gateway_pushes_total') - sampleSum(before, 'im_gateway_pushes_total') >= n ? s : undefined;
    }, 'the gateway push counters', 10_000);
    const delta = (name: string, labels: Record<string, string> = {}) => sampleSum(after, name, labels) - sampleSum(before, name, labels);

    assert.equal(delta('im_logic_sends_total', { result: 'new' }), n);
    assert.equal(delta('im_logic_sends_total', { result: 'duplicate' }), 1);
    assert.equal(delta('im_gateway_requests_total', { op: 'send', code: 'OK' }), n + 1);
    assert.equal(delta('im_gateway_requests_total', { op: 'send', code: 'BAD_REQUEST' }), 1);
    assert.equal(delta('im_logic_calls_total', { op: 'send', code: 'BAD_REQUEST' }), 1);
    assert.ok(delta('im_logic_deliveries_total') >= n, 'deliveries published: bob, per message');
    assert.ok(delta('im_gateway_deliveries_total') >= n);
    assert.ok(delta('im_gateway_frames_in_total') >= n + 2);
    assert.ok(delta('im_gateway_frames_out_total') >= 2 * n + 2, 'replies (n sends, a duplicate, a refusal) plus pushes');
    assert.equal(delta('im_store_append_seconds_count'), n + 1);
    assert.ok(delta('im_gateway_push_latency_seconds_count') >= n);
    assert.ok(delta('im_bus_published_total') >= 1);

    // The latency histogram has its buckets, cumulative, ending in +Inf = count.
    assert.equal(after.types.get('im_gateway_push_latency_seconds'), 'histogram');
    const buckets = after.samples.filter((s) => s.name === 'im_gateway_push_latency_seconds_bucket');
    assert.ok(buckets.length >= 10, 'histogram buckets present');
    for (let i = 1; i < buckets.length; i++) assert.ok(buckets[i].value >= buckets[i - 1].value, 'buckets are cumulative');
    assert.equal(buckets[buckets.length - 1].labels.le, '+Inf');
    assert.equal(buckets[buckets.length - 1].value, sampleSum(after, 'im_gateway_push_latency_seconds_count'));

    // Gauges read at scrape time.
    assert.ok(sampleSum(after, 'im_gateway_connections') >= 2);
    assert.ok(sampleSum(after, 'im_bus_connected') >= 3);
    assert.ok(sampleSum(after, 'im_router_sessions') >= 2);
    assert.ok(after.samples.some((s) => s.name === 'im_gateway_write_queue_bytes'));
    assert.ok(after.samples.some((s) => s.name === 'im_logic_calls_in_flight'));
    assert.ok(after.samples.some((s) => s.name === 'im_logic_fanout_pending_deliveries'));
    assert.ok(after.samples.some((s) => s.name === 'im_store_pending_appends'));

    // No per-user labels: no uid, device or connection in any label name or value.
    for (const s of after.samples) {
      for (const [k, v] of Object.entries(s.labels)) {
        assert.ok(!/uid|user|device|conn|group/i.test(k), `label ${k} on ${s.name}`);
        assert.ok(!v.includes(ns), `label value ${v} on ${s.name} names a test user`);
      }
    }
  });

  it('reports ready while serving and not ready from the moment a gateway starts draining', async () => {
    const bus = await NatsBus.connect({ servers: natsUrl, name: 'gw-drain' });
    const routerClient = new RouterClient({ address: routerAddr });
    const gateway = new Gateway({
      node: `gw-tel-${ns}-drain`, host: HOST, port: 0, auth: { secret: SECRET }, logicAddresses: [logicAddr],
      router: routerClient, bus, drainTimeoutMs: 2000,
    });
    const a = new AdminServer({ host: HOST, port: 0, readiness: () => gateway.readinessChecks() });
    const port = await a.start();
    try {
      const notStarted = await httpGet(port, '/readyz');
      assert.equal(notStarted.status, 503);
      gatewayPorts.set(gateway, (await gateway.start()).port);
      await eventually(async () => ((await httpGet(port, '/readyz')).status === 200 ? true : undefined), 'ready', 10_000);
      const client = await authed(gateway, 'carol');
      const stopping = gateway.stop();
      const draining = await httpGet(port, '/readyz');
      assert.equal(draining.status, 503);
      assert.equal(JSON.parse(draining.body).checks.notDraining, false);
      assert.equal((await httpGet(port, '/healthz')).status, 200, 'still alive while draining');
      await client.waitFor((f) => f.op === Op.DISCONNECT);
      client.destroy();
      await stopping;
    } finally {
      await gateway.stop();
      await a.stop();
      routerClient.close();
      await bus.close();
    }
  });
});

/** The trace as an indented tree: name [kind] (node), children under their parent. */
function printTree(spans: ReadableSpan[]): void {
  const kinds = ['internal', 'server', 'client', 'producer', 'consumer'];
  const children = new Map<string | undefined, ReadableSpan[]>();
  const ids = new Set(spans.map((s) => s.spanContext().spanId));
  for (const s of spans) {
    const parent = s.parentSpanContext?.spanId;
    const key = parent && ids.has(parent) ? parent : undefined;
    children.set(key, [...(children.get(key) ?? []), s]);
  }
  const lines: string[] = [`      trace ${spans[0].spanContext().traceId}`];
  const walk = (parent: string | undefined, depth: number) => {
    for (const s of (children.get(parent) ?? []).sort((a, b) => (a.startTime[0] - b.startTime[0]) || (a.startTime[1] - b.startTime[1]))) {
      const node = s.attributes['im.node'] ? ` node=${s.attributes['im.node']}` : '';
      lines.push(`      ${'  '.repeat(depth)}${s.name} [${kinds[s.kind]}] span=${s.spanContext().spanId} parent=${s.parentSpanContext?.spanId ?? '-'}${node}`);
      walk(s.spanContext().spanId, depth + 1);
    }
  };
  walk(undefined, 0);
  process.stdout.write(lines.join('\n') + '\n');
}

describe('tracing in a service process (router exporting over OTLP, gRPC instrumented)', function () {
  this.timeout(60_000);
  const procs: Launched[] = [];
  let collector: OtlpCollector | undefined;
  after(async () => {
    await killAll(procs);
    await collector?.stop();
  });

  it('exports the server span of a gRPC call under its service name, flushed when the process stops', async () => {
    collector = await startOtlpCollector('http/json');
    const router = launchMain('router', {
      IM_ROUTER_GRPC_ADDR: `${HOST}:0`, IM_ROUTER_HTTP_ADDR: `${HOST}:0`, IM_LOG_LEVEL: 'warn',
      OTEL_SDK_DISABLED: 'false', OTEL_TRACES_EXPORTER: 'otlp', OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json', OTEL_RESOURCE_ATTRIBUTES: 'k8s.pod.name=im-router-0',
    });
    procs.push(router);
    const r = await router.firstLine;
    const client = new RouterClient({ address: String(r.grpc) });
    try {
      // A unary call (lookups ride LookupStream, which is not traced as a call).
      await client.unbind([{ uid: 'nobody', deviceId: '', node: 'gw-x', connId: 'c1' }]);
    } finally {
      client.close();
    }
    router.child.kill('SIGTERM');
    const exit = await router.exit;
    assert.equal(exit.code, 0, exit.stderr);
    const exported = collector.bodies.map((b) => b.toString()).join('\n');
    assert.match(exported, /"grpc\.im\.internal\.v1\.Router\/Unbind"/, `stderr: ${exit.stderr}`);
    assert.match(exported, /"im-router"/);
    assert.match(exported, /"im-router-0"/);
  });
});
