/**
 * The gateway node: accepts TCP connections, indexes them by uid, writes the downlink that
 * arrives on its bus subject, registers sessions and its own load with the router, and drains
 * on stop. Business-agnostic: ops >= 100 travel to logic as opaque bytes (see connection.ts).
 */
import * as net from 'node:net';
import { randomBytes } from 'node:crypto';
import { Bus, gatewaySubject } from '../common/bus';
import { ConfigError, formatHostPort, parseHostPort } from '../common/config';
import { DisconnectCode } from '../common/errors';
import { Logger, silentLogger } from '../common/log';
import type { GatewayStatus, RouterApi, SessionRef } from '../router/api';
import { decodeDeliveryBatch, DeliveryBatch } from '../proto/delivery';
import { encode, frameBytes, Op } from '../proto/wire';
import { Connection } from './connection';
import { ConnectionLimits, positiveOption, resolveLimits } from './limits';
import { LogicClient } from './logic-client';

export interface GatewayOptions {
  node: string;
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** Advertised host:port; default host:boundPort. */
  publicAddr?: string;
  authSecret: string;
  /**
   * Logic: either a LogicClient the caller owns (started and closed by the caller), or
   * `logicAddresses`, from which the gateway builds, starts and closes its own. Exactly one.
   */
  logic?: LogicClient;
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
  logger?: Logger;
}

export class Gateway {
  private readonly opts: GatewayOptions;
  private readonly limits: ConnectionLimits;
  private readonly logic: LogicClient;
  private readonly ownsLogic: boolean;
  private readonly maxConnections: number;
  private readonly capacity: number;
  private readonly routerHeartbeatMs: number;
  private readonly drainTimeoutMs: number;
  private readonly logger: Logger;
  private readonly server: net.Server;
  private readonly conns = new Set<Connection>();
  private readonly byUid = new Map<string, Set<Connection>>();
  /** Distinguishes this process's connection ids from a previous run of the same node. */
  private readonly connPrefix = `${Date.now().toString(36)}${randomBytes(2).toString('hex')}`;
  private connSeq = 0;
  private live = 0;
  private publicAddr = '';
  private unsubscribe: (() => void) | undefined;
  private heartbeatTimer: NodeJS.Timeout | undefined;
  private draining = false;
  private started = false;
  private stopping: Promise<void> | undefined;

  constructor(options: GatewayOptions) {
    if (!options.node) throw new ConfigError('node', 'required');
    if (!options.authSecret) throw new ConfigError('authSecret', 'required');
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
    this.ownsLogic = !options.logic;
    this.logic = options.logic ?? new LogicClient({ addresses: options.logicAddresses!, logger: this.logger });
    this.server = net.createServer((socket) => this.onSocket(socket));
    this.server.on('error', (err) => this.logger.error('listener error', { err }));
  }

  /** Connections being served (authenticated or not; not counting ones already closing). */
  get connectionCount(): number {
    return this.live;
  }

  async start(): Promise<{ port: number }> {
    if (this.started) throw new Error('gateway already started');
    this.started = true;
    if (this.ownsLogic) this.logic.start();
    await new Promise<void>((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(this.opts.port, this.opts.host, () => {
        this.server.off('error', reject);
        resolve();
      });
    });
    const port = (this.server.address() as net.AddressInfo).port;
    this.publicAddr = this.opts.publicAddr ?? formatHostPort({ host: this.opts.host, port });
    this.unsubscribe = this.opts.bus.subscribe(gatewaySubject(this.opts.node), (data) => this.onBus(data));
    this.heartbeatLoop(true);
    this.logger.info('gateway listening', { node: this.opts.node, port, publicAddr: this.publicAddr });
    return { port };
  }

  /** Idempotent and bounded: stop accepting, report draining, disconnect everyone, close backends. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    this.draining = true;
    if (this.heartbeatTimer) clearTimeout(this.heartbeatTimer);
    const closed = new Promise<void>((resolve) => this.server.close(() => resolve()));
    if (this.started) await this.withTimeout(this.sendHeartbeat(), this.drainTimeoutMs);
    for (const c of [...this.conns]) c.disconnect(DisconnectCode.DRAINING, 'gateway is shutting down');
    if (!(await this.withTimeout(closed, this.drainTimeoutMs))) {
      for (const c of [...this.conns]) c.destroy();
      await closed;
    }
    this.unsubscribe?.();
    if (this.ownsLogic) await this.logic.close();
    this.logger.info('gateway stopped', { node: this.opts.node });
  }

  private onSocket(socket: net.Socket): void {
    if (this.draining || this.conns.size >= this.maxConnections) {
      refuse(socket, this.limits.closeGraceMs);
      return;
    }
    const conn = new Connection({
      socket, node: this.opts.node, connId: `${this.connPrefix}-${(++this.connSeq).toString(36)}`,
      authSecret: this.opts.authSecret, logic: this.logic, limits: this.limits, logger: this.logger,
      onAuthenticated: (c) => this.onAuthenticated(c),
      onClosing: () => this.live--,
      onClose: (c) => this.onClose(c),
    });
    this.conns.add(conn);
    this.live++;
  }

  private onAuthenticated(conn: Connection): void {
    let set = this.byUid.get(conn.uid);
    if (!set) this.byUid.set(conn.uid, (set = new Set()));
    set.add(conn);
    this.opts.router.bind([conn.session()]).catch((err) => this.logger.warn('router bind failed', { err, uid: conn.uid }));
  }

  private onClose(conn: Connection): void {
    this.conns.delete(conn);
    if (!conn.authenticated) return;
    const set = this.byUid.get(conn.uid);
    if (set) {
      set.delete(conn);
      if (set.size === 0) this.byUid.delete(conn.uid);
    }
    this.opts.router.unbind([conn.session()]).catch((err) => this.logger.warn('router unbind failed', { err, uid: conn.uid }));
  }

  private onBus(data: Uint8Array): void {
    let batch: DeliveryBatch;
    try {
      batch = decodeDeliveryBatch(data);
    } catch (err) {
      this.logger.warn('undecodable delivery batch dropped', { err, bytes: data.length });
      return;
    }
    for (const d of batch.deliveries) {
      const set = this.byUid.get(d.uid);
      if (!set) continue; // gone since logic looked it up: the client syncs on reconnect
      for (const c of [...set]) c.pushMessage(d.message);
    }
    for (const k of batch.kicks) {
      const set = this.byUid.get(k.uid);
      if (!set) continue;
      for (const c of [...set]) {
        if (k.deviceId === '' || k.deviceId === c.deviceId) c.disconnect(k.code || DisconnectCode.KICKED, k.reason || 'kicked');
      }
    }
  }

  private sessions(): SessionRef[] {
    const out: SessionRef[] = [];
    for (const c of this.conns) if (c.authenticated && c.state === 'open') out.push(c.session());
    return out;
  }

  private status(): GatewayStatus {
    return {
      node: this.opts.node, addr: this.publicAddr, region: this.opts.region ?? '', zone: this.opts.zone ?? '',
      connections: this.live, capacity: this.capacity, draining: this.draining,
    };
  }

  /**
   * One heartbeat; a router that did not know this node gets the full session list. The first
   * heartbeat of a run always sends it, replacing whatever a previous run of this node left.
   */
  private async sendHeartbeat(first = false): Promise<void> {
    try {
      const reply = await this.opts.router.heartbeat(this.status());
      if ((first || !reply.known) && !this.draining) await this.opts.router.snapshot(this.opts.node, this.sessions());
    } catch (err) {
      this.logger.warn('router heartbeat failed', { err });
    }
  }

  private heartbeatLoop(first = false): void {
    if (this.draining) return;
    // Chained timeouts, not setInterval: a slow router never gets overlapping heartbeats.
    // Bounded wait, so a hung router call cannot stop the heartbeats for good.
    void this.withTimeout(this.sendHeartbeat(first), 3 * this.routerHeartbeatMs).then(() => {
      if (this.draining) return;
      this.heartbeatTimer = setTimeout(() => this.heartbeatLoop(), this.routerHeartbeatMs);
    });
  }

  private withTimeout(p: Promise<void>, ms: number): Promise<boolean> {
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), ms);
      p.then(() => { clearTimeout(timer); resolve(true); }, () => { clearTimeout(timer); resolve(true); });
    });
  }
}

/** Over capacity or draining: tell the client to go elsewhere, then close. */
function refuse(socket: net.Socket, graceMs: number): void {
  socket.on('error', () => {});
  const body = encode('Disconnect', { code: DisconnectCode.DRAINING, reason: 'gateway full or draining', reconnect: true });
  socket.end(frameBytes({ op: Op.DISCONNECT, requestId: 0, body }));
  setTimeout(() => socket.destroy(), graceMs).unref();
}
