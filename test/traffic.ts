/**
 * Conversation load for release tests: SDK clients that keep sending 1:1 and group messages while
 * a test restarts things under them, and the final check that every acknowledged message reached
 * every device of every recipient exactly once, in order. Also records what each client observed
 * (disconnects, reconnects, which connection it is on) for the assertions and the report.
 */
import * as assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { signToken } from '../common/jwt';
import { ImClient, ImClientOptions } from '../client/sdk';
import type { Message } from '../proto/wire';
import { eventually } from './wait';

export interface DeviceSpec {
  /** User name (namespaced into a uid by the Traffic). */
  user: string;
  device: string;
  /** Route API URL this device connects (and reconnects) through. */
  routerUrl: string;
}

export interface Observed {
  atMs: number;
  event: 'connected' | 'disconnected' | 'reconnecting' | 'error';
  detail: Record<string, unknown>;
}

export class Device {
  readonly label: string;
  readonly got: Message[] = [];
  /** When each message of `got` arrived (Date.now()). */
  readonly gotAtMs: number[] = [];
  readonly events: Observed[] = [];
  /** connId of every connection this device authenticated on, in order. */
  readonly connIds: string[] = [];
  /** Sends that failed for good (after the SDK's own retries). */
  readonly failedSends: Array<{ text: string; err: string }> = [];
  private waiters: Array<() => void> = [];

  constructor(readonly spec: DeviceSpec, readonly uid: string, readonly client: ImClient) {
    this.label = `${spec.user}/${spec.device}`;
    client.on('message', (m) => {
      this.got.push(m);
      this.gotAtMs.push(Date.now());
      for (const w of this.waiters.splice(0)) w();
    });
    const note = (event: Observed['event'], detail: Record<string, unknown>) => this.events.push({ atMs: Date.now(), event, detail });
    client.on('connected', (ok) => {
      this.connIds.push(ok.connId);
      note('connected', { node: ok.node, connId: ok.connId });
    });
    client.on('disconnected', (e) => note('disconnected', { ...e }));
    client.on('reconnecting', (e) => note('reconnecting', { ...e }));
    client.on('error', (err) => note('error', { message: err.message, code: (err as { code?: number }).code }));
  }

  disconnects(): Array<Record<string, unknown>> {
    return this.events.filter((e) => e.event === 'disconnected').map((e) => e.detail);
  }

  /** Resolves once pred holds for what arrived, or rejects after timeoutMs. */
  async waitUntil(pred: () => boolean, timeoutMs: number, what: string): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!pred()) {
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`${this.label}: timed out waiting for ${what}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, Math.min(left, 250));
        this.waiters.push(() => { clearTimeout(t); resolve(); });
      });
    }
  }
}

interface Acked {
  msgId: string;
  from: Device;
  /** Uids whose devices must all receive it. */
  to: string[];
  text: string;
  startedAtMs: number;
  ackedAtMs: number;
}

export interface TrafficOptions {
  authSecret: string;
  devices: DeviceSpec[];
  /** Pause between one device's sends. 40. */
  intervalMs?: number;
  client?: Partial<ImClientOptions>;
}

export class Traffic {
  readonly devices: Device[] = [];
  readonly acked: Acked[] = [];
  private readonly ns = randomBytes(3).toString('hex');
  private groupId = '';
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(private readonly o: TrafficOptions) {}

  uid(user: string): string {
    return `${user}_${this.ns}`;
  }

  private get users(): string[] {
    return [...new Set(this.devices.map((d) => d.uid))];
  }

  /** Connects every device and creates one group of every user. */
  async connect(): Promise<void> {
    for (const spec of this.o.devices) {
      const uid = this.uid(spec.user);
      const client = new ImClient({
        routerUrl: spec.routerUrl, token: signToken(this.o.authSecret, uid, 3600), deviceId: spec.device,
        backoffBaseMs: 100, backoffMaxMs: 1000, ...this.o.client,
      });
      const d = new Device(spec, uid, client);
      this.devices.push(d);
      await client.connect();
    }
    const owner = this.devices[0];
    const { group } = await owner.client.createGroup('release', this.users.filter((u) => u !== owner.uid));
    this.groupId = group!.groupId;
  }

  /** Every device sends, one message at a time, alternating 1:1 (to the next user) and group. */
  start(): void {
    this.running = true;
    const users = this.users;
    this.loops = this.devices.map(async (d, di) => {
      const peer = users[(users.indexOf(d.uid) + 1) % users.length];
      for (let n = 0; this.running; n++) {
        const toGroup = (n + di) % 2 === 1;
        const text = `${d.label}#${n}`;
        const startedAtMs = Date.now();
        try {
          const r = toGroup ? await d.client.sendGroup(this.groupId, text) : await d.client.send(peer, text);
          this.acked.push({ msgId: r.msgId, from: d, to: toGroup ? users : [d.uid, peer], text, startedAtMs, ackedAtMs: Date.now() });
        } catch (err) {
          d.failedSends.push({ text, err: err instanceof Error ? `${(err as { code?: number }).code ?? ''} ${err.message}` : String(err) });
        }
        await delay(this.o.intervalMs ?? 40); // pacing of the conversation, not a wait for anything
      }
    });
  }

  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /**
   * Waits until every device has had `perDevice` sends acknowledged after `sinceMs`: traffic flows
   * again through whatever the test just broke and repaired.
   */
  async waitFlowing(sinceMs: number, what: string, perDevice = 5, timeoutMs = 30_000): Promise<void> {
    const short = () => this.devices.filter((d) => this.acked.filter((a) => a.from === d && a.ackedAtMs >= sinceMs).length < perDevice);
    await eventually(() => short().length === 0, `${perDevice} acked sends per device ${what}`, timeoutMs).catch((err: Error) => {
      throw new Error(`${err.message}: ${short().map((d) => d.label).join(', ')} short`);
    });
  }

  /** Acked sends after `sinceMs` (a point in the test). */
  ackedSince(sinceMs: number): number {
    return this.acked.filter((a) => a.ackedAtMs >= sinceMs).length;
  }

  /**
   * The final check: every acknowledged message reached every device of each recipient exactly
   * once; each device saw strictly increasing inbox seqs; and the messages of any one sending
   * device arrived in the order they were acknowledged.
   */
  async verify(timeoutMs: number): Promise<void> {
    for (const d of this.devices) {
      const want = this.acked.filter((a) => a.to.includes(d.uid)).map((a) => a.msgId);
      const have = () => new Set(d.got.map((m) => m.msgId));
      await d.waitUntil(() => { const h = have(); return want.every((id) => h.has(id)); }, timeoutMs,
        `${want.length} acked messages (has ${d.got.length})`).catch((err: Error) => {
        const h = have();
        const missing = this.acked.filter((a) => a.to.includes(d.uid) && !h.has(a.msgId)).map((a) => `${a.text}@${a.ackedAtMs}`);
        throw new Error(`${err.message}; missing ${missing.length}: ${missing.slice(0, 10).join(', ')}`);
      });
    }
    // A marker to the group (every device), sent after everything: pushes to an inbox come in seq
    // order, so once it arrived a duplicate of anything before it would have too.
    const marker = await this.devices[0].client.sendGroup(this.groupId, 'marker');
    for (const d of this.devices) await d.waitUntil(() => d.got.some((m) => m.msgId === marker.msgId), timeoutMs, 'the marker');
    const ackedIds = new Map(this.acked.map((a) => [a.msgId, a]));
    for (const d of this.devices) {
      const ids = d.got.map((m) => m.msgId);
      const twice = d.got.filter((m, i) => ids.indexOf(m.msgId) !== i).map((m) => `${m.msgId} at seqs ${d.got.filter((x) => x.msgId === m.msgId).map((x) => x.seq).join(', ')}`);
      assert.equal(new Set(ids).size, ids.length, `${d.label} received a message twice: ${twice.join('; ')}`);
      for (let i = 1; i < d.got.length; i++) {
        assert.ok(d.got[i].seq > d.got[i - 1].seq, `${d.label}: seq ${d.got[i].seq} after ${d.got[i - 1].seq}`);
      }
      const order = new Map<Device, string[]>();
      for (const m of d.got) {
        const a = ackedIds.get(m.msgId);
        if (!a) continue; // stored, but its sender gave up: allowed, counted in failedSends
        let list = order.get(a.from);
        if (!list) order.set(a.from, (list = []));
        list.push(a.msgId);
      }
      for (const [from, got] of order) {
        const sent = this.acked.filter((a) => a.from === from && a.to.includes(d.uid)).map((a) => a.msgId);
        assert.deepEqual(got, sent, `${d.label} got ${from.label}'s messages out of order`);
      }
    }
  }

  async close(): Promise<void> {
    this.running = false;
    await Promise.all(this.devices.map((d) => d.client.close()));
  }

  /** One line per device: what its application saw. */
  summary(t0Ms: number): string[] {
    return this.devices.map((d) => {
      const evs = d.events.map((e) => `${e.event}@+${e.atMs - t0Ms}ms${e.event === 'connected' ? '' : ' ' + JSON.stringify(e.detail)}`);
      const failed = d.failedSends.map((f) => `${f.text}: ${f.err}`).join('; ');
      const mine = this.acked.filter((a) => a.from === d).map((a) => a.ackedAtMs - a.startedAtMs).sort((a, b) => a - b);
      const slowest = mine.length ? `, sends ${mine.length} (median ${mine[mine.length >> 1]}ms, max ${mine[mine.length - 1]}ms)` : '';
      return `${d.label}: got ${d.got.length}${slowest}, failed sends ${d.failedSends.length}${failed ? ` (${failed})` : ''}, events [${evs.join('; ')}]`;
    });
  }
}
