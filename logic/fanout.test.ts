import { strict as assert } from 'node:assert';
import { gatewaySubject } from '../bus/bus';
import { type AppliedBatch, decodeDeliveryBatch, type DeliveryBatch } from '../proto/delivery';
import type { StoredMessage } from '../storage/store';
import { chunkByBytes, Fanout } from './fanout';
import type { LogicEnv } from './logic.test-support';
import { caller, collectBatches, makeLogicEnv, pushedTo, settle } from './logic.test-support';

const alice = caller('alice', 'gw1');

describe('fan-out', () => {
  let env: LogicEnv;
  beforeEach(async () => {
    env = makeLogicEnv();
    await env.router.bind([
      { uid: 'alice', deviceId: 'phone', node: 'gw1', connId: 'c1' },
      { uid: 'bob', deviceId: 'phone', node: 'gw1', connId: 'c2' },
      { uid: 'bob', deviceId: 'desk', node: 'gw1', connId: 'c3' },   // second session, same node
      { uid: 'bob', deviceId: 'tablet', node: 'gw2', connId: 'c4' }, // and one elsewhere
      { uid: 'carol', deviceId: 'phone', node: 'gw2', connId: 'c5' },
      // dave is offline
    ]);
  });
  afterEach(async () => { await env.close(); });

  it('publishes one DeliveryBatch per gateway node with each recipient\'s seq', async () => {
    const gw1 = collectBatches(env.bus, 'gw1');
    const gw2 = collectBatches(env.bus, 'gw2');
    const s = env.service;
    await s.send(caller('carol'), { to: 'bob', clientMsgId: 'warmup' }); // bob's inbox now ahead
    await settle(s);
    gw1.batches.length = 0;
    gw2.batches.length = 0;

    const { group } = await s.createGroup(alice, { name: 'g', members: ['bob', 'carol', 'dave'] });
    const sent = await s.send(alice, { groupId: group!.groupId, clientMsgId: 'g1', content: Buffer.from('yo') });
    await settle(s);

    assert.equal(gw1.batches.length, 1, 'one batch for gw1');
    assert.equal(gw2.batches.length, 1, 'one batch for gw2');
    assert.equal(gw1.batches[0].pushes.length, 1, 'the message travels once to gw1');
    assert.equal(gw2.batches[0].pushes.length, 1, 'the message travels once to gw2');
    const sum = (b: typeof gw1.batches) => pushedTo(b).map((d) => [d.uid, d.seq]).sort();
    // bob has two connections on gw1 but appears once there; the gateway pushes to both.
    assert.deepEqual(sum(gw1.batches), [['alice', 1], ['bob', 2]]);
    assert.deepEqual(sum(gw2.batches), [['bob', 2], ['carol', 2]]);
    for (const d of pushedTo([...gw1.batches, ...gw2.batches])) {
      const m = d.message;
      assert.equal(m.seq, d.seq, 'the pushed Message carries the recipient\'s own seq');
      assert.equal(m.msgId, sent.msgId);
      assert.equal(m.from, 'alice');
      assert.equal(m.groupId, group!.groupId);
      assert.equal(Buffer.from(m.content).toString(), 'yo');
    }
    gw1.stop();
    gw2.stop();
  });

  it('coalesces sends completing in the same turn into one batch per node and one lookup', async () => {
    const gw1 = collectBatches(env.bus, 'gw1');
    const lookupsBefore = env.router.lookups;
    const results = await Promise.all(Array.from({ length: 20 },
      (_, i) => env.service.send(alice, { to: 'bob', clientMsgId: `m${i}` })));
    await settle(env.service);
    assert.equal(gw1.batches.length, 1);
    assert.equal(env.router.lookups - lookupsBefore, 1);
    const deliveries = pushedTo(gw1.batches);
    assert.equal(deliveries.length, 40); // alice and bob, 20 messages each
    const bobSeqs = deliveries.filter((d) => d.uid === 'bob').map((d) => d.seq).sort((a, b) => a - b);
    assert.deepEqual(bobSeqs, Array.from({ length: 20 }, (_, i) => i + 1));
    assert.deepEqual(deliveries.filter((d) => d.uid === 'alice').map((d) => d.seq).sort((a, b) => a - b),
      results.map((r) => r.seq).sort((a, b) => a - b));
    gw1.stop();
  });

  it('splits a node\'s deliveries into bus messages under the byte cap, losing none', async () => {
    const gw1 = collectBatches(env.bus, 'gw1');
    const content = Buffer.alloc(10_000, 7);
    // 20 same-turn sends of 10 KB to bob and alice on gw1: ~400 KB of deliveries, cap 64 KB.
    const capped = new Fanout({ bus: env.bus, router: env.router, maxBatchBytes: 64 * 1024 });
    const sent = await Promise.all(Array.from({ length: 20 },
      (_, i) => env.store.appendMessage({
        msgId: `big-${i}`, convId: 'p:alice:bob', from: 'alice', to: 'bob', groupId: '', clientMsgId: `big-${i}`,
        contentType: 'application/octet-stream', content, sentAtMs: Date.now(), recipients: ['alice', 'bob'], dedupWindowMs: 60_000,
      })));
    for (const r of sent) capped.enqueue(r.message, r.seqs);
    await capped.close();
    await new Promise((r) => setImmediate(r));
    assert.ok(gw1.batches.length > 1, `expected several bus messages, got ${gw1.batches.length}`);
    for (const b of gw1.batches) {
      const bytes = b.pushes.reduce((n, p) => n + p.message.length, 0);
      assert.ok(bytes <= 64 * 1024, `a bus message carried ${bytes} bytes`);
    }
    const got = pushedTo(gw1.batches).map((d) => `${d.uid}:${d.seq}`).sort();
    const want = sent.flatMap((r) => [...r.seqs].map(([uid, seq]) => `${uid}:${seq}`)).sort();
    assert.deepEqual(got, want);
    gw1.stop();
  });

  it('does not push a duplicate send again', async () => {
    const gw1 = collectBatches(env.bus, 'gw1');
    await env.service.send(alice, { to: 'bob', clientMsgId: 'once' });
    await settle(env.service);
    await env.service.send(alice, { to: 'bob', clientMsgId: 'once' });
    await settle(env.service);
    assert.equal(gw1.batches.length, 1);
    gw1.stop();
  });

  it('never fails a send when the lookup fails; later sends push again', async () => {
    await env.close();
    env = makeLogicEnv({ fanoutLookupRetryMs: [] }); // no retry: the first push is lost for good
    await env.router.bind([{ uid: 'bob', deviceId: 'phone', node: 'gw1', connId: 'c2' }]);
    const gw1 = collectBatches(env.bus, 'gw1');
    env.router.failLookups = new Error('router down');
    const r = await env.service.send(alice, { to: 'bob', clientMsgId: 'lost-push' });
    await settle(env.service);
    assert.equal(r.seq, 1);
    assert.equal(gw1.batches.length, 0);
    env.router.failLookups = undefined;
    await env.service.send(alice, { to: 'bob', clientMsgId: 'next' });
    await settle(env.service);
    assert.equal(gw1.batches.length, 1);
    // The lost push is healed by sync.
    assert.equal((await env.service.sync(caller('bob'), { fromSeq: 0, limit: 0 })).messages.length, 2);
    gw1.stop();
  });

  it('tries a failed lookup again after each pause, and pushes once one try answers', async () => {
    const gw1 = collectBatches(env.bus, 'gw1');
    const pauses: number[] = [];
    const lookupsBefore = env.router.lookups;
    env.router.failLookups = new Error('lookup timed out');
    const fanout = new Fanout({
      bus: env.bus, router: env.router, lookupRetryMs: [100, 400, 1600],
      // The router answers again after the second pause.
      sleep: async (ms) => { pauses.push(ms); if (pauses.length === 2) env.router.failLookups = undefined; },
    });
    fanout.enqueue(stored('m1'), new Map([['bob', 7]]));
    await fanout.idle();
    assert.deepEqual(pauses, [100, 400]);
    assert.equal(env.router.lookups - lookupsBefore, 3);
    assert.deepEqual(pushedTo(gw1.batches).map((d) => [d.uid, d.seq]), [['bob', 7]]);
    gw1.stop();
  });

  it('skips the pushes once every try failed, and tries no more after close', async () => {
    const gw1 = collectBatches(env.bus, 'gw1');
    const pauses: number[] = [];
    env.router.failLookups = new Error('router down');
    const fanout = new Fanout({ bus: env.bus, router: env.router, lookupRetryMs: [100, 400], sleep: async (ms) => { pauses.push(ms); } });
    const lookupsBefore = env.router.lookups;
    fanout.enqueue(stored('m2'), new Map([['bob', 8]]));
    await fanout.idle();
    assert.deepEqual(pauses, [100, 400]);
    assert.equal(env.router.lookups - lookupsBefore, 3, 'one try and two retries');
    // Closing while a lookup fails: no pause, no retry.
    const closing = new Fanout({ bus: env.bus, router: env.router, lookupRetryMs: [100], sleep: async (ms) => { pauses.push(ms); } });
    closing.enqueue(stored('m3'), new Map([['bob', 9]]));
    await closing.close();
    assert.deepEqual(pauses, [100, 400], 'no pause once closed');
    await settle(env.service);
    assert.equal(gw1.batches.length, 0);
    gw1.stop();
  });

  it('publishes nothing when no recipient is online', async () => {
    const gw1 = collectBatches(env.bus, 'gw1');
    const gw2 = collectBatches(env.bus, 'gw2');
    await env.service.send(caller('dave'), { to: 'erin', clientMsgId: 'x' });
    await settle(env.service);
    assert.equal(gw1.batches.length + gw2.batches.length, 0);
    gw1.stop();
    gw2.stop();
  });
});

describe('fan-out: one body per node, none to the sending connection', () => {
  let env: LogicEnv;
  beforeEach(() => { env = makeLogicEnv(); });
  afterEach(async () => { await env.close(); });

  it('puts a 100-member group message on the bus once for a node: one body plus 100 small targets', async () => {
    const uids = Array.from({ length: 100 }, (_, i) => `member-${String(i).padStart(3, '0')}`);
    await env.router.bind(uids.map((uid) => ({ uid, deviceId: 'phone', node: 'gw1', connId: `c-${uid}` })));
    const payloads: Uint8Array[] = [];
    const stop = env.bus.subscribe(gatewaySubject('gw1'), (data) => payloads.push(data));
    const { group } = await env.service.createGroup(caller(uids[0]), { name: 'big', members: uids.slice(1) });
    const content = Buffer.alloc(1000, 1);
    await env.service.send(caller(uids[0]), { groupId: group!.groupId, clientMsgId: 'one-body', content });
    await settle(env.service);
    stop();

    assert.equal(payloads.length, 1);
    const batch = decodeDeliveryBatch(payloads[0]);
    assert.equal(batch.pushes.length, 1);
    assert.equal(batch.pushes[0].targets.length, 100);
    const body = batch.pushes[0].message.length;
    // A target is a uid (10 bytes here), a seq and three tag/length bytes: under 20 bytes each.
    assert.ok(payloads[0].length <= body + 100 * 20 + 16, `bus payload ${payloads[0].length} bytes for a ${body}-byte body`);
    assert.ok(body >= content.length && body < content.length + 200);
  });

  it('skips the sending connection: its other devices get a target naming it, a lone connection none', async () => {
    const alice = caller('alice', 'gw1', 'phone');
    await env.router.bind([
      { uid: 'alice', deviceId: 'phone', node: 'gw1', connId: alice.connId },
      { uid: 'alice', deviceId: 'desk', node: 'gw1', connId: 'alice-desk' },
      { uid: 'alice', deviceId: 'tablet', node: 'gw2', connId: 'alice-tablet' },
      { uid: 'bob', deviceId: 'phone', node: 'gw1', connId: 'bob-phone' },
    ]);
    const gw1 = collectBatches(env.bus, 'gw1');
    const gw2 = collectBatches(env.bus, 'gw2');
    await env.service.send(alice, { to: 'bob', clientMsgId: 'a1' });
    await settle(env.service);
    const targets = (b: typeof gw1.batches) => pushedTo(b).map((d) => [d.uid, d.exceptConnId]).sort();
    assert.deepEqual(targets(gw1.batches), [['alice', alice.connId], ['bob', '']]);
    assert.deepEqual(targets(gw2.batches), [['alice', '']], 'another node holds no sending connection');

    await env.router.unbind([
      { uid: 'alice', deviceId: 'desk', node: 'gw1', connId: 'alice-desk' },
      { uid: 'alice', deviceId: 'tablet', node: 'gw2', connId: 'alice-tablet' },
    ]);
    gw1.batches.length = 0;
    await env.service.send(alice, { to: 'bob', clientMsgId: 'a2' });
    await settle(env.service);
    assert.deepEqual(targets(gw1.batches), [['bob', '']], 'only the sending connection online: alice is not a target');
    gw1.stop();
    gw2.stop();
  });
});

describe('fan-out to a gateway in the same process (embedded mode)', () => {
  it('hands that node its batches as built, not over the bus; other nodes still get the bus', async () => {
    const handed: AppliedBatch[] = [];
    const env = makeLogicEnv({ localDelivery: { node: 'gw1', deliver: (batch) => queueMicrotask(() => handed.push(batch)) } });
    try {
      await env.router.bind([
        { uid: 'alice', deviceId: 'phone', node: 'gw1', connId: 'c1' },
        { uid: 'bob', deviceId: 'phone', node: 'gw1', connId: 'c2' },
        { uid: 'bob', deviceId: 'tablet', node: 'gw2', connId: 'c3' },
      ]);
      const gw1 = collectBatches(env.bus, 'gw1');
      const gw2 = collectBatches(env.bus, 'gw2');
      const sent = await env.service.send(alice, { to: 'bob', clientMsgId: 'local-1', content: Buffer.from('hi') });
      await settle(env.service);
      assert.equal(gw1.batches.length, 0, 'nothing for gw1 on the bus');
      assert.equal(gw2.batches.length, 1, 'gw2 still over the bus');
      // alice's phone (c1) is another connection than the one she sent on: it gets the message too.
      assert.deepEqual(pushedTo(handed as DeliveryBatch[]).map((d) => [d.uid, d.seq, d.message.msgId, Buffer.from(d.message.content).toString()]),
        [['alice', 1, sent.msgId, 'hi'], ['bob', 1, sent.msgId, 'hi']]);
      assert.deepEqual(pushedTo(gw2.batches).map((d) => [d.uid, d.message.msgId]), [['bob', sent.msgId]]);
      gw1.stop();
      gw2.stop();
    } finally {
      await env.close();
    }
  });
});

describe('chunkByBytes', () => {
  const push = (bodyBytes: number, targets: number) => ({
    message: new Uint8Array(bodyBytes), traceParent: '', sentAtMs: 1,
    targets: Array.from({ length: targets }, (_, i) => ({ uid: `u${i}`, seq: i + 1 })),
  });

  it('keeps whole pushes together while they fit, and splits one push\'s targets when they do not', () => {
    assert.equal(chunkByBytes([push(100, 3), push(100, 3)], 10_000).length, 1);
    const chunks = chunkByBytes([push(1000, 200)], 2000);
    assert.ok(chunks.length > 1, 'split');
    const seqs = chunks.flatMap((c) => c.flatMap((p) => p.targets.map((t) => t.seq)));
    assert.deepEqual(seqs, Array.from({ length: 200 }, (_, i) => i + 1), 'every target once, in order');
    for (const c of chunks) {
      assert.equal(c.length, 1);
      assert.equal(c[0].message.length, 1000, 'each part carries the body');
    }
  });
});

function stored(msgId: string): StoredMessage {
  return {
    msgId, convId: 'p:alice:bob', from: 'alice', to: 'bob', groupId: '', clientMsgId: msgId, contentType: 'text/plain',
    content: Buffer.from(msgId), sentAtMs: Date.now(), convSeq: 1,
  };
}
