/**
 * Hot upgrade, old worker's side: moving every connection to the next worker without closing it.
 *
 * Per connection: stop reading (what the client sends next waits in the kernel), let its logic
 * calls answer and every reply and push reach the kernel, then take its state (including the
 * bytes of a half-received frame) and pass state and socket on. Nothing is owed to the client by
 * this process once the socket leaves, so no reply is lost and nothing is written twice.
 *
 * Bounded per connection: `maxMs` after it was paused, a connection whose socket still holds
 * unwritten bytes (the client is not reading) is disconnected as a slow consumer — bytes left
 * behind here would corrupt the stream there; one whose logic call never answered moves anyway
 * (that reply is lost; the client's request times out and is retried, and sends are idempotent).
 */
import type * as net from 'node:net';
import { DisconnectCode } from '../../common/errors';
import type { Logger } from '../../common/log';
import type { Connection } from '../connection';
import { within } from '../within';
import type { AdoptMsg } from './handoff-protocol';
import type { OverlapRecord } from './handoff-overlap';

/** Passes one connection on; resolves once the message and handle are on the channel, rejects if they cannot be. */
export type HandOffSink = (msg: AdoptMsg, socket: net.Socket) => Promise<void>;

export interface HandOffOptions {
  /** Connections on a plaintext TCP socket (a net.Socket: only those can change process). */
  conns: Iterable<Connection>;
  /** Resolves true once every bus message sent to this process before the call has been applied, false after maxMs. */
  flushBus: (maxMs: number) => Promise<boolean>;
  record: OverlapRecord | undefined;
  /** Forget a connection that left (no router unbind: it lives on, same node and connId). */
  release: (conn: Connection) => void;
  sink: HandOffSink;
  /** Per connection: how long it may wait, paused, for its replies and writes. */
  maxMs: number;
  logger: Logger;
}

export interface HandOffResult {
  handedOver: number;
  dropped: number;
  tookMs: number;
}

/**
 * Connections paused but not yet on the channel, at most. Sockets cross the IPC channel one at a
 * time (each waits for the receiver's acknowledgement), so pausing everyone up front would keep
 * the last connection waiting for the whole hand-off; this way each one waits about its own
 * move, and the rest are served here meanwhile.
 */
const WINDOW = 64;

export async function handOffConnections(o: HandOffOptions): Promise<HandOffResult> {
  const startedMs = Date.now();
  const live = (c: Connection) => c.state === 'awaiting-auth' || c.state === 'open';
  const queue = [...o.conns].filter(live); // already closing ones finish closing here
  // Items published before the successor subscribed reach this process only: apply them all
  // while every socket is still here.
  if (!(await o.flushBus(o.maxMs))) {
    o.logger.warn('hand-off: bus flush did not finish in time; a push may be missed until the client syncs');
  }

  let handedOver = 0;
  let dropped = 0;
  const move = async (c: Connection): Promise<void> => {
    const msg: AdoptMsg = { t: 'adopt', conn: c.detach(), seen: o.record?.seen(c.uid) ?? [] };
    o.release(c);
    try {
      await o.sink(msg, c.socket as net.Socket);
      handedOver++;
    } catch (err) {
      dropped++;
      o.logger.warn('hand-off: could not pass a connection on; it is closed', { connId: msg.conn.connId, err });
      c.socket.destroy();
    }
  };
  // Paused until settled (its calls answered, its writes in the kernel), for maxMs at most.
  const handOne = async (c: Connection): Promise<void> => {
    if (!live(c)) return;
    c.pauseForHandOff();
    const settled = await within(c.whenSettled(), o.maxMs);
    if (!live(c)) return; // closed meanwhile (kick, timeout)
    if (settled || c.writesDrained) {
      await move(c);
    } else {
      dropped++;
      c.disconnect(DisconnectCode.SLOW_CONSUMER, 'client is not reading');
    }
  };
  // WINDOW lanes, each taking the next connection once its last one is on the channel.
  let next = 0;
  const lane = async (): Promise<void> => {
    while (next < queue.length) await handOne(queue[next++]);
  };
  await Promise.all(Array.from({ length: Math.min(WINDOW, queue.length) }, lane));
  return { handedOver, dropped, tookMs: Date.now() - startedMs };
}
