/**
 * Keeps every logic process's group cache true to the store: a group change is acknowledged to
 * its client only once every other live logic process has dropped its cached copy.
 *
 * The rule (docs/storage.md, "Group membership cache"):
 * 1. The changing process commits to the store, drops its own entry, publishes the change on
 *    GROUP_SUBJECT and waits for an ack from every peer it knows (peers say hello every
 *    helloIntervalMs); only then does the client get its answer. So a send that starts after the
 *    ack, through any process, finds no stale entry and reads the store.
 * 2. A process serves from its cache only under a lease: its own last hello came back over the
 *    bus less than 3 hellos ago (it is hearing the bus, so it hears changes), and it has been
 *    saying hello for 2 intervals (every peer has heard of it, so changes wait for its ack).
 * 3. A peer that does not ack within 2 leases is waited out, not trusted: by then it has either
 *    received the change or lost its lease (and reads the store until it hears the bus again).
 * A load that overlaps a change is not cached (GroupCache), so a read of the old membership
 * cannot land after the drop. Embedded mode (InProcessBus, one process) has no peers: a change
 * is one synchronous drop.
 */
import type { Bus } from '../bus/bus';
import { newId } from '../common/ids';
import type { Logger } from '../common/log';
import { numberOption } from '../common/options';

export const GROUP_SUBJECT = 'im.logic.groups';
const ackSubject = (id: string) => `im.logic.groups.ack.${id}`;

type Msg = { t: 'hello' | 'bye'; from: string } | { t: 'change'; from: string; n: number; g: string };

export interface GroupSyncOptions {
  bus: Bus;
  /** Drops a group from this process's cache. */
  invalidate: (groupId: string) => void;
  logger: Logger;
  /** 1000. */
  helloIntervalMs?: number;
  now?: () => number;
}

export class GroupSync {
  readonly id = newId(Date.now());
  readonly helloIntervalMs: number;
  private readonly leaseMs: number;
  private readonly peers = new Map<string, number>();
  private readonly waiting = new Map<number, { left: Set<string>; done: () => void }>();
  private readonly now: () => number;
  private readonly unsubs: Array<() => void>;
  private readonly timer: NodeJS.Timeout;
  private nonce = 0;
  private firstEchoMs = -1;
  private lastEchoMs = -1;
  private closed = false;

  constructor(private readonly opts: GroupSyncOptions) {
    this.helloIntervalMs = numberOption('GroupSync', 'helloIntervalMs', opts.helloIntervalMs, 1000);
    this.leaseMs = 3 * this.helloIntervalMs;
    this.now = opts.now ?? Date.now;
    this.unsubs = [
      opts.bus.subscribe(GROUP_SUBJECT, (data) => this.onMessage(data)),
      opts.bus.subscribe(ackSubject(this.id), (data) => this.onAck(data)),
    ];
    this.timer = setInterval(() => this.hello(), this.helloIntervalMs);
    this.timer.unref();
    this.hello();
  }

  /** The cache may answer (rule 2). */
  get fresh(): boolean {
    const now = this.now();
    return !this.closed && this.opts.bus.connected && this.lastEchoMs >= 0
      && now - this.lastEchoMs < this.leaseMs && now - this.firstEchoMs >= 2 * this.helloIntervalMs;
  }

  /** Rule 1: call after the store committed a change to `groupId`, before answering the client. */
  async changed(groupId: string): Promise<void> {
    this.opts.invalidate(groupId);
    const now = this.now();
    const left = new Set([...this.peers].filter(([, seen]) => now - seen < this.leaseMs).map(([id]) => id));
    const n = ++this.nonce;
    this.publish({ t: 'change', from: this.id, n, g: groupId });
    if (left.size === 0) return;
    await new Promise<void>((resolve) => {
      const timeout = setTimeout(() => {
        this.waiting.delete(n);
        this.opts.logger.warn('group change not acked by every logic process; waited out their lease', { groupId, peers: [...left] });
        resolve();
      }, 2 * this.leaseMs);
      this.waiting.set(n, { left, done: () => { clearTimeout(timeout); this.waiting.delete(n); resolve(); } });
    });
  }

  close(): void {
    if (this.closed) return;
    // Peers stop waiting for this process's acks at once rather than after its lease.
    this.publish({ t: 'bye', from: this.id });
    this.closed = true;
    clearInterval(this.timer);
    for (const u of this.unsubs) u();
    for (const w of [...this.waiting.values()]) w.done();
  }

  private hello(): void {
    this.publish({ t: 'hello', from: this.id });
  }

  private publish(m: Msg): void {
    this.opts.bus.publish(GROUP_SUBJECT, Buffer.from(JSON.stringify(m)));
  }

  private onMessage(data: Uint8Array): void {
    const m = parse<Msg>(data);
    if (!m || typeof m.from !== 'string') return;
    const now = this.now();
    if (m.from === this.id) {
      if (m.t === 'hello') {
        if (this.firstEchoMs < 0) this.firstEchoMs = now;
        this.lastEchoMs = now;
      }
      return;
    }
    if (m.t === 'bye') {
      this.peers.delete(m.from);
      for (const w of [...this.waiting.values()]) if (w.left.delete(m.from) && w.left.size === 0) w.done();
      return;
    }
    this.peers.set(m.from, now);
    if (m.t === 'change' && typeof m.g === 'string') {
      this.opts.invalidate(m.g);
      this.opts.bus.publish(ackSubject(m.from), Buffer.from(JSON.stringify({ from: this.id, n: m.n })));
    }
    // Forget peers gone for good (bounded map).
    for (const [id, seen] of this.peers) if (now - seen >= 10 * this.leaseMs) this.peers.delete(id);
  }

  private onAck(data: Uint8Array): void {
    const a = parse<{ from: string; n: number }>(data);
    const w = a && this.waiting.get(a.n);
    if (!w) return;
    w.left.delete(a.from);
    if (w.left.size === 0) w.done();
  }
}

function parse<T>(data: Uint8Array): T | undefined {
  try {
    return JSON.parse(Buffer.from(data).toString('utf8')) as T;
  } catch {
    return undefined;
  }
}
