/**
 * The gateway node: accepts TCP connections (and WebSocket ones when `ws` is set, ws.ts), indexes them by uid, writes the downlink that
 * arrives on its bus subject, registers sessions and its own load with the router, and drains
 * on stop. Business-agnostic: ops >= 100 travel to logic as opaque bytes (see connection.ts).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { WebSocket } from 'ws';
import { randomBytes } from 'node:crypto';
import { Bus, BusHeaders, flushBus, gatewaySubject, kickSubject } from '../bus/bus';
import { ConfigError, formatHostPort, parseHostPort } from '../common/config';
import type { TokenAuth } from '../common/jwt';
import { DisconnectCode } from '../common/errors';
import { Logger, silentLogger } from '../common/log';
import { listen } from '../common/net';
import { gatewayPush, watchGateway } from '../telemetry/hooks';
import type { GatewayStatus, RouterApi, SessionRef } from '../router/api';
import { decodeDeliveryBatch, DeliveryBatch, encodeDeliveryBatch, Kick } from '../proto/delivery';
import { PUSH_HEAD_MAX_BYTES, pushFrameHead } from '../proto/push';
import { encode, frameBytes, Op } from '../proto/wire';
import { Connection, type ConnectionContext, ConnectionSnapshot, SNAPSHOT_VERSION } from './connection';
import { granuleFor, TimerWheel } from './timer-wheel';
import { HandOffResult, HandOffSink, handOffConnections } from './handoff';
import { deliveryItemId, DownlinkTap, kickItemId, OverlapBuffer, OverlapRecord } from './handoff-overlap';
import type { AdoptMsg, ConnectionInfo } from './handoff-protocol';
import { ConnectionLimits, positiveOption, resolveLimits } from './limits';
import { LogicClient, type LogicBackend } from './logic-client';
import { ReloadableTlsContext, type TlsFiles } from './tls';

/** The TLS listener: its own address, a certificate and key re-read when their files change (tls.ts). */
export interface GatewayTlsOptions extends TlsFiles {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** Advertised as the node's tlsAddr; default host:boundPort. Required when listen is false. */
  publicAddr?: string;
  /** How often the files are checked for a change. 10000. */
  reloadIntervalMs?: number;
}
import { defaultWsUrl, refuseWs, WsListener, wsTransport } from './ws';

export interface GatewayOptions {
  node: string;
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** Advertised host:port; default host:boundPort. */
  publicAddr?: string;
  /** The plaintext listener on host:port. false: none, TLS clients only (`tls` is then required). Default true. */
  plaintext?: boolean;
  /** A TLS listener, alongside the plaintext one or instead of it. */
  tls?: GatewayTlsOptions;
  /**
   * A WebSocket listener too (ws.ts); off when absent. With listen: false the supervisor accepts
   * on it and passes sockets to acceptSocket(socket, 'ws'); `port` is then only for the URL.
   * `publicUrl`: the URL the route API lists; default ws://<publicAddr's host or host>:<port>/.
   * `tls`: wss:// only, with the TLS listener's certificate (`tls` required; reloaded with it);
   * the default URL is then wss://<tls.publicAddr's host or ...>:<port>/. With plaintext: false it
   * must be set: no client listener is plaintext then.
   */
  ws?: { host: string; port: number; publicUrl?: string; tls?: boolean };
  /** The keys and aud/iss client tokens are checked with (common/jwt). */
  auth: TokenAuth;
  /**
   * Logic: a LogicBackend the caller owns (a LogicClient, or in-process logic in embedded mode), or
   * `logicAddresses`, from which the gateway builds, starts and closes its own. Exactly one.
   */
  logic?: LogicBackend;
  logicAddresses?: string[];
  router: RouterApi;
  bus: Bus;
  maxFrameBytes?: number;
  heartbeatIntervalMs?: number;
  idleTimeoutMs?: number;
  authTimeoutMs?: number;
  maxWriteQueueBytes?: number;
  rateLimitPerSec?: number;
  rateLimitBurst?: number;
  maxPendingPerConn?: number;
  closeGraceMs?: number;
  /** Sockets held at once (including ones closing); beyond it new ones get Disconnect DRAINING. 50000. */
  maxConnections?: number;
  /** Reported to the router for load ranking. Default maxConnections. */
  capacity?: number;
  region?: string;
  zone?: string;
  routerHeartbeatMs?: number;
  /** stop() waits this long for clients to close after Disconnect DRAINING, then destroys the rest. 5000. */
  drainTimeoutMs?: number;
  /**
   * stop() spreads its Disconnect DRAINING over this window (batches DRAIN_TICK_MS apart, at least
   * one connection per batch), so a big gateway's clients reconnect elsewhere over the window rather
   * than in one storm. 30000.
   */
  drainWindowMs?: number;
  /**
   * false: no listener of its own; a supervisor accepts and passes sockets to acceptSocket()
   * (supervisor.ts). publicAddr is then required. Default true.
   */
  listen?: boolean;
  /**
   * Hot upgrade: this process takes over a running node's connections (adopt()). Until
   * completeAdoption() it buffers the downlink for connections still in transit and sends the
   * router no session snapshot (that would drop the sessions the old process still holds).
   */
  successor?: boolean;
  /** Hot upgrade bounds on the downlink items kept during the overlap (handoff-overlap.ts). 200000 / 64 MiB. */
  maxOverlapItems?: number;
  maxOverlapBytes?: number;
  logger?: Logger;
}

/** Disconnect reason of a session a newer login of its device replaced. */
export const REPLACED_REASON = 'replaced by a newer login of this device';

/** Disconnect reason of a WebSocket connection closed by a hot upgrade (TCP ones move instead). */
export const UPGRADE_REASON = 'gateway upgrading: reconnect';

/** Spacing of the DRAINING batches of a drain (see disconnectSpread). */
export const DRAIN_TICK_MS = 100;

export class Gateway {
  private readonly opts: GatewayOptions;
  private readonly limits: ConnectionLimits;
  private readonly logic: LogicBackend;
  /** The logic client this gateway made (from logicAddresses), to start and close; none when given one. */
  private readonly ownedLogic: LogicClient | undefined;
  private readonly maxConnections: number;
  private readonly capacity: number;
  private readonly routerHeartbeatMs: number;
  private readonly drainTimeoutMs: number;
  private readonly drainWindowMs: number;
  private readonly logger: Logger;
  private readonly server: net.Server;
  /** Raw TCP: each accepted socket is wrapped in a TLSSocket with the certificate current then. */
  private readonly tlsServer: net.Server | undefined;
  private readonly tlsContext: ReloadableTlsContext | undefined;
  private readonly plaintext: boolean;
  private readonly wsListener: WsListener | undefined;
  private wsUrl = '';
  private readonly conns = new Set<Connection>();
  /** One timer for every connection's deadlines, and the context they all share. */
  private readonly wheel: TimerWheel;
  private readonly connContext: ConnectionContext;
  /**
   * A uid's authenticated connections here. Arrays replaced on change (never mutated), so a loop
   * over one is safe while kicks close connections; a 1-element array costs a third of a Set.
   */
  private readonly byUid = new Map<string, readonly Connection[]>();
  /** Distinguishes this process's connection ids from a previous run of the same node. */
  private readonly connPrefix = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  private connSeq = 0;
  private live = 0;
  private publicAddr = '';
  private tlsPublicAddr = '';
  private unsubscribe: (() => void) | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private draining = false;
  /** Set at the end of the drain: heartbeats (draining: true) go on until then. */
  private drained = false;
  private started = false;
  private unwatchMetrics: (() => void) | undefined;
  private stopping: Promise<void> | undefined;
  private readonly maxOverlapItems: number;
  private tap: DownlinkTap | undefined;
  private handingOff = false;
  private awaitingAdoption: boolean;
  /** The hand-over ended: the router gets this process's sessions as the node's (retried by heartbeats until it lands). */
  private snapshotDue = false;
  /** The bus's reconnect count at the last heartbeat (a change means missed pushes). */
  private busReconnects = 0;

  constructor(options: GatewayOptions) {
    if (!options.node) throw new ConfigError('node', 'required');
    if (!options.auth?.secret && !options.auth?.keys?.size) throw new ConfigError('auth', 'a secret or keys are required');
    if (!options.router) throw new ConfigError('router', 'required');
    if (!options.bus) throw new ConfigError('bus', 'required');
    if (!!options.logic === !!options.logicAddresses) throw new ConfigError('logic', 'give exactly one of logic or logicAddresses');
    if (options.publicAddr !== undefined && !parseHostPort(options.publicAddr)) {
      throw new ConfigError('publicAddr', `expected host:port, got "${options.publicAddr}"`);
    }
    this.opts = options;
    this.logger = options.logger ?? silentLogger;
    this.limits = resolveLimits(options);
    this.maxConnections = positiveOption('maxConnections', options.maxConnections, 50_000);
    this.capacity = positiveOption('capacity', options.capacity, this.maxConnections);
    this.routerHeartbeatMs = positiveOption('routerHeartbeatMs', options.routerHeartbeatMs, 3000);
    this.drainTimeoutMs = positiveOption('drainTimeoutMs', options.drainTimeoutMs, 5000);
    this.drainWindowMs = positiveOption('drainWindowMs', options.drainWindowMs, 30_000);
    this.plaintext = options.plaintext !== false;
    if (!this.plaintext && !options.tls) throw new ConfigError('plaintext', 'false needs a tls listener: the gateway would have none');
    if (options.listen === false && this.plaintext && options.publicAddr === undefined) throw new ConfigError('publicAddr', 'required when listen is false');
    if (options.listen === false && options.tls && options.tls.publicAddr === undefined) {
      throw new ConfigError('tls.publicAddr', 'required when listen is false');
    }
    if (options.tls?.publicAddr !== undefined && !parseHostPort(options.tls.publicAddr)) {
      throw new ConfigError('tls.publicAddr', `expected host:port, got "${options.tls.publicAddr}"`);
    }
    if (options.ws?.tls && !options.tls) throw new ConfigError('ws.tls', 'needs tls (wss:// uses the TLS listener\'s certificate)');
    if (options.ws && !options.ws.tls && !this.plaintext) throw new ConfigError('ws.tls', 'required with plaintext: false (no plaintext client listener)');
    this.maxOverlapItems = positiveOption('maxOverlapItems', options.maxOverlapItems, 200_000);
    const maxOverlapBytes = positiveOption('maxOverlapBytes', options.maxOverlapBytes, 64 * 1024 * 1024);
    this.awaitingAdoption = options.successor === true;
    if (this.awaitingAdoption) this.tap = new OverlapBuffer(this.maxOverlapItems, maxOverlapBytes);
    this.ownedLogic = options.logic ? undefined : new LogicClient({ addresses: options.logicAddresses!, logger: this.logger });
    this.logic = options.logic ?? this.ownedLogic!;
    this.wheel = new TimerWheel({ granuleMs: granuleFor(Math.min(this.limits.authTimeoutMs, this.limits.idleTimeoutMs)) });
    this.connContext = {
      node: options.node, auth: options.auth, logic: this.logic, limits: this.limits, logger: this.logger, wheel: this.wheel,
      onAuthenticated: (c) => this.onAuthenticated(c),
      onClosing: () => this.live--,
      onClose: (c) => this.onClose(c),
    };
    this.server = net.createServer((socket) => this.onSocket(socket));
    this.server.on('error', (err) => this.logger.error('listener error', { err }));
    if (options.tls) {
      this.tlsContext = new ReloadableTlsContext(options.tls, { reloadIntervalMs: options.tls.reloadIntervalMs, logger: this.logger });
      this.tlsServer = net.createServer((socket) => this.onSocket(this.wrapTls(socket)));
      this.tlsServer.on('error', (err) => this.logger.error('tls listener error', { err }));
    }
    // wss:// shares the TLS listener's certificate: one context, reloaded once for both.
    this.wsListener = options.ws && new WsListener({
      maxPayload: this.limits.maxFrameBytes, handshakeTimeoutMs: this.limits.authTimeoutMs, logger: this.logger,
      tls: options.ws.tls ? this.tlsContext : undefined,
      onConnection: (socket, ws) => this.onSocket(socket, ws),
    });
  }

  /** The TLS listener's certificate (reloaded on change); undefined without TLS. For other TLS listeners of this node. */
  get tls(): ReloadableTlsContext | undefined {
    return this.tlsContext;
  }

  /**
   * Server side of TLS on an accepted TCP socket, with the certificate in use now. The handshake
   * runs inside the connection's auth deadline (IM_AUTH_TIMEOUT): a client that never completes
   * it is closed like one that never authenticates.
   */
  private wrapTls(raw: net.Socket): tls.TLSSocket {
    return new tls.TLSSocket(raw, { isServer: true, secureContext: this.tlsContext!.context });
  }

  /** Connections being served (authenticated or not; not counting ones already closing). */
  get connectionCount(): number {
    return this.live;
  }

  /** Serving and taking new clients: false before start() and from the moment stop() begins. */
  get ready(): boolean {
    return this.started && !this.draining;
  }

  /** For /readyz: ready to take clients when all are true. */
  readinessChecks(): Record<string, boolean> {
    return {
      listening: this.started && (this.opts.listen === false || ((!this.plaintext || this.server.listening) && (this.tlsServer?.listening ?? true) && (this.wsListener?.listening ?? true))),
      notDraining: !this.draining,
      logicStream: this.logic.streamsUp > 0, bus: this.opts.bus.connected,
    };
  }

  /** port: the plaintext listener's (0 without one); tlsPort / wsPort: the TLS and WebSocket listeners', when there are. */
  async start(): Promise<{ port: number; tlsPort?: number; wsPort?: number }> {
    if (this.started) throw new Error('gateway already started');
    this.started = true;
    this.ownedLogic?.start();
    let port = 0;
    let tlsPort: number | undefined;
    if (this.opts.listen !== false) {
      if (this.plaintext) port = await listen(this.server, this.opts.host, this.opts.port);
      if (this.tlsServer) tlsPort = await listen(this.tlsServer, this.opts.tls!.host, this.opts.tls!.port);
    } else {
      if (this.plaintext) port = parseHostPort(this.opts.publicAddr!)!.port;
      if (this.opts.tls) tlsPort = parseHostPort(this.opts.tls.publicAddr!)!.port;
    }
    if (this.plaintext) this.publicAddr = this.opts.publicAddr ?? formatHostPort({ host: this.opts.host, port });
    if (this.opts.tls) this.tlsPublicAddr = this.opts.tls.publicAddr ?? formatHostPort({ host: this.opts.tls.host, port: tlsPort! });
    await this.tlsContext?.start();
    const ws = this.opts.ws;
    const wsPort = ws && (this.opts.listen === false ? ws.port : await this.wsListener!.listen(ws.host, ws.port));
    // The host clients are told: for wss:// the TLS address's first (the name its certificate carries).
    const hosts = [this.opts.publicAddr, this.opts.tls?.publicAddr];
    if (ws?.tls) hosts.reverse();
    const publicAddr = hosts.find((a) => a !== undefined);
    const publicHost = publicAddr ? parseHostPort(publicAddr)!.host : ws?.host;
    if (ws) this.wsUrl = ws.publicUrl ?? defaultWsUrl(publicHost ?? ws.host, wsPort!, ws.tls === true);
    const unsubs = [
      this.opts.bus.subscribe(gatewaySubject(this.opts.node), (data, headers) => this.onBus(data, headers)),
      this.opts.bus.subscribe(kickSubject(this.opts.node), (data) => this.onBus(data, undefined, true)),
    ];
    this.unsubscribe = () => { for (const u of unsubs) u(); };
    // Throws (ConfigError) when NATS refused a subscription: this node would never get a push.
    await flushBus(this.opts.bus);
    this.unwatchMetrics = watchGateway(this, (g) => g.live, (g) => {
      let bytes = 0;
      for (const c of g.conns) bytes += c.socket.writableLength;
      return bytes;
    });
    this.heartbeatLoop(true);
    this.logger.info('gateway listening', { node: this.opts.node, port, publicAddr: this.publicAddr, tlsPort, tlsPublicAddr: this.tlsPublicAddr, wsUrl: this.wsUrl || undefined });
    return { port, tlsPort, wsPort };
  }

  /**
   * Idempotent and bounded: readiness off, stop accepting, leave the route list (draining
   * heartbeat), DRAINING to every connection spread over drainWindowMs, wait up to drainTimeoutMs
   * for the last ones to close, close backends.
   */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    const deadlineMs = Date.now() + this.drainWindowMs;
    this.draining = true;
    const closed = this.opts.listen === false ? this.allClosed() : Promise.all([
      this.plaintext ? closeServer(this.server) : undefined, this.tlsServer && closeServer(this.tlsServer), this.wsListener?.close(),
    ]).then(() => undefined);
    this.tlsContext?.stop();
    // Out of the route list before anyone is told to reconnect, so no client is sent back here.
    // The heartbeat loop goes on (draining: true) until the end of the drain: a window longer
    // than the router's TTL must not make the router forget the connections not yet moved.
    if (this.started) await this.withTimeout(this.sendHeartbeat(), this.drainTimeoutMs);
    await this.disconnectSpread(deadlineMs);
    if (!(await this.withTimeout(closed, this.drainTimeoutMs))) {
      for (const c of [...this.conns]) c.destroy();
      await closed;
    }
    this.drained = true;
    this.stopHeartbeats();
    this.unsubscribe?.();
    this.unwatchMetrics?.();
    this.wheel.stop();
    await this.ownedLogic?.close();
    this.logger.info('gateway stopped', { node: this.opts.node });
  }

  /**
   * Disconnect DRAINING to every connection, in batches DRAIN_TICK_MS apart that share what is
   * left evenly over the time left until deadlineMs (at least one connection per batch, so a small
   * gateway is done in a few ticks). Sizing each batch from the time left rather than a fixed plan
   * keeps a late timer on a loaded machine from pushing the drain past its window. Connections that
   * arrive during the drain (authenticating on an accepted socket) are picked up by later batches.
   * `among`: only those connections (a hot upgrade's TLS ones), none that arrive later.
   */
  private async disconnectSpread(deadlineMs: number, among?: readonly Connection[], reason = 'gateway is shutting down'): Promise<void> {
    for (;;) {
      const live = [...(among ?? this.conns)].filter((c) => c.state === 'open' || c.state === 'awaiting-auth');
      if (live.length === 0) return;
      const ticksLeft = Math.max(1, Math.floor((deadlineMs - Date.now()) / DRAIN_TICK_MS));
      const batch = Math.ceil(live.length / ticksLeft);
      for (const c of live.slice(0, batch)) c.disconnect(DisconnectCode.DRAINING, reason);
      if (batch >= live.length) return;
      await new Promise((r) => setTimeout(r, DRAIN_TICK_MS));
    }
  }

  /** A new client: on TCP, or `ws` once its WebSocket upgrade is done. */
  private onSocket(socket: net.Socket, ws?: WebSocket): void {
    if (this.draining || this.conns.size >= this.maxConnections) {
      if (ws) refuseWs(socket, ws, this.limits.closeGraceMs);
      else refuse(socket, this.limits.closeGraceMs);
      return;
    }
    this.register(socket, `${this.connPrefix}-${(++this.connSeq).toString(36)}`, undefined, ws);
  }

  private register(socket: net.Socket, connId: string, adopt?: ConnectionSnapshot, ws?: WebSocket): Connection {
    const conn = new Connection(this.connContext, socket, connId, adopt, ws ? wsTransport : undefined, ws);
    this.conns.add(conn);
    this.live++;
    return conn;
  }

  private onAuthenticated(conn: Connection): void {
    const held = this.byUid.get(conn.uid);
    // A literal and concat size their arrays exactly (a spread leaves spare capacity).
    this.byUid.set(conn.uid, held ? held.concat(conn) : [conn]);
    this.opts.router.bind([conn.session()]).then(
      (displaced) => this.kickDisplaced(displaced),
      (err) => this.logger.warn('router bind failed', { err, uid: conn.uid }),
    );
  }

  /**
   * A newer login of the same uid and device id replaced these sessions (the router decided, so
   * of two logins at once exactly one survives): KICKED, here if this node holds the connection,
   * else by a kick on its node's bus subject.
   */
  private kickDisplaced(displaced: SessionRef[]): void {
    for (const d of displaced) {
      const kick = { uid: d.uid, deviceId: d.deviceId, connId: d.connId, code: DisconnectCode.KICKED, reason: REPLACED_REASON };
      if (d.node === this.opts.node) {
        for (const c of [...(this.byUid.get(d.uid) ?? [])]) this.kickOne(kick, c);
      } else {
        this.opts.bus.publish(kickSubject(d.node), encodeDeliveryBatch({ kicks: [kick] }));
      }
    }
  }

  /** Applies a kick to one of its uid's connections: every device, one device, or one connection. */
  private kickOne(k: Kick, c: Connection): void {
    if (k.deviceId !== '' && k.deviceId !== c.deviceId) return;
    if (k.connId && k.connId !== c.connId) return;
    c.disconnect(k.code || DisconnectCode.KICKED, k.reason || 'kicked');
  }

  private onClose(conn: Connection): void {
    this.conns.delete(conn);
    if (!conn.authenticated) return;
    this.unindex(conn);
    this.opts.router.unbind([conn.session()]).catch((err) => this.logger.warn('router unbind failed', { err, uid: conn.uid }));
  }

  /** kicksOnly: from the kick subject, which other gateways may publish on: pushes there are ignored. */
  private onBus(data: Uint8Array, headers?: BusHeaders, kicksOnly = false): void {
    let batch: DeliveryBatch;
    try {
      batch = decodeDeliveryBatch(data);
    } catch (err) {
      this.logger.warn('undecodable delivery batch dropped', { err, bytes: data.length });
      return;
    }
    if (kicksOnly && (batch.pushes.length > 0 || batch.deliveries.length > 0)) {
      this.logger.warn('pushes on the kick subject ignored', { pushes: batch.pushes.length, deliveries: batch.deliveries.length });
      batch = { ...batch, pushes: [], deliveries: [] };
    }
    for (const p of batch.pushes) {
      const shared = p.message;
      for (const t of p.targets) {
        // One head per uid, made on first use and shared by its connections here; the body is
        // shared by every target.
        let head: Buffer | undefined;
        const write = (c: Connection) => c.pushFrame(head ??= pushFrameHead(t.seq, shared.length), shared);
        this.push(t.uid, t.seq, t.exceptConnId ?? '', shared.length + PUSH_HEAD_MAX_BYTES, write, p, headers);
      }
    }
    for (const d of batch.deliveries) {
      const frame = frameBytes({ op: Op.PUSH, requestId: 0, body: d.message });
      this.push(d.uid, d.seq, '', frame.length, (c) => c.pushFrame(frame), d, headers);
    }
    // During a hot upgrade the tap sees every item first (handoff-overlap.ts); otherwise it is unset.
    const tap = this.tap;
    for (const k of batch.kicks) {
      const set = this.byUid.get(k.uid);
      const id = tap ? kickItemId(k.deviceId, k.code, k.reason, k.connId) : '';
      tap?.observe(k.uid, id, 0, (c) => this.kickOne(k, c), set);
      if (!set) continue;
      for (const c of [...set]) if (!tap?.skip(c, id)) this.kickOne(k, c);
    }
  }

  /** Writes one uid's push (its inbox seq `seq`) to each of its connections here but `exceptConnId`. */
  private push(
    uid: string, seq: number, exceptConnId: string, bytes: number, write: (c: Connection) => boolean,
    telemetry: { traceParent?: string; sentAtMs?: number }, headers: BusHeaders | undefined,
  ): void {
    const set = this.byUid.get(uid);
    const tap = this.tap;
    const id = tap ? deliveryItemId(seq) : '';
    const apply = (c: Connection): boolean => c.connId !== exceptConnId && write(c);
    tap?.observe(uid, id, bytes, (c) => { apply(c); }, set);
    if (!set) return; // gone since logic looked it up: the client syncs on reconnect
    const span = gatewayPush(this.opts.node, telemetry, headers);
    let pushed = 0;
    for (const c of [...set]) if (!tap?.skip(c, id) && apply(c)) pushed++;
    span.end(pushed);
  }

  private sessions(): SessionRef[] {
    const out: SessionRef[] = [];
    for (const c of this.conns) if (c.authenticated && c.state === 'open') out.push(c.session());
    return out;
  }

  private status(): GatewayStatus {
    return {
      node: this.opts.node, addr: this.publicAddr, tlsAddr: this.tlsPublicAddr, region: this.opts.region ?? '', zone: this.opts.zone ?? '',
      connections: this.live, capacity: this.capacity, draining: this.draining, wsUrl: this.wsUrl,
    };
  }

  /**
   * One heartbeat; a router that did not know this node gets the full session list. The first
   * heartbeat of a run always sends it, replacing whatever a previous run of this node left.
   */
  private async sendHeartbeat(first = false): Promise<void> {
    // The bus came back since the last beat: pushes published meanwhile never arrived.
    const reconnects = this.opts.bus.reconnects;
    if (reconnects !== this.busReconnects) this.hintSync('bus reconnected');
    this.busReconnects = reconnects;
    try {
      const reply = await this.opts.router.heartbeat(this.status());
      if ((first || !reply.known || this.snapshotDue) && !this.drained && !this.awaitingAdoption) {
        await this.opts.router.snapshot(this.opts.node, this.sessions());
        this.snapshotDue = false;
        // A router that had forgotten this node sent its pushes nowhere until now.
        if (!first && !reply.known) this.hintSync('router re-registered');
      }
    } catch (err) {
      this.logger.warn('router heartbeat failed', { err });
    }
  }

  /** Tells every client to sync: the push path was broken, so some pushes may not have come. */
  private hintSync(why: string): void {
    let n = 0;
    for (const c of this.conns) if (c.syncHint()) n++;
    this.logger.info('sync hint sent', { why, connections: n });
  }

  /** A router heartbeat is scheduled (false once a drain or hand-off ended the loop; tests). */
  get heartbeatScheduled(): boolean {
    return this.heartbeatTimer !== undefined;
  }

  private stopHeartbeats(): void {
    clearTimeout(this.heartbeatTimer);
    this.heartbeatTimer = undefined;
  }

  private heartbeatLoop(first = false): void {
    this.heartbeatTimer = undefined;
    if (this.drained || this.handingOff) return;
    // Chained timeouts, not setInterval: a slow router never gets overlapping heartbeats.
    // Bounded wait, so a hung router call cannot stop the heartbeats for good.
    void this.withTimeout(this.sendHeartbeat(first), 3 * this.routerHeartbeatMs).then(() => {
      if (this.drained || this.handingOff) return;
      this.heartbeatTimer = setTimeout(() => this.heartbeatLoop(), this.routerHeartbeatMs);
    });
  }

  private unindex(conn: Connection): void {
    const rest = this.byUid.get(conn.uid)?.filter((c) => c !== conn);
    if (!rest) return;
    if (rest.length === 0) this.byUid.delete(conn.uid);
    else this.byUid.set(conn.uid, rest);
  }

  /** Without a listener (listen: false) no server 'close' waits for the clients: this does. */
  private async allClosed(): Promise<void> {
    while (this.conns.size > 0) await new Promise((r) => setTimeout(r, 20));
  }

  // --- hot upgrade (supervisor.ts runs it; handoff.ts, handoff-overlap.ts) ---

  /**
   * A socket accepted elsewhere (the supervisor's listeners), served like one this gateway
   * accepted: `tls` says it came in on the TLS listener (this process does the handshake), `ws` on
   * the WebSocket listener (this process does the upgrade).
   */
  acceptSocket(socket: net.Socket, kind: 'tcp' | 'tls' | 'ws' = 'tcp'): void {
    const runs = kind === 'tls' ? this.tlsContext !== undefined : kind === 'ws' ? this.wsListener !== undefined : this.plaintext;
    if (!runs) {
      this.logger.warn('connection for a listener this gateway does not run (supervisor and worker settings differ); closed', { kind });
      socket.destroy();
      return;
    }
    if (kind === 'ws') this.wsListener!.accept(socket);
    else this.onSocket(kind === 'tls' ? this.wrapTls(socket) : socket);
  }

  /** Old worker: record the downlink from now on; the successor subscribes next. */
  prepareHandOff(): void {
    if (!this.tap && !this.handingOff) this.tap = new OverlapRecord(this.maxOverlapItems);
  }

  /** Old worker: the upgrade was called off before any connection moved. */
  abortHandOff(): void {
    if (this.tap instanceof OverlapRecord && !this.handingOff) this.tap = undefined;
  }

  /**
   * Old worker: stop heartbeating (the successor reports the node now) and move every plaintext
   * TCP connection. A TLS connection cannot move: its session keys live in this process's OpenSSL
   * state, which no fd passing carries. Each gets Disconnect DRAINING (spread over
   * min(drainWindowMs, maxMs)) and reconnects, to the new worker through the same listener.
   * WebSocket connections are not moved either (the ws library's state cannot be exported): they
   * get Disconnect DRAINING (close code 3000) at once and reconnect to the successor
   * (docs/operations.md "Hot upgrade"). `reconnected` counts both.
   */
  async handOff(sink: HandOffSink, maxMs: number): Promise<HandOffResult & { reconnected: number }> {
    this.handingOff = true;
    this.stopHeartbeats();
    this.tlsContext?.stop();
    const plain: Connection[] = [];
    const secure: Connection[] = [];
    let websockets = 0;
    for (const c of [...this.conns]) {
      if (c.transport.name !== 'tcp') {
        websockets++;
        c.disconnect(DisconnectCode.DRAINING, UPGRADE_REASON);
      } else (c.socket instanceof tls.TLSSocket ? secure : plain).push(c);
    }
    const reconnect = this.disconnectSpread(Date.now() + Math.min(this.drainWindowMs, maxMs), secure, 'gateway is upgrading; reconnect (a TLS session cannot move to the new process)');
    const moved = await handOffConnections({
      conns: plain, flushBus: () => flushBus(this.opts.bus), record: this.tap instanceof OverlapRecord ? this.tap : undefined,
      sink, maxMs, logger: this.logger,
      release: (c) => {
        this.conns.delete(c);
        this.live--;
        if (c.authenticated) this.unindex(c);
      },
    });
    await reconnect;
    return { ...moved, reconnected: secure.length + websockets };
  }

  /** Old worker, after handOff(): close the rest without a word to the router (stop() is then this too). */
  closeAfterHandOff(): Promise<void> {
    this.stopping ??= (async () => {
      this.draining = true;
      // Connections that were already closing get their grace period.
      const deadline = Date.now() + this.limits.closeGraceMs;
      while (this.conns.size > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 10));
      for (const c of [...this.conns]) c.destroy();
      this.wheel.stop();
      this.tlsContext?.stop();
      this.unsubscribe?.();
      this.unwatchMetrics?.();
      await this.ownedLogic?.close();
      this.logger.info('gateway handed over', { node: this.opts.node });
    })();
    return this.stopping;
  }

  /** New worker: serve a connection the old worker handed over (socket absent: it closed in transit). */
  adopt(socket: net.Socket | undefined, msg: AdoptMsg): void {
    if (!socket) return; // completeAdoption()'s snapshot drops its router binding
    if (msg.conn?.v !== SNAPSHOT_VERSION || this.draining) {
      this.logger.warn('handed-over connection refused', { version: msg.conn?.v, draining: this.draining });
      refuse(socket, this.limits.closeGraceMs);
      return;
    }
    const conn = this.register(socket, msg.conn.connId, msg.conn);
    if (conn.authenticated) this.onAuthenticated(conn); // re-bind: same node and connId
    if (this.tap instanceof OverlapBuffer && !this.tap.adopted(conn, msg.seen)) {
      conn.disconnect(DisconnectCode.DRAINING, 'hand-over buffer overflowed; reconnect and sync');
    }
  }

  /**
   * New worker: the old one has moved everything. Once this process has surely received every
   * item the old one applied (bus flush, then `graceMs` for a NATS cluster's route lag), the
   * overlap ends and the router gets this process's sessions as the node's.
   */
  async completeAdoption(graceMs: number): Promise<void> {
    if (!this.awaitingAdoption) return;
    await this.withTimeout(flushBus(this.opts.bus), this.drainTimeoutMs);
    if (graceMs > 0) await new Promise((r) => setTimeout(r, graceMs));
    this.tap = undefined;
    this.awaitingAdoption = false;
    this.snapshotDue = true;
    await this.withTimeout(this.sendHeartbeat(), 3 * this.routerHeartbeatMs);
  }

  /** Served connections for the supervisor's admin status (at most `limit`). */
  describeConnections(limit: number): ConnectionInfo[] {
    const out: ConnectionInfo[] = [];
    for (const c of this.conns) {
      if (out.length >= limit) break;
      out.push({
        connId: c.connId, uid: c.uid, deviceId: c.deviceId, state: c.state, remoteAddress: c.socket.remoteAddress ?? '',
        remotePort: c.socket.remotePort ?? 0, pendingBytes: c.pendingBytes, tls: c.socket instanceof tls.TLSSocket, transport: c.transport.name,
      });
    }
    return out;
  }

  private withTimeout(p: Promise<void>, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      p.then(() => { clearTimeout(timer); resolve(true); }, () => { clearTimeout(timer); resolve(true); });
    });
  }
}

function closeServer(server: net.Server): Promise<void> {
  return new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Over capacity or draining: tell the client to go elsewhere, then close. */
function refuse(socket: net.Socket, graceMs: number): void {
  socket.on('error', () => {});
  const body = encode('Disconnect', { code: DisconnectCode.DRAINING, reason: 'gateway full or draining', reconnect: true });
  socket.end(frameBytes({ op: Op.DISCONNECT, requestId: 0, body }));
  setTimeout(() => socket.destroy(), graceMs).unref();
}
