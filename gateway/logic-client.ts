/**
 * The gateway's client for logic: one long-lived LogicGateway.Connect bidi stream per logic
 * address. Calls are spread round-robin over the streams that are up, coalesced into one CallBatch
 * per stream per event-loop turn, and matched back to their callers by call_id.
 *
 * Every call settles: with logic's result, or with UNAVAILABLE (no stream came up within
 * streamWaitMs, or the stream broke after the call was written to it), OVERLOADED (maxInFlight
 * reached) or TIMEOUT (callTimeoutMs) — all retryable, so a client may resend (sends are idempotent
 * by client_msg_id).
 *
 * Releases of logic: a call is retried here only where that is safe whatever the op is, i.e. when
 * logic cannot have seen it. A call made while no stream is up waits (bounded) for one, so a logic
 * process restarting alone, or every logic process at once, is a delay rather than an error; calls
 * still queued in the gateway when their stream breaks go to another stream (or wait likewise). A
 * call already written to a stream that breaks may have run: it gets the retryable error, and the
 * client decides (the SDK resends sends with the same client_msg_id, and syncs again).
 */
import * as grpc from '@grpc/grpc-js';
import { ConfigError, parseHostPort } from '../common/config';
import { Code } from '../common/errors';
import { loadLogicProto } from '../proto/load';
import { grpcChannel, type GrpcTlsConfig } from '../common/grpc-tls';
import { positiveOption } from './limits';
import { Logger, silentLogger } from '../common/log';
import type { CallBatch } from '../proto/gen/im/internal/v1/CallBatch';
import type { LogicGatewayClient } from '../proto/gen/im/internal/v1/LogicGateway';
import type { ResultBatch__Output } from '../proto/gen/im/internal/v1/ResultBatch';
import { fullJitterDelayMs } from '../common/backoff';

export interface LogicClientOptions {
  /** host:port of each logic server; one stream is kept to each. */
  addresses: string[];
  /** A call without a result after this long settles with TIMEOUT. Default 10000. */
  callTimeoutMs?: number;
  /** Calls queued or awaiting a result, over all streams; beyond it calls get OVERLOADED. Default 10000. */
  maxInFlight?: number;
  /**
   * A call made while no stream is up waits this long for one (within callTimeoutMs), then settles
   * UNAVAILABLE. Covers a logic process restarting (typically 1-3 s). Default 5000.
   */
  streamWaitMs?: number;
  /** Reconnect backoff: full jitter over min(reconnectMaxMs, reconnectBaseMs * 2^attempt). Defaults 100 / 5000. */
  reconnectBaseMs?: number;
  reconnectMaxMs?: number;
  /** Mutual TLS to logic (IM_GRPC_TLS_*); absent: plaintext. */
  grpcTls?: GrpcTlsConfig;
  logger?: Logger;
}

export interface LogicCall {
  op: number;
  uid: string;
  deviceId: string;
  connId: string;
  node: string;
  body: Uint8Array;
  /** W3C traceparent of the gateway's request span; '' or absent when tracing is off. */
  traceParent?: string;
}

export interface LogicCallResult {
  body: Uint8Array;
  code: number;
  message: string;
  retryable: boolean;
}

/** What a connection needs from logic; LogicClient is the implementation. */
export interface LogicCaller {
  call(call: LogicCall): Promise<LogicCallResult>;
}

/** What a gateway needs of its way to logic: calls, and whether any path to logic is up. */
export interface LogicBackend extends LogicCaller {
  readonly streamsUp: number;
}

type Stream = grpc.ClientDuplexStream<CallBatch, ResultBatch__Output>;

/** A CallBatch stays well under grpc's default 4 MiB receive limit on the logic side. */
const MAX_BATCH_BYTES = 1024 * 1024;
/** How long one connect attempt waits for the channel to become ready before backing off. */
const CONNECT_ATTEMPT_MS = 5000;
const EMPTY = new Uint8Array(0);

interface PendingCall {
  id: number;
  call: LogicCall;
  resolve: (r: LogicCallResult) => void;
  timer: NodeJS.Timeout | undefined;
  link: LogicLink | undefined;
  /** Set while the call waits for a stream to come up (see streamWaitMs). */
  waitTimer: NodeJS.Timeout | undefined;
  settled: boolean;
}

function failure(code: number, message: string): LogicCallResult {
  return { body: EMPTY, code, message, retryable: true };
}

export class LogicClient implements LogicBackend {
  private readonly callTimeoutMs: number;
  private readonly maxInFlight: number;
  private readonly streamWaitMs: number;
  private readonly logger: Logger;
  private readonly links: LogicLink[];
  /** Calls waiting for a stream; bounded by maxInFlight (they count as in flight). */
  private readonly waiting = new Set<PendingCall>();
  private inFlight = 0;
  private rr = 0;
  private started = false;
  private closed = false;
  private upWaiters = new Set<() => void>();

  constructor(options: LogicClientOptions) {
    if (!Array.isArray(options.addresses) || options.addresses.length === 0) {
      throw new ConfigError('addresses', 'at least one logic address is required');
    }
    for (const a of options.addresses) {
      if (!parseHostPort(a)) throw new ConfigError('addresses', `expected host:port, got "${a}"`);
    }
    this.callTimeoutMs = positiveOption('callTimeoutMs', options.callTimeoutMs, 10_000);
    this.maxInFlight = positiveOption('maxInFlight', options.maxInFlight, 10_000);
    this.streamWaitMs = positiveOption('streamWaitMs', options.streamWaitMs, 5000);
    const baseMs = positiveOption('reconnectBaseMs', options.reconnectBaseMs, 100);
    const maxMs = positiveOption('reconnectMaxMs', options.reconnectMaxMs, 5000);
    if (maxMs < baseMs) throw new ConfigError('reconnectMaxMs', 'must be >= reconnectBaseMs');
    this.logger = options.logger ?? silentLogger;
    const proto = loadLogicProto();
    const channel = grpcChannel(options.grpcTls, 'logic', this.logger);
    this.links = options.addresses.map((address) => new LogicLink({
      address, baseMs, maxMs, logger: this.logger.child({ logic: address }), channel,
      ctor: proto.im.internal.v1.LogicGateway,
      settle: (p, r) => this.settle(p, r),
      redispatch: (calls) => { for (const p of calls) this.dispatch(p); },
      onUp: () => this.notifyUp(),
    }));
  }

  /** Opens the streams (in the background; they reconnect on their own). */
  start(): void {
    if (this.started || this.closed) return;
    this.started = true;
    for (const link of this.links) link.start();
  }

  /** Number of logic streams currently up. */
  get streamsUp(): number {
    return this.links.filter((l) => l.up).length;
  }

  /** Resolves true as soon as a stream is up, false after timeoutMs (for readiness and tests). */
  whenUp(timeoutMs: number): Promise<boolean> {
    if (this.streamsUp > 0) return Promise.resolve(true);
    return new Promise((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.upWaiters.delete(onUp);
        resolve(ok);
      };
      const onUp = () => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.upWaiters.add(onUp);
    });
  }

  call(call: LogicCall): Promise<LogicCallResult> {
    if (this.closed) return Promise.resolve(failure(Code.UNAVAILABLE, 'logic client closed'));
    if (this.inFlight >= this.maxInFlight) {
      return Promise.resolve(failure(Code.OVERLOADED, 'too many calls in flight to logic'));
    }
    return new Promise<LogicCallResult>((resolve) => {
      const p: PendingCall = { id: 0, call, resolve, timer: undefined, link: undefined, waitTimer: undefined, settled: false };
      this.inFlight++;
      p.timer = setTimeout(() => {
        p.link?.forget(p);
        // Still waiting for a stream: logic never saw the call, so it was unavailable, not slow.
        if (this.waiting.has(p)) this.settle(p, failure(Code.UNAVAILABLE, 'no logic server reachable'));
        else this.settle(p, failure(Code.TIMEOUT, `logic did not answer within ${this.callTimeoutMs}ms`));
      }, this.callTimeoutMs);
      this.dispatch(p);
    });
  }

  /** Onto a stream that is up, or into the wait for one (a call logic has not seen yet). */
  private dispatch(p: PendingCall): void {
    if (p.settled) return;
    p.link = undefined;
    if (this.closed) {
      this.settle(p, failure(Code.UNAVAILABLE, 'logic client closed'));
      return;
    }
    const link = this.pickLink();
    if (link) {
      p.link = link;
      link.enqueue(p);
      return;
    }
    this.waiting.add(p);
    // The call's own timer (callTimeoutMs) still runs: whichever fires first settles it.
    p.waitTimer ??= setTimeout(() => {
      this.settle(p, failure(Code.UNAVAILABLE, `no logic server reachable within ${this.streamWaitMs}ms`));
    }, this.streamWaitMs);
  }

  /** Closes every stream; calls still pending settle with UNAVAILABLE. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const link of this.links) link.close();
    for (const p of [...this.waiting]) this.settle(p, failure(Code.UNAVAILABLE, 'logic client closed'));
    for (const w of [...this.upWaiters]) w();
  }

  private pickLink(): LogicLink | undefined {
    const n = this.links.length;
    for (let i = 0; i < n; i++) {
      const link = this.links[(this.rr + i) % n];
      if (link.up) {
        this.rr = (this.rr + i + 1) % n;
        return link;
      }
    }
    return undefined;
  }

  private settle(p: PendingCall, result: LogicCallResult): void {
    if (p.settled) return;
    p.settled = true;
    this.inFlight--;
    if (p.timer) clearTimeout(p.timer);
    if (p.waitTimer) clearTimeout(p.waitTimer);
    this.waiting.delete(p);
    p.resolve(result);
  }

  private notifyUp(): void {
    const calls = [...this.waiting];
    this.waiting.clear();
    for (const p of calls) {
      if (p.waitTimer) clearTimeout(p.waitTimer);
      p.waitTimer = undefined;
      this.dispatch(p);
    }
    for (const w of [...this.upWaiters]) w();
  }
}

interface LinkDeps {
  address: string;
  baseMs: number;
  maxMs: number;
  logger: Logger;
  channel: ReturnType<typeof grpcChannel>;
  ctor: new (address: string, creds: grpc.ChannelCredentials, options?: grpc.ChannelOptions) => LogicGatewayClient;
  settle: (p: PendingCall, r: LogicCallResult) => void;
  /** Calls this link took but never wrote: they go to another stream. */
  redispatch: (calls: PendingCall[]) => void;
  onUp: () => void;
}

/** One logic address: its channel, its current stream, and the calls riding on that stream. */
class LogicLink {
  private readonly client: LogicGatewayClient;
  private stream: Stream | null = null;
  private writable = true; // false from write() returning false until 'drain'
  private outbox: PendingCall[] = [];
  private readonly pending = new Map<number, PendingCall>();
  private nextCallId = 1;
  private flushScheduled = false;
  private attempt = 0;
  private upSinceMs = 0;
  private reconnectTimer: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(private readonly deps: LinkDeps) {
    this.client = new deps.ctor(deps.address, deps.channel.credentials, {
      ...deps.channel.options,
      // Detect a logic host that vanished without closing the TCP connection.
      'grpc.keepalive_time_ms': 20_000,
      'grpc.keepalive_timeout_ms': 10_000,
      // The channel's own reconnect backoff must not outgrow ours (its default max is 120 s).
      'grpc.initial_reconnect_backoff_ms': deps.baseMs,
      'grpc.max_reconnect_backoff_ms': deps.maxMs,
      // Results can carry sync pages of many messages.
      'grpc.max_receive_message_length': 64 * 1024 * 1024,
    });
  }

  get up(): boolean {
    return this.stream !== null;
  }

  start(): void {
    this.connect();
  }

  enqueue(p: PendingCall): void {
    p.id = this.nextCallId++;
    this.pending.set(p.id, p);
    this.outbox.push(p);
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      // setImmediate rather than nextTick: every socket read in this poll phase shares one batch.
      setImmediate(() => this.flush());
    }
  }

  forget(p: PendingCall): void {
    this.pending.delete(p.id);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    const stream = this.stream;
    this.stream = null;
    if (stream) stream.cancel();
    this.failAll('logic client closed');
    this.client.close();
  }

  private connect(): void {
    if (this.closed) return;
    this.client.waitForReady(Date.now() + CONNECT_ATTEMPT_MS, (err) => {
      if (this.closed) return;
      if (err) {
        this.deps.logger.debug('logic not reachable', { err });
        this.scheduleReconnect();
        return;
      }
      this.openStream();
    });
  }

  private openStream(): void {
    const stream = this.client.Connect();
    this.stream = stream;
    this.writable = true;
    this.upSinceMs = Date.now();
    stream.on('data', (batch: ResultBatch__Output) => this.onResults(batch));
    stream.on('drain', () => {
      if (this.stream !== stream) return;
      this.writable = true;
      this.flush();
    });
    stream.on('error', (err: grpc.ServiceError) => this.onBroken(stream, err.details || err.message));
    stream.on('end', () => this.onBroken(stream, 'logic ended the stream'));
    this.deps.logger.info('logic stream up');
    this.deps.onUp();
    if (this.outbox.length > 0) this.flush();
  }

  private onBroken(stream: Stream, reason: string): void {
    if (this.stream !== stream) return;
    this.stream = null;
    stream.cancel();
    // Calls still in the outbox were never written: logic cannot have run them, so they go to
    // another stream. The rest were written and may have run: the caller gets the retryable error.
    const unsent = this.outbox.filter((p) => !p.settled);
    this.outbox = [];
    for (const p of unsent) this.pending.delete(p.id);
    this.deps.logger.warn('logic stream broke', { reason, pending: this.pending.size, rerouted: unsent.length });
    this.failAll(`logic stream broke: ${reason}`);
    this.deps.redispatch(unsent);
    // A stream that stayed up a while was healthy: start the backoff over.
    if (Date.now() - this.upSinceMs >= this.deps.maxMs) this.attempt = 0;
    this.scheduleReconnect();
  }

  private failAll(message: string): void {
    const calls = [...this.pending.values()];
    this.pending.clear();
    this.outbox = [];
    for (const p of calls) this.deps.settle(p, failure(Code.UNAVAILABLE, message));
  }

  private scheduleReconnect(): void {
    if (this.closed) return;
    const delayMs = fullJitterDelayMs(this.attempt, this.deps.baseMs, this.deps.maxMs);
    this.attempt = Math.min(this.attempt + 1, 30);
    this.reconnectTimer = setTimeout(() => this.connect(), delayMs);
  }

  private flush(): void {
    this.flushScheduled = false;
    const stream = this.stream;
    if (!stream) return; // the outbox went to other streams when this one broke
    while (this.writable && this.outbox.length > 0) {
      const calls: CallBatch['calls'] = [];
      let bytes = 0;
      let i = 0;
      for (; i < this.outbox.length; i++) {
        const p = this.outbox[i];
        if (p.settled) continue; // timed out while queued: logic never sees it
        if (calls.length > 0 && bytes + p.call.body.length > MAX_BATCH_BYTES) break;
        const c = p.call;
        calls.push({
          callId: p.id, op: c.op, uid: c.uid, deviceId: c.deviceId, connId: c.connId, node: c.node, body: c.body, traceParent: c.traceParent,
        });
        bytes += c.body.length + 64;
      }
      this.outbox = i >= this.outbox.length ? [] : this.outbox.slice(i);
      if (calls.length === 0) break;
      if (!stream.write({ calls })) this.writable = false;
    }
  }

  private onResults(batch: ResultBatch__Output): void {
    for (const r of batch.results) {
      const id = Number(r.callId);
      const p = this.pending.get(id);
      if (!p) continue; // timed out earlier, or an id logic made up
      this.pending.delete(id);
      this.deps.settle(p, { body: r.body ?? EMPTY, code: r.code, message: r.message, retryable: r.retryable });
    }
  }
}
