/**
 * Groups in Cassandra: one partition per group, static columns for the group itself (name, owner,
 * version, member_count, next_join) and one clustering row per member. Every change is a
 * conditional batch on that one partition guarded by `IF version = <read>`: the cap check, the
 * member rows and the version bump commit together or not at all, so concurrent adds from any
 * number of processes can never push a group past maxMembers. Within this process, changes to one
 * group are queued so they do not waste Paxos rounds racing each other.
 *
 * A conditional write whose outcome is unknown (timed out under contention, connection lost) is
 * not reported as a failure: the next serial read shows whether it applied, and every change is
 * planned from what that read finds, so a change that applied finds nothing left to do (its
 * members are in, or out) and returns the group as it is. Without this a caller got TIMEOUT for
 * an add that had happened, and a create retried after one got "already exists".
 */
import type { Client } from 'cassandra-driver';
import { BadRequestError, GroupFullError, GroupNotFoundError, UnavailableError } from '../../common/errors';
import type { GroupInfo } from '../store';
import { backoffMs, casOutcomeUnknown, KeyedMutex, num, serialReadTimedOut, sleep } from './util';

export interface GroupsOptions {
  client: Client;
  keyspace: string;
  serialConsistency: number;
  maxCasAttempts: number;
}

interface Snapshot {
  info: GroupInfo;
  version: number;
  nextJoin: number;
}

export class Groups {
  private readonly mutex = new KeyedMutex();
  private readonly q: { create: string; member: string; bump: string; bumpOwner: string; remove: string; read: string };

  constructor(private readonly o: GroupsOptions) {
    const t = `${o.keyspace}.groups`;
    this.q = {
      create: `UPDATE ${t} SET name = ?, owner = ?, created_at_ms = ?, version = 1, member_count = ?, next_join = ?
               WHERE group_id = ? IF version = null`,
      member: `INSERT INTO ${t} (group_id, uid, join_order) VALUES (?, ?, ?)`,
      bump: `UPDATE ${t} SET version = ?, member_count = ?, next_join = ? WHERE group_id = ? IF version = ?`,
      bumpOwner: `UPDATE ${t} SET version = ?, member_count = ?, next_join = ?, owner = ? WHERE group_id = ? IF version = ?`,
      remove: `DELETE FROM ${t} WHERE group_id = ? AND uid = ?`,
      read: `SELECT uid, join_order, name, owner, created_at_ms, version, next_join FROM ${t} WHERE group_id = ?`,
    };
  }

  async create(group: GroupInfo, members: string[]): Promise<GroupInfo> {
    const created = { groupId: group.groupId, name: group.name, owner: group.owner, members, createdAtMs: group.createdAtMs };
    const stmts = [
      { query: this.q.create, params: [group.name, group.owner, group.createdAtMs, members.length, members.length + 1, group.groupId] },
      ...members.map((uid, i) => ({ query: this.q.member, params: [group.groupId, uid, i + 1] })),
    ];
    for (let attempt = 1; ; attempt++) {
      let applied: boolean;
      try {
        applied = (await this.o.client.batch(stmts, { prepare: true })).first()?.['[applied]'] === true;
      } catch (err) {
        if (!casOutcomeUnknown(err) || attempt >= this.o.maxCasAttempts) throw err;
        // Ours if the group now reads exactly as this create would have made it; absent: try again.
        const s = await this.readSerialRetrying(group.groupId);
        if (!s) continue;
        if (sameGroup(s.info, created)) return created;
        throw new BadRequestError(`group ${group.groupId} already exists`);
      }
      if (!applied) throw new BadRequestError(`group ${group.groupId} already exists`);
      return created;
    }
  }

  async get(groupId: string): Promise<GroupInfo | undefined> {
    return (await this.read(groupId, false))?.info;
  }

  add(groupId: string, uids: string[], maxMembers: number): Promise<GroupInfo> {
    return this.mutex.run(groupId, () => this.change(groupId, (s) => {
      const current = new Set(s.info.members);
      const added = [...new Set(uids)].filter((u) => !current.has(u));
      if (current.size + added.length > maxMembers) {
        throw new GroupFullError(`group ${groupId} has ${current.size} members; adding ${added.length} exceeds ${maxMembers}`);
      }
      if (added.length === 0) return undefined;
      const stmts = [
        { query: this.q.bump, params: [s.version + 1, current.size + added.length, s.nextJoin + added.length, groupId, s.version] },
        ...added.map((uid, i) => ({ query: this.q.member, params: [groupId, uid, s.nextJoin + i] })),
      ];
      return { stmts, result: { ...s.info, members: [...s.info.members, ...added] } };
    }));
  }

  remove(groupId: string, uids: string[], newOwner?: string): Promise<GroupInfo> {
    return this.mutex.run(groupId, () => this.change(groupId, (s) => {
      const removing = new Set(uids);
      if (newOwner !== undefined && (removing.has(newOwner) || !s.info.members.includes(newOwner))) {
        throw new BadRequestError(`new owner ${newOwner} is not a remaining member of group ${groupId}`);
      }
      const gone = s.info.members.filter((u) => removing.has(u));
      if (gone.length === 0 && (newOwner === undefined || newOwner === s.info.owner)) return undefined;
      const members = s.info.members.filter((u) => !removing.has(u));
      const owner = newOwner ?? s.info.owner;
      const stmts = [
        { query: this.q.bumpOwner, params: [s.version + 1, members.length, s.nextJoin, owner, groupId, s.version] },
        ...gone.map((uid) => ({ query: this.q.remove, params: [groupId, uid] })),
      ];
      return { stmts, result: { ...s.info, owner, members } };
    }));
  }

  /**
   * Optimistic read-modify-write: plan from a serial read, commit IF the version is unchanged,
   * otherwise (another process changed the group) read again and re-plan.
   */
  private async change(
    groupId: string,
    plan: (s: Snapshot) => { stmts: { query: string; params: unknown[] }[]; result: GroupInfo } | undefined,
  ): Promise<GroupInfo> {
    for (let attempt = 1; attempt <= this.o.maxCasAttempts; attempt++) {
      const s = await this.readSerialRetrying(groupId);
      if (!s) throw new GroupNotFoundError(`group ${groupId} not found`);
      const p = plan(s);
      if (!p) return s.info;
      try {
        const rs = await this.o.client.batch(p.stmts, { prepare: true });
        if (rs.first()?.['[applied]'] === true) return p.result;
      } catch (err) {
        // Applied or not, the next read says; the plan then finds this change done or makes it again.
        if (!casOutcomeUnknown(err) || attempt === this.o.maxCasAttempts) throw err;
      }
      await sleep(backoffMs(attempt));
    }
    throw new UnavailableError(`group ${groupId}: still contended after ${this.o.maxCasAttempts} attempts`);
  }

  /** A serial read, read again (up to maxCasAttempts) while Paxos contention times it out. */
  private async readSerialRetrying(groupId: string): Promise<Snapshot | undefined> {
    for (let attempt = 1; ; attempt++) {
      try {
        return await this.read(groupId, true);
      } catch (err) {
        if (!serialReadTimedOut(err) || attempt >= this.o.maxCasAttempts) throw err;
        await sleep(backoffMs(attempt));
      }
    }
  }

  private async read(groupId: string, serial: boolean): Promise<Snapshot | undefined> {
    const opts = serial ? { prepare: true, consistency: this.o.serialConsistency, fetchSize: 5000 } : { prepare: true, fetchSize: 5000 };
    const rows: Record<string, unknown>[] = [];
    let pageState: string | undefined;
    do {
      const rs = await this.o.client.execute(this.q.read, [groupId], { ...opts, pageState });
      rows.push(...rs.rows);
      pageState = rs.pageState ?? undefined;
    } while (pageState);
    const first = rows[0];
    const version = num(first?.version);
    if (!first || version === null) return undefined;
    const members = rows.filter((r) => r.uid !== null && r.uid !== undefined)
      .sort((a, b) => (num(a.join_order) ?? 0) - (num(b.join_order) ?? 0))
      .map((r) => r.uid as string);
    return {
      version,
      nextJoin: num(first.next_join) ?? members.length + 1,
      info: {
        groupId, name: String(first.name ?? ''), owner: String(first.owner ?? ''),
        createdAtMs: num(first.created_at_ms) ?? 0, members,
      },
    };
  }
}

/** Same name, owner, creation time and members in the same order. */
function sameGroup(a: GroupInfo, b: GroupInfo): boolean {
  return a.name === b.name && a.owner === b.owner && a.createdAtMs === b.createdAtMs
    && a.members.length === b.members.length && a.members.every((m, i) => m === b.members[i]);
}
