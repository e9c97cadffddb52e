/**
 * The steady load of the chaos bench: SDK clients (client/sdk.ts), one per user, in 1:1 pairs and
 * groups from bench/topology.ts, each sending one message at a time at a fixed pace with its own
 * client_msg_id (`chaos:<user>:<n>`), retried by the SDK for its whole window. Every logical send
 * is recorded (start, ack, msgId, the gateway it was acked through) for bench/chaos-check.ts; the
 * apps' events are recorded by test/traffic.ts's Device.
 */
import { signToken } from '../common/jwt';
import { ImClient } from '../client/sdk';
import type { Message } from '../proto/wire';
import { Device } from '../test/traffic';
import type { ChaosSend, Seen } from './chaos-check';
import { Role, sendersTo, Topology } from './topology';
import { setTimeout as sleep } from 'node:timers/promises';

export interface LoadSend extends ChaosSend {
  /** Gateway node of the connection the ack came on. */
  node?: string;
  error?: string;
}

export interface ChaosLoadOptions {
  topology: Topology;
  /** Route API URL per user (which gateway it starts on). */
  routeUrlOf: (user: number) => string;
  authSecret: string;
  /** Total sends/s over all users. */
  ratePerS: number;
  runTag: string;
}

const SYNC_PAGE = 500;
/** Bound on sync pages per inbox when reading it back (500 messages each). */
const MAX_SYNC_PAGES = 200;

export class ChaosLoad {
  readonly devices: Device[] = [];
  readonly sends: LoadSend[] = [];
  private readonly groupIds: string[] = [];
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(private readonly o: ChaosLoadOptions) {}

  uid(user: number): string {
    return `chaos${this.o.runTag}_u${user}`;
  }

  /** The user number of a uid of this run, or -1. */
  userOf(uid: string): number {
    const m = /_u(\d+)$/.exec(uid);
    return m && uid === this.uid(Number(m[1])) ? Number(m[1]) : -1;
  }

  /** Connects every client, then lets each group's owner create its group. */
  async connect(): Promise<void> {
    const t = this.o.topology;
    for (let u = 0; u < t.spec.users; u++) {
      const client = new ImClient({
        routerUrl: this.o.routeUrlOf(u), token: signToken(this.o.authSecret, this.uid(u), 3600), deviceId: `d${u}`,
        backoffBaseMs: 100, backoffMaxMs: 1000,
      });
      this.devices.push(new Device({ user: `u${u}`, device: `d${u}`, routerUrl: this.o.routeUrlOf(u) }, this.uid(u), client));
    }
    await Promise.all(this.devices.map((d) => d.client.connect()));
    for (const g of t.groups) {
      const owner = this.devices[g.owner].client;
      const { group } = await owner.createGroup(`chaos-${g.owner}`, g.members.slice(1).map((m) => this.uid(m)));
      this.groupIds.push(group!.groupId);
    }
  }

  start(): void {
    const t = this.o.topology;
    const intervalMs = (1000 * t.spec.users) / this.o.ratePerS;
    this.running = true;
    this.loops = this.devices.map(async (d, u) => {
      if (t.role[u] === Role.IDLE) return;
      // Spread the users' sends over the interval instead of firing in waves.
      await sleep((intervalMs * u) / t.spec.users);
      for (let n = 1; this.running; n++) {
        const s: LoadSend = { sender: u, n, startedAtMs: Date.now() };
        this.sends.push(s);
        const clientMsgId = `chaos:${u}:${n}`;
        try {
          const r = t.role[u] === Role.PEER
            ? await d.client.send(this.uid(t.peer[u]), clientMsgId, { clientMsgId })
            : await d.client.sendGroup(this.groupIds[t.groupOf[u]], clientMsgId, { clientMsgId });
          s.msgId = r.msgId;
          s.ackedAtMs = Date.now();
          s.node = d.client.session?.node;
        } catch (err) {
          s.error = err instanceof Error ? `${(err as { code?: number }).code ?? ''} ${err.message}` : String(err);
        }
        const waitMs = s.startedAtMs + intervalMs - Date.now();
        if (waitMs > 0 && this.running) await sleep(waitMs);
      }
    });
  }

  /** Stops sending; resolves once every send in flight has its outcome (bounded by the SDK's retry window). */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }

  /** Gateway nodes with an acked send that started at or after `sinceMs`. */
  servingNodesSince(sinceMs: number): Set<string> {
    const out = new Set<string>();
    // Sends are recorded in start order: the ones since `sinceMs` are the tail.
    for (let i = this.sends.length - 1; i >= 0 && this.sends[i].startedAtMs >= sinceMs; i--) {
      const node = this.sends[i].node;
      if (node) out.add(node);
    }
    return out;
  }

  ackedSince(sinceMs: number): number {
    let n = 0;
    for (let i = this.sends.length - 1; i >= 0 && this.sends[i].startedAtMs >= sinceMs; i--) if (this.sends[i].msgId) n++;
    return n;
  }

  /** The nodes the clients are connected to now, per user (undefined while not connected). */
  nodes(): Array<string | undefined> {
    return this.devices.map((d) => d.client.session?.node);
  }

  /** Whether every app has emitted everything its inbox holds (the inbox's max seq). */
  async appsCaughtUp(): Promise<boolean> {
    const behind = await Promise.all(this.devices.map(async (d) => {
      const r = await d.client.sync(d.client.lastSeq, 1);
      return r.maxSeq > d.client.lastSeq;
    }));
    return !behind.includes(true);
  }

  /** Each user's whole inbox as sync returns it, from seq 0. */
  async readInboxes(): Promise<Map<number, Seen[]>> {
    const out = new Map<number, Seen[]>();
    await Promise.all(this.devices.map(async (d, u) => {
      const seen: Seen[] = [];
      let from = 0;
      for (let page = 0; page < MAX_SYNC_PAGES; page++) {
        const r = await d.client.sync(from, SYNC_PAGE);
        for (const m of r.messages) seen.push(this.seen(m));
        if (!r.hasMore || r.messages.length === 0) break;
        from = r.messages[r.messages.length - 1].seq;
      }
      out.set(u, seen);
    }));
    return out;
  }

  /** What each app emitted. */
  apps(): Map<number, Seen[]> {
    return new Map(this.devices.map((d, u) => [u, d.got.map((m) => this.seen(m))]));
  }

  disconnects(): Array<{ user: number; atMs: number; code: number; reason: string }> {
    return this.devices.flatMap((d, u) => d.events.filter((e) => e.event === 'disconnected')
      .map((e) => ({ user: u, atMs: e.atMs, code: Number(e.detail.code), reason: String(e.detail.reason) })));
  }

  /** Who stores `sender`'s messages (itself included). */
  /** The sender itself (its own inbox and app hold its sends) and whoever it sends to. */
  recipients(sender: number): number[] {
    return [sender, ...sendersTo(this.o.topology, sender)];
  }

  async close(): Promise<void> {
    this.running = false;
    await Promise.all(this.devices.map((d) => d.client.close()));
  }

  private seen(m: Message): Seen {
    const parts = /^chaos:(\d+):(\d+)$/.exec(m.clientMsgId);
    // A message this run did not send keeps sender -1: the checker counts it as unexpected.
    return { sender: parts ? Number(parts[1]) : -1, n: parts ? Number(parts[2]) : 0, msgId: m.msgId, seq: m.seq };
  }
}
