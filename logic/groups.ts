/**
 * Group rules: who may create, add, remove, leave and list, and the member cap. Storage enforces
 * the cap atomically too; the checks here give a precise message in the common, uncontended case.
 */
import { BadRequestError, GroupFullError, GroupNotFoundError, NotGroupMemberError, NotGroupOwnerError } from '../common/errors';
import { newId } from '../common/ids';
import type { GroupInfo, Store } from '../storage/store';
import type { GroupCache } from './group-cache';
import type { GroupSync } from './group-sync';
import { requireLength, uidList } from './validate';

export interface GroupRulesOptions {
  store: Store;
  maxGroupMembers: number;
  maxUidsPerRequest: number;
  now: () => number;
  /** Membership for sends from memory, kept true across logic processes by `sync`. */
  cache: GroupCache;
  sync: GroupSync;
}

const MAX_GROUP_ID_CHARS = 128;
const MAX_GROUP_NAME_CHARS = 64;

export class GroupRules {
  constructor(private readonly opts: GroupRulesOptions) {}

  async create(actor: string, req: { name?: string; members?: string[] }): Promise<GroupInfo> {
    const name = requireLength('name', req.name, 1, MAX_GROUP_NAME_CHARS);
    if (name.trim() === '') throw new BadRequestError('name must not be blank');
    const members = uidList('members', req.members, this.opts.maxUidsPerRequest);
    const all = [...new Set([actor, ...members])];
    this.checkCap(all.length);
    const nowMs = this.opts.now();
    return this.opts.store.createGroup(
      { groupId: newId(nowMs), name, owner: actor, members: all, createdAtMs: nowMs },
      this.opts.maxGroupMembers,
    );
  }

  async add(actor: string, req: { groupId?: string; uids?: string[] }): Promise<GroupInfo> {
    const uids = uidList('uids', req.uids, this.opts.maxUidsPerRequest, { min: 1 });
    const group = await this.requireMember(actor, req.groupId);
    const current = new Set(group.members);
    const fresh = uids.filter((u) => !current.has(u));
    if (fresh.length === 0) return group;
    this.checkCap(group.members.length + fresh.length);
    return this.changed(await this.opts.store.addMembers(group.groupId, fresh, this.opts.maxGroupMembers));
  }

  /** Only the owner removes others; anyone may remove themselves (that is leaving). */
  async remove(actor: string, req: { groupId?: string; uids?: string[] }): Promise<GroupInfo> {
    const uids = uidList('uids', req.uids, this.opts.maxUidsPerRequest, { min: 1 });
    const group = await this.requireMember(actor, req.groupId);
    if (group.owner !== actor && uids.some((u) => u !== actor)) {
      throw new NotGroupOwnerError(`only the owner (${group.owner}) can remove other members of group ${group.groupId}`);
    }
    return this.removeFrom(group, uids);
  }

  async leave(actor: string, req: { groupId?: string }): Promise<GroupInfo> {
    const group = await this.requireMember(actor, req.groupId);
    return this.removeFrom(group, [actor]);
  }

  async members(actor: string, req: { groupId?: string }): Promise<GroupInfo> {
    return this.requireMember(actor, req.groupId);
  }

  /**
   * The group, if it exists. No membership check: for trusted internal callers. `cached`: from
   * memory when the cache's lease holds (sends); changes and listings always read the store.
   */
  async require(groupIdIn: unknown, cached = false): Promise<GroupInfo> {
    const groupId = requireLength('groupId', groupIdIn, 1, MAX_GROUP_ID_CHARS);
    const load = () => this.opts.store.getGroup(groupId);
    const group = cached ? await this.opts.cache.get(groupId, this.opts.sync.fresh, load) : await load();
    if (!group) throw new GroupNotFoundError(`group ${groupId} not found`);
    return group;
  }

  /** The group, if it exists and `actor` is in it. */
  async requireMember(actor: string, groupIdIn: unknown, cached = false): Promise<GroupInfo> {
    const group = await this.require(groupIdIn, cached);
    if (!group.members.includes(actor)) throw new NotGroupMemberError(`${actor} is not a member of group ${group.groupId}`);
    return group;
  }

  private async removeFrom(group: GroupInfo, uids: string[]): Promise<GroupInfo> {
    const gone = new Set(uids.filter((u) => group.members.includes(u)));
    if (gone.size === 0) return group;
    // Ownership passes to the longest-standing remaining member (members are in join order).
    const newOwner = gone.has(group.owner) ? group.members.find((m) => !gone.has(m)) : undefined;
    return this.changed(await this.opts.store.removeMembers(group.groupId, [...gone], newOwner));
  }

  /** Committed: no logic process may serve the old membership once the caller answers (group-sync.ts). */
  private async changed(group: GroupInfo): Promise<GroupInfo> {
    await this.opts.sync.changed(group.groupId);
    return group;
  }

  private checkCap(count: number): void {
    const max = this.opts.maxGroupMembers;
    if (count > max) throw new GroupFullError(`group would have ${count} members; the limit is ${max}`);
  }
}
