/**
 * The downlink during a hot upgrade, when the old and the new worker of one node both subscribe
 * to the node's bus subject and so both receive every item (a delivery or a kick). A socket is
 * owned by exactly one worker at a time; these two ledgers make sure each item reaches each
 * connection once, whichever side of its move the item arrived on:
 *
 * - the old worker keeps an OverlapRecord from `prepare` on (before the new worker subscribes):
 *   per uid it holds, the ids of the items it applied. Each connection leaves with its uid's list.
 * - the new worker keeps an OverlapBuffer from its start: every item, kept until the hand-off is
 *   over. When a connection arrives, the buffered items for its uid that the old worker did not
 *   apply are applied now; later items skip what the old worker applied (the new worker can
 *   receive an item after the old one already wrote it).
 *
 * An item published before the new worker subscribed reaches the old worker only; the old worker
 * flushes its bus before moving any socket, so it has applied all of those by then.
 * Item ids (../upgrade-seam.ts): `d<seq>` for a delivery (seq is unique per uid), `k<device>/<code>/<reason>[/<connId>]` for a kick.
 */
import type { Connection } from '../connection';
import type { DownlinkTap } from '../upgrade-seam';

/** Old worker: which items it applied, per uid it holds. */
export class OverlapRecord implements DownlinkTap {
  private readonly byUid = new Map<string, string[]>();
  private count = 0;
  /** Past maxItems nothing more is recorded: the new worker may then write a push twice (the SDK drops it by seq). */
  overflowed = false;

  constructor(private readonly maxItems: number) {}

  observe(uid: string, id: string, _bytes: number, _apply: unknown, conns: readonly Connection[] | undefined): void {
    if (!conns || conns.length === 0 || this.overflowed) return;
    if (this.count >= this.maxItems) {
      this.overflowed = true;
      return;
    }
    let ids = this.byUid.get(uid);
    if (!ids) this.byUid.set(uid, (ids = []));
    ids.push(id);
    this.count++;
  }

  skip(): boolean {
    return false;
  }

  seen(uid: string): string[] {
    return this.byUid.get(uid) ?? [];
  }
}

interface BufferedItem {
  id: string;
  bytes: number;
  apply: (c: Connection) => void;
}

/** New worker: every item since it subscribed, and per adopted connection what the old worker applied. */
export class OverlapBuffer implements DownlinkTap {
  private readonly items = new Map<string, BufferedItem[]>();
  private readonly seenBy = new Map<Connection, Set<string>>();
  private count = 0;
  private bytes = 0;
  /**
   * Past a bound the buffer is dropped: a connection adopted afterwards may have missed items, and
   * is told to reconnect (it then syncs) rather than silently lose a push.
   */
  overflowed = false;

  constructor(private readonly maxItems: number, private readonly maxBytes: number) {}

  observe(uid: string, id: string, bytes: number, apply: (c: Connection) => void): void {
    if (this.overflowed) return;
    if (this.count + 1 > this.maxItems || this.bytes + bytes > this.maxBytes) {
      this.overflowed = true;
      this.items.clear();
      return;
    }
    let list = this.items.get(uid);
    if (!list) this.items.set(uid, (list = []));
    list.push({ id, bytes, apply });
    this.count++;
    this.bytes += bytes;
  }

  skip(conn: Connection, id: string): boolean {
    return this.seenBy.get(conn)?.has(id) ?? false;
  }

  /**
   * A connection arrived: applies the buffered items for its uid the old worker had not applied,
   * in arrival order. False when the buffer overflowed (the caller must not trust this connection's push stream).
   */
  adopted(conn: Connection, seen: readonly string[]): boolean {
    if (this.overflowed) return false;
    const seenSet = new Set(seen);
    this.seenBy.set(conn, seenSet);
    for (const item of this.items.get(conn.uid) ?? []) {
      if (!seenSet.has(item.id)) item.apply(conn);
    }
    return true;
  }

  get bufferedItems(): number {
    return this.count;
  }
}
