/**
 * Messages between the gateway supervisor and its workers over the child_process IPC channel
 * (JSON). A message named "+ socket" travels with a client socket handle.
 *
 * Hot upgrade, in order (old = worker N, new = worker N+1):
 *   supervisor -> old   prepare          old records which downlink items it applies from now on
 *   old -> supervisor   prepared
 *   supervisor forks new (IM_GATEWAY_SUCCESSOR=1): it subscribes to the node's bus subject and
 *                       buffers every downlink item for connections it does not hold yet
 *   new -> supervisor   ready            new client connections go to new from now on
 *   supervisor -> old   hand-off         old stops reading every plaintext socket, lets in-flight
 *                                        calls answer, then sends each connection on (TLS ones
 *                                        get Disconnect DRAINING instead and reconnect):
 *   old -> supervisor   adopt + socket   forwarded unchanged to new, which serves it
 *   old -> supervisor   handed-off       forwarded to new; old exits
 *   new -> supervisor   complete         new has ended the overlap and told the router
 */
import type { ConnectionSnapshot } from '../connection';
import type { ConnectionInfo } from '../server';

/**
 * A new client connection accepted by the supervisor (+ socket), not read yet. tls: it came in on
 * the TLS listener, and the worker runs the handshake; `transport: 'ws'`: on the WebSocket
 * listener (not yet upgraded).
 */
export interface SocketMsg { t: 'socket'; tls?: boolean; transport?: 'ws' }
export interface PrepareMsg { t: 'prepare' }
export interface PreparedMsg { t: 'prepared' }
/** To the old worker: the upgrade was called off before any connection moved; stop recording. */
export interface AbortMsg { t: 'abort' }
export interface ReadyMsg { t: 'ready'; pid: number }
export interface HandOffMsg {
  t: 'hand-off';
  /** Bound on waiting for in-flight logic calls and unwritten bytes before each socket moves. */
  maxMs: number;
}
/** One connection (+ socket; absent when the client closed it while it was in transit). */
export interface AdoptMsg {
  t: 'adopt';
  conn: ConnectionSnapshot;
  /** Ids of the downlink items the old worker already applied to this connection's uid during the overlap. */
  seen: string[];
}
export interface HandedOffMsg {
  t: 'handed-off';
  handedOver: number;
  /** Connections closed instead of moved (not reading their socket within the bound, or the send failed). */
  dropped: number;
  /** TLS connections told Disconnect DRAINING instead (a TLS session cannot change process): they reconnect. */
  reconnected?: number;
  /** The old worker died before it finished: whatever it had not sent is gone. */
  predecessorDied?: boolean;
}
export interface CompleteMsg { t: 'complete'; adopted: number }
export interface StatusRequestMsg { t: 'status'; id: number; limit: number }

export interface StatusReplyMsg {
  t: 'status';
  id: number;
  pid: number;
  node: string;
  connections: number;
  list: ConnectionInfo[];
}

export type ToWorkerMsg = SocketMsg | PrepareMsg | AbortMsg | HandOffMsg | AdoptMsg | HandedOffMsg | StatusRequestMsg;
export type FromWorkerMsg = ReadyMsg | PreparedMsg | AdoptMsg | HandedOffMsg | CompleteMsg | StatusReplyMsg;

/** Checks the discriminant only: both ends are this codebase, possibly one release apart. */
export function isMsg<T extends { t: string }>(m: unknown, t: T['t']): m is T {
  return typeof m === 'object' && m !== null && (m as { t?: unknown }).t === t;
}
