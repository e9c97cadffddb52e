/**
 * The gateway's downlink: its authenticated connections indexed by uid, and what arrives on the
 * node's bus subjects applied to them — pushes and deliveries written to a uid's connections
 * here, kicks (also of sessions a newer login replaced, here or through another node's kick
 * subject). During a hot upgrade a DownlinkTap (upgrade-seam.ts) sees every item first.
 */
import { Bus, BusHeaders, kickSubject } from '../bus/bus';
import { DisconnectCode } from '../common/errors';
import type { Logger } from '../common/log';
import { gatewayPush } from '../telemetry/hooks';
import type { SessionRef } from '../router/api';
import { type AppliedBatch, decodeDeliveryBatch, DeliveryBatch, encodeDeliveryBatch, Kick } from '../proto/delivery';
import { PUSH_HEAD_MAX_BYTES, pushFrameHead } from '../proto/push';
import { frameBytes, Op } from '../proto/wire';
import type { Connection } from './connection';
import { deliveryItemId, type DownlinkTap, kickItemId } from './upgrade-seam';

/** Disconnect reason of a session a newer login of its device replaced. */
export const REPLACED_REASON = 'replaced by a newer login of this device';

export interface DownlinkOptions {
  node: string;
  bus: Bus;
  logger: Logger;
}

export class Downlink {
  private readonly o: DownlinkOptions;
  /**
   * A uid's authenticated connections here. Arrays replaced on change (never mutated), so a loop
   * over one is safe while kicks close connections; a 1-element array costs a third of a Set.
   */
  private readonly byUid = new Map<string, readonly Connection[]>();
  /** During a hot upgrade the tap sees every item first (upgrade/handoff-overlap.ts); otherwise unset. */
  tap: DownlinkTap | undefined;

  constructor(options: DownlinkOptions) {
    this.o = options;
  }

  /** An authenticated connection: pushes for its uid reach it from now on. */
  index(conn: Connection): void {
    const held = this.byUid.get(conn.uid);
    // A literal and concat size their arrays exactly (a spread leaves spare capacity).
    this.byUid.set(conn.uid, held ? held.concat(conn) : [conn]);
  }

  /**
   * A newer login of the same uid and device id replaced these sessions (the router decided, so
   * of two logins at once exactly one survives): KICKED, here if this node holds the connection,
   * else by a kick on its node's bus subject.
   */
  kickDisplaced(displaced: SessionRef[]): void {
    for (const d of displaced) {
      const kick = { uid: d.uid, deviceId: d.deviceId, connId: d.connId, code: DisconnectCode.KICKED, reason: REPLACED_REASON };
      if (d.node === this.o.node) {
        for (const c of [...(this.byUid.get(d.uid) ?? [])]) this.kickOne(kick, c);
      } else {
        this.o.bus.publish(kickSubject(d.node), encodeDeliveryBatch({ kicks: [kick] }));
      }
    }
  }

  /** Applies a kick to one of its uid's connections: every device, one device, or one connection. */
  private kickOne(k: Kick, c: Connection): void {
    if (k.deviceId !== '' && k.deviceId !== c.deviceId) return;
    if (k.connId && k.connId !== c.connId) return;
    c.disconnect(k.code || DisconnectCode.KICKED, k.reason || 'kicked');
  }

  /** kicksOnly: from the kick subject, which other gateways may publish on: pushes there are ignored. */
  onBus(data: Uint8Array, headers?: BusHeaders, kicksOnly = false): void {
    let batch: DeliveryBatch;
    try {
      batch = decodeDeliveryBatch(data);
    } catch (err) {
      this.o.logger.warn('undecodable delivery batch dropped', { err, bytes: data.length });
      return;
    }
    this.onBatch(batch, headers, kicksOnly);
  }

  /**
   * Applies a delivery batch: from the bus (onBus), or handed over as is by logic in the same
   * process (embedded mode: nothing to encode, copy or decode; logic/fanout.ts LocalDelivery).
   */
  onBatch(batch: AppliedBatch, headers?: BusHeaders, kicksOnly = false): void {
    if (kicksOnly && (batch.pushes.length > 0 || batch.deliveries.length > 0)) {
      this.o.logger.warn('pushes on the kick subject ignored', { pushes: batch.pushes.length, deliveries: batch.deliveries.length });
      batch = { ...batch, pushes: [], deliveries: [] };
    }
    const tap = this.tap;
    for (const p of batch.pushes) {
      // One message body, shared by every target and connection here; telemetry once per message.
      const shared = p.message;
      const span = gatewayPush(this.o.node, p, headers, p.targets.length);
      let pushed = 0;
      for (const t of p.targets) {
        const except = t.exceptConnId ?? '';
        if (tap) {
          pushed += this.pushTapped(tap, t.uid, t.seq, shared.length + PUSH_HEAD_MAX_BYTES,
            (c) => c.connId !== except && c.pushFrame(pushFrameHead(t.seq, shared.length), shared));
          continue;
        }
        // Arrays are replaced on change, never mutated: safe to loop while a write closes one.
        const set = this.byUid.get(t.uid);
        if (!set) continue; // gone since logic looked it up: the client syncs on reconnect
        // One head per uid, made on first use and shared by its connections here.
        let head: Buffer | undefined;
        for (const c of set) {
          if (c.connId !== except && c.pushFrame(head ??= pushFrameHead(t.seq, shared.length), shared)) pushed++;
        }
      }
      span.end(pushed);
    }
    for (const d of batch.deliveries) {
      const frame = frameBytes({ op: Op.PUSH, requestId: 0, body: d.message });
      const span = gatewayPush(this.o.node, d, headers, 1);
      const write = (c: Connection) => c.pushFrame(frame);
      span.end(tap ? this.pushTapped(tap, d.uid, d.seq, frame.length, write) : this.pushTo(d.uid, write));
    }
    for (const k of batch.kicks) {
      const set = this.byUid.get(k.uid);
      const id = tap ? kickItemId(k.deviceId, k.code, k.reason, k.connId) : '';
      tap?.observe(k.uid, id, 0, (c) => this.kickOne(k, c), set);
      if (!set) continue;
      for (const c of [...set]) if (!tap?.skip(c, id)) this.kickOne(k, c);
    }
  }

  /** Writes one uid's push to each of its connections here; returns how many took it. */
  private pushTo(uid: string, write: (c: Connection) => boolean): number {
    const set = this.byUid.get(uid);
    let pushed = 0;
    if (set) for (const c of set) if (write(c)) pushed++;
    return pushed;
  }

  /** pushTo during a hot upgrade: the tap sees the item first and skips connections the old worker already served. */
  private pushTapped(tap: DownlinkTap, uid: string, seq: number, bytes: number, write: (c: Connection) => boolean): number {
    const set = this.byUid.get(uid);
    const id = deliveryItemId(seq);
    tap.observe(uid, id, bytes, (c) => { write(c); }, set);
    let pushed = 0;
    if (set) for (const c of set) if (!tap.skip(c, id) && write(c)) pushed++;
    return pushed;
  }

  unindex(conn: Connection): void {
    const rest = this.byUid.get(conn.uid)?.filter((c) => c !== conn);
    if (!rest) return;
    if (rest.length === 0) this.byUid.delete(conn.uid);
    else this.byUid.set(conn.uid, rest);
  }
}
