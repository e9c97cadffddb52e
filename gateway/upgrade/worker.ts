/**
 * The worker side of the supervisor's IPC channel: a Gateway that does not listen (the
 * supervisor accepts and passes sockets on), and that can hand all of its connections to the
 * next worker or adopt them from the previous one (handoff-protocol.ts has the sequence).
 */
import type * as net from 'node:net';
import type { Logger } from '../../common/log';
import { isMsg, type AdoptMsg, type FromWorkerMsg, type HandedOffMsg, type HandOffMsg, type SocketMsg, type StatusRequestMsg } from './handoff-protocol';
import type { Gateway } from '../server';
import { HandOver } from './handover';

/** The IPC end of this process (`process` when forked with an IPC channel). */
export interface WorkerChannel {
  send?(message: unknown, sendHandle?: net.Socket, options?: { keepOpen?: boolean }, callback?: (err: Error | null) => void): boolean;
  on(event: 'message', listener: (msg: unknown, handle?: unknown) => void): unknown;
  on(event: 'disconnect', listener: () => void): unknown;
  readonly connected?: boolean;
}

export interface GatewayWorkerOptions {
  gateway: Gateway;
  channel: WorkerChannel;
  node: string;
  logger: Logger;
  /** Wait after the hand-over ends for late bus items (NATS cluster route lag). Default 500. */
  overlapGraceMs?: number;
  /** Hand-over done (this process should now stop) or the supervisor went away (drain and stop). */
  onFinished: (why: 'handed-off' | 'orphaned') => void;
}

/** Most connections one status reply lists. */
const MAX_STATUS_LIST = 100_000;

export class GatewayWorker {
  private readonly o: GatewayWorkerOptions;
  private readonly overlapGraceMs: number;
  private readonly handOver: HandOver;
  private handingOff = false;
  private _handedOff = false;
  private adopted = 0;

  constructor(options: GatewayWorkerOptions) {
    this.o = options;
    this.overlapGraceMs = options.overlapGraceMs ?? 500;
    this.handOver = new HandOver(options.gateway.upgradeHost);
  }

  /** True once every connection left for the next worker: stopping must not drain anything. */
  get handedOff(): boolean {
    return this._handedOff;
  }

  /** Starts taking messages and tells the supervisor this worker is ready (gateway started first). */
  attach(): void {
    this.o.channel.on('message', (msg, handle) => this.onMessage(msg, handle as net.Socket | undefined));
    // Without the supervisor no new client can reach this process, and no upgrade can end it.
    this.o.channel.on('disconnect', () => {
      if (!this._handedOff) this.o.onFinished('orphaned');
    });
    void this.send({ t: 'ready', pid: process.pid });
  }

  private onMessage(msg: unknown, socket: net.Socket | undefined): void {
    if (isMsg<SocketMsg>(msg, 'socket')) {
      if (socket) this.o.gateway.acceptSocket(socket, msg.transport === 'ws' ? 'ws' : msg.tls === true ? 'tls' : 'tcp');
    } else if (isMsg<AdoptMsg>(msg, 'adopt')) {
      this.handOver.adopt(socket, msg);
      if (socket) this.adopted++;
    } else if (isMsg(msg, 'prepare')) {
      this.handOver.prepare();
      void this.send({ t: 'prepared' });
    } else if (isMsg<HandOffMsg>(msg, 'hand-off')) {
      void this.handOff(msg.maxMs);
    } else if (isMsg<HandedOffMsg>(msg, 'handed-off')) {
      void this.complete(msg);
    } else if (isMsg(msg, 'abort')) {
      this.handOver.abort();
    } else if (isMsg<StatusRequestMsg>(msg, 'status')) {
      const limit = Math.min(Math.max(0, Math.floor(msg.limit) || 0), MAX_STATUS_LIST);
      void this.send({
        t: 'status', id: msg.id, pid: process.pid, node: this.o.node,
        connections: this.o.gateway.connectionCount, list: this.o.gateway.describeConnections(limit),
      });
    }
  }

  private async handOff(maxMs: number): Promise<void> {
    if (this.handingOff) return;
    this.handingOff = true;
    this.o.logger.info('handing connections over', { connections: this.o.gateway.connectionCount });
    const r = await this.handOver.handOff((msg, socket) => new Promise<void>((resolve, reject) => {
      const send = this.o.channel.send;
      if (!send || !this.o.channel.connected) { reject(new Error('no supervisor channel')); return; }
      send.call(this.o.channel, msg, socket, {}, (err) => (err ? reject(err) : resolve()));
    }), maxMs);
    this._handedOff = true;
    this.o.logger.info('connections handed over', { ...r });
    // On the channel before this process starts closing (it exits soon after).
    await this.send({ t: 'handed-off', handedOver: r.handedOver, dropped: r.dropped, reconnected: r.reconnected });
    this.o.onFinished('handed-off');
  }

  private async complete(msg: HandedOffMsg): Promise<void> {
    await this.handOver.complete(this.overlapGraceMs);
    this.o.logger.info('hand-over complete', {
      adopted: this.adopted, handedOver: msg.handedOver, dropped: msg.dropped, reconnected: msg.reconnected ?? 0,
      predecessorDied: msg.predecessorDied ?? false,
    });
    await this.send({ t: 'complete', adopted: this.adopted });
  }

  private send(msg: FromWorkerMsg): Promise<void> {
    return new Promise((resolve) => {
      const send = this.o.channel.send;
      if (!send || !this.o.channel.connected) { resolve(); return; }
      send.call(this.o.channel, msg, undefined, {}, (err) => {
        if (err) this.o.logger.warn('supervisor channel write failed', { err, t: msg.t });
        resolve();
      });
    });
  }
}
