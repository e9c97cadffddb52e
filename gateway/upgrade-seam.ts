/**
 * The one seam between the gateway core and its hot upgrade (upgrade/). The core knows nothing of
 * supervisors, workers or the hand-off protocol: it serves connections and exposes, through
 * Gateway.upgradeHost, what an upgrade needs to take them away from it or hand them to it
 * (UpgradeHost). upgrade/ reaches the core through this file and the core's public modules
 * (connection.ts, server.ts's Gateway as a value to pass around); the core never imports upgrade/.
 *
 * Also here, because both sides use them: the tap through which the downlink passes while two
 * workers of one node overlap (upgrade/handoff-overlap.ts implements it) and the ids it tracks
 * items by.
 */
import type * as net from 'node:net';
import type { Logger } from '../common/log';
import type { Connection, ConnectionSnapshot } from './connection';

/** What the gateway's downlink calls for every item while a hand-off is being prepared or run. */
export interface DownlinkTap {
  /** Every item, before it is applied to `conns` (the uid's connections here, if any). */
  observe(uid: string, id: string, bytes: number, apply: (c: Connection) => void, conns: readonly Connection[] | undefined): void;
  /** True: the old worker already applied this item to this (adopted) connection. */
  skip(conn: Connection, id: string): boolean;
}

/** A delivery's id in the overlap ledgers: its seq is unique per uid. */
export function deliveryItemId(seq: number): string {
  return `d${seq}`;
}

/** A kick's id in the overlap ledgers. */
export function kickItemId(deviceId: string, code: number, reason: string, connId = ''): string {
  // Without a connId, the form workers of earlier releases use: ids must match across a hot upgrade.
  return connId ? `k${deviceId}/${code}/${reason}/${connId}` : `k${deviceId}/${code}/${reason}`;
}

/** Settings of a gateway that a hot upgrade reads (GatewayOptions carries them; the core only checks them). */
export interface UpgradeSettings {
  /** This process takes over a running node's connections: no session snapshot until UpgradeHost.endAdoption(). */
  readonly successor: boolean;
  /** Bounds on the downlink items kept during the overlap (upgrade/handoff-overlap.ts). */
  readonly maxOverlapItems: number;
  readonly maxOverlapBytes: number;
  /** Spread of the DRAINING sent to connections that cannot move (TLS). */
  readonly drainWindowMs: number;
  /** Bound on the bus flush that ends an adoption. */
  readonly drainTimeoutMs: number;
}

/** What the gateway core offers a hot upgrade: its connections, its downlink, its node's registration. */
export interface UpgradeHost {
  readonly settings: UpgradeSettings;
  readonly logger: Logger;
  /** Every connection held now (any state). */
  connections(): readonly Connection[];
  /** Every downlink item passes `tap` first from now on; undefined: none. */
  setDownlinkTap(tap: DownlinkTap | undefined): void;
  downlinkTap(): DownlinkTap | undefined;
  /** Resolves once every bus message sent to this process before the call has been applied (true), or after maxMs (false). */
  flushBus(maxMs: number): Promise<boolean>;
  /** Another process reports the node from now on: no more router heartbeats, no certificate reloads. */
  leaveNode(): void;
  /** Disconnect DRAINING to `among`, spread until deadlineMs (the drain's batching). */
  disconnectSpread(deadlineMs: number, among: readonly Connection[], reason: string): Promise<void>;
  /** Forget a connection that left for another process (no router unbind: it lives on, same node and connId). */
  release(conn: Connection): void;
  /**
   * Serve a connection another process handed over, bound to the router again as the same
   * session. Undefined when refused (a snapshot version this process does not know, or draining):
   * the client is told to reconnect.
   */
  adopt(socket: net.Socket, snapshot: ConnectionSnapshot): Connection | undefined;
  /** The adoption is over: the router gets this process's sessions as the node's (now, retried by heartbeats). */
  endAdoption(): Promise<void>;
}
