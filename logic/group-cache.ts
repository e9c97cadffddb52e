/**
 * Group membership kept in memory for the send path, so a group send does not read the store.
 * Bounded (least recently used out past maxEntries); kept true by GroupSync (see its rules).
 */
import { LruMap } from '../common/lru';
import type { GroupInfo } from '../storage/store';
import { checkNumber } from '../common/options';

export class GroupCache {
  private readonly entries: LruMap<string, GroupInfo>;
  /** Bumped by every drop: a load that saw a drop while in flight is not kept (it may be older). */
  private drops = 0;

  constructor(readonly maxEntries: number) {
    checkNumber('GroupCache', 'maxEntries', maxEntries, { integer: true, min: 0 });
    this.entries = new LruMap(maxEntries);
  }

  get size(): number { return this.entries.size; }

  /** The group from memory when `usable`, else from `load` (kept for next time when still valid). */
  async get(groupId: string, usable: boolean, load: () => Promise<GroupInfo | undefined>): Promise<GroupInfo | undefined> {
    if (usable) {
      const hit = this.entries.get(groupId);
      if (hit) return hit;
    }
    const drops = this.drops;
    const group = await load();
    if (group && usable && drops === this.drops && this.maxEntries > 0) this.entries.set(groupId, group);
    return group;
  }

  drop(groupId: string): void {
    this.drops++;
    this.entries.delete(groupId);
  }
}
