/**
 * The gateway node's lifecycle: its listeners (TCP, TLS, WebSocket when `ws` is set: ws.ts), the
 * connections it holds, start, and the drain on stop. Business-agnostic: ops >= 100 travel to
 * logic as opaque bytes (see connection.ts). Beside it: the uid index and what the bus brings
 * for it (downlink.ts), the registration with the router (router-link.ts), and what a hot upgrade
 * may do with its connections, the UpgradeHost it exposes (upgrade-seam.ts, used by upgrade/).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import type { WebSocket } from 'ws';
import { randomBytes } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import { Bus, type BusHeaders, flushBus, gatewaySubject, kickSubject } from '../bus/bus';
import type { AppliedBatch } from '../proto/delivery';
import { ConfigError, formatHostPort, parseHostPort } from '../common/config';
import type { TokenAuth } from '../common/jwt';
import { DisconnectCode } from '../common/errors';
import { Logger, silentLogger } from '../common/log';
import { listen } from '../common/net';
import { watchGateway } from '../telemetry/hooks';
import type { GatewayStatus, RouterApi, SessionRef } from '../router/api';
import { encode, frameBytes, Op } from '../proto/wire';
import { Connection, type ConnectionContext, type ConnectionSnapshot, SNAPSHOT_VERSION } from './connection';
import { granuleFor, TimerWheel } from './timer-wheel';
import { Downlink } from './downlink';
import { RouterLink } from './router-link';
import type { UpgradeHost, UpgradeSettings } from './upgrade-seam';
import { within } from './within';
import { ConnectionLimits, positiveOption, resolveLimits } from './limits';
import { LogicClient, type LogicBackend } from './logic-client';
import { ReloadableTlsContext, type TlsFiles } from './tls';
import { defaultWsUrl, refuseWs, WsListener, wsTransport } from './ws';

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
   * (upgrade/supervisor.ts). publicAddr is then required. Default true.
   */
  listen?: boolean;
  /**
   * Hot upgrade: this process takes over a running node's connections (upgrade/handover.ts, whose
   * HandOver is made on upgradeHost before start()). Until the adoption ends it buffers the downlink
   * for connections still in transit and sends the router no session snapshot (that would drop the
   * sessions the old process still holds).
   */
  successor?: boolean;
  /** Hot upgrade bounds on the downlink items kept during the overlap (upgrade/handoff-overlap.ts). 200000 / 64 MiB. */
  maxOverlapItems?: number;
  maxOverlapBytes?: number;
  logger?: Logger;
}

/** One served connection, as the supervisor's admin status lists it. */
export interface ConnectionInfo {
  connId: string;
  uid: string;
  deviceId: string;
  state: string;
  remoteAddress: string;
  remotePort: number;
  /** Received bytes of a frame not yet complete. */
  pendingBytes: number;
  /** Came in on the TLS listener. */
  tls: boolean;
  transport: 'tcp' | 'ws';
}

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
  /** Waiting for conns to empty (allClosed). */
  private emptied: Array<() => void> = [];
  /** One timer for every connection's deadlines, and the context they all share. */
  private readonly wheel: TimerWheel;
  private readonly connContext: ConnectionContext;
  /** The uid index and what the bus brings for it. */
  private readonly downlink: Downlink;
  /** Distinguishes this process's connection ids from a previous run of the same node. */
  private readonly connPrefix = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  private connSeq = 0;
  private live = 0;
  private publicAddr = '';
  private tlsPublicAddr = '';
  private unsubscribe: (() => void) | undefined;
  /** Heartbeats (draining: true once a drain began) go on until the end of the drain. */
  private readonly link: RouterLink;
  private draining = false;
  private started = false;
  private unwatchMetrics: (() => void) | undefined;
  private stopping: Promise<void> | undefined;
  /** What a hot upgrade may do with this gateway (upgrade/handover.ts drives it). */
  readonly upgradeHost: UpgradeHost;

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
    const routerHeartbeatMs = positiveOption('routerHeartbeatMs', options.routerHeartbeatMs, 3000);
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
    const upgradeSettings: UpgradeSettings = {
      successor: options.successor === true,
      maxOverlapItems: positiveOption('maxOverlapItems', options.maxOverlapItems, 200_000),
      maxOverlapBytes: positiveOption('maxOverlapBytes', options.maxOverlapBytes, 64 * 1024 * 1024),
      drainWindowMs: this.drainWindowMs, drainTimeoutMs: this.drainTimeoutMs,
    };
    this.downlink = new Downlink({ node: options.node, bus: options.bus, logger: this.logger });
    this.link = new RouterLink({
      node: options.node, router: options.router, bus: options.bus, intervalMs: routerHeartbeatMs, logger: this.logger,
      status: () => this.status(), sessions: () => this.sessions(), hintSync: (why) => this.hintSync(why),
      holdSnapshots: upgradeSettings.successor,
    });
    this.upgradeHost = this.makeUpgradeHost(upgradeSettings);
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

  /** Applies a delivery batch for this node handed over in the same process (embedded mode: logic/fanout.ts LocalDelivery). */
  deliverLocal(batch: AppliedBatch, headers?: BusHeaders): void {
    this.downlink.onBatch(batch, headers);
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
      this.opts.bus.subscribe(gatewaySubject(this.opts.node), (data, headers) => this.downlink.onBus(data, headers)),
      this.opts.bus.subscribe(kickSubject(this.opts.node), (data) => this.downlink.onBus(data, undefined, true)),
    ];
    this.unsubscribe = () => { for (const u of unsubs) u(); };
    // Throws (ConfigError) when NATS refused a subscription: this node would never get a push.
    await flushBus(this.opts.bus);
    this.unwatchMetrics = watchGateway(this, (g) => g.live, (g) => {
      let bytes = 0;
      for (const c of g.conns) bytes += c.socket.writableLength;
      return bytes;
    });
    this.link.start();
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
    if (this.started) await this.link.beat(this.drainTimeoutMs);
    await this.disconnectSpread(deadlineMs);
    if (!(await within(closed, this.drainTimeoutMs))) {
      for (const c of [...this.conns]) c.destroy();
      await closed;
    }
    this.link.stop();
    await this.release('gateway stopped');
  }

  /** The end of every stop: nothing more from the bus, the wheel, the metrics; the logic client this gateway made is closed. */
  private async release(what: string): Promise<void> {
    this.wheel.stop();
    this.tlsContext?.stop();
    this.unsubscribe?.();
    this.unwatchMetrics?.();
    await this.ownedLogic?.close();
    this.logger.info(what, { node: this.opts.node });
  }

  /**
   * After a hot upgrade moved the connections away: close the rest without a word to the router
   * (stop() is then this too). Connections that were already closing get their grace period.
   */
  closeAfterHandOff(): Promise<void> {
    this.stopping ??= (async () => {
      this.draining = true;
      this.link.stop();
      if (!(await within(this.allClosed(), this.limits.closeGraceMs))) for (const c of [...this.conns]) c.destroy();
      await this.release('gateway handed over');
    })();
    return this.stopping;
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
      await sleep(DRAIN_TICK_MS);
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
    this.downlink.index(conn);
    this.opts.router.bind([conn.session()]).then(
      (displaced) => this.downlink.kickDisplaced(displaced),
      (err) => this.logger.warn('router bind failed', { err, uid: conn.uid }),
    );
  }

  private onClose(conn: Connection): void {
    this.forget(conn);
    if (!conn.authenticated) return;
    this.downlink.unindex(conn);
    this.opts.router.unbind([conn.session()]).catch((err) => this.logger.warn('router unbind failed', { err, uid: conn.uid }));
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

  /** Tells every client to sync: the push path was broken, so some pushes may not have come. */
  private hintSync(why: string): void {
    let n = 0;
    for (const c of this.conns) if (c.syncHint()) n++;
    this.logger.info('sync hint sent', { why, connections: n });
  }

  /** A router heartbeat is scheduled (false once a drain or hand-off ended the loop; tests). */
  get heartbeatScheduled(): boolean {
    return this.link.scheduled;
  }

  /** Without a listener (listen: false) no server 'close' waits for the clients: this does. */
  private allClosed(): Promise<void> {
    if (this.conns.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.emptied.push(resolve));
  }

  /** Drops a connection that closed or left; the last one wakes allClosed(). */
  private forget(conn: Connection): void {
    this.conns.delete(conn);
    if (this.conns.size > 0 || this.emptied.length === 0) return;
    const waiting = this.emptied;
    this.emptied = [];
    for (const resolve of waiting) resolve();
  }

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

  /** The core's side of a hot upgrade (upgrade-seam.ts): closures over this gateway's state. */
  private makeUpgradeHost(settings: UpgradeSettings): UpgradeHost {
    return {
      settings, logger: this.logger,
      connections: () => [...this.conns],
      setDownlinkTap: (tap) => { this.downlink.tap = tap; },
      downlinkTap: () => this.downlink.tap,
      flushBus: (maxMs) => within(flushBus(this.opts.bus), maxMs),
      leaveNode: () => {
        this.link.stop();
        this.tlsContext?.stop();
      },
      disconnectSpread: (deadlineMs, among, reason) => this.disconnectSpread(deadlineMs, among, reason),
      release: (c) => {
        this.forget(c);
        this.live--;
        if (c.authenticated) this.downlink.unindex(c);
      },
      adopt: (socket, snapshot) => {
        if (snapshot?.v !== SNAPSHOT_VERSION || this.draining) {
          this.logger.warn('handed-over connection refused', { version: snapshot?.v, draining: this.draining });
          refuse(socket, this.limits.closeGraceMs);
          return undefined;
        }
        const conn = this.register(socket, snapshot.connId, snapshot);
        if (conn.authenticated) this.onAuthenticated(conn); // re-bind: same node and connId
        return conn;
      },
      endAdoption: () => this.link.endHold(),
    };
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
