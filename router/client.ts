/**
 * RouterApi over gRPC. Calls made together are batched: concurrent lookups become one request,
 * consecutive binds (or unbinds) one Bind (or Unbind). Session changes are sent strictly in call
 * order, one RPC at a time, so an unbind can never overtake the bind it undoes; while one is in
 * flight the next batch accumulates. Every call has a deadline and settles with an ImError on failure.
 *
 * Lookups (one per event-loop turn of a logic process that sends) go over one long-lived
 * LookupStream, matched to their replies by id: a unary call per batch cost logic and the router
 * more than the lookup itself at a few hundred sends a second per process (BENCHMARKS.md). A
 * stream that breaks fails what it carried (retryable) and the next lookup opens another; one
 * whose oldest request passes its deadline is presumed stuck and cancelled. A router of the
 * release before answers UNIMPLEMENTED: lookups then use unary Lookup for a minute before the
 * stream is tried again.
 */
import * as grpc from '@grpc/grpc-js';
import { ImError, isRetryableCode, OverloadedError, TimeoutError, UnavailableError } from '../common/errors';
import { fromGrpcError } from '../common/grpc';
import { loadRouterProto } from '../proto/load';
import { grpcChannel, type GrpcTlsConfig } from '../common/grpc-tls';
import { Logger, silentLogger } from '../common/log';
import type { BindReply__Output } from '../proto/gen/im/internal/v1/BindReply';
import type { HeartbeatReply__Output } from '../proto/gen/im/internal/v1/HeartbeatReply';
import type { LookupReply__Output } from '../proto/gen/im/internal/v1/LookupReply';
import type { LookupRequest } from '../proto/gen/im/internal/v1/LookupRequest';
import type { RouterClient as RouterStub } from '../proto/gen/im/internal/v1/Router';
import type { GatewayStatus, HeartbeatResult, RouterApi, SessionRef } from './api';
import { checkNumber } from '../common/options';
import { traceRouterLookup } from '../telemetry/spans';

export interface RouterClientOptions {
  address: string;            // host:port
  callTimeoutMs?: number;
  /** Uids per Lookup RPC; a larger batch is split. Keep at or below the router's maxUidsPerLookup. */
  maxUidsPerRpc?: number;
  /** Sessions per Bind/Unbind RPC; keeps each message well under gRPC's 4 MB default. */
  maxSessionsPerRpc?: number;
  /** Uids waiting for the next lookup batch; beyond it lookup() fails with OverloadedError. */
  maxPendingUids?: number;
  /** Sessions queued for bind/unbind/snapshot; beyond it those calls fail with OverloadedError. */
  maxPendingSessions?: number;
  /** Mutual TLS (IM_GRPC_TLS_*); absent: plaintext. */
  grpcTls?: GrpcTlsConfig;
  logger?: Logger;
}

export const ROUTER_CLIENT_DEFAULTS = {
  callTimeoutMs: 3000,
  maxUidsPerRpc: 1000,
  maxSessionsPerRpc: 4096,
  maxPendingUids: 100_000,
  maxPendingSessions: 1_000_000,
} as const;

interface Waiter<T> {
  resolve(value: T): void;
  reject(err: ImError): void;
}

interface PendingLookup extends Waiter<SessionRef[]> {
  uids: readonly string[];
}

type MutationKind = 'bind' | 'unbind' | 'snapshot';

/** Resolves with the sessions a bind displaced (always empty for unbind and snapshot). */
interface Mutation extends Waiter<SessionRef[]> {
  kind: MutationKind;
  node: string;               // snapshot only
  sessions: SessionRef[];
  deadlineMs: number;
}

type Unary<Req, Res> = (req: Req, options: grpc.CallOptions, cb: grpc.requestCallback<Res>) => grpc.ClientUnaryCall;

interface StreamLookup extends Waiter<LookupReply__Output> {
  uids: string[];
  deadlineMs: number;
}

/** The open LookupStream and the requests written to it, oldest first. */
interface LookupLink {
  call: grpc.ClientDuplexStream<LookupRequest, LookupReply__Output>;
  pending: Map<number, StreamLookup>;
  /** Some reply came back: the router has the method (an UNIMPLEMENTED after that is not "older router"). */
  answered: boolean;
  timer: NodeJS.Timeout | undefined;
}

/** After an UNIMPLEMENTED LookupStream (a router of the release before), unary lookups for this long. */
const STREAM_RETRY_AFTER_MS = 60_000;

export class RouterClient implements RouterApi {
  private readonly o: Required<Omit<RouterClientOptions, 'logger' | 'grpcTls'>>;
  private readonly log: Logger;
  private readonly stub: RouterStub;
  private readonly inFlight = new Set<grpc.ClientUnaryCall>();
  private lookups: PendingLookup[] = [];
  private pendingUids = 0;
  private lookupScheduled = false;
  private link: LookupLink | undefined;
  private nextLookupId = 1;
  /** Until then lookups use unary Lookup (the router answered LookupStream with UNIMPLEMENTED). */
  private unaryUntilMs = 0;
  private readonly mutations: Mutation[] = [];
  private pendingSessions = 0;
  private writing = false;
  private closed = false;

  constructor(options: RouterClientOptions) {
    this.o = { ...ROUTER_CLIENT_DEFAULTS, ...definedOnly(options) } as Required<Omit<RouterClientOptions, 'logger' | 'grpcTls'>>;
    for (const f of ['callTimeoutMs', 'maxUidsPerRpc', 'maxSessionsPerRpc', 'maxPendingUids', 'maxPendingSessions'] as const) {
      checkNumber('RouterClient', f, this.o[f], { integer: true });
    }
    this.log = options.logger ?? silentLogger;
    const proto = loadRouterProto();
    const channel = grpcChannel(options.grpcTls, 'router', this.log);
    this.stub = new proto.im.internal.v1.Router(options.address, channel.credentials, {
      ...channel.options,
      // grpc-js backs off up to 120s by default; a restarted router must be found again in seconds.
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 5000,
      // A big lookup batch of users with many devices can exceed the 4 MB default.
      'grpc.max_receive_message_length': 32 * 1024 * 1024,
    });
  }

  lookup(uids: string[]): Promise<SessionRef[]> {
    if (this.closed) return Promise.reject(closedError());
    if (uids.length === 0) return Promise.resolve([]);
    return traceRouterLookup(uids.length, () => this.queueLookup(uids));
  }

  private queueLookup(uids: string[]): Promise<SessionRef[]> {
    if (this.pendingUids + uids.length > this.o.maxPendingUids) {
      return Promise.reject(new OverloadedError(`router lookup queue is full (${this.pendingUids} uids pending)`));
    }
    return new Promise((resolve, reject) => {
      this.lookups.push({ uids: [...uids], resolve, reject });
      this.pendingUids += uids.length;
      if (!this.lookupScheduled) {
        this.lookupScheduled = true;
        // setImmediate, not a microtask: it also gathers lookups issued by other I/O callbacks of this loop turn.
        setImmediate(() => this.flushLookups());
      }
    });
  }

  bind(sessions: SessionRef[]): Promise<SessionRef[]> {
    return this.enqueue('bind', '', sessions);
  }

  async unbind(sessions: SessionRef[]): Promise<void> {
    await this.enqueue('unbind', '', sessions);
  }

  async snapshot(node: string, sessions: SessionRef[]): Promise<void> {
    await this.enqueue('snapshot', node, sessions);
  }

  async heartbeat(status: GatewayStatus): Promise<HeartbeatResult> {
    if (this.closed) throw closedError();
    const reply = await this.call<GatewayStatus, HeartbeatReply__Output>((r, o, cb) => this.stub.Heartbeat(r, o, cb), status, Date.now() + this.o.callTimeoutMs);
    return { heartbeatIntervalMs: reply.heartbeatIntervalMs, known: reply.known };
  }

  /** Fails everything queued or in flight with UnavailableError and closes the channel. Idempotent. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    const err = closedError();
    for (const l of this.lookups.splice(0)) l.reject(err);
    for (const m of this.mutations.splice(0)) m.reject(err);
    this.pendingUids = 0;
    this.pendingSessions = 0;
    for (const call of this.inFlight) call.cancel();
    if (this.link) this.dropLink(this.link, () => err);
    this.stub.close();
  }

  private flushLookups(): void {
    this.lookupScheduled = false;
    const batch = this.lookups;
    this.lookups = [];
    this.pendingUids = 0;
    if (batch.length === 0) return;
    const unique = [...new Set(batch.flatMap((l) => l.uids))];
    const deadlineMs = Date.now() + this.o.callTimeoutMs;
    const rpcs = chunk(unique, this.o.maxUidsPerRpc).map((uids) => this.lookupRpc(uids, deadlineMs));
    Promise.all(rpcs).then((replies) => {
      const byUid = new Map<string, SessionRef[]>();
      for (const reply of replies) {
        for (const s of reply.sessions) {
          const ref: SessionRef = { uid: s.uid, deviceId: s.deviceId, node: s.node, connId: s.connId };
          const list = byUid.get(s.uid);
          if (list) list.push(ref); else byUid.set(s.uid, [ref]);
        }
      }
      // Each caller sees only its own uids, each once even if it asked twice.
      for (const l of batch) l.resolve([...new Set(l.uids)].flatMap((uid) => byUid.get(uid) ?? []));
    }, (err: ImError) => {
      this.log.debug('router client: lookup failed', { err, uids: unique.length });
      for (const l of batch) l.reject(err);
    });
  }

  /** One batch of uids: over the lookup stream, or unary while the router has no stream. */
  private lookupRpc(uids: string[], deadlineMs: number): Promise<LookupReply__Output> {
    if (Date.now() < this.unaryUntilMs) {
      return this.call<{ uids: string[] }, LookupReply__Output>((r, o, cb) => this.stub.Lookup(r, o, cb), { uids }, deadlineMs);
    }
    return new Promise((resolve, reject) => {
      let link: LookupLink;
      try {
        link = this.link ?? this.openLink();
      } catch (err) {
        // grpc-js throws synchronously once the channel is closed.
        reject(new UnavailableError(`router call failed: ${(err as Error).message}`, { cause: err }));
        return;
      }
      const id = this.nextLookupId++;
      link.pending.set(id, { uids, deadlineMs, resolve, reject });
      link.call.write({ id, uids });
      if (!link.timer) this.armLinkTimer(link);
    });
  }

  private openLink(): LookupLink {
    const call = this.stub.LookupStream();
    const link: LookupLink = { call, pending: new Map(), answered: false, timer: undefined };
    this.link = link;
    call.on('data', (reply: LookupReply__Output) => {
      link.answered = true;
      const w = link.pending.get(reply.id);
      if (!w) return; // already failed by its deadline
      link.pending.delete(reply.id);
      if (reply.errorCode) w.reject(new ImError(reply.errorCode, reply.errorMessage, { retryable: isRetryableCode(reply.errorCode) }));
      else w.resolve(reply);
    });
    call.on('error', (err: grpc.ServiceError) => {
      if (this.link !== link) return;
      if (err.code === grpc.status.UNIMPLEMENTED && !link.answered) {
        // A router of the release before: what this stream carried goes unary, and so do the next lookups for a while.
        this.unaryUntilMs = Date.now() + STREAM_RETRY_AFTER_MS;
        this.log.info('router client: router has no LookupStream; unary lookups', { retryAfterMs: STREAM_RETRY_AFTER_MS });
        const waiting = [...link.pending.values()];
        this.dropLink(link, () => undefined);
        for (const w of waiting) this.lookupRpc(w.uids, w.deadlineMs).then(w.resolve, w.reject);
        return;
      }
      this.log.debug('router client: lookup stream failed', { err: err.message, pending: link.pending.size });
      this.dropLink(link, () => fromGrpcError(err));
    });
    call.on('end', () => {
      if (this.link === link) this.dropLink(link, () => new UnavailableError('router ended the lookup stream'));
    });
    return link;
  }

  /** The oldest request's deadline is the stream's: past it the stream is presumed stuck. */
  private armLinkTimer(link: LookupLink): void {
    const oldest = link.pending.values().next().value as StreamLookup | undefined;
    if (!oldest) return;
    link.timer = setTimeout(() => {
      link.timer = undefined;
      const first = link.pending.values().next().value as StreamLookup | undefined;
      if (!first) return;
      if (first.deadlineMs > Date.now()) {
        this.armLinkTimer(link);
        return;
      }
      this.log.debug('router client: lookup stream timed out', { pending: link.pending.size });
      const now = Date.now();
      this.dropLink(link, (w) => (w.deadlineMs <= now
        ? new TimeoutError(`router did not answer a lookup within ${this.o.callTimeoutMs}ms`)
        : new UnavailableError('router lookup stream was stuck and is reopened')));
    }, Math.max(0, oldest.deadlineMs - Date.now()));
  }

  /** Forgets the stream, cancels it, and fails what it still carried (`errorFor` undefined: the caller took them). */
  private dropLink(link: LookupLink, errorFor: (w: StreamLookup) => ImError | undefined): void {
    if (this.link === link) this.link = undefined;
    if (link.timer) clearTimeout(link.timer);
    link.timer = undefined;
    const waiting = [...link.pending.values()];
    link.pending.clear();
    link.call.cancel();
    for (const w of waiting) {
      const err = errorFor(w);
      if (err) w.reject(err);
    }
  }

  private enqueue(kind: MutationKind, node: string, sessions: SessionRef[]): Promise<SessionRef[]> {
    if (this.closed) return Promise.reject(closedError());
    if (sessions.length === 0 && kind !== 'snapshot') return Promise.resolve([]);
    if (this.pendingSessions + sessions.length > this.o.maxPendingSessions) {
      return Promise.reject(new OverloadedError(`router update queue is full (${this.pendingSessions} sessions pending)`));
    }
    // A large snapshot goes out in several RPCs; give each its own timeout's worth of time.
    const rpcs = Math.max(1, Math.ceil(sessions.length / this.o.maxSessionsPerRpc));
    const deadlineMs = Date.now() + this.o.callTimeoutMs * rpcs;
    return new Promise((resolve, reject) => {
      this.mutations.push({ kind, node, sessions: [...sessions], deadlineMs, resolve, reject });
      this.pendingSessions += sessions.length;
      if (!this.writing) {
        this.writing = true;
        setImmediate(() => void this.pumpMutations());
      }
    });
  }

  /** Sends queued session changes in order, merging each run of same-kind calls into one batch. */
  private async pumpMutations(): Promise<void> {
    while (this.mutations.length > 0) {
      const group = this.takeGroup();
      const now = Date.now();
      const live = group.filter((m) => m.deadlineMs > now);
      for (const m of group) if (m.deadlineMs <= now) m.reject(new TimeoutError('router update timed out in queue'));
      if (live.length === 0) continue;
      try {
        const displaced = await this.sendMutations(live[0].kind, live);
        // Each caller learns what its own sessions displaced (its uid and device id).
        for (const m of live) {
          const mine = new Set(m.sessions.map((s) => deviceKey(s)));
          m.resolve(displaced.filter((d) => mine.has(deviceKey(d))));
        }
      } catch (err) {
        this.log.debug('router client: update failed', { err, kind: live[0].kind });
        for (const m of live) m.reject(err as ImError);
      }
    }
    this.writing = false;
  }

  private takeGroup(): Mutation[] {
    const first = this.mutations.shift()!;
    const group = [first];
    // A snapshot replaces a node's state: it is never merged with anything.
    if (first.kind !== 'snapshot') {
      while (this.mutations.length > 0 && this.mutations[0].kind === first.kind) group.push(this.mutations.shift()!);
    }
    for (const m of group) this.pendingSessions -= m.sessions.length;
    return group;
  }

  private async sendMutations(kind: MutationKind, group: Mutation[]): Promise<SessionRef[]> {
    const deadlineMs = Math.min(...group.map((m) => m.deadlineMs));
    const sessions = group.length === 1 ? group[0].sessions : group.flatMap((m) => m.sessions);
    const chunks = chunk(sessions, this.o.maxSessionsPerRpc);
    if (kind === 'snapshot') {
      // The first chunk replaces the node's sessions; the rest add to it, still in order.
      const node = group[0].node;
      await this.call((r, o, cb) => this.stub.Bind(r, o, cb), { snapshot: true, node, sessions: chunks[0] ?? [] }, deadlineMs);
      for (const c of chunks.slice(1)) await this.call((r, o, cb) => this.stub.Bind(r, o, cb), { snapshotMore: true, node, sessions: c }, deadlineMs);
      return [];
    }
    const displaced: SessionRef[] = [];
    for (const c of chunks) {
      if (kind === 'bind') {
        const reply = await this.call<{ sessions: SessionRef[] }, BindReply__Output>((r, o, cb) => this.stub.Bind(r, o, cb), { sessions: c }, deadlineMs);
        for (const s of reply.displaced) displaced.push({ uid: s.uid, deviceId: s.deviceId, node: s.node, connId: s.connId });
      } else {
        await this.call((r, o, cb) => this.stub.Unbind(r, o, cb), { sessions: c }, deadlineMs);
      }
    }
    return displaced;
  }

  /** One unary RPC with a deadline; failures become ImErrors (UNAVAILABLE/TIMEOUT are retryable). */
  private call<Req, Res>(fn: Unary<Req, Res>, req: Req, deadlineMs: number): Promise<Res> {
    return new Promise((resolve, reject) => {
      let call: grpc.ClientUnaryCall | undefined;
      let settled = false;
      try {
        call = fn(req, { deadline: new Date(deadlineMs) }, (err, res) => {
          settled = true;
          if (call) this.inFlight.delete(call);
          if (err) reject(fromGrpcError(err));
          else resolve(res!);
        });
      } catch (err) {
        // grpc-js throws synchronously once the channel is closed.
        reject(new UnavailableError(`router call failed: ${(err as Error).message}`, { cause: err }));
        return;
      }
      if (!settled) this.inFlight.add(call);
    });
  }
}

function deviceKey(s: Pick<SessionRef, 'uid' | 'deviceId'>): string {
  return `${s.uid}\u0000${s.deviceId}`;
}

function closedError(): ImError {
  return new UnavailableError('router client is closed');
}

function chunk<T>(items: readonly T[], size: number): T[][] {
  const out: T[][] = [];
  for (let i = 0; i < items.length; i += size) out.push(items.slice(i, i + size));
  return out;
}

function definedOnly<T extends object>(obj: T): Partial<T> {
  return Object.fromEntries(Object.entries(obj).filter(([, v]) => v !== undefined)) as Partial<T>;
}
