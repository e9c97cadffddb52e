/**
 * Downlink fan-out: after a message is durably written, find where its recipients are connected
 * and publish one DeliveryBatch per gateway node. Sends that complete in the same event-loop turn
 * are coalesced, so a burst of N sends costs one router lookup and one bus publish per node rather
 * than N of each. Push is best effort: clients heal any loss by sync, so failures are logged only.
 */
import type { Context } from '@opentelemetry/api';
import type { Bus } from '../common/bus';
import { gatewaySubject } from '../common/bus';
import type { Logger } from '../common/log';
import { silentLogger } from '../common/log';
import { metrics } from '../common/metrics';
import { FanoutSpans, fanoutTrace } from '../common/telemetry-hooks';
import { traceHeaders } from '../common/telemetry-spans';
import type { Delivery } from '../proto/delivery';
import { encodeDeliveryBatch } from '../proto/delivery';
import { encode } from '../proto/wire';
import type { RouterApi, SessionRef } from '../router/api';
import type { StoredMessage } from '../storage/store';
import { toWireMessage, withSeq } from './convert';

export interface FanoutOptions {
  bus: Bus;
  router: RouterApi;
  logger?: Logger;
  /** Recipient deliveries gathered before a flush starts without waiting for the turn to end. */
  maxPendingDeliveries?: number;
  /** Flushes (lookup + publish) running at once; beyond it new pushes are dropped and logged. */
  maxInFlightFlushes?: number;
  /**
   * One bus message carries at most about this many bytes of deliveries; a node's deliveries
   * beyond it go out in several messages. NATS refuses payloads over its max_payload (1 MiB by
   * default), and a group burst for one node easily exceeds that. Default 512 KiB.
   */
  maxBatchBytes?: number;
}

/** Bytes a Delivery adds to a batch besides its message and uid (tags, lengths, seq, time). */
const DELIVERY_OVERHEAD_BYTES = 32;

interface Job {
  message: StoredMessage;
  seqs: ReadonlyMap<string, number>;
  /** The sender's trace (its publish span is a child of it); undefined when not tracing. */
  trace?: Context;
}

export class Fanout {
  private readonly bus: Bus;
  private readonly router: RouterApi;
  private readonly logger: Logger;
  private readonly maxPendingDeliveries: number;
  private readonly maxInFlightFlushes: number;
  private readonly maxBatchBytes: number;

  private pending: Job[] = [];
  private pendingDeliveries = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private droppedDeliveries = 0;
  private closed = false;

  constructor(opts: FanoutOptions) {
    this.bus = opts.bus;
    this.router = opts.router;
    this.logger = opts.logger ?? silentLogger;
    this.maxPendingDeliveries = positiveInt('maxPendingDeliveries', opts.maxPendingDeliveries ?? 8192);
    this.maxInFlightFlushes = positiveInt('maxInFlightFlushes', opts.maxInFlightFlushes ?? 64);
    this.maxBatchBytes = positiveInt('maxBatchBytes', opts.maxBatchBytes ?? 512 * 1024);
  }

  /** Queues the push of `message` to every uid in `seqs` (uid -> that uid's inbox seq). */
  enqueue(message: StoredMessage, seqs: ReadonlyMap<string, number>): void {
    if (this.closed || seqs.size === 0) return;
    this.pending.push({ message, seqs, trace: fanoutTrace() });
    this.pendingDeliveries += seqs.size;
    metrics().fanoutPendingDeliveries.inc(seqs.size);
    if (this.pendingDeliveries >= this.maxPendingDeliveries) {
      this.flush();
      return;
    }
    this.scheduled ??= setImmediate(() => this.flush());
  }

  /** Starts pushing everything queued so far. */
  flush(): void {
    if (this.scheduled) {
      clearImmediate(this.scheduled);
      this.scheduled = undefined;
    }
    if (this.pending.length === 0) return;
    const jobs = this.pending;
    const count = this.pendingDeliveries;
    this.pending = [];
    this.pendingDeliveries = 0;
    metrics().fanoutPendingDeliveries.dec(count);
    if (this.inFlight.size >= this.maxInFlightFlushes) {
      // The router or bus is not keeping up; holding more would grow memory without bound.
      this.droppedDeliveries += count;
      metrics().fanoutDropped.inc(count);
      this.logger.warn('fan-out saturated; dropping pushes (clients recover by sync)', {
        dropped: count, droppedTotal: this.droppedDeliveries, inFlight: this.inFlight.size,
      });
      return;
    }
    const spans = new FanoutSpans(jobs);
    const p = this.deliver(jobs, spans).catch((err: unknown) => {
      this.logger.error('fan-out failed', { err: err instanceof Error ? err.message : String(err) });
    });
    this.inFlight.add(p);
    metrics().fanoutFlushesInFlight.inc();
    void p.finally(() => {
      this.inFlight.delete(p);
      metrics().fanoutFlushesInFlight.dec();
      spans.end();
    });
  }

  /** Starts pushing what is queued and resolves once every running flush has reached the bus. */
  async idle(): Promise<void> {
    this.flush();
    while (this.inFlight.size > 0) await Promise.all([...this.inFlight]);
  }

  /** Pushes what is queued, waits for it, and accepts nothing more. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    await this.idle();
  }

  private async deliver(jobs: Job[], spans: FanoutSpans<Job>): Promise<void> {
    const uids = new Set<string>();
    for (const job of jobs) for (const uid of job.seqs.keys()) uids.add(uid);

    let sessions: SessionRef[];
    try {
      sessions = await this.router.lookup([...uids]);
    } catch (err) {
      this.logger.warn('fan-out lookup failed; pushes skipped (clients recover by sync)', {
        uids: uids.size, err: err instanceof Error ? err.message : String(err),
      });
      return;
    }

    // A uid with several connections on one node gets one delivery there: the gateway pushes
    // it to all of that uid's connections.
    const nodesByUid = new Map<string, Set<string>>();
    for (const s of sessions) {
      let nodes = nodesByUid.get(s.uid);
      if (!nodes) nodesByUid.set(s.uid, (nodes = new Set()));
      nodes.add(s.node);
    }
    if (nodesByUid.size === 0) return;

    const byNode = new Map<string, Delivery[]>();
    for (const job of jobs) {
      let base: Uint8Array | undefined;
      const traceParent = spans.traceParent(job);
      for (const [uid, seq] of job.seqs) {
        const nodes = nodesByUid.get(uid);
        if (!nodes) continue;
        base ??= encode('Message', toWireMessage(job.message, 0));
        const message = withSeq(base, seq);
        for (const node of nodes) {
          let list = byNode.get(node);
          if (!list) byNode.set(node, (list = []));
          list.push({ uid, seq, message, traceParent, sentAtMs: job.message.sentAtMs });
        }
      }
    }

    for (const [node, all] of byNode) {
      for (const deliveries of chunkByBytes(all, this.maxBatchBytes)) {
        try {
          // The header carries the first traced delivery's context; each delivery carries its own.
          const headers = traceHeaders(deliveries.find((d) => d.traceParent)?.traceParent);
          this.bus.publish(gatewaySubject(node), encodeDeliveryBatch({ deliveries }), headers);
          metrics().logicDeliveries.inc(deliveries.length);
        } catch (err) {
          this.logger.warn('fan-out publish failed', {
            node, deliveries: deliveries.length, err: err instanceof Error ? err.message : String(err),
          });
        }
      }
    }
  }
}

/** Consecutive runs of deliveries of at most maxBytes each (a single larger one stands alone). */
export function chunkByBytes(deliveries: Delivery[], maxBytes: number): Delivery[][] {
  const chunks: Delivery[][] = [];
  let current: Delivery[] = [];
  let bytes = 0;
  for (const d of deliveries) {
    const size = d.message.length + d.uid.length + (d.traceParent?.length ?? 0) + DELIVERY_OVERHEAD_BYTES;
    if (current.length > 0 && bytes + size > maxBytes) {
      chunks.push(current);
      current = [];
      bytes = 0;
    }
    current.push(d);
    bytes += size;
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

function positiveInt(field: string, v: number): number {
  if (!Number.isInteger(v) || v < 1) throw new RangeError(`Fanout ${field} must be a positive integer, got ${v}`);
  return v;
}
