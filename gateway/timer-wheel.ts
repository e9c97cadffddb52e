/**
 * One coarse timer for every connection deadline of a gateway (auth timeout, idle timeout, rate
 * state release). A Node timer costs a Timeout object and a closure per connection (~180 B of
 * heap each); here an item costs one Set entry, and one interval timer serves them all.
 *
 * Deadlines are rounded up to the next granule: an item fires at most one granule late, never
 * early. Items do their own check when called (e.g. "idle since lastFrameAtMs?") and return their
 * next deadline, so a connection that receives frames is never rescheduled per frame.
 */
import { checkNumber } from '../common/options';

export interface WheelItem {
  /** Owned by the wheel: the tick whose bucket holds this item, -1 when not scheduled. */
  wheelTick: number;
  /** Called at or after the scheduled deadline; returns the next deadline, or undefined to leave. */
  onDeadline(nowMs: number): number | undefined;
}

export interface TimerWheelOptions {
  granuleMs: number;
  now?: () => number;
  /** false: no interval of its own; the owner calls advance() (tests with an injected clock). Default true. */
  autoAdvance?: boolean;
}

/** The granule for a gateway's limits: a tenth of the shortest timeout, between 10 ms and 1 s. */
export function granuleFor(shortestTimeoutMs: number): number {
  return Math.min(1000, Math.max(10, Math.floor(shortestTimeoutMs / 10)));
}

export class TimerWheel {
  readonly granuleMs: number;
  private readonly now: () => number;
  private readonly autoAdvance: boolean;
  private readonly buckets = new Map<number, Set<WheelItem>>();
  /** The next tick advance() has not yet processed. */
  private cursor: number;
  private items = 0;
  private timer: NodeJS.Timeout | undefined;
  private stopped = false;

  constructor(opts: TimerWheelOptions) {
    this.granuleMs = checkNumber('TimerWheel', 'granuleMs', opts.granuleMs);
    this.now = opts.now ?? Date.now;
    this.autoAdvance = opts.autoAdvance ?? true;
    this.cursor = Math.floor(this.now() / this.granuleMs) + 1;
  }

  /** Scheduled items. */
  get size(): number { return this.items; }

  /** (Re)schedules `item` for `atMs`; replaces any earlier schedule of it. */
  schedule(item: WheelItem, atMs: number): void {
    this.cancel(item);
    if (this.stopped) return;
    const tick = Math.max(this.cursor, Math.ceil(atMs / this.granuleMs));
    let bucket = this.buckets.get(tick);
    if (!bucket) this.buckets.set(tick, (bucket = new Set()));
    bucket.add(item);
    item.wheelTick = tick;
    if (this.items++ === 0) this.startTimer();
  }

  /** Schedules `item` for `atMs` unless it is already due at or before that tick. */
  scheduleEarlier(item: WheelItem, atMs: number): void {
    if (item.wheelTick >= 0 && item.wheelTick <= Math.ceil(atMs / this.granuleMs)) return;
    this.schedule(item, atMs);
  }

  cancel(item: WheelItem): void {
    if (item.wheelTick < 0) return;
    const tick = item.wheelTick;
    item.wheelTick = -1;
    const bucket = this.buckets.get(tick);
    if (!bucket?.delete(item)) return;
    if (bucket.size === 0) this.buckets.delete(tick);
    if (--this.items === 0) this.stopTimer();
  }

  /** Calls every item whose tick has come by `nowMs`. */
  advance(nowMs: number = this.now()): void {
    const last = Math.floor(nowMs / this.granuleMs);
    if (last < this.cursor) return;
    // After a long stall, visit the buckets that exist rather than every empty tick in between.
    if (last - this.cursor > this.buckets.size) {
      const due = [...this.buckets.keys()].filter((t) => t <= last).sort((a, b) => a - b);
      this.cursor = last + 1;
      for (const tick of due) this.fire(tick, nowMs);
    } else {
      const from = this.cursor;
      this.cursor = last + 1;
      for (let tick = from; tick <= last; tick++) this.fire(tick, nowMs);
    }
    if (this.items === 0) this.stopTimer();
  }

  /** Drops every item and the interval. Idempotent. */
  stop(): void {
    this.stopped = true;
    for (const bucket of this.buckets.values()) for (const item of bucket) item.wheelTick = -1;
    this.buckets.clear();
    this.items = 0;
    this.stopTimer();
  }

  private fire(tick: number, nowMs: number): void {
    const bucket = this.buckets.get(tick);
    if (!bucket) return;
    // Items leave the bucket one by one, so one item's callback may cancel another still in it.
    // Rescheduled items land at the cursor or later, never back in this bucket.
    for (const item of bucket) {
      this.cancel(item);
      const next = item.onDeadline(nowMs);
      if (next !== undefined && item.wheelTick < 0) this.schedule(item, next);
    }
  }

  private startTimer(): void {
    if (!this.autoAdvance || this.timer) return;
    this.timer = setInterval(() => this.advance(), this.granuleMs);
    // Connections keep the process alive through their sockets, not through their deadlines.
    this.timer.unref();
  }

  private stopTimer(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
  }
}
