import { strict as assert } from 'node:assert';
import { flushBus, InProcessBus } from '../../bus/bus';
import { NatsBus } from '../../bus/nats';
import { UnavailableError } from '../../common/errors';
import type { Logger } from '../../common/log';
import { waitFor } from '../../test/exactly-once';
import { NATS_URL, NATS_WHERE, needs } from '../../test/infra';
import { decodeWire, encodeChunks, encodeWire, Peers, PeerTimeoutError } from './peers';

describe('store peers wire', () => {
  it('writes JSON with byte arrays as base64 under "$b", as processes of earlier releases read and write it', () => {
    const call = {
      r: 'im.store.p1.r',
      c: [
        { i: 1, op: 'append', a: { t: 'i', key: 'u1', e: { content: Buffer.from('hi'), digest: new Uint8Array([1, 2, 3]), to: ['u1', 'u2'], gone: undefined }, s: 5 } },
        { i: 2, op: 'complete', a: { at: new Date(0), list: [undefined, null, new Uint8Array(new ArrayBuffer(8), 2, 2)] } },
      ],
    };
    const text = Buffer.from(encodeWire(call)).toString('utf8');
    assert.equal(text, '{"r":"im.store.p1.r","c":[' +
      '{"i":1,"op":"append","a":{"t":"i","key":"u1","e":{"content":{"$b":"aGk="},"digest":{"$b":"AQID"},"to":["u1","u2"]},"s":5}},' +
      '{"i":2,"op":"complete","a":{"at":"1970-01-01T00:00:00.000Z","list":[null,null,{"$b":"AAA="}]}}]}');
  });

  it('reads byte arrays back as Uint8Array and leaves every other value as JSON gives it', () => {
    const data = Buffer.from('{"c":[{"i":1,"v":{"content":{"$b":"aGk="},"x":{"$b":"AQ==","y":1},"n":[{"$b":""},"$b",3]}}]}');
    const v = decodeWire(data) as { c: { i: number; v: { content: Uint8Array; x: unknown; n: unknown[] } }[] };
    const got = v.c[0].v;
    assert.ok(got.content instanceof Uint8Array);
    assert.equal(Buffer.from(got.content).toString(), 'hi');
    assert.deepEqual(got.x, { $b: 'AQ==', y: 1 }, 'an object with more than "$b" stays an object');
    assert.ok(got.n[0] instanceof Uint8Array && (got.n[0] as Uint8Array).length === 0);
    assert.deepEqual(got.n.slice(1), ['$b', 3]);
  });

  it('round-trips a batch of calls', () => {
    const batch = { c: Array.from({ length: 3 }, (_, i) => ({ i, op: 'open', a: { from: `u${i}`, content: Buffer.from(`m${i}`) } })) };
    const back = decodeWire(encodeWire(batch)) as { c: { i: number; op: string; a: { from: string; content: Uint8Array } }[] };
    assert.deepEqual(back.c.map((c) => [c.i, c.op, c.a.from, Buffer.from(c.a.content).toString()]), [[0, 'open', 'u0', 'm0'], [1, 'open', 'u1', 'm1'], [2, 'open', 'u2', 'm2']]);
  });
});

describe('store peer calls', () => {
  const logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as Logger;
  /** A caller and an owner on one bus; the owner answers each call when the test lets it. */
  function pair(timeoutMs: number) {
    const bus = new InProcessBus();
    const gates: (() => void)[] = [];
    const serve = async (op: string) => {
      await new Promise<void>((r) => gates.push(r));
      return `${op} done`;
    };
    const caller = new Peers({ bus, prefix: 'im.store.t', serve, timeoutMs, logger });
    const owner = new Peers({ bus, prefix: 'im.store.t', serve, timeoutMs, logger });
    caller.listen('caller');
    owner.listen('owner');
    return { caller, owner, gates, close: () => { caller.close(); owner.close(); } };
  }

  it('keeps waiting for a call past its timeout while the owner is alive, and gets the answer', async () => {
    const p = pair(10);
    let asked = 0;
    const call = p.caller.call('owner', 'send', {}, { alive: async () => { asked++; return true; }, maxWaitMs: 60_000 });
    await waitFor('three checks of the owner', 5_000, () => asked >= 3);
    await waitFor('the call at the owner', 5_000, () => p.gates.length === 1);
    p.gates[0]();
    assert.equal(await call, 'send done');
    p.close();
  });

  it('gives a call up as soon as the owner is not alive, and at maxWaitMs while it is', async () => {
    const p = pair(10);
    await assert.rejects(p.caller.call('owner', 'send', {}, { alive: async () => false, maxWaitMs: 60_000 }), PeerTimeoutError);
    const started = Date.now();
    await assert.rejects(p.caller.call('owner', 'send', {}, { alive: async () => true, maxWaitMs: 50 }), PeerTimeoutError);
    assert.ok(Date.now() - started >= 40, 'waited about maxWaitMs');
    await assert.rejects(p.caller.call('owner', 'open', {}), PeerTimeoutError, 'without alive: one timeout');
    p.close();
  });
});

describe('store peer messages within the bus payload', () => {
  const logger = { debug: () => undefined, info: () => undefined, warn: () => undefined, error: () => undefined } as unknown as Logger;

  it('splits a tick\'s calls into messages of at most maxBytes, each call whole and in order', () => {
    const calls = Array.from({ length: 50 }, (_, i) => ({ i, op: 'append', a: { content: new Uint8Array(300).fill(i) } }));
    const refused: number[] = [];
    const head = '{"r":"im.store.t.caller.r","c":[';
    const messages = encodeChunks(head, calls, 4_000, 1 << 20, (i) => refused.push(i));
    assert.equal(refused.length, 0);
    assert.ok(messages.length > 1, `${messages.length} messages`);
    for (const m of messages) assert.ok(m.length <= 4_000, `${m.length} bytes`);
    const back = messages.flatMap((m) => (decodeWire(m) as { r: string; c: { i: number; a: { content: Uint8Array } }[] }).c);
    assert.deepEqual(back.map((c) => c.i), calls.map((c) => c.i));
    assert.deepEqual(Buffer.from(back[7].a.content), Buffer.from(calls[7].a.content));
    assert.deepEqual(Buffer.from(encodeChunks(head, calls, 1 << 20, 1 << 20, () => undefined)[0]),
      Buffer.from(encodeWire({ r: 'im.store.t.caller.r', c: calls })), 'one message: the bytes encodeWire writes');
    const mixed: { i: number; op: string; a: unknown }[] = [calls[0], { i: 99, op: 'x', a: { big: 'y'.repeat(5_000) } }];
    assert.equal(encodeChunks(head, mixed, 1_000, 3_000, (i) => refused.push(i)).length, 1);
    assert.deepEqual(refused, [99], 'an item alone over the limit is refused, the rest sent');
  });

  describe(`over NATS (${NATS_WHERE})`, function () {
    this.timeout(30_000);
    let buses: NatsBus[] = [];
    before(async function () {
      await needs(this, 'nats');
    });
    afterEach(async () => {
      await Promise.all(buses.map((b) => b.close()));
      buses = [];
    });

    async function pair() {
      const [a, b] = await Promise.all([NatsBus.connect({ servers: NATS_URL }), NatsBus.connect({ servers: NATS_URL })]);
      buses.push(a, b);
      const prefix = `im.store.test${process.pid}x${Date.now()}`;
      let served = 0;
      const owner = new Peers({ bus: b, prefix, timeoutMs: 10_000, logger, serve: async (_op, args) => { served++; return args; } });
      const caller = new Peers({ bus: a, prefix, timeoutMs: 10_000, logger, serve: async () => null });
      owner.listen('owner');
      caller.listen('caller');
      await Promise.all([flushBus(a), flushBus(b)]);
      return { caller, owner, served: () => served, maxPayload: a.maxPayload! };
    }

    it('answers every call of a tick whose calls and answers together are several times the server\'s max_payload', async () => {
      const p = await pair();
      assert.ok(p.maxPayload > 0, 'the server told its max_payload');
      // A backlog's tick: ~4 × max_payload of calls to one owner (under load 1.1–1.5 MB went out as one message and NATS refused it).
      const n = Math.ceil((4 * p.maxPayload) / 1_400);
      const calls = Array.from({ length: n }, (_, i) => p.caller.call('owner', 'append', { n: i, content: new Uint8Array(1_000).fill(i & 0xff) }));
      const answers = (await Promise.all(calls)) as { n: number; content: Uint8Array }[];
      assert.equal(p.served(), n);
      assert.deepEqual(answers.map((a) => a.n), calls.map((_, i) => i));
      assert.equal(answers[n - 1].content[0], (n - 1) & 0xff);
      p.caller.close();
      p.owner.close();
    });

    it('fails a call too large for the bus at once, and still sends the calls made with it', async () => {
      const p = await pair();
      const small = p.caller.call('owner', 'append', { n: 1 });
      const started = Date.now();
      await assert.rejects(p.caller.call('owner', 'append', { content: new Uint8Array(p.maxPayload) }),
        (e: unknown) => e instanceof UnavailableError && /max payload/.test(e.message));
      assert.ok(Date.now() - started < 5_000, 'not after a timeout');
      assert.deepEqual(await small, { n: 1 });
      p.caller.close();
      p.owner.close();
    });
  });
});
