/**
 * One-line instrumentation points for the layers: each records the span (spans.ts) and
 * the metrics (metrics.ts) of one event, so the gateway, logic and store code calls one function
 * and knows nothing of either library.
 */
import type { Context } from '@opentelemetry/api';
import { codeName, DisconnectCode, toImError } from '../common/errors';
import { metrics } from '../common/metrics';
import {
  opName, recordingContext, startPublishSpan, startPushSpan, startRequestSpan, traceLogicCall, traceStoreAppend,
  type PublishSpan,
} from './spans';

const secondsSince = (startMs: number) => Math.max(0, performance.now() - startMs) / 1000;

// ---------------------------------------------------------------- gateway

export interface GatewayRequest {
  /** For Call.trace_parent ('' when tracing is off). */
  readonly traceParent: string;
  /** The reply went out (or could not): its code, 0 = ok. */
  end(code: number): void;
}

/** A client request frame forwarded to logic: span, request count and latency by op. */
export function gatewayRequest(op: number, node: string): GatewayRequest {
  const span = startRequestSpan(op, node);
  const startMs = performance.now();
  return {
    traceParent: span.traceParent,
    end(code) {
      span.end(code);
      const m = metrics();
      const name = opName(op);
      m.gatewayRequests.inc({ op: name, code: codeName(code) });
      m.gatewayRequestSeconds.observe({ op: name }, secondsSince(startMs));
    },
  };
}

/**
 * An error reply the gateway makes itself (rate limited, not authenticated, bad frame...); errors
 * from logic are counted by code in im_gateway_requests_total.
 */
export function countGatewayError(code: number): void {
  metrics().gatewayErrors.inc({ code: codeName(code) });
}

const DISCONNECT_NAMES = new Map<number, string>(Object.entries(DisconnectCode).map(([name, code]) => [code, name]));

/** A Disconnect frame the gateway sends, by code name (bounded: unknown codes are OTHER). */
export function countDisconnect(code: number): void {
  metrics().gatewayDisconnects.inc({ code: DISCONNECT_NAMES.get(code) ?? 'OTHER' });
}

/** Connection and write-queue gauges read from a gateway at scrape time; returns the remover. */
export function watchGateway<G extends object>(gateway: G, connections: (g: G) => number, writeQueueBytes: (g: G) => number): () => void {
  const m = metrics();
  const removers = [m.gatewayConnections.add(gateway, connections), m.gatewayWriteQueueBytes.add(gateway, writeQueueBytes)];
  return () => { for (const r of removers) r(); };
}

export interface GatewayPush { end(connections: number): void }

/**
 * One message from the bus about to be written to its recipients' connections here (`uids` of
 * them: one for a 1:1 message, up to a group's size): the consumer span, the delivery count, and
 * once written, the push count and the send->push latency (from the message's sentAtMs), observed
 * once per message here, not once per connection (a group's pushes leave in the same tick).
 */
export function gatewayPush(
  node: string, message: { traceParent?: string; sentAtMs?: number }, headers: Record<string, string> | undefined, uids: number,
): GatewayPush {
  const span = startPushSpan(message.traceParent, headers, node);
  const m = metrics();
  m.gatewayDeliveries.inc(uids);
  return {
    end(connections) {
      span.end(connections);
      if (connections <= 0) return;
      m.gatewayPushes.inc(connections);
      const sentAtMs = message.sentAtMs ?? 0;
      if (sentAtMs > 0) m.gatewayPushLatency.observe(Math.max(0, Date.now() - sentAtMs) / 1000);
    },
  };
}

// ---------------------------------------------------------------- router

/** Gateway and session gauges read from a route table at scrape time; returns the remover. */
export function watchRouteTable<T extends { stats(): { gateways: number; sessions: number } }>(table: T): () => void {
  const m = metrics();
  const removers = [m.routerGateways.add(table, (t) => t.stats().gateways), m.routerSessions.add(table, (t) => t.stats().sessions)];
  return () => { for (const r of removers) r(); };
}

// ---------------------------------------------------------------- logic and store

/** One call through logic's op registry: `im.logic.<op>` span, in-flight gauge, count and latency. */
export function logicCall<T>(op: number, traceParent: string, fn: () => Promise<T>): Promise<T> {
  const m = metrics();
  const name = opName(op);
  const startMs = performance.now();
  m.logicCallsInFlight.inc();
  const done = (code: number) => {
    m.logicCallsInFlight.dec();
    m.logicCalls.inc({ op: name, code: codeName(code) });
    m.logicCallSeconds.observe({ op: name }, secondsSince(startMs));
  };
  let p: Promise<T>;
  try {
    p = traceLogicCall(op, traceParent, fn);
  } catch (err) {
    done(toImError(err).code);
    throw err;
  }
  return p.then((v) => { done(0); return v; }, (err: unknown) => { done(toImError(err).code); throw err; });
}

/** One message append: `im.store.append` span, pending-appends gauge and append latency. */
export function storeAppend<T>(recipients: number, fn: () => Promise<T>): Promise<T> {
  const m = metrics();
  const startMs = performance.now();
  m.storePendingAppends.inc();
  const done = () => {
    m.storePendingAppends.dec();
    m.storeAppendSeconds.observe(secondsSince(startMs));
  };
  let p: Promise<T>;
  try {
    p = traceStoreAppend(recipients, fn);
  } catch (err) {
    done();
    throw err;
  }
  return p.then((v) => { done(); return v; }, (err: unknown) => { done(); throw err; });
}

/** A send logic accepted (duplicate = an idempotent retry answered with the original). */
export function countSend(duplicate: boolean): void {
  metrics().logicSends.inc({ result: duplicate ? 'duplicate' : 'new' });
}

// ---------------------------------------------------------------- fan-out

/** What fan-out keeps per queued message: the sender's trace, when one is being recorded. */
export function fanoutTrace(): Context | undefined {
  return recordingContext();
}

/** Publish spans of one fan-out flush: one per traced message, whatever the batching by node. */
export class FanoutSpans<J extends { trace?: Context; seqs: ReadonlyMap<string, number> }> {
  private readonly spans = new Map<J, PublishSpan>();

  constructor(jobs: readonly J[]) {
    for (const job of jobs) if (job.trace) this.spans.set(job, startPublishSpan(job.trace, job.seqs.size));
  }

  /** For the job's deliveries; '' when the job is not traced. */
  traceParent(job: J): string {
    return this.spans.get(job)?.traceParent ?? '';
  }

  end(): void {
    for (const s of this.spans.values()) s.end();
    this.spans.clear();
  }
}
