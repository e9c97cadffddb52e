/**
 * What the other layers need from the router. router/client.ts implements it over gRPC (batching
 * concurrent calls into one RPC); tests and embedded mode use the same client.
 */

export interface SessionRef {
  uid: string;
  deviceId: string;
  node: string;     // gateway node id
  connId: string;   // unique within the node
}

export interface GatewayStatus {
  node: string;
  /** Public host:port of its plaintext listener; '' when it has none (TLS only). */
  addr: string;
  /** Public host:port of its TLS listener; '' (or absent, from an older gateway) when it has none. */
  tlsAddr?: string;
  /** The gateway's WebSocket URL (ws:// or wss://); '' or absent: it has no WebSocket listener. */
  wsUrl?: string;
  region: string;
  zone: string;
  connections: number;
  capacity: number;
  draining: boolean;
}

export interface HeartbeatResult {
  heartbeatIntervalMs: number;
  /** false: the router did not know this node (it restarted); send a snapshot bind. */
  known: boolean;
}

export interface RouterApi {
  /**
   * Adds sessions. Returns the sessions they displaced: another connection's session of the same
   * uid and device id (an older login of that device), which the caller kicks (KICKED).
   */
  bind(sessions: SessionRef[]): Promise<SessionRef[]>;
  unbind(sessions: SessionRef[]): Promise<void>;
  /** Replaces everything the router holds for `node` with `sessions`. */
  snapshot(node: string, sessions: SessionRef[]): Promise<void>;
  /** Sessions of every uid given (uids with none are simply absent). */
  lookup(uids: string[]): Promise<SessionRef[]>;
  heartbeat(status: GatewayStatus): Promise<HeartbeatResult>;
  close(): void;
}
