/**
 * The router's state: which sessions each gateway node holds, and which gateways are alive.
 * Pure (no I/O, clock injected) so the rules are unit-testable; the gRPC and HTTP adapters
 * only translate to and from it.
 */
import { parseHostPort } from '../common/config';
import { BadRequestError, OverloadedError } from '../common/errors';
import { isValidUid } from '../common/ids';
import type { GatewayStatus, SessionRef } from './api';
import { compileNumbers } from '../common/options';

export interface RouteTableOptions {
  /** Clock in milliseconds; injected so expiry is testable without waiting. */
  now?: () => number;
  /** A gateway not heard from for this long is dropped with all its sessions. */
  gatewayTtlMs?: number;
  /** Devices per user; binding one more evicts that user's oldest session. */
  maxSessionsPerUid?: number;
  /** Largest lookup accepted; beyond it the call is a BadRequestError. */
  maxUidsPerLookup?: number;
  /** Distinct gateway nodes tracked; a new node beyond it is refused (OverloadedError). */
  maxNodes?: number;
}

export const ROUTE_TABLE_DEFAULTS = {
  gatewayTtlMs: 10_000,
  maxSessionsPerUid: 32,
  maxUidsPerLookup: 10_000,
  maxNodes: 10_000,
} as const;

/** Identifiers other than uids are opaque, but bounded so a bad gateway cannot bloat memory. */
const MAX_ID_CHARS = 256;

export interface GatewayView extends GatewayStatus {
  lastSeenMs: number;
}

/** What the router knows about one gateway node. */
interface NodeState {
  /** connId -> session; a connection carries exactly one session. */
  sessions: Map<string, SessionRef>;
  /** Undefined until the node's first heartbeat (it may bind first, e.g. after a router restart). */
  status?: GatewayStatus;
  /** Last heartbeat, or when the node first appeared if it never sent one. */
  lastSeenMs: number;
}

export interface TableStats {
  uids: number;
  sessions: number;
  nodes: number;
  gateways: number;
}

export class RouteTable {
  private readonly now: () => number;
  private readonly gatewayTtlMs: number;
  private readonly maxSessionsPerUid: number;
  private readonly maxUidsPerLookup: number;
  private readonly maxNodes: number;
  /** uid -> (node \0 connId) -> session; Map insertion order is bind order, oldest first. */
  private readonly byUid = new Map<string, Map<string, SessionRef>>();
  private readonly nodes = new Map<string, NodeState>();
  private sessionCount = 0;

  constructor(options: RouteTableOptions = {}) {
    this.now = options.now ?? Date.now;
    ({ gatewayTtlMs: this.gatewayTtlMs, maxSessionsPerUid: this.maxSessionsPerUid, maxUidsPerLookup: this.maxUidsPerLookup,
      maxNodes: this.maxNodes } = compileNumbers('RouteTable', options, ROUTE_TABLE_DEFAULTS, { integer: true }));
  }

  /**
   * Adds sessions; rebinding a (node, connId) replaces what it held. A session of a uid and
   * device id that another connection holds replaces that one (a newer login of the device):
   * returns the sessions replaced so, which the binding gateway kicks. All-or-nothing on bad input.
   */
  bind(sessions: readonly SessionRef[]): SessionRef[] {
    const clean = sessions.map(checkSession);
    const binding = new Set(clean.map((s) => s.node));
    this.reserveNodes([...binding]);
    const displaced: SessionRef[] = [];
    for (const s of clean) {
      const older = this.deviceSession(s);
      if (older) {
        this.remove(older.node, older.connId, !binding.has(older.node));
        displaced.push({ ...older });
      }
      this.put(s, binding);
    }
    return displaced;
  }

  /** Removes sessions matched on (node, connId); unknown ones are ignored (unbind is idempotent). */
  unbind(sessions: readonly Pick<SessionRef, 'node' | 'connId'>[]): void {
    for (const s of sessions) {
      requireId('node', s.node);
      requireId('connId', s.connId);
    }
    for (const s of sessions) this.remove(s.node, s.connId);
  }

  /**
   * Replaces everything held for `node` with `sessions` (after a router or gateway restart).
   * `replace` false adds to the node's sessions (the rest of a snapshot sent in parts).
   * Displaces nothing: a snapshot restates what a node holds and says nothing about which of two
   * logins of a device is the newer one.
   */
  snapshot(node: string, sessions: readonly SessionRef[], replace = true): void {
    requireId('node', node);
    const clean = sessions.map(checkSession);
    const stray = clean.find((s) => s.node !== node);
    if (stray) throw new BadRequestError(`snapshot for node "${node}" holds a session of node "${stray.node}"`);
    this.reserveNodes([node]);
    const state = this.nodes.get(node)!;
    // replace=false: the rest of a snapshot that came in several parts.
    if (replace) for (const connId of [...state.sessions.keys()]) this.remove(node, connId, false);
    for (const s of clean) this.put(s, new Set([node]));
  }

  /** Sessions of every uid given, on live nodes; uids with none are absent. Duplicate uids are answered once. */
  lookup(uids: readonly string[]): SessionRef[] {
    if (uids.length > this.maxUidsPerLookup) {
      throw new BadRequestError(`lookup of ${uids.length} uids exceeds the limit of ${this.maxUidsPerLookup}`);
    }
    const out: SessionRef[] = [];
    // Like gateways(): a node past its TTL is dead even before the next expiry sweep removes it.
    const cutoff = this.now() - this.gatewayTtlMs;
    for (const uid of new Set(uids)) {
      const held = this.byUid.get(uid);
      if (!held) continue;
      for (const s of held.values()) if (this.nodes.get(s.node)!.lastSeenMs >= cutoff) out.push({ ...s });
    }
    return out;
  }

  /** Records a gateway's status. known=false: the router had no status for it, so it should snapshot. */
  heartbeat(status: GatewayStatus): { known: boolean } {
    const clean = checkStatus(status);
    this.reserveNodes([clean.node]);
    const state = this.nodes.get(clean.node)!;
    const known = state.status !== undefined;
    state.status = clean;
    state.lastSeenMs = this.now();
    return { known };
  }

  /** Drops gateways not heard from within gatewayTtlMs, with their sessions. Returns their nodes. */
  expire(): string[] {
    const cutoff = this.now() - this.gatewayTtlMs;
    const dropped: string[] = [];
    for (const [node, state] of this.nodes) {
      if (state.lastSeenMs >= cutoff) continue;
      for (const connId of [...state.sessions.keys()]) this.remove(node, connId, false);
      this.nodes.delete(node);
      dropped.push(node);
    }
    return dropped;
  }

  /** Live, non-draining gateways in node id order; the route API ranks them per client (rank.ts). */
  gateways(): GatewayView[] {
    const cutoff = this.now() - this.gatewayTtlMs;
    const live: GatewayView[] = [];
    for (const state of this.nodes.values()) {
      // Checked here too: a dead gateway must not be offered between two expiry sweeps.
      if (!state.status || state.status.draining || state.lastSeenMs < cutoff) continue;
      live.push({ ...state.status, lastSeenMs: state.lastSeenMs });
    }
    return live.sort((a, b) => (a.node < b.node ? -1 : a.node > b.node ? 1 : 0));
  }

  stats(): TableStats {
    let gateways = 0;
    for (const state of this.nodes.values()) if (state.status) gateways++;
    return { uids: this.byUid.size, sessions: this.sessionCount, nodes: this.nodes.size, gateways };
  }

  /** Creates node entries, refusing the whole call if that would exceed maxNodes. */
  private reserveNodes(nodes: readonly string[]): void {
    const fresh = new Set(nodes.filter((n) => !this.nodes.has(n)));
    if (fresh.size === 0) return;
    if (this.nodes.size + fresh.size > this.maxNodes) {
      throw new OverloadedError(`router tracks ${this.nodes.size} nodes; limit is ${this.maxNodes}`);
    }
    const now = this.now();
    for (const node of fresh) this.nodes.set(node, { sessions: new Map(), lastSeenMs: now });
  }

  /** Another connection's session of the same uid and (non-empty) device id, if any. */
  private deviceSession(s: SessionRef): SessionRef | undefined {
    if (s.deviceId === '') return undefined;
    const held = this.byUid.get(s.uid);
    if (!held) return undefined;
    for (const o of held.values()) {
      if (o.deviceId === s.deviceId && (o.node !== s.node || o.connId !== s.connId)) return o;
    }
    return undefined;
  }

  /** `binding`: the nodes this call adds to, whose entries stay even if an eviction empties them. */
  private put(s: SessionRef, binding: ReadonlySet<string>): void {
    const state = this.nodes.get(s.node)!;
    // A connection holds one session: rebinding it (even to another uid) replaces the old one.
    if (state.sessions.has(s.connId)) this.remove(s.node, s.connId, false);
    let held = this.byUid.get(s.uid);
    if (!held) this.byUid.set(s.uid, (held = new Map()));
    if (held.size >= this.maxSessionsPerUid) {
      const oldest = held.values().next().value!;
      this.remove(oldest.node, oldest.connId, !binding.has(oldest.node));
    }
    held.set(sessionKey(s.node, s.connId), s);
    state.sessions.set(s.connId, s);
    this.sessionCount++;
  }

  private remove(node: string, connId: string, dropEmptyNode = true): void {
    const state = this.nodes.get(node);
    const s = state?.sessions.get(connId);
    if (!state || !s) return;
    state.sessions.delete(connId);
    const held = this.byUid.get(s.uid)!;
    held.delete(sessionKey(node, connId));
    if (held.size === 0) this.byUid.delete(s.uid);
    this.sessionCount--;
    // A node known only through binds (no heartbeat yet) disappears with its last session.
    if (dropEmptyNode && !state.status && state.sessions.size === 0) this.nodes.delete(node);
  }
}

function sessionKey(node: string, connId: string): string {
  return `${node}\u0000${connId}`;
}


function requireId(field: string, v: unknown): string {
  if (typeof v !== 'string' || v === '') throw new BadRequestError(`${field} is required`);
  if (v.length > MAX_ID_CHARS) throw new BadRequestError(`${field} is longer than ${MAX_ID_CHARS} characters`);
  return v;
}

function checkSession(s: SessionRef): SessionRef {
  if (typeof s?.uid !== 'string' || s.uid === '') throw new BadRequestError('uid is required');
  if (!isValidUid(s.uid)) throw new BadRequestError(`invalid uid "${s.uid.slice(0, 80)}"`);
  const deviceId = s.deviceId ?? '';
  if (typeof deviceId !== 'string' || deviceId.length > MAX_ID_CHARS) throw new BadRequestError('invalid deviceId');
  // A copy, so a caller mutating its object later cannot corrupt the indexes.
  return { uid: s.uid, deviceId, node: requireId('node', s.node), connId: requireId('connId', s.connId) };
}

const MAX_WS_URL_CHARS = 512;

function isWsUrl(s: string): boolean {
  if (s.length > MAX_WS_URL_CHARS) return false;
  try {
    const u = new URL(s);
    return u.protocol === 'ws:' || u.protocol === 'wss:';
  } catch {
    return false;
  }
}

function checkStatus(g: GatewayStatus): GatewayStatus {
  const node = requireId('node', g?.node);
  const addr = (field: 'addr' | 'tlsAddr') => {
    const v = g[field] ?? '';
    if (typeof v !== 'string' || (v !== '' && !parseHostPort(v))) throw new BadRequestError(`gateway ${field} must be host:port, got "${String(v).slice(0, 80)}"`);
    return v;
  };
  const [plain, tls] = [addr('addr'), addr('tlsAddr')];
  const wsUrl = g.wsUrl ?? '';
  if (typeof wsUrl !== 'string' || (wsUrl !== '' && !isWsUrl(wsUrl))) throw new BadRequestError(`gateway wsUrl must be a ws:// or wss:// URL, got "${String(wsUrl).slice(0, 80)}"`);
  if (plain === '' && tls === '' && wsUrl === '') throw new BadRequestError('gateway addr, tlsAddr or wsUrl is required');
  const count = (field: 'connections' | 'capacity') => {
    const v = g[field];
    if (!Number.isInteger(v) || v < 0) throw new BadRequestError(`gateway ${field} must be a non-negative integer`);
    return v;
  };
  const label = (field: 'region' | 'zone') => {
    const v = g[field] ?? '';
    if (typeof v !== 'string' || v.length > MAX_ID_CHARS) throw new BadRequestError(`invalid gateway ${field}`);
    return v;
  };
  return {
    node, addr: plain, tlsAddr: tls, wsUrl, region: label('region'), zone: label('zone'),
    connections: count('connections'), capacity: count('capacity'), draining: g.draining === true,
  };
}
