/**
 * The hot upgrade on one gateway process, on the core's UpgradeHost (../upgrade-seam.ts): the old
 * worker's side (prepare, hand off, abort) and the new worker's (adopt, complete). worker.ts calls
 * these as the supervisor's messages arrive (handoff-protocol.ts has the sequence).
 */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { setTimeout as sleep } from 'node:timers/promises';
import { DisconnectCode } from '../../common/errors';
import type { Connection } from '../connection';
import type { UpgradeHost } from '../upgrade-seam';
import { handOffConnections, type HandOffResult, type HandOffSink } from './handoff';
import { OverlapBuffer, OverlapRecord } from './handoff-overlap';
import type { AdoptMsg } from './handoff-protocol';

/** Disconnect reason of a WebSocket connection closed by a hot upgrade (TCP ones move instead). */
export const UPGRADE_REASON = 'gateway upgrading: reconnect';

export class HandOver {
  private readonly host: UpgradeHost;
  private handingOff = false;
  private awaitingAdoption: boolean;

  /** Make it before the gateway starts: a successor buffers the downlink from its first bus item. */
  constructor(host: UpgradeHost) {
    this.host = host;
    const s = host.settings;
    this.awaitingAdoption = s.successor;
    if (s.successor) host.setDownlinkTap(new OverlapBuffer(s.maxOverlapItems, s.maxOverlapBytes));
  }

  /** Old worker: record the downlink from now on; the successor subscribes next. */
  prepare(): void {
    if (!this.host.downlinkTap() && !this.handingOff) this.host.setDownlinkTap(new OverlapRecord(this.host.settings.maxOverlapItems));
  }

  /** Old worker: the upgrade was called off before any connection moved. */
  abort(): void {
    if (this.host.downlinkTap() instanceof OverlapRecord && !this.handingOff) this.host.setDownlinkTap(undefined);
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
    const host = this.host;
    this.handingOff = true;
    host.leaveNode();
    const plain: Connection[] = [];
    const secure: Connection[] = [];
    let reconnectedNow = 0;
    for (const c of host.connections()) {
      if (c.transport.name !== 'tcp' || !(c.socket instanceof net.Socket)) {
        reconnectedNow++;
        c.disconnect(DisconnectCode.DRAINING, UPGRADE_REASON);
      } else (c.socket instanceof tls.TLSSocket ? secure : plain).push(c);
    }
    const reconnect = host.disconnectSpread(
      Date.now() + Math.min(host.settings.drainWindowMs, maxMs), secure,
      'gateway is upgrading; reconnect (a TLS session cannot move to the new process)',
    );
    const tap = host.downlinkTap();
    const moved = await handOffConnections({
      conns: plain, flushBus: (ms) => host.flushBus(ms), record: tap instanceof OverlapRecord ? tap : undefined,
      sink, maxMs, logger: host.logger, release: (c) => host.release(c),
    });
    await reconnect;
    return { ...moved, reconnected: secure.length + reconnectedNow };
  }

  /** New worker: serve a connection the old worker handed over (socket absent: it closed in transit). */
  adopt(socket: net.Socket | undefined, msg: AdoptMsg): void {
    if (!socket) return; // complete()'s snapshot drops its router binding
    const conn = this.host.adopt(socket, msg.conn);
    if (!conn) return;
    const tap = this.host.downlinkTap();
    if (tap instanceof OverlapBuffer && !tap.adopted(conn, msg.seen)) {
      conn.disconnect(DisconnectCode.DRAINING, 'hand-over buffer overflowed; reconnect and sync');
    }
  }

  /**
   * New worker: the old one has moved everything. Once this process has surely received every
   * item the old one applied (bus flush, then `graceMs` for a NATS cluster's route lag), the
   * overlap ends and the router gets this process's sessions as the node's.
   */
  async complete(graceMs: number): Promise<void> {
    if (!this.awaitingAdoption) return;
    await this.host.flushBus(this.host.settings.drainTimeoutMs);
    if (graceMs > 0) await sleep(graceMs);
    this.host.setDownlinkTap(undefined);
    this.awaitingAdoption = false;
    await this.host.endAdoption();
  }
}
