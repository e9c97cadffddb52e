/**
 * Downlink fan-out: after a message is durably written, find where its recipients are connected
 * and publish one DeliveryBatch per gateway node. Sends that complete in the same event-loop turn
 * are coalesced, so a burst of N sends costs one router lookup and one bus publish per node rather
 * than N of each. Each message is encoded once and travels once per node, with the (uid, seq) of
 * every recipient there: a 100-member group on one node is one body, not 100. The connection that
 * sent the message is not pushed (its SendResp carries the seq); the sender's other devices are.
 * Push is best effort: a failed router lookup is tried again a few times, and what is still
 * lost is healed by the clients' sync, so failures are logged only.
 */
import { setTimeout as sleep } from 'node:timers/promises';
import type { Context } from '@opentelemetry/api';
import type { Bus, BusHeaders } from '../bus/bus';
import { gatewaySubject } from '../bus/bus';
import type { Logger } from '../common/log';
import { silentLogger } from '../common/log';
import { metrics } from '../common/metrics';
import { FanoutSpans, fanoutTrace } from '../telemetry/hooks';
import { traceHeaders } from '../telemetry/spans';
import type { AppliedBatch, Push, PushTarget } from '../proto/delivery';
import { encodeDeliveryBatch } from '../proto/delivery';
import { encode } from '../proto/wire';
import type { RouterApi, SessionRef } from '../router/api';
import type { StoredMessage } from '../storage/store';
import { toWireMessage } from './convert';
import { compileNumbers } from '../common/options';

/**
 * A gateway in this process (embedded mode): its node's batches are handed to it as built, not
 * encoded, copied by the bus and decoded again. `deliver` must not run the pushes synchronously
 * (the bus would not either).
 */
export interface LocalDelivery {
  node: string;
  deliver(batch: AppliedBatch, headers?: BusHeaders): void;
}

export interface FanoutOptions {
  bus: Bus;
  local?: LocalDelivery;
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
  /**
   * Pauses before the router lookup of a flush is tried again after it failed (a timeout under a
   * backlog, a router restarting): one retry per entry. Its pushes are skipped only when the last
   * try fails too. Default 100, 400, 1600 ms.
   */
  lookupRetryMs?: readonly number[];
  /** Sleeps; injectable for tests. */
  sleep?: (ms: number) => Promise<void>;
}

/** A pause that does not keep the process alive. */
const defaultSleep = (ms: number): Promise<void> => sleep(ms, undefined, { ref: false });

/** Bytes a Push adds to a batch besides its message and trace parent (tags, lengths, time). */
const PUSH_OVERHEAD_BYTES = 24;
/** Bytes a Target adds besides its uid and except_conn_id (tags, lengths, seq). */
const TARGET_OVERHEAD_BYTES = 16;

/** The connection a message was sent on: it gets no push of it. Empty connId (admin API): none. */
export interface SendingConnection { uid: string; node: string; connId: string }

interface Job {
  message: StoredMessage;
  seqs: ReadonlyMap<string, number>;
  sender?: SendingConnection;
  /** The sender's trace (its publish span is a child of it); undefined when not tracing. */
  trace?: Context;
}

export class Fanout {
  private readonly bus: Bus;
  private readonly local: LocalDelivery | undefined;
  private readonly router: RouterApi;
  private readonly logger: Logger;
  private readonly maxPendingDeliveries: number;
  private readonly maxInFlightFlushes: number;
  private readonly maxBatchBytes: number;
  private readonly lookupRetryMs: readonly number[];
  private readonly sleep: (ms: number) => Promise<void>;

  private pending: Job[] = [];
  private pendingDeliveries = 0;
  private scheduled: NodeJS.Immediate | undefined;
  private readonly inFlight = new Set<Promise<void>>();
  private droppedDeliveries = 0;
  private closed = false;

  constructor(opts: FanoutOptions) {
    this.bus = opts.bus;
    this.local = opts.local;
    this.router = opts.router;
    this.logger = opts.logger ?? silentLogger;
    ({ maxPendingDeliveries: this.maxPendingDeliveries, maxInFlightFlushes: this.maxInFlightFlushes, maxBatchBytes: this.maxBatchBytes } =
      compileNumbers('Fanout', opts, { maxPendingDeliveries: 8192, maxInFlightFlushes: 64, maxBatchBytes: 512 * 1024 }, { integer: true }));
    this.lookupRetryMs = opts.lookupRetryMs ?? [100, 400, 1600];
    this.sleep = opts.sleep ?? defaultSleep;
  }

  /**
   * Queues the push of `message` to every uid in `seqs` (uid -> that uid's inbox seq), except to
   * the connection it was sent on.
   */
  enqueue(message: StoredMessage, seqs: ReadonlyMap<string, number>, sender?: SendingConnection): void {
    if (this.closed || seqs.size === 0) return;
    this.pending.push({ message, seqs, sender: sender?.connId ? sender : undefined, trace: fanoutTrace() });
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

  /**
   * The sessions of `uids`, the lookup tried again after each pause of lookupRetryMs while it
   * fails (the flush stays in flight meanwhile, so maxInFlightFlushes still bounds what is held);
   * undefined when every try failed, or a try failed after close().
   */
  private async lookup(uids: string[]): Promise<SessionRef[] | undefined> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.router.lookup(uids);
      } catch (err) {
        const pause = this.closed ? undefined : this.lookupRetryMs[attempt];
        if (pause === undefined) {
          metrics().fanoutLookupsFailed.inc();
          this.logger.warn('fan-out lookup failed; pushes skipped (clients recover by sync)', {
            uids: uids.length, tries: attempt + 1, err: err instanceof Error ? err.message : String(err),
          });
          return undefined;
        }
        await this.sleep(pause);
      }
    }
  }

  private async deliver(jobs: Job[], spans: FanoutSpans<Job>): Promise<void> {
    const uids = new Set<string>();
    for (const job of jobs) for (const uid of job.seqs.keys()) uids.add(uid);

    const sessions = await this.lookup([...uids]);
    if (!sessions) return;

    // A uid with several connections on one node is one target there: the gateway pushes to all
    // of that uid's connections (but the sending one).
    const connsByUid = new Map<string, Map<string, string[]>>();
    for (const s of sessions) {
      let nodes = connsByUid.get(s.uid);
      if (!nodes) connsByUid.set(s.uid, (nodes = new Map()));
      const conns = nodes.get(s.node);
      if (conns) conns.push(s.connId); else nodes.set(s.node, [s.connId]);
    }
    if (connsByUid.size === 0) return;

    const byNode = new Map<string, Push[]>();
    for (const job of jobs) {
      let body: Uint8Array | undefined;
      const forNode = new Map<string, Push>();
      for (const [uid, seq] of job.seqs) {
        const nodes = connsByUid.get(uid);
        if (!nodes) continue;
        for (const [node, conns] of nodes) {
          const target = targetFor(job, uid, seq, node, conns);
          if (!target) continue;
          let push = forNode.get(node);
          if (!push) {
            body ??= encode('Message', toWireMessage(job.message, 0));
            push = { message: body, traceParent: spans.traceParent(job), sentAtMs: job.message.sentAtMs, targets: [] };
            forNode.set(node, push);
            const list = byNode.get(node);
            if (list) list.push(push); else byNode.set(node, [push]);
          }
          push.targets.push(target);
        }
      }
    }

    for (const [node, all] of byNode) {
      for (const pushes of chunkByBytes(all, this.maxBatchBytes)) {
        const targets = pushes.reduce((n, p) => n + p.targets.length, 0);
        try {
          // The header carries the first traced push's context; each push carries its own.
          const headers = traceHeaders(pushes.find((p) => p.traceParent)?.traceParent);
          if (this.local?.node === node) this.local.deliver({ pushes, deliveries: [], kicks: [] }, headers);
          else this.bus.publish(gatewaySubject(node), encodeDeliveryBatch({ pushes }), headers);
          metrics().logicDeliveries.inc(targets);
        } catch (err) {
          this.logger.warn('fan-out publish failed', {
            node, deliveries: targets, err: err instanceof Error ? err.message : String(err),
          });
        }
      }
    }
  }
}

/**
 * The target for `uid` on `node`, whose connections there are `conns`; none when the only one is
 * the connection the message was sent on.
 */
function targetFor(job: Job, uid: string, seq: number, node: string, conns: readonly string[]): PushTarget | undefined {
  const s = job.sender;
  if (!s || s.uid !== uid || s.node !== node || !conns.includes(s.connId)) return { uid, seq };
  if (conns.every((c) => c === s.connId)) return undefined;
  return { uid, seq, exceptConnId: s.connId };
}

/**
 * Consecutive runs of pushes of at most about maxBytes each. A push whose targets do not fit is
 * split, its body repeated in each part; a single target larger than maxBytes stands alone.
 */
export function chunkByBytes(pushes: readonly Push[], maxBytes: number): Push[][] {
  const chunks: Push[][] = [];
  let current: Push[] = [];
  let bytes = 0;
  for (const p of pushes) {
    const base = p.message.length + (p.traceParent?.length ?? 0) + PUSH_OVERHEAD_BYTES;
    let part: Push | undefined;
    for (const t of p.targets) {
      const size = t.uid.length + (t.exceptConnId?.length ?? 0) + TARGET_OVERHEAD_BYTES;
      if (current.length > 0 && bytes + (part ? 0 : base) + size > maxBytes) {
        chunks.push(current);
        current = [];
        bytes = 0;
        part = undefined;
      }
      if (!part) {
        part = { ...p, targets: [] };
        current.push(part);
        bytes += base;
      }
      part.targets.push(t);
      bytes += size;
    }
  }
  if (current.length > 0) chunks.push(current);
  return chunks;
}

