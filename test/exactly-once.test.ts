/**
 * The exactly-once check of test/exactly-once.ts finds what it is meant to find: each fault is
 * planted in an in-memory stand-in for the server (inboxes, pushes) and must show up under its own
 * name, while a clean run shows nothing. No processes, no infrastructure.
 */
import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { ImClient } from '../client/sdk';
import type { Message, SendResp } from '../proto/wire';
import { App, checkExactlyOnce, clean, FINDINGS, Ledger, summary, type Findings } from './exactly-once';

/** Inboxes and pushes, with hooks to plant faults. */
class FakeServer {
  readonly inboxes = new Map<string, Message[]>();
  readonly clients = new Map<string, FakeClient>();
  private n = 0;
  /** Decides whether a stored message is pushed to the recipient's app. */
  push: (to: string, m: Message) => boolean = () => true;

  store(uid: string, m: Omit<Message, 'seq'>): Message {
    const inbox = this.inboxes.get(uid) ?? [];
    this.inboxes.set(uid, inbox);
    const stored = { ...m, seq: Math.max(0, ...inbox.map((x) => x.seq)) + 1 };
    inbox.push(stored);
    return stored;
  }

  send(from: string, to: string, clientMsgId: string, text: string): SendResp {
    const base = {
      msgId: `m${++this.n}`, convId: `p:${from}:${to}`, from, to, groupId: '', clientMsgId, sentAtMs: 0,
      contentType: 'text/plain', content: Buffer.from(text), convSeq: this.n,
    };
    const own = this.store(from, base);
    const theirs = this.store(to, base);
    if (this.push(to, theirs)) this.clients.get(to)?.emit('message', theirs);
    this.clients.get(from)?.emit('message', own);
    return { msgId: base.msgId, seq: own.seq, sentAtMs: 0, duplicate: false, convId: base.convId, convSeq: base.convSeq };
  }
}

class FakeClient extends EventEmitter {
  constructor(private readonly server: FakeServer, private readonly uid: string) {
    super();
    server.clients.set(uid, this);
  }

  async send(to: string, text: string, opts: { clientMsgId: string }): Promise<SendResp> {
    return this.server.send(this.uid, to, opts.clientMsgId, text);
  }

  async sync(fromSeq: number, limit: number) {
    const all = (this.server.inboxes.get(this.uid) ?? []).filter((m) => m.seq > fromSeq);
    return { messages: all.slice(0, limit), hasMore: all.length > limit, maxSeq: all[all.length - 1]?.seq ?? fromSeq };
  }
}

describe('exactly-once check (test/exactly-once.ts)', () => {
  let server: FakeServer;
  let ledger: Ledger;
  let a: App;
  let b: App;
  let control: App;
  const app = (name: string) => new App(name, name, new FakeClient(server, name) as unknown as ImClient);
  const check = () => checkExactlyOnce([a, b, control], control, ledger, 200);
  const only = (f: Findings, ...kinds: Array<keyof Findings>) => {
    for (const k of FINDINGS) {
      assert.equal(f[k].length > 0, kinds.includes(k), `${k}: ${summary(f)}`);
    }
  };

  beforeEach(async () => {
    server = new FakeServer();
    ledger = new Ledger();
    [a, b, control] = [app('a'), app('b'), app('control')];
    for (let i = 0; i < 3; i++) await ledger.send(a, b);
  });

  it('finds nothing in a clean run', async () => {
    const f = await check();
    assert.ok(clean(f), summary(f));
    assert.equal(f.acked, 5); // three sends and two closing messages
  });

  it('a retry stored again under a new msgId, delivered twice', async () => {
    const first = ledger.sends[0];
    server.send(a.uid, b.uid, first.clientMsgId, first.text);
    only(await check(), 'storedTwice', 'eventTwice');
  });

  it('an acked message missing from the recipient inbox', async () => {
    server.inboxes.set(b.uid, server.inboxes.get(b.uid)!.filter((m) => m.msgId !== ledger.sends[1].resp!.msgId));
    only(await check(), 'lost', 'eventNotInInbox');
  });

  it('an inbox entry below the last event that never reached the app (a skip)', async () => {
    b.events.splice(1, 1);
    only(await check(), 'skipped');
  });

  it('events out of seq order', async () => {
    [b.events[1], b.events[2]] = [b.events[2], b.events[1]];
    only(await check(), 'eventOutOfOrder');
  });

  it('an acked message overwritten at its seq', async () => {
    const inbox = server.inboxes.get(a.uid)!;
    inbox[0] = { ...inbox[0], msgId: 'other', clientMsgId: 'other' };
    only(await check(), 'lost', 'notAtAckedSeq', 'eventNotInInbox', 'skipped');
  });

  it('an inbox whose seqs go backwards', async () => {
    const inbox = server.inboxes.get(b.uid)!;
    inbox.push({ ...inbox[0], msgId: 'late', clientMsgId: 'late', seq: 2 });
    only(await check(), 'inboxOutOfOrder', 'skipped', 'eventNotInInbox');
  });

  it('a message stored after the app stopped hearing anything', async () => {
    server.push = () => false;
    only(await check(), 'notDelivered', 'closingNotReceived');
  });
});
