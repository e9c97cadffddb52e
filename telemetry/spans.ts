/**
 * The spans of one message's path, as one-liners for the layers to call:
 *
 *   im.gateway.request (server, per client frame) -> Call.trace_parent over the logic stream
 *   -> im.logic.<op> (server) -> im.store.append (client), im.router.lookup (client) -> im.bus.publish
 *   (producer; traceparent in each Delivery and in the NATS headers) -> im.gateway.push (consumer)
 *   on the receiving node.
 *
 * The gateway->logic hop is a long-lived stream carrying batches, and a bus message carries the
 * deliveries of many sends, so context travels per call and per delivery as a W3C traceparent
 * string rather than in gRPC metadata. With tracing off every helper returns a shared no-op at
 * its first line: no span, no string, no closure.
 */
import {
  context, ROOT_CONTEXT, SpanKind, SpanStatusCode, trace, type Attributes, type Context, type Span,
} from '@opentelemetry/api';
import { Op } from '../proto/wire';
import { codeName, ImError, toImError } from '../common/errors';
import { tracingActive } from '../common/telemetry';

const TRACER_NAME = 'im';
const tracer = () => trace.getTracer(TRACER_NAME);

/** W3C trace-context header name, as carried in NATS headers. */
export const TRACEPARENT = 'traceparent';

const TRACEPARENT_RE = /^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$/;

/** `00-<trace id>-<span id>-<flags>` of a span; '' for a span that records nothing. */
export function formatTraceParent(span: Span): string {
  const sc = span.spanContext();
  if (!trace.isSpanContextValid(sc)) return '';
  return `00-${sc.traceId}-${sc.spanId}-${(sc.traceFlags & 0xff).toString(16).padStart(2, '0')}`;
}

/** The remote parent a traceparent names, or undefined for '' or a malformed value. */
export function parseTraceParent(value: string | undefined): Context | undefined {
  if (!value) return undefined;
  const m = TRACEPARENT_RE.exec(value.trim());
  // Version ff is invalid; version 00 has nothing after the flags.
  if (!m || m[1] === 'ff' || (m[1] === '00' && m[5] !== undefined)) return undefined;
  const sc = { traceId: m[2], spanId: m[3], traceFlags: parseInt(m[4], 16), isRemote: true };
  if (!trace.isSpanContextValid(sc)) return undefined;
  return trace.setSpanContext(ROOT_CONTEXT, sc);
}

const OP_NAMES = new Map<number, string>(Object.entries(Op).map(([name, code]) => [code, name.toLowerCase()]));

/** A bounded name for an op: clients can send any number, so unknown ones share one name. */
export function opName(op: number): string {
  return OP_NAMES.get(op) ?? 'other';
}

function endWith(span: Span, err: unknown): void {
  const im = toImError(err);
  span.setAttribute('im.code', im.code);
  span.setStatus({ code: SpanStatusCode.ERROR, message: codeName(im.code) });
  if (!(err instanceof ImError) && err instanceof Error) span.recordException(err);
  span.end();
}

// ---------------------------------------------------------------- gateway: one client frame

export interface RequestSpan {
  /** To put in Call.trace_parent; '' when tracing is off. */
  readonly traceParent: string;
  /** Ends the span with the result code sent to the client (0 = ok). */
  end(code: number): void;
}

const NOOP_REQUEST: RequestSpan = { traceParent: '', end: () => undefined };

/** Server span for a client request frame the gateway forwards to logic. */
export function startRequestSpan(op: number, node: string): RequestSpan {
  if (!tracingActive()) return NOOP_REQUEST;
  const span = tracer().startSpan('im.gateway.request', {
    kind: SpanKind.SERVER, attributes: { 'im.op': op, 'im.op.name': opName(op), 'im.node': node },
  }, ROOT_CONTEXT);
  return {
    traceParent: formatTraceParent(span),
    end: (code) => {
      if (code !== 0) {
        span.setAttribute('im.code', code);
        span.setStatus({ code: SpanStatusCode.ERROR, message: codeName(code) });
      }
      span.end();
    },
  };
}

// ---------------------------------------------------------------- logic and store

/**
 * Runs one logic call inside `im.logic.<op>`, a child of the gateway's request span when the
 * call carried one. Everything the handler does (store, router lookups, logs) sees it as active.
 */
export function traceLogicCall<T>(op: number, traceParent: string, fn: () => Promise<T>): Promise<T> {
  if (!tracingActive()) return fn();
  const parent = parseTraceParent(traceParent) ?? context.active();
  return runInSpan(`im.logic.${opName(op)}`, SpanKind.SERVER, { 'im.op': op }, parent, fn);
}

/** `im.store.append` around a store write, a child of whatever span is active. */
export function traceStoreAppend<T>(recipients: number, fn: () => Promise<T>): Promise<T> {
  if (!tracingActive()) return fn();
  return runInSpan('im.store.append', SpanKind.CLIENT, { 'im.recipients': recipients }, context.active(), fn);
}

/** `im.router.lookup` around a route lookup (a request on the lookup stream), a child of whatever span is active. */
export function traceRouterLookup<T>(uids: number, fn: () => Promise<T>): Promise<T> {
  if (!tracingActive()) return fn();
  return runInSpan('im.router.lookup', SpanKind.CLIENT, { 'im.uids': uids }, context.active(), fn);
}

function runInSpan<T>(name: string, kind: SpanKind, attributes: Attributes, parent: Context, fn: () => Promise<T>): Promise<T> {
  const span = tracer().startSpan(name, { kind, attributes }, parent);
  let p: Promise<T>;
  try {
    p = context.with(trace.setSpan(parent, span), fn);
  } catch (err) {
    endWith(span, err);
    throw err;
  }
  return p.then((v) => { span.end(); return v; }, (err: unknown) => { endWith(span, err); throw err; });
}

// ---------------------------------------------------------------- bus: publish and push

/** The active context if it holds a recording span (fan-out keeps it per queued message). */
export function recordingContext(): Context | undefined {
  if (!tracingActive()) return undefined;
  const ctx = context.active();
  return trace.getSpan(ctx)?.isRecording() ? ctx : undefined;
}

export interface PublishSpan {
  /** For Delivery.trace_parent and the NATS traceparent header. */
  readonly traceParent: string;
  end(): void;
}

/** Producer span for the bus publish of one message (one per message, whatever the batching). */
export function startPublishSpan(parent: Context, deliveries: number): PublishSpan {
  const span = tracer().startSpan('im.bus.publish', {
    kind: SpanKind.PRODUCER, attributes: { 'messaging.operation.type': 'publish', 'im.deliveries': deliveries },
  }, parent);
  return { traceParent: formatTraceParent(span), end: () => span.end() };
}

/** Message headers carrying a traceparent, or undefined for '' (nothing to carry). */
export function traceHeaders(traceParent: string | undefined): Record<string, string> | undefined {
  return traceParent ? { [TRACEPARENT]: traceParent } : undefined;
}

export interface PushSpan { end(connections: number): void }

const NOOP_PUSH: PushSpan = { end: () => undefined };

/**
 * Consumer span for one delivery written to the uid's connections here: a child of the
 * delivery's publish span, else of the bus message's (NATS header), else a root.
 */
export function startPushSpan(traceParent: string | undefined, headers: Record<string, string> | undefined, node: string): PushSpan {
  if (!tracingActive()) return NOOP_PUSH;
  const parent = parseTraceParent(traceParent) ?? parseTraceParent(headers?.[TRACEPARENT]) ?? ROOT_CONTEXT;
  const span = tracer().startSpan('im.gateway.push', {
    kind: SpanKind.CONSUMER, attributes: { 'messaging.operation.type': 'process', 'im.node': node },
  }, parent);
  return {
    end: (connections) => {
      span.setAttribute('im.connections', connections);
      span.end();
    },
  };
}
