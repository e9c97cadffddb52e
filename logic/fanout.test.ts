import { strict as assert } from 'node:assert';
import { decode } from '../proto/wire';
import { toWireMessage, withSeq } from './convert';
import { Fanout } from './fanout';
import { encode } from '../proto/wire';
import type { LogicEnv } from './test-support';
import { caller, collectBatches, makeLogicEnv, settle } from './test-support';

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
    const sum = (b: typeof gw1.batches) => b[0].deliveries.map((d) => [d.uid, d.seq]).sort();
    // bob has two connections on gw1 but appears once there; the gateway pushes to both.
    assert.deepEqual(sum(gw1.batches), [['alice', 1], ['bob', 2]]);
    assert.deepEqual(sum(gw2.batches), [['bob', 2], ['carol', 2]]);
    for (const d of [...gw1.batches[0].deliveries, ...gw2.batches[0].deliveries]) {
      const m = decode('Message', d.message);
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
    const deliveries = gw1.batches[0].deliveries;
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
      const bytes = b.deliveries.reduce((n, d) => n + d.message.length, 0);
      assert.ok(bytes <= 64 * 1024, `a bus message carried ${bytes} bytes`);
    }
    const got = gw1.batches.flatMap((b) => b.deliveries.map((d) => `${d.uid}:${d.seq}`)).sort();
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

describe('withSeq', () => {
  it('sets the seq of an encoded Message, including seqs beyond 2^32', () => {
    const base = encode('Message', toWireMessage({
      msgId: 'm', convId: 'p:a:b', from: 'a', to: 'b', groupId: '', clientMsgId: 'c', contentType: 'text/plain',
      content: Buffer.from('hi'), sentAtMs: 1, convSeq: 7,
    }, 0));
    for (const seq of [1, 127, 128, 300, 2 ** 31, 2 ** 32 + 5, Number.MAX_SAFE_INTEGER]) {
      const m = decode('Message', withSeq(base, seq));
      assert.equal(m.seq, seq);
      assert.equal(m.convSeq, 7);
      assert.equal(Buffer.from(m.content).toString(), 'hi');
    }
  });
});
