/**
 * The gateway supervisor: a small process with no business code that owns the gateway's listening
 * socket and runs the gateway itself in a worker process, so that the worker can be replaced —
 * by new code — without closing a single client connection (hot upgrade).
 *
 * It accepts with pauseOnConnect (never reading a byte) and passes each socket to the current
 * worker over IPC; a socket is owned by exactly one worker at a time. upgrade() (SIGHUP, or
 * POST /upgrade on the admin port) forks the next worker from the script on disk now, waits until
 * it is ready, sends it the new connections from then on, and has the old worker pass every live
 * connection — socket and state — through here to the new one before it exits. The message
 * sequence is in handoff-protocol.ts; what keeps pushes exact across it, in handoff-overlap.ts.
 */
import * as net from 'node:net';
import { formatHostPort } from '../../common/config';
import { listen } from '../../common/net';
import { Logger, silentLogger } from '../../common/log';
import type { AdoptMsg, HandedOffMsg, PreparedMsg, CompleteMsg, StatusReplyMsg } from './handoff-protocol';
import { stopReading } from '../client-socket';
import { positiveOption } from '../limits';
import { WorkerProcess } from './supervisor-worker';

/** Beyond the old worker's own per-connection bound, before a hand-off without progress counts as failed. */
const HANDOFF_STALL_MARGIN_MS = 5000;

export interface SupervisorOptions {
  host: string;
  /** 0 = ephemeral. */
  port: number;
  /** The plaintext listener on host:port; false: TLS only (`tls` required). Default true. */
  plaintext?: boolean;
  /**
   * The TLS listener. Its sockets go to the worker unread, like plaintext ones, tagged `tls`: the
   * worker runs the handshake and holds the certificate (IM_GATEWAY_TLS_CERT/KEY, re-read there).
   */
  tls?: { host: string; port: number };
  /** The WebSocket listener (IM_GATEWAY_WS_ADDR), owned here too; its sockets go to workers unread, tagged `ws`. */
  ws?: { host: string; port: number };
  /** The worker entry point, read from disk at every fork: an upgrade runs the code deployed now. */
  workerScript: string;
  /** Passed to every worker (the gateway's flags). */
  workerArgs?: readonly string[];
  /** Environment of every worker: the gateway's IM_* settings. */
  workerEnv: NodeJS.ProcessEnv;
  /** A new worker must be ready (logic stream up, bus subscribed) within this. 30000. */
  readyTimeoutMs?: number;
  /** The old worker must start recording the downlink within this. 5000. */
  prepareTimeoutMs?: number;
  /**
   * Bound on each connection's wait, paused, for its in-flight replies and unwritten bytes before
   * it moves; the hand-off as a whole fails when no connection moves for this long (plus 5 s). 15000.
   */
  handOffTimeoutMs?: number;
  /** An old worker that should exit after its hand-off is killed after this. 25000. */
  exitTimeoutMs?: number;
  /** On stop, workers drain their clients (SIGTERM) and are killed after this. 50000. */
  stopTimeoutMs?: number;
  /** Sockets accepted while no worker is ready, held for the next one; beyond it they are closed. 1024. */
  maxPendingSockets?: number;
  /** Wait before replacing a worker that died. 1000. */
  restartDelayMs?: number;
  logger?: Logger;
}

export interface WorkerRef {
  pid: number;
  generation: number;
}

export interface UpgradeResult {
  from: WorkerRef;
  to: WorkerRef;
  /** Connections the old worker passed on, and the ones it closed instead (see handoff.ts). */
  handedOver: number;
  dropped: number;
  /** TLS connections told to reconnect instead of moved (their session cannot change process). */
  reconnected: number;
  /** Connections the new worker took over. */
  adopted: number;
  tookMs: number;
}

export interface SupervisorStatus {
  pid: number;
  /** The plaintext listener ('' without one) and the TLS listener ('' without one). */
  addr: string;
  tlsAddr: string;
  upgrading: boolean;
  upgrades: number;
  restarts: number;
  /** The worker that gets new connections. */
  current: (WorkerRef & { startedAtMs: number }) | null;
  workers: Array<WorkerRef & { ready: boolean; successor: boolean }>;
}

/** An upgrade was asked for while one is running. */
export class UpgradeInProgressError extends Error {
  constructor() {
    super('an upgrade is already in progress');
    this.name = 'UpgradeInProgressError';
  }
}

/** The upgrade did not happen; the old worker keeps serving (or, if it died, a fresh one is started). */
export class UpgradeFailedError extends Error {
  constructor(message: string, options: { cause?: unknown } = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'UpgradeFailedError';
  }
}

export class GatewaySupervisor {
  private readonly o: SupervisorOptions;
  private readonly readyTimeoutMs: number;
  private readonly prepareTimeoutMs: number;
  private readonly handOffTimeoutMs: number;
  private readonly exitTimeoutMs: number;
  private readonly stopTimeoutMs: number;
  private readonly maxPendingSockets: number;
  private readonly restartDelayMs: number;
  private readonly logger: Logger;
  private readonly server: net.Server;
  private readonly tlsServer: net.Server | undefined;
  private readonly plaintext: boolean;
  private readonly wsServer: net.Server | undefined;
  /** Sockets accepted on the WebSocket listener (not yet upgraded: the worker does that). */
  private readonly wsSockets = new WeakSet<net.Socket>();
  private readonly workers = new Set<WorkerProcess>();
  /** Where an old worker's connections go during an upgrade. */
  private readonly successorOf = new Map<WorkerProcess, WorkerProcess>();
  /** Called for each connection an old worker passes on (its hand-off is making progress). */
  private readonly handOffProgress = new Map<WorkerProcess, () => void>();
  private current: WorkerProcess | undefined;
  private pending: Array<{ socket: net.Socket; tls: boolean }> = [];
  private generation = 0;
  private addr = '';
  private tlsAddr = '';
  private wsAddr = '';
  private upgrading: Promise<UpgradeResult> | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private upgrades = 0;
  private restarts = 0;
  private stopping: Promise<void> | undefined;

  constructor(options: SupervisorOptions) {
    this.o = options;
    this.readyTimeoutMs = positiveOption('readyTimeoutMs', options.readyTimeoutMs, 30_000);
    this.prepareTimeoutMs = positiveOption('prepareTimeoutMs', options.prepareTimeoutMs, 5000);
    this.handOffTimeoutMs = positiveOption('handOffTimeoutMs', options.handOffTimeoutMs, 15_000);
    this.exitTimeoutMs = positiveOption('exitTimeoutMs', options.exitTimeoutMs, 25_000);
    this.stopTimeoutMs = positiveOption('stopTimeoutMs', options.stopTimeoutMs, 50_000);
    this.maxPendingSockets = positiveOption('maxPendingSockets', options.maxPendingSockets, 1024);
    this.restartDelayMs = positiveOption('restartDelayMs', options.restartDelayMs, 1000);
    this.logger = options.logger ?? silentLogger;
    // pauseOnConnect: not one byte is read here, so nothing can be lost when the socket moves on.
    this.plaintext = options.plaintext !== false;
    if (!this.plaintext && !options.tls) throw new RangeError('a supervisor without its plaintext listener needs a tls listener');
    this.server = net.createServer({ pauseOnConnect: true }, (socket) => this.onSocket(socket, false));
    this.server.on('error', (err) => this.logger.error('listener error', { err }));
    if (options.tls) {
      this.tlsServer = net.createServer({ pauseOnConnect: true }, (socket) => this.onSocket(socket, true));
      this.tlsServer.on('error', (err) => this.logger.error('tls listener error', { err }));
    }
    if (options.ws) {
      this.wsServer = net.createServer({ pauseOnConnect: true }, (socket) => {
        this.wsSockets.add(socket);
        this.onSocket(socket, false);
      });
      this.wsServer.on('error', (err) => this.logger.error('websocket listener error', { err }));
    }
  }

  /** Listens, starts the first worker and waits until it is ready. port / tlsPort: 0 for a listener it does not run. */
  async start(): Promise<{ port: number; tlsPort: number; wsPort?: number; workerPid: number }> {
    const port = this.plaintext ? await listen(this.server, this.o.host, this.o.port) : 0;
    const tlsPort = this.tlsServer ? await listen(this.tlsServer, this.o.tls!.host, this.o.tls!.port) : 0;
    const wsPort = this.wsServer && await listen(this.wsServer, this.o.ws!.host, this.o.ws!.port);
    if (this.plaintext) this.addr = formatHostPort({ host: this.o.host, port });
    if (this.tlsServer) this.tlsAddr = formatHostPort({ host: this.o.tls!.host, port: tlsPort });
    if (wsPort !== undefined) this.wsAddr = formatHostPort({ host: this.o.ws!.host, port: wsPort });
    const first = this.spawn(false);
    if (!(await this.readyWithin(first, this.readyTimeoutMs))) {
      await first.stopWithin(this.exitTimeoutMs, 'SIGTERM');
      throw new UpgradeFailedError(`the first gateway worker was not ready within ${this.readyTimeoutMs}ms`);
    }
    this.promote(first);
    return { port, tlsPort, wsPort, workerPid: first.pid };
  }

  get address(): string {
    return this.addr;
  }

  status(): SupervisorStatus {
    const c = this.current;
    return {
      pid: process.pid, addr: this.addr, tlsAddr: this.tlsAddr, upgrading: this.upgrading !== undefined, upgrades: this.upgrades, restarts: this.restarts,
      current: c ? { pid: c.pid, generation: c.generation, startedAtMs: c.startedAtMs } : null,
      workers: [...this.workers].map((w) => ({ pid: w.pid, generation: w.generation, ready: w.isReady, successor: w.successor })),
    };
  }

  /** Every ready worker's connections (at most `limit` each), for the admin port. */
  async connections(limit: number): Promise<Array<StatusReplyMsg & { generation: number }>> {
    const ready = [...this.workers].filter((w) => w.isReady && !w.hasExited);
    const replies = await Promise.all(ready.map((w) => w.status(limit, 5000).then(
      (r) => ({ ...r, generation: w.generation }),
      () => undefined,
    )));
    return replies.filter((r): r is StatusReplyMsg & { generation: number } => r !== undefined);
  }

  /** Replaces the worker without closing a client connection. One at a time (UpgradeInProgressError). */
  upgrade(): Promise<UpgradeResult> {
    if (this.stopping) return Promise.reject(new UpgradeFailedError('the supervisor is stopping'));
    if (this.upgrading) return Promise.reject(new UpgradeInProgressError());
    const p = this.runUpgrade().finally(() => {
      this.upgrading = undefined;
      if (!this.current && !this.stopping) this.scheduleRestart();
    });
    this.upgrading = p;
    return p;
  }

  /** Idempotent and bounded: stop accepting, then every worker drains its clients (SIGTERM) and exits. */
  stop(): Promise<void> {
    this.stopping ??= this.doStop();
    return this.stopping;
  }

  private async doStop(): Promise<void> {
    if (this.restartTimer) clearTimeout(this.restartTimer);
    // Only the listeners close here: their 'close' would wait for sockets now in the workers.
    if (this.plaintext) this.server.close();
    this.tlsServer?.close();
    this.wsServer?.close();
    for (const p of this.pending.splice(0)) p.socket.destroy();
    await Promise.all([...this.workers].map((w) => w.stopWithin(this.stopTimeoutMs, 'SIGTERM')));
    this.logger.info('gateway supervisor stopped');
  }

  private async runUpgrade(): Promise<UpgradeResult> {
    const startedMs = Date.now();
    const old = this.current;
    if (!old) throw new UpgradeFailedError('no worker is serving');
    this.logger.info('upgrade: starting', { from: old.pid, generation: old.generation });
    try {
      await old.request<PreparedMsg>({ t: 'prepare' }, 'prepared', this.prepareTimeoutMs);
    } catch (err) {
      throw new UpgradeFailedError(`worker ${old.pid} did not prepare: ${(err as Error).message}`, { cause: err });
    }
    const next = this.spawn(true);
    this.successorOf.set(old, next);
    if (!(await this.readyWithin(next, this.readyTimeoutMs))) {
      this.successorOf.delete(old);
      void old.send({ t: 'abort' }).catch(() => undefined);
      // It holds no client yet, and a clean stop would tell the router the node is draining.
      next.child.kill('SIGKILL');
      throw new UpgradeFailedError(`the new worker (pid ${next.pid}) was not ready within ${this.readyTimeoutMs}ms; worker ${old.pid} keeps serving`);
    }
    // From here on the upgrade only moves forward: new connections go to the successor.
    this.promote(next);

    let handedOff: HandedOffMsg = { t: 'handed-off', handedOver: 0, dropped: 0, reconnected: 0, predecessorDied: true };
    if (!old.hasExited) {
      try {
        handedOff = await this.handOff(old);
      } catch (err) {
        this.logger.error('upgrade: old worker did not finish its hand-off; its remaining clients reconnect', { pid: old.pid, err });
        old.child.kill('SIGKILL');
      }
    }
    // After every forwarded socket on the channel (sends keep their order).
    let complete: CompleteMsg | undefined;
    try {
      complete = await next.request<CompleteMsg>(handedOff, 'complete', this.readyTimeoutMs);
    } catch (err) {
      this.logger.error('upgrade: new worker did not complete the hand-over', { pid: next.pid, err });
    }
    await old.stopWithin(this.exitTimeoutMs);
    this.successorOf.delete(old);
    this.upgrades++;
    const result: UpgradeResult = {
      from: { pid: old.pid, generation: old.generation }, to: { pid: next.pid, generation: next.generation },
      handedOver: handedOff.handedOver, dropped: handedOff.dropped, reconnected: handedOff.reconnected ?? 0, adopted: complete?.adopted ?? 0, tookMs: Date.now() - startedMs,
    };
    this.logger.info('upgrade: done', { ...result });
    return result;
  }

  /**
   * Runs the old worker's hand-off. Bounded by progress rather than in total (a big worker takes
   * a while: sockets cross the channel one at a time): each connection passing through restarts
   * the clock, and a worker that moves nothing for handOffTimeoutMs + a margin has failed.
   */
  private handOff(old: WorkerProcess): Promise<HandedOffMsg> {
    const stallMs = this.handOffTimeoutMs + HANDOFF_STALL_MARGIN_MS;
    return new Promise<HandedOffMsg>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const done = () => {
        clearTimeout(timer);
        this.handOffProgress.delete(old);
      };
      const arm = () => {
        clearTimeout(timer);
        timer = setTimeout(() => { done(); reject(new Error(`no connection moved for ${stallMs}ms`)); }, stallMs);
      };
      this.handOffProgress.set(old, arm);
      arm();
      old.request<HandedOffMsg>({ t: 'hand-off', maxMs: this.handOffTimeoutMs }, 'handed-off', Number.POSITIVE_INFINITY).then(
        (m) => { done(); resolve(m); },
        (err: unknown) => { done(); reject(err); },
      );
    });
  }

  private spawn(successor: boolean): WorkerProcess {
    const generation = ++this.generation;
    const env: NodeJS.ProcessEnv = {
      ...this.o.workerEnv,
      // Workers do not listen: they advertise the supervisor's addresses.
      IM_GATEWAY_PUBLIC_ADDR: this.o.workerEnv.IM_GATEWAY_PUBLIC_ADDR || this.addr,
      IM_GATEWAY_TLS_PUBLIC_ADDR: this.o.workerEnv.IM_GATEWAY_TLS_PUBLIC_ADDR || this.tlsAddr,
      // And the WebSocket listener's bound address, for the URL they advertise.
      ...(this.wsAddr ? { IM_GATEWAY_WS_ADDR: this.wsAddr } : {}),
      IM_GATEWAY_SUCCESSOR: successor ? '1' : '0',
      IM_GATEWAY_GENERATION: String(generation),
    };
    const w = new WorkerProcess({
      script: this.o.workerScript, args: this.o.workerArgs ?? [], env, generation, successor, logger: this.logger,
      onAdopt: (from, msg, socket) => this.forwardAdopt(from, msg, socket),
      onExit: (worker, code, signal) => this.onWorkerExit(worker, code, signal),
    });
    this.workers.add(w);
    this.logger.info('gateway worker started', { pid: w.pid, generation, successor });
    return w;
  }

  private async readyWithin(w: WorkerProcess, ms: number): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<boolean>((resolve) => { timer = setTimeout(() => resolve(false), ms); });
    const ok = await Promise.race([w.ready.then(() => true, () => false), timedOut]);
    clearTimeout(timer);
    return ok;
  }

  private promote(w: WorkerProcess): void {
    this.current = w;
    const waiting = this.pending.splice(0);
    for (const p of waiting) this.onSocket(p.socket, p.tls);
  }

  private onSocket(socket: net.Socket, tls: boolean): void {
    const w = this.current;
    if (this.stopping) {
      socket.destroy();
      return;
    }
    if (!w || !w.isReady || w.hasExited) {
      if (this.pending.length >= this.maxPendingSockets) {
        socket.destroy(); // the client retries with backoff
        return;
      }
      socket.on('error', () => undefined);
      socket.once('close', () => { this.pending = this.pending.filter((p) => p.socket !== socket); });
      this.pending.push({ socket, tls });
      return;
    }
    w.send({ t: 'socket', ...(tls ? { tls } : {}), ...(this.wsSockets.has(socket) ? { transport: 'ws' as const } : {}) }, socket).catch((err) => {
      this.logger.warn('could not pass a connection to the worker', { pid: w.pid, err });
      socket.destroy();
    });
  }

  /** An old worker's connection, on its way to the successor. Runs in the tick it arrived. */
  private forwardAdopt(from: WorkerProcess, msg: AdoptMsg, socket: net.Socket | undefined): void {
    this.handOffProgress.get(from)?.();
    if (!socket) return; // closed in transit
    // Node started reading when it wrapped the handle here; bytes read here would be lost.
    stopReading(socket);
    const to = this.successorOf.get(from);
    if (!to || to.hasExited) {
      this.logger.warn('no worker to take a handed-over connection; it is closed', { connId: msg.conn?.connId });
      socket.destroy();
      return;
    }
    to.send(msg, socket).catch((err) => {
      this.logger.warn('could not pass a handed-over connection on; it is closed', { pid: to.pid, err });
      socket.destroy();
    });
  }

  private onWorkerExit(w: WorkerProcess, code: number | null, signal: NodeJS.Signals | null): void {
    this.workers.delete(w);
    const planned = this.stopping !== undefined || (this.successorOf.has(w) && this.current !== w);
    if (planned) {
      this.logger.info('gateway worker exited', { pid: w.pid, generation: w.generation, code, signal });
      return;
    }
    this.logger.error('gateway worker died', { pid: w.pid, generation: w.generation, code, signal });
    if (w === this.current) {
      this.current = undefined;
      // During an upgrade the upgrade decides what comes next.
      if (!this.upgrading) this.scheduleRestart();
    }
  }

  private scheduleRestart(): void {
    if (this.restartTimer || this.stopping) return;
    this.restartTimer = setTimeout(() => {
      this.restartTimer = undefined;
      if (this.stopping || this.current) return;
      this.restarts++;
      const w = this.spawn(false);
      void this.readyWithin(w, this.readyTimeoutMs).then((ok) => {
        if (ok && !this.stopping && !this.current) {
          this.promote(w);
          return;
        }
        void w.stopWithin(this.exitTimeoutMs, 'SIGTERM');
        if (!this.current) this.scheduleRestart();
      });
    }, this.restartDelayMs);
  }
}
