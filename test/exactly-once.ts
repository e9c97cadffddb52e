/**
 * The exactly-once check of the failover tests (issue 9 item 6): SDK apps that record every
 * 'message' event, a ledger of every send with its own client_msg_id, open-loop 1:1 load, and the
 * final check by sync. After the load, one last message from a control app reaches every app (a
 * push; an app that missed anything finds the gap and syncs), then each inbox is read from seq 0
 * and compared with the acknowledgements and with what the app was handed:
 *
 * - every acknowledged message is in the sender's and the recipient's inbox exactly once, in the
 *   sender's at the seq its ack named (nothing overwrote it);
 * - no (sender, client_msg_id) is stored twice under any msgId (a retry stored again);
 * - each inbox's seqs strictly increase;
 * - no app got one msgId, or one (sender, client_msg_id), twice; its events came in increasing
 *   seq order, each (seq, msgId) as the inbox holds it;
 * - every inbox entry reached the app (an entry at or below a seq the app already moved past is
 *   a skip: the SDK will never deliver it).
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { ImClient, type ImClientOptions } from '../client/sdk';
import { syncAll } from '../client/client.test-support';
import { signToken } from '../common/jwt';
import type { Message, SendResp } from '../proto/wire';
import { eventually } from './wait';

/** eventually (./wait) in the argument order gateway/tls.test.ts and storage/cassandra/store.test.ts still call it with. */
export const waitFor = (what: string, timeoutMs: number, pred: () => boolean | Promise<boolean>): Promise<true> =>
  eventually(pred, what, timeoutMs);

/** One SDK client and what its application was handed. */
export class App {
  readonly events: Array<Message & { atMs: number }> = [];
  readonly errors: string[] = [];

  constructor(readonly name: string, readonly uid: string, readonly client: ImClient) {
    client.on('message', (m) => { this.events.push({ ...m, atMs: Date.now() }); });
    client.on('error', (err) => { this.errors.push(err.message); });
  }

  get lastEventSeq(): number {
    return this.events.length ? this.events[this.events.length - 1].seq : 0;
  }
}

export interface AppFactoryOptions {
  authSecret: string;
  /** Route API URL for the i-th app created (e.g. one per gateway, alternating). */
  routeUrl: (i: number) => string;
  client?: Partial<ImClientOptions>;
}

/** Creates connected apps with uids unique to this run. */
export class Apps {
  readonly all: App[] = [];
  private readonly ns = randomBytes(3).toString('hex');

  constructor(private readonly o: AppFactoryOptions) {}

  async connect(name: string): Promise<App> {
    const uid = `${name}_${this.ns}`;
    const routerUrl = this.o.routeUrl(this.all.length);
    const app = new App(name, uid, new ImClient({
      routerUrl, token: signToken(this.o.authSecret, uid, 3600), deviceId: 'phone', ...this.o.client,
    }));
    this.all.push(app);
    await app.client.connect();
    return app;
  }

  async close(): Promise<void> {
    await Promise.all(this.all.map((a) => a.client.close().catch(() => undefined)));
  }
}

export interface Send {
  from: App;
  to: App;
  clientMsgId: string;
  text: string;
  startedAtMs: number;
  resp?: SendResp;
  ackedAtMs?: number;
  /** Set when the SDK gave up (after its own retries). */
  error?: string;
}

/** Every send made through it, with its outcome. */
export class Ledger {
  readonly sends: Send[] = [];
  private inFlightBy = new Map<App, number>();
  private n = 0;

  inFlight(from?: App): number {
    if (from) return this.inFlightBy.get(from) ?? 0;
    let total = 0;
    for (const v of this.inFlightBy.values()) total += v;
    return total;
  }

  send(from: App, to: App): Promise<Send> {
    const s: Send = { from, to, clientMsgId: randomUUID(), text: `${from.name}->${to.name} #${this.n++}`, startedAtMs: Date.now() };
    this.sends.push(s);
    this.inFlightBy.set(from, this.inFlight(from) + 1);
    return from.client.send(to.uid, s.text, { clientMsgId: s.clientMsgId }).then((resp) => {
      s.resp = resp;
      s.ackedAtMs = Date.now();
    }, (err: unknown) => {
      s.error = err instanceof Error ? `${(err as { code?: number }).code ?? ''} ${err.message}` : String(err);
    }).then(() => {
      this.inFlightBy.set(from, this.inFlight(from) - 1);
      return s;
    });
  }

  acked(): Send[] {
    return this.sends.filter((s) => s.resp);
  }

  failed(): Send[] {
    return this.sends.filter((s) => s.error !== undefined);
  }

  /** Sends started at or after sinceMs that are acknowledged. */
  ackedStartedSince(sinceMs: number): number {
    return this.sends.filter((s) => s.resp && s.startedAtMs >= sinceMs).length;
  }

  /** Waits until `n` sends started at or after sinceMs are acknowledged. */
  waitAcked(n: number, sinceMs: number, timeoutMs: number, what: string): Promise<void> {
    return eventually(() => this.ackedStartedSince(sinceMs) >= n,
      `${n} acks of sends started ${what} (have ${this.ackedStartedSince(sinceMs)})`, timeoutMs).then(() => undefined);
  }

  /** Waits until every send made so far has its outcome. */
  settled(timeoutMs: number): Promise<void> {
    return eventually(() => this.inFlight() === 0, `every send to settle (${this.inFlight()} in flight)`, timeoutMs).then(() => undefined);
  }
}

/**
 * Open-loop 1:1 load: each sender sends to its receiver every intervalMs whatever happened to its
 * earlier sends (so sends pile up in flight while a failover holds them), up to maxInFlight each.
 */
export class Load {
  private running = false;
  private loops: Promise<void>[] = [];

  constructor(private readonly ledger: Ledger, private readonly pairs: Array<[App, App]>,
    private readonly o: { intervalMs: number; maxInFlightPerSender: number }) {}

  start(): void {
    this.running = true;
    this.loops = this.pairs.map(async ([from, to], i) => {
      // Spread the senders over the interval rather than firing them all in one turn.
      await delay((i * this.o.intervalMs) / this.pairs.length);
      while (this.running) {
        if (this.ledger.inFlight(from) < this.o.maxInFlightPerSender) void this.ledger.send(from, to);
        await delay(this.o.intervalMs); // open-loop pacing, not a wait for anything
      }
    });
  }

  /** Stops starting sends; sends in flight go on (Ledger.settled waits for them). */
  async stop(): Promise<void> {
    this.running = false;
    await Promise.all(this.loops);
  }
}

/** What the final check found. Every list holds one line per finding. */
export interface Findings {
  apps: number;
  sends: number;
  acked: number;
  /** Acks answering a retry with the original (SendResp.duplicate). */
  answeredAsDuplicate: number;
  failed: string[];
  /** An acked msgId absent from a recipient's inbox. */
  lost: string[];
  /** The sender's inbox does not hold the acked msgId at the acked seq. */
  notAtAckedSeq: string[];
  /** One message (sender, client_msg_id) stored more than once in one inbox, under any msgId. */
  storedTwice: string[];
  /** Inbox seqs not strictly increasing. */
  inboxOutOfOrder: string[];
  /** An app handed one message (by msgId or by sender + client_msg_id) more than once. */
  eventTwice: string[];
  /** An app event whose seq is not above the previous event's. */
  eventOutOfOrder: string[];
  /** An app event that is not the inbox's entry at that seq (overwritten, or never stored). */
  eventNotInInbox: string[];
  /** An inbox entry at or below a seq the app had already been handed, never handed to it. */
  skipped: string[];
  /** An inbox entry above the app's last event: it never reached the app. */
  notDelivered: string[];
  /** Apps the closing message did not reach within the timeout. */
  closingNotReceived: string[];
}

/** The names of the finding lists of Findings. */
export const FINDINGS = ['failed', 'lost', 'notAtAckedSeq', 'storedTwice', 'inboxOutOfOrder', 'eventTwice', 'eventOutOfOrder',
  'eventNotInInbox', 'skipped', 'notDelivered', 'closingNotReceived'] as const;

export function summary(f: Findings): string {
  // A message stored twice is one line per inbox it is doubled in; say how many sends that is too.
  const sendsStoredTwice = new Set(f.storedTwice.map((l) => l.split(' ')[1])).size;
  const counts = FINDINGS.map((k) => `${k} ${f[k].length}${k === 'storedTwice' && sendsStoredTwice ? ` (${sendsStoredTwice} sends)` : ''}`).join(', ');
  return `${f.apps} apps, ${f.sends} sends, ${f.acked} acked (${f.answeredAsDuplicate} answered as duplicate): ${counts}`;
}

/** Every finding list, with up to `examples` lines each, for an assertion message. */
export function details(f: Findings, examples = 5): string {
  return FINDINGS.filter((k) => f[k].length > 0)
    .map((k) => `${k} (${f[k].length}):\n    ${f[k].slice(0, examples).join('\n    ')}`).join('\n  ');
}

export function clean(f: Findings): boolean {
  return FINDINGS.every((k) => f[k].length === 0);
}

/**
 * The closing message from `control` to every other app, then the check (see the file comment).
 * Call once every send has settled and the system is up again.
 */
export async function checkExactlyOnce(apps: App[], control: App, ledger: Ledger, timeoutMs: number): Promise<Findings> {
  const closing = await Promise.all(apps.filter((a) => a !== control).map((a) => ledger.send(control, a)));
  const closingNotReceived: string[] = [];
  await Promise.all(closing.map(async (s) => {
    const ok = s.resp && await eventually(() => s.to.events.some((m) => m.msgId === s.resp!.msgId), 'the closing message', timeoutMs).then(() => true, () => false);
    if (!ok) closingNotReceived.push(`${s.to.name}: ${s.resp ? `closing message ${s.resp.msgId} not received` : `closing send failed: ${s.error}`}`);
  }));

  const f: Findings = {
    apps: apps.length, sends: ledger.sends.length, acked: ledger.acked().length,
    answeredAsDuplicate: ledger.acked().filter((s) => s.resp!.duplicate).length,
    failed: ledger.failed().map((s) => `${s.text} (${s.clientMsgId}): ${s.error}`),
    lost: [], notAtAckedSeq: [], storedTwice: [], inboxOutOfOrder: [], eventTwice: [], eventOutOfOrder: [],
    eventNotInInbox: [], skipped: [], notDelivered: [], closingNotReceived,
  };
  for (const app of apps) {
    const inbox = await syncAll(app.client);
    const bySeq = new Map(inbox.map((m) => [m.seq, m]));
    const idCount = new Map<string, number>();
    const sendCount = new Map<string, Message[]>();
    inbox.forEach((m, i) => {
      if (i > 0 && m.seq <= inbox[i - 1].seq) f.inboxOutOfOrder.push(`${app.name}: seq ${m.seq} after ${inbox[i - 1].seq}`);
      idCount.set(m.msgId, (idCount.get(m.msgId) ?? 0) + 1);
      const key = `${m.from}/${m.clientMsgId}`;
      sendCount.set(key, [...(sendCount.get(key) ?? []), m]);
    });
    for (const [key, copies] of sendCount) {
      if (copies.length > 1) f.storedTwice.push(`${app.name}: ${key} at ${copies.map((m) => `seq ${m.seq} (${m.msgId})`).join(', ')}`);
    }
    for (const s of ledger.acked()) {
      if (s.from !== app && s.to !== app) continue;
      const n = idCount.get(s.resp!.msgId) ?? 0;
      if (n === 0) f.lost.push(`${app.name}: ${s.text} ${s.resp!.msgId} (acked seq ${s.resp!.seq} at +${s.ackedAtMs! - s.startedAtMs}ms)`);
      if (s.from === app && bySeq.get(s.resp!.seq)?.msgId !== s.resp!.msgId) {
        f.notAtAckedSeq.push(`${app.name}: ${s.text} acked at seq ${s.resp!.seq} as ${s.resp!.msgId}; the inbox has ${bySeq.get(s.resp!.seq)?.msgId ?? 'nothing'} there`);
      }
    }

    const seenIds = new Set<string>();
    const seenSends = new Set<string>();
    let last = 0;
    for (const e of app.events) {
      const key = `${e.from}/${e.clientMsgId}`;
      if (seenIds.has(e.msgId) || seenSends.has(key)) f.eventTwice.push(`${app.name}: ${key} ${e.msgId} at seq ${e.seq}`);
      seenIds.add(e.msgId);
      seenSends.add(key);
      if (e.seq <= last) f.eventOutOfOrder.push(`${app.name}: seq ${e.seq} after ${last}`);
      last = Math.max(last, e.seq);
      if (bySeq.get(e.seq)?.msgId !== e.msgId) f.eventNotInInbox.push(`${app.name}: event seq ${e.seq} ${e.msgId}; the inbox has ${bySeq.get(e.seq)?.msgId ?? 'nothing'} there`);
    }
    for (const m of inbox) {
      if (seenIds.has(m.msgId)) continue;
      const line = `${app.name}: seq ${m.seq} ${m.from}/${m.clientMsgId} (${m.msgId}); last event seq ${last}`;
      (m.seq <= last ? f.skipped : f.notDelivered).push(line);
    }
  }
  return f;
}
