/**
 * Who talks to whom in a run. Users are numbered 0..N-1 (uid = prefix + number); each user has
 * at most one target — a fixed peer (pairs are symmetric) or one group — so a recipient's expected
 * messages are exactly the accepted sends of the users that target it. Pure and deterministic:
 * the coordinator and every worker build the same topology from the same spec.
 */

export const Role = { IDLE: 0, PEER: 1, GROUP: 2 } as const;

export interface TopologySpec {
  users: number;
  /** Fractions of users in 1:1 pairs and in groups; the rest are idle (connected, heartbeats only). */
  peerShare: number;
  groupShare: number;
  /** Group sizes (owner included), used in turn until the group users run out. Each 2..100. */
  groupSizes: number[];
}

export interface GroupSpec {
  owner: number;
  /** Owner first. */
  members: number[];
}

export interface Topology {
  spec: TopologySpec;
  role: Uint8Array;
  /** Peer number for PEER users, -1 otherwise. */
  peer: Int32Array;
  /** Group index for GROUP users, -1 otherwise. */
  groupOf: Int32Array;
  groups: GroupSpec[];
}

export function buildTopology(spec: TopologySpec): Topology {
  const n = spec.users;
  if (!Number.isInteger(n) || n < 1) throw new RangeError(`users must be a positive integer, got ${n}`);
  if (spec.peerShare < 0 || spec.groupShare < 0 || spec.peerShare + spec.groupShare > 1 + 1e-9) {
    throw new RangeError('peerShare and groupShare must be >= 0 and add up to at most 1');
  }
  for (const s of spec.groupSizes) if (!Number.isInteger(s) || s < 2 || s > 100) throw new RangeError(`group size must be 2..100, got ${s}`);
  const role = new Uint8Array(n);
  const peer = new Int32Array(n).fill(-1);
  const groupOf = new Int32Array(n).fill(-1);
  const groups: GroupSpec[] = [];

  let peers = Math.floor(n * spec.peerShare);
  if (peers % 2) peers--;
  let groupUsers = Math.min(n - peers, Math.round(n * spec.groupShare));
  if (spec.groupSizes.length === 0) groupUsers = 0;

  // Pairs: i with i + peers/2, so partners usually sit in different worker processes.
  const half = peers / 2;
  for (let i = 0; i < half; i++) {
    role[i] = role[i + half] = Role.PEER;
    peer[i] = i + half;
    peer[i + half] = i;
  }

  let next = peers;
  const end = peers + groupUsers;
  let k = 0;
  while (next < end) {
    let size = spec.groupSizes[k++ % spec.groupSizes.length];
    if (end - next < size) size = end - next;
    if (size < 2) break; // one user left over stays idle
    // Consecutive numbers: workers hold users round-robin, so a group spreads over all of them.
    const members: number[] = [];
    for (let j = 0; j < size; j++) members.push(next + j);
    for (const m of members) {
      role[m] = Role.GROUP;
      groupOf[m] = groups.length;
    }
    groups.push({ owner: members[0], members });
    next += size;
  }
  return { spec, role, peer, groupOf, groups };
}

/**
 * The users whose sends are pushed to `user`'s device. Not itself: a bench user has one device,
 * and the server does not push a send back to the connection that sent it.
 */
export function sendersTo(t: Topology, user: number): number[] {
  switch (t.role[user]) {
    case Role.PEER: return [t.peer[user]];
    case Role.GROUP: return t.groups[t.groupOf[user]].members.filter((m) => m !== user);
    default: return [];
  }
}

/** How many devices are pushed each send of `user` (not its own: see sendersTo). */
export function fanoutOf(t: Topology, user: number): number {
  switch (t.role[user]) {
    case Role.PEER: return 1;
    case Role.GROUP: return t.groups[t.groupOf[user]].members.length - 1;
    default: return 0;
  }
}

export function isSender(t: Topology, user: number): boolean {
  return t.role[user] !== Role.IDLE;
}

/** Users held by worker w of k: round-robin, so every worker gets a share of every role. */
export function usersOfWorker(n: number, w: number, k: number): number[] {
  const out: number[] = [];
  for (let i = w; i < n; i += k) out.push(i);
  return out;
}
