import { strict as assert } from 'node:assert';
import { InProcessBus } from '../../bus/bus';
import type { Logger } from '../../common/log';
import { waitFor } from '../../test/exactly-once';
import { decodeWire, encodeWire, Peers, PeerTimeoutError } from './peers';

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
