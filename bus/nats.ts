/**
 * The downlink bus over NATS (core pub/sub, no JetStream): logic publishes one DeliveryBatch per
 * target gateway node on `im.gw.<node>`; each gateway subscribes to its own subject.
 *
 * Delivery is at-most-once on purpose: a push is an optimisation over sync, so a message lost while
 * NATS is down is healed when the client syncs from its last seq. What this class guarantees
 * instead: publish never throws, memory stays bounded during an outage, subscriptions come back by
 * themselves after a reconnect, and one bad handler cannot stop delivery to the rest.
 *
 * nats.js (v3, as v2 before it) has no reconnectBufSize: while disconnected it queues publishes
 * without a limit (and discards the queue at each redial, so few of them are ever sent).
 * maxPendingBytes is that missing limit: past it, publishes are dropped and logged once per outage.
 */
import {
  AuthorizationError, ConnectionError, headers as natsHeaders, InvalidArgumentError, PermissionViolationError,
  type ConnectionOptions, type MsgHdrs, type NatsConnection, type Status, type Subscription,
} from '@nats-io/nats-core';
import { connect } from '@nats-io/transport-node';
import type { Bus, BusHandler, BusHeaders } from './bus';
import { ConfigError } from '../common/config';
import { describeNatsAuth, natsConnectOptions, urlCredentials, type NatsAuthConfig } from './nats-auth';
import { UnavailableError } from '../common/errors';
import { silentLogger, type Logger } from '../common/log';
import { metrics } from '../common/metrics';
import { setTimeout as sleep } from 'node:timers/promises';

export interface NatsBusOptions {
  /** One URL, a comma-separated list, or an array: `nats://host:4222`. */
  servers: string | string[];
  /** Connection name shown by the server's monitoring (e.g. `gateway-node1`). */
  name?: string;
  /** Credentials and TLS (IM_NATS_USER…, bus/nats-auth.ts); absent: an open server. */
  auth?: NatsAuthConfig;
  logger?: Logger;
  /** Bound on bytes handed to the client while disconnected; past it, publishes are dropped. Default 8 MiB. */
  maxPendingBytes?: number;
  /** Base wait between reconnect attempts to one server. Default 500. */
  reconnectTimeWaitMs?: number;
  /** Random extra wait added to each attempt so a fleet does not reconnect in lockstep. Default 250. */
  reconnectJitterMs?: number;
  /** Server ping period; two missed pongs mark a half-open connection dead. Default 10 s. */
  pingIntervalMs?: number;
  /** How long one dial (TCP + handshake) may take before the next attempt. Default 5 s. */
  dialTimeoutMs?: number;
  /** How long close() waits for the drain before it closes anyway. Default 2 s. */
  drainTimeoutMs?: number;
}

type Resolved = Required<Omit<NatsBusOptions, 'servers' | 'name' | 'auth'>> & { servers: string[]; name: string; auth?: NatsAuthConfig };

export interface NatsBusStats {
  connected: boolean;
  closed: boolean;
  /** The server currently (or last) connected to, `host:port`. */
  server: string;
  reconnects: number;
  published: number;
  /** Publishes dropped: over maxPendingBytes while disconnected, or after close(). */
  dropped: number;
  droppedBytes: number;
  /** Publishes the client rejected (bad subject, payload over the server's max_payload). */
  publishErrors: number;
  /** Handler invocations that threw. */
  handlerErrors: number;
}

const MiB = 1024 * 1024;
/** At most one log line per this period for a repeating condition; the rest are counted. */
const LOG_EVERY_MS = 1000;

function positiveInt(field: string, value: number | undefined, def: number): number {
  const v = value ?? def;
  if (!Number.isSafeInteger(v) || v <= 0) throw new ConfigError(field, `must be a positive integer, got ${value}`);
  return v;
}

function resolve(o: NatsBusOptions): Resolved {
  const servers = (Array.isArray(o.servers) ? o.servers : String(o.servers ?? '').split(','))
    .map((s) => s.trim()).filter((s) => s.length > 0);
  if (servers.length === 0) throw new ConfigError('servers', 'at least one NATS server URL is required');
  const fromUrl = urlCredentials(servers, o.auth);
  return {
    servers: fromUrl.servers,
    name: o.name ?? `im-${process.pid}`,
    auth: fromUrl.auth,
    logger: o.logger ?? silentLogger,
    maxPendingBytes: positiveInt('maxPendingBytes', o.maxPendingBytes, 8 * MiB),
    reconnectTimeWaitMs: positiveInt('reconnectTimeWaitMs', o.reconnectTimeWaitMs, 500),
    reconnectJitterMs: positiveInt('reconnectJitterMs', o.reconnectJitterMs, 250),
    pingIntervalMs: positiveInt('pingIntervalMs', o.pingIntervalMs, 10_000),
    dialTimeoutMs: positiveInt('dialTimeoutMs', o.dialTimeoutMs, 5_000),
    drainTimeoutMs: positiveInt('drainTimeoutMs', o.drainTimeoutMs, 2_000),
  };
}

/**
 * A literal NATS subject: dot-separated non-empty tokens, no whitespace. nats.js refuses only an
 * empty subject or whitespace (v2 not even that, where a space became a reply subject); a publish
 * to an empty token or a wildcard it sends on, to be misrouted or dropped without a word.
 */
const SUBJECT = /^[^\s.]+(\.[^\s.]+)*$/;
function validSubject(subject: string, wildcards: boolean): boolean {
  return SUBJECT.test(subject) && (wildcards || !/(^|\.)(\*|>)(\.|$)/.test(subject));
}

/** Logs a repeating condition at most once per LOG_EVERY_MS, with how many were suppressed. */
class Throttle {
  private lastMs = 0;
  private suppressed = 0;
  constructor(private readonly emit: (msg: string, fields: Record<string, unknown>) => void) {}
  log(msg: string, fields: Record<string, unknown>): void {
    const now = Date.now();
    if (now - this.lastMs < LOG_EVERY_MS) { this.suppressed++; return; }
    this.emit(msg, this.suppressed > 0 ? { ...fields, suppressed: this.suppressed } : fields);
    this.lastMs = now;
    this.suppressed = 0;
  }
}

export class NatsBus implements Bus {
  private isConnected = true;
  /** Subjects the server refused to subscribe this credential to (flush() reports them). */
  private readonly denied: string[] = [];
  private closing: Promise<void> | null = null;
  /** Bytes handed to the client since the current outage began (reset on reconnect). */
  private outageBytes = 0;
  private outageDropped = 0;
  private readonly counts = { reconnects: 0, published: 0, dropped: 0, droppedBytes: 0, publishErrors: 0, handlerErrors: 0 };
  private readonly log: Logger;
  private readonly publishErrorLog: Throttle;
  private readonly handlerErrorLog: Throttle;

  private constructor(private readonly nc: NatsConnection, private readonly opts: Resolved) {
    this.log = opts.logger;
    this.publishErrorLog = new Throttle((m, f) => this.log.error(m, f));
    this.handlerErrorLog = new Throttle((m, f) => this.log.error(m, f));
    metrics().busConnected.add(this, (bus) => (bus.connected ? 1 : 0));
    void this.watchStatus();
    void nc.closed().then((err) => {
      this.isConnected = false;
      if (err) this.log.error('nats connection closed with error', { err });
    });
  }

  /**
   * Connects, waiting for the first connection as long as it takes (a process started before NATS
   * just waits; it should not report ready until this resolves). From then on it reconnects forever.
   */
  static async connect(options: NatsBusOptions): Promise<NatsBus> {
    const opts = resolve(options);
    const connectOptions: ConnectionOptions = {
      servers: opts.servers,
      name: opts.name,
      maxReconnectAttempts: -1,
      reconnectTimeWait: opts.reconnectTimeWaitMs,
      reconnectJitter: opts.reconnectJitterMs,
      pingInterval: opts.pingIntervalMs,
      maxPingOut: 2,
      timeout: opts.dialTimeoutMs,
      ...natsConnectOptions(opts.auth),
    };
    // Not nats.js's waitOnFirstConnect: it retries a certificate that does not verify forever, and
    // says nothing until connected. Those, and a refused credential, end the wait here as
    // configuration errors; anything else is logged once and waited out.
    let nc: NatsConnection | undefined;
    for (let attempt = 1; nc === undefined; attempt++) {
      try {
        nc = await connect(connectOptions);
      } catch (err) {
        const fatal = refused(err, opts.auth);
        if (fatal) throw fatal;
        if (attempt === 1) opts.logger.warn('nats not reachable yet; waiting for it', { servers: opts.servers, err });
        await sleep(opts.reconnectTimeWaitMs + Math.random() * opts.reconnectJitterMs);
      }
    }
    opts.logger.info('nats connected', { server: nc.getServer(), name: opts.name, auth: describeNatsAuth(opts.auth) });
    return new NatsBus(nc, opts);
  }

  get connected(): boolean {
    return this.isConnected && this.closing === null;
  }

  get reconnects(): number {
    return this.counts.reconnects;
  }

  /** The server's max_payload (as its INFO says; 1 MiB unless configured). */
  get maxPayload(): number | undefined {
    return this.nc.info?.max_payload;
  }

  stats(): NatsBusStats {
    return { connected: this.connected, closed: this.closing !== null, server: this.nc.getServer(), ...this.counts };
  }

  /**
   * Never throws. The bus keeps a reference to `data` until it is written, so the caller must not
   * reuse the buffer (encoder output never is).
   */
  publish(subject: string, data: Uint8Array, headers?: BusHeaders): void {
    if (this.closing !== null) { this.drop(subject, data, 'closed'); return; }
    if (!validSubject(subject, false)) {
      this.counts.publishErrors++;
      this.publishErrorLog.log('bus publish failed: invalid subject', { subject, bytes: data.length });
      return;
    }
    if (!this.isConnected) {
      // The nats.js client buffers without a limit while disconnected; this is that limit.
      if (this.outageBytes + data.length > this.opts.maxPendingBytes) { this.drop(subject, data, 'disconnected'); return; }
      this.outageBytes += data.length;
    }
    try {
      this.nc.publish(subject, data, headers ? { headers: toNatsHeaders(headers) } : undefined);
      this.counts.published++;
      metrics().busPublished.inc();
    } catch (err) {
      this.counts.publishErrors++;
      this.publishErrorLog.log('bus publish failed', { subject, bytes: data.length, err });
    }
  }

  subscribe(subject: string, handler: BusHandler): () => void {
    if (this.closing !== null) throw new UnavailableError(`bus closed; cannot subscribe to ${subject}`);
    // Subjects come from configuration (node names), so a bad one is a startup error.
    if (!validSubject(subject, true)) throw new ConfigError('subject', `invalid NATS subject ${JSON.stringify(subject)}`);
    const sub: Subscription = this.nc.subscribe(subject, {
      callback: (err, msg) => {
        if (err) {
          if (err instanceof PermissionViolationError) this.denied.push(subject);
          this.log.error('bus subscription error', { subject, err });
          return;
        }
        metrics().busReceived.inc();
        // nats.js calls this from its socket reader: an exception here would end the reader.
        try {
          handler(msg.data, msg.headers ? fromNatsHeaders(msg.headers) : undefined);
        } catch (e) {
          this.counts.handlerErrors++;
          this.handlerErrorLog.log('bus handler threw', { subject, err: e });
        }
      },
    });
    let active = true;
    return () => {
      if (!active) return;
      active = false;
      sub.unsubscribe(); // after close(), a no-op
    };
  }

  /**
   * Resolves once the server has processed everything this bus sent before the call, e.g. so a
   * gateway knows its subscription is live before it announces itself. Waits through an outage.
   */
  async flush(): Promise<void> {
    if (this.closing !== null) throw new UnavailableError('bus closed');
    await this.nc.flush();
    // The server answers a SUB it refuses before the PONG of a later PING.
    if (this.denied.length > 0) {
      throw new ConfigError(credentialSetting(this.opts.auth),
        `NATS refused to subscribe this credential to ${this.denied.join(', ')}: its permissions do not include it (a gateway's credential must be the one made for its IM_NODE_ID)`);
    }
  }

  /** Drains (unsubscribe, deliver what arrived, flush publishes) within drainTimeoutMs, then closes. Idempotent. */
  close(): Promise<void> {
    if (this.closing === null) this.closing = this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<'timeout'>((r) => { timer = setTimeout(() => r('timeout'), this.opts.drainTimeoutMs); });
    try {
      const drained = this.nc.drain().then(() => 'drained' as const);
      drained.catch(() => undefined); // a late failure after the timeout must not be unhandled
      if ((await Promise.race([drained, timedOut])) === 'timeout') {
        this.log.warn('nats drain timed out; closing', { drainTimeoutMs: this.opts.drainTimeoutMs });
      }
    } catch (err) {
      this.log.warn('nats drain failed; closing', { err });
    } finally {
      clearTimeout(timer);
    }
    if (!this.nc.isClosed()) await this.nc.close().catch(() => undefined);
    this.isConnected = false;
    this.log.info('nats bus closed', this.counts);
  }

  private drop(subject: string, data: Uint8Array, why: 'closed' | 'disconnected'): void {
    this.counts.dropped++;
    metrics().busDropped.inc();
    this.counts.droppedBytes += data.length;
    if (why === 'disconnected' && this.outageDropped++ === 0) {
      // One line per outage; the total goes out with the reconnect line.
      this.log.warn('bus publish dropped: disconnected and maxPendingBytes reached; clients heal by sync',
        { subject, maxPendingBytes: this.opts.maxPendingBytes });
    }
  }

  private async watchStatus(): Promise<void> {
    // The iterator ends when the connection closes.
    for await (const s of this.nc.status()) this.onStatus(s);
  }

  private onStatus(s: Status): void {
    switch (s.type) {
      case 'disconnect':
        this.isConnected = false;
        this.outageBytes = 0;
        this.outageDropped = 0;
        this.log.warn('nats disconnected; reconnecting', { server: s.server });
        break;
      case 'reconnect':
        this.isConnected = true;
        this.counts.reconnects++;
        this.log.info('nats reconnected', { server: s.server, droppedWhileDown: this.outageDropped });
        break;
      case 'ldm':
        this.log.warn('nats server entering lame duck mode', { server: s.server });
        break;
      case 'error':
        if (s.error instanceof PermissionViolationError && s.error.operation === 'publish') {
          // A subject this credential may not publish to: the message is gone, as a bad subject's is.
          this.counts.publishErrors++;
          this.publishErrorLog.log('bus publish denied by NATS permissions', { subject: s.error.subject });
        } else {
          this.log.error('nats async error', { err: s.error });
        }
        break;
      case 'reconnecting':
        this.log.debug('nats dialing', { server: this.nc.getServer() });
        break;
      default:
        break;
    }
  }
}

/** The setting to name when NATS refuses this process's credential. */
function credentialSetting(auth: NatsAuthConfig | undefined): string {
  return auth?.credentials?.kind === 'nkey' ? 'IM_NATS_NKEY_SEED_FILE' : 'IM_NATS_USER';
}

/**
 * How nats.js says TLS was asked for and the server has none; it has no error class or code of its
 * own (a ConnectionError or InvalidArgumentError), so the message is all there is.
 */
const NO_TLS = /does not support 'tls'|'tls' is not available/;

/** Node's codes for a server certificate that does not verify (chain, name, dates). */
const CERT_ERROR = /CERT|UNABLE_TO_VERIFY|SELF_SIGNED|ERR_TLS/;

/**
 * A refused credential or a server certificate that does not verify is a configuration error
 * (exit 2 naming the setting), not an outage to wait out; undefined for anything else.
 */
function refused(err: unknown, auth: NatsAuthConfig | undefined): ConfigError | undefined {
  if (err instanceof AuthorizationError) {
    const hint = auth?.credentials ? 'the server does not accept this credential'
      : 'the server requires a credential: set IM_NATS_USER and IM_NATS_PASSWORD, or IM_NATS_NKEY_SEED_FILE';
    return new ConfigError(credentialSetting(auth), `NATS authorization violation: ${hint}`);
  }
  if ((err instanceof ConnectionError || err instanceof InvalidArgumentError) && NO_TLS.test(err.message)) {
    return new ConfigError('IM_NATS_TLS_CA', 'the NATS server does not offer TLS');
  }
  if (CERT_ERROR.test(String((err as { code?: unknown } | null)?.code ?? ''))) {
    return new ConfigError('IM_NATS_TLS_CA', `the NATS server's certificate does not verify${auth?.tlsCa ? ' against this CA' : ' (set IM_NATS_TLS_CA to its CA)'}: ${(err as Error).message}`);
  }
  return undefined;
}

function toNatsHeaders(h: BusHeaders): MsgHdrs {
  const out = natsHeaders();
  for (const [k, v] of Object.entries(h)) out.set(k, v);
  return out;
}

/** First value of each header, names lower-cased (as W3C trace context names them). */
function fromNatsHeaders(h: MsgHdrs): BusHeaders {
  const out: BusHeaders = {};
  for (const [k, vs] of h) if (vs.length > 0) out[k.toLowerCase()] = vs[0];
  return out;
}
