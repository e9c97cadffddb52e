/**
 * The real Inbox and InboxSync, with the server's answer to SYNC computed in process: what the SDK
 * asks, what it delivers and when it backs off, when inbox seqs jump (docs/protocol.md, "Gaps in
 * inbox seqs"; the embedded system's SQLite store never leaves gaps). An answer is read when the
 * request is made and can be held back, so a push can land while a sync is in flight. Nothing
 * waits on a clock: retryDelayMs is recorded and returns 0, and the tests wait for events.
 */
import * as assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { Op, decode, encode } from '../proto/wire';
import type { Connection } from './connection';
import { Inbox } from './inbox';
import { Waits } from './waits';
import { InboxSync } from './inbox-sync';
import { inboxMessage as msg, waitEvent } from './client.test-support';

/** Resolves once cond() holds, checking it now and after every `change` of `events`. */
async function until(events: EventEmitter, cond: () => boolean): Promise<void> {
  if (!cond()) await waitEvent(events, 'change', cond);
}

/** One turn of the event loop: whatever the SDK queued to do next (a further sync) has started. */
const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

/** SYNC as the server answers it: every stored seq above from_seq, `limit` a page. */
class SyncServer {
  readonly stored = new Set<number>();
  /** Stored seqs the answers leave out (a stale read). */
  readonly hidden = new Set<number>();
  /** from_seq of every SyncReq, in order. */
  readonly asked: number[] = [];
  /** How many of the next requests fail (as on a lost connection). */
  failing = 0;
  readonly events = new EventEmitter();
  readonly conn = { closed: false, request: (op: number, body: Uint8Array) => this.answer(op, body) } as unknown as Connection;
  private gate: Promise<void> | undefined;
  private open = () => {};

  store(...seqs: number[]): void {
    for (const seq of seqs) this.stored.add(seq);
  }

  /** Answers are still read when asked, but returned only after release(). */
  hold(): void {
    this.gate = new Promise((resolve) => { this.open = resolve; });
  }

  release(): void {
    this.gate = undefined;
    this.open();
  }

  private async answer(op: number, body: Uint8Array): Promise<Uint8Array> {
    assert.equal(op, Op.SYNC);
    const { fromSeq, limit } = decode('SyncReq', body);
    this.asked.push(fromSeq);
    const after = [...this.stored].filter((s) => s > fromSeq && !this.hidden.has(s)).sort((a, b) => a - b);
    const reply = encode('SyncResp', {
      messages: after.slice(0, limit).map(msg), hasMore: after.length > limit, maxSeq: Math.max(0, ...this.stored),
    });
    const fail = this.failing > 0;
    if (fail) this.failing--;
    this.events.emit('change');
    await this.gate;
    if (fail) throw new Error('connection lost');
    return reply;
  }
}

/** A client's inbox and its syncs, recording everything they tell the application. */
class Client {
  readonly inbox: Inbox;
  readonly sync: InboxSync;
  readonly delivered: number[] = [];
  readonly synced: number[] = [];
  readonly errors: unknown[] = [];
  /** The attempt number of every backoff pause the sync asked for. */
  readonly delays: number[] = [];
  readonly events = new EventEmitter();
  private readonly waits = new Waits();

  constructor(server: SyncServer, lastSeq: number, pageLimit = 100) {
    this.inbox = new Inbox({ lastSeq });
    const changed = () => this.events.emit('change');
    this.sync = new InboxSync({
      inbox: this.inbox,
      pageLimit,
      connection: () => server.conn,
      deliver: (messages) => { this.delivered.push(...messages.map((m) => m.seq)); changed(); },
      onSynced: (seq) => { this.synced.push(seq); changed(); },
      onError: (err) => { this.errors.push(err); changed(); },
      retryDelayMs: (attempt) => { this.delays.push(attempt); return 0; },
      waits: this.waits,
    });
  }

  push(...seqs: number[]): void {
    for (const seq of seqs) this.sync.onPush(msg(seq));
  }

  until(cond: () => boolean): Promise<void> {
    return until(this.events, cond);
  }

  close(): void {
    this.waits.close();
  }
}

describe('client/inbox-sync: gaps in inbox seqs', () => {
  let server: SyncServer;
  const clients: Client[] = [];
  const client = (lastSeq: number, pageLimit?: number) => {
    const c = new Client(server, lastSeq, pageLimit);
    clients.push(c);
    return c;
  };
  beforeEach(() => { server = new SyncServer(); });
  afterEach(() => { for (const c of clients.splice(0)) c.close(); });

  it('a push that skips ahead is delivered after the one sync that confirms the gap', async () => {
    const c = client(7);
    server.store(3001); // the shard changed owner: 8..3000 are never written
    c.push(3001);
    await c.until(() => c.synced.length > 0);
    await settled();
    assert.deepEqual(server.asked, [7], 'exactly one sync');
    assert.deepEqual(c.delivered, [3001]);
    assert.deepEqual(c.synced, [3001]);
    assert.equal(c.inbox.lastSeq, 3001);
    assert.equal(c.inbox.hasGap, false);
    assert.deepEqual(c.delays, [], 'no backoff');
  });

  it('pushes that land while the confirming sync is in flight do not make it sync again', async () => {
    const c = client(7);
    server.store(3001, 3002);
    server.hold();
    c.push(3001);
    await until(server.events, () => server.asked.length === 1);
    server.store(3003); // written after the sync's read: not in its answer
    c.push(3002, 3003); // 3002 also comes in the answer
    server.release();
    await c.until(() => c.synced.length > 0);
    await settled();
    assert.deepEqual(server.asked, [7], 'the answer closed every gap: no second sync');
    assert.deepEqual(c.delivered, [3001, 3002, 3003], 'each seq once, in order');
    assert.deepEqual(c.synced, [3003]);
    assert.deepEqual(c.delays, []);
  });

  it('a push beyond a gap the in-flight sync could not see takes one more sync at once, without backoff', async () => {
    const c = client(7);
    server.store(8);
    server.hold();
    c.sync.onConnected(); // the catch-up reads 8 ...
    await until(server.events, () => server.asked.length === 1);
    server.store(3001); // ... then the shard changes owner
    c.push(3001);
    server.release();
    await c.until(() => c.synced.length > 0);
    await settled();
    assert.deepEqual(server.asked, [7, 8]);
    assert.deepEqual(c.delivered, [8, 3001]);
    assert.deepEqual(c.synced, [3001], 'synced once, when nothing more is owed');
    assert.deepEqual(c.delays, [], 'a push the sync could not have seen is no failure');
  });

  it('a catch-up whose pages jump over gaps delivers everything, in order, in one pass', async () => {
    const c = client(0, 3);
    const seqs = [1, 2, 3, 1001, 1002, 1003, 1004, 5001];
    server.store(...seqs);
    c.sync.onConnected();
    await c.until(() => c.synced.length > 0);
    await settled();
    assert.deepEqual(server.asked, [0, 3, 1003]);
    assert.deepEqual(c.delivered, seqs);
    assert.deepEqual(c.synced, [5001]);
    assert.deepEqual(c.delays, []);
  });

  it('a gap an own send in flight could fill waits for its ack; then one sync confirms the rest', async () => {
    const c = client(7);
    c.sync.ownSendStarted();
    server.store(9); // 8 is never written; the own send gets 10
    c.push(9);
    await settled();
    assert.deepEqual(server.asked, [], 'the missing seq may be the send in flight');
    server.store(10);
    c.sync.ownSendEnded(msg(10));
    await c.until(() => c.synced.length > 0);
    await settled();
    assert.deepEqual(server.asked, [7]);
    assert.deepEqual(c.delivered, [9, 10], 'each seq once, the own send included');
    assert.deepEqual(c.synced, [10]);
  });

  it('a SYNC_HINT while a sync is in flight still makes it go round once more', async () => {
    const c = client(0);
    server.store(1);
    server.hold();
    c.sync.onConnected();
    await until(server.events, () => server.asked.length === 1);
    server.store(2); // a push of it was missed
    c.sync.request();
    server.release();
    await c.until(() => c.delivered.length === 2);
    await c.until(() => c.synced.includes(2));
    assert.deepEqual(server.asked, [0, 1]);
    assert.deepEqual(c.delivered, [1, 2]);
  });

  it('an answer that leaves out a message pushed before it was asked is retried with backoff, then given up', async () => {
    const c = client(7);
    server.store(3001);
    server.hidden.add(3001); // a stale read: confirms nothing about 8..3000
    c.push(3001);
    await c.until(() => c.synced.length > 0);
    assert.deepEqual(server.asked, [7, 7, 7, 7]);
    assert.deepEqual(c.delays, [1, 2, 3]);
    assert.deepEqual(c.delivered, [3001], 'after maxGapSyncs, what is held is delivered');
    assert.deepEqual(c.synced, [3001]);
  });

  it('failed syncs back off and stop after maxSyncFailures; the next gap tries again', async () => {
    const c = client(7);
    server.store(3001);
    server.failing = 5;
    c.push(3001);
    await c.until(() => c.errors.length === 5);
    await settled();
    assert.deepEqual(server.asked, [7, 7, 7, 7, 7]);
    assert.deepEqual(c.delays, [1, 2, 3, 4]);
    assert.deepEqual(c.delivered, []);
    server.store(3002);
    c.push(3002);
    await c.until(() => c.synced.length > 0);
    assert.deepEqual(c.delivered, [3001, 3002]);
    assert.deepEqual(server.asked.length, 6);
  });
});
