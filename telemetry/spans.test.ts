import * as assert from 'node:assert/strict';
import { InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base';
import { SpanKind, trace } from '@opentelemetry/api';
import { startOtlpCollector } from '../test/otlp-collector';
import { BadRequestError } from '../common/errors';
import { createLogger } from '../common/log';
import { loadTelemetryConfig, startTelemetry, tracingActive, type Telemetry } from '../common/telemetry';
import {
  formatTraceParent, parseTraceParent, startPushSpan, startRequestSpan, traceLogicCall, traceStoreAppend,
} from './spans';
import { eventually } from '../test/wait';

describe('telemetry config', () => {
  it('is on in a service process unless disabled, and off in embedded mode unless asked for', () => {
    assert.equal(loadTelemetryConfig('logic', {}).enabled, true);
    assert.equal(loadTelemetryConfig('logic', {}).serviceName, 'im-logic');
    assert.equal(loadTelemetryConfig('logic', { OTEL_SERVICE_NAME: 'chat-logic' }).serviceName, 'chat-logic');
    assert.equal(loadTelemetryConfig('logic', { OTEL_SDK_DISABLED: 'true' }).enabled, false);
    assert.equal(loadTelemetryConfig('logic', { OTEL_TRACES_EXPORTER: 'none' }).enabled, false);
    assert.equal(loadTelemetryConfig('logic', { OTEL_TRACES_EXPORTER: 'otlp,none' }).enabled, false);
    assert.equal(loadTelemetryConfig('embedded', {}, { embedded: true }).enabled, false);
    assert.equal(loadTelemetryConfig('embedded', { OTEL_TRACES_EXPORTER: 'otlp' }, { embedded: true }).enabled, true);
    assert.equal(loadTelemetryConfig('embedded', { OTEL_SDK_DISABLED: 'false' }, { embedded: true }).enabled, true);
    assert.equal(loadTelemetryConfig('embedded', { OTEL_SDK_DISABLED: 'true', OTEL_TRACES_EXPORTER: 'otlp' }, { embedded: true }).enabled, false);
  });
});

describe('traceparent', () => {
  it('parses what it formats, and refuses malformed or invalid values', () => {
    const tp = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const ctx = parseTraceParent(tp);
    assert.ok(ctx);
    const sc = trace.getSpanContext(ctx)!;
    assert.deepEqual([sc.traceId, sc.spanId, sc.traceFlags, sc.isRemote], ['0af7651916cd43dd8448eb211c80319c', 'b7ad6b7169203331', 1, true]);
    assert.equal(formatTraceParent(trace.wrapSpanContext(sc)), tp);
    for (const bad of ['', 'garbage', '00-00000000000000000000000000000000-b7ad6b7169203331-01',
      'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01-extra']) {
      assert.equal(parseTraceParent(bad), undefined, bad);
    }
  });
});

describe('tracing off', () => {
  it('records nothing and hands out empty trace context', async () => {
    const t = startTelemetry(loadTelemetryConfig('logic', { OTEL_SDK_DISABLED: 'true' }));
    assert.equal(t.enabled, false);
    assert.equal(tracingActive(), false);
    const req = startRequestSpan(100, 'gw-1');
    assert.equal(req.traceParent, '');
    req.end(0);
    assert.equal(await traceLogicCall(100, '', async () => 7), 7);
    await t.shutdown();
  });
});

describe('tracing on (in-memory exporter)', () => {
  const exporter = new InMemorySpanExporter();
  let telemetry: Telemetry;
  /** Spans reach the exporter once the resource's async attributes (host detection) settle. */
  const finished = (n: number) => eventually(() => exporter.getFinishedSpans().length >= n && exporter.getFinishedSpans(), `${n} finished spans`);

  before(() => {
    telemetry = startTelemetry({ enabled: true, serviceName: 'im-test', reason: 'test' },
      { spanProcessors: [new SimpleSpanProcessor(exporter)], instrumentations: false });
  });
  after(() => telemetry.shutdown());
  beforeEach(() => exporter.reset());

  it('refuses a second SDK in the same process', () => {
    assert.throws(() => startTelemetry({ enabled: true, serviceName: 'x', reason: 'test' }), /already started/);
  });

  it('links a logic call to the request span it names, and the store span to the logic span', async () => {
    const req = startRequestSpan(100, 'gw-1');
    assert.match(req.traceParent, /^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    await traceLogicCall(100, req.traceParent, () => traceStoreAppend(2, async () => 'ok'));
    req.end(0);
    const spans = await finished(3);
    const byName = new Map(spans.map((s) => [s.name, s]));
    const request = byName.get('im.gateway.request')!;
    const logic = byName.get('im.logic.send')!;
    const store = byName.get('im.store.append')!;
    assert.equal(request.kind, SpanKind.SERVER);
    assert.equal(logic.parentSpanContext?.spanId, request.spanContext().spanId);
    assert.equal(store.parentSpanContext?.spanId, logic.spanContext().spanId);
    assert.equal(new Set(spans.map((s) => s.spanContext().traceId)).size, 1);
  });

  it('marks a failed call with its error code', async () => {
    await assert.rejects(traceLogicCall(101, '', async () => { throw new BadRequestError('nope'); }));
    const [span] = await finished(1);
    assert.equal(span.name, 'im.logic.sync');
    assert.equal(span.attributes['im.code'], 2000);
    assert.equal(span.status.message, 'BAD_REQUEST');
  });

  it('parents a push on the delivery, else on the bus header, else starts a trace', async () => {
    const a = '00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01';
    const b = '00-11111111111111111111111111111111-2222222222222222-01';
    startPushSpan(a, { traceparent: b }, 'gw-1').end(1);
    startPushSpan('', { traceparent: b }, 'gw-1').end(1);
    startPushSpan(undefined, undefined, 'gw-1').end(0);
    const [first, second, third] = await finished(3);
    assert.equal(first.parentSpanContext?.spanId, 'b7ad6b7169203331');
    assert.equal(second.parentSpanContext?.spanId, '2222222222222222');
    assert.equal(third.parentSpanContext, undefined);
    assert.equal(first.kind, SpanKind.CONSUMER);
  });

  it('puts the active trace_id and span_id in log lines, and nothing outside a span', async () => {
    const lines: string[] = [];
    const log = createLogger('info', {}, (l) => lines.push(l));
    log.info('outside');
    await traceLogicCall(100, '', async () => log.info('inside'));
    const [outside, inside] = lines.map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.equal(outside.trace_id, undefined);
    const [span] = await finished(1);
    assert.equal(inside.trace_id, span.spanContext().traceId);
    assert.equal(inside.span_id, span.spanContext().spanId);
  });
});

describe('tracing on (OTLP export as OTEL_* configures it)', () => {
  const saved = { ...process.env };
  afterEach(() => {
    for (const k of Object.keys(process.env)) if (k.startsWith('OTEL_') && !(k in saved)) delete process.env[k];
    Object.assign(process.env, saved);
  });

  for (const protocol of ['http/protobuf', 'http/json', 'grpc']) {
    it(`exports spans to OTEL_EXPORTER_OTLP_ENDPOINT with OTEL_EXPORTER_OTLP_PROTOCOL=${protocol}, with the resource attributes`, async () => {
      const collector = await startOtlpCollector(protocol);
      try {
        Object.assign(process.env, {
          OTEL_EXPORTER_OTLP_ENDPOINT: collector.endpoint, OTEL_EXPORTER_OTLP_PROTOCOL: protocol,
          OTEL_RESOURCE_ATTRIBUTES: 'k8s.pod.name=im-logic-0',
        });
        delete process.env.OTEL_TRACES_EXPORTER; // otlp by default
        const lines: string[] = [];
        const t = startTelemetry(loadTelemetryConfig('logic', process.env),
          { instrumentations: false, shutdownTimeoutMs: 10_000, logger: createLogger('warn', {}, (l) => lines.push(l)) });
        startRequestSpan(100, 'gw-otlp').end(0);
        // Shutdown flushes the batch and waits for the collector's answer.
        await t.shutdown();
        const all = Buffer.concat(collector.bodies).toString('latin1');
        assert.ok(all.includes('im.gateway.request'), `no span reached the collector (${collector.bodies.length} exports; ${lines.join(' ')})`);
        assert.ok(all.includes('im-logic'), 'service.name');
        assert.ok(all.includes('im-logic-0'), 'OTEL_RESOURCE_ATTRIBUTES');
        assert.deepEqual(lines, [], 'the exporter complained');
      } finally {
        await collector.stop();
      }
    });
  }
});
