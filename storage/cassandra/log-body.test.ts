import { strict as assert } from 'node:assert';
import { decodeBody, encodeBody, type BodyRow } from './log-body';

describe('owner log body', () => {
  const content = Buffer.from('héllo, wörld ✓');
  const pool = Buffer.alloc(64, 7);
  const rows: BodyRow[] = [
    { query: 'INSERT INTO ks.history (conv_id, bucket, seq, content) VALUES (?, ?, ?, ?)', shard: 3, epoch: 12, ts: 1_765_000_000_000_123,
      routingKey: Buffer.from([0, 5, 0xff, 0x80, 0x7f]), bytes: 164, params: ['p:a:b', 0, 1, content] },
    { query: 'INSERT INTO ks.inbox (uid, bucket, seq, content, tags) VALUES (?, ?, ?, ?, ?)', shard: 4, epoch: 1, ts: undefined,
      routingKey: Buffer.from('alice'), bytes: 120,
      params: ['alice', 0, 2 ** 40, content, ['x', -1, -(2 ** 45), 0.5, null, true, false, pool.subarray(8, 16), pool.subarray(16, 24)]] },
    { query: 'INSERT INTO ks.inbox (uid, bucket, seq, content, tags) VALUES (?, ?, ?, ?, ?)', shard: 4, epoch: 1, ts: 5,
      routingKey: Buffer.from('alice'), bytes: 120, params: ['alice', 0, 3, content, { odd: 'object' }] },
  ];

  it('round-trips every kind of value, with strings, keys and byte slices written once', () => {
    const body = encodeBody(rows);
    const back = decodeBody(body);
    assert.deepEqual(back.map((r) => ({ ...r, routingKey: [...r.routingKey] })), rows.map((r) => ({ ...r, routingKey: [...r.routingKey] })));
    // The content is in the body once, however many rows carry it.
    assert.equal(body.indexOf(content), body.lastIndexOf(content));
    assert.ok(body.indexOf(content) > 0);
    // Two distinct slices of one buffer stay two values.
    const tags = back[1].params[4] as unknown[];
    assert.deepEqual([...(tags[7] as Buffer)], [7, 7, 7, 7, 7, 7, 7, 7]);
    assert.equal(body.indexOf('alice'), body.lastIndexOf('alice'));
  });

  it('reads the previous release\'s JSON bodies', () => {
    const json = Buffer.from(JSON.stringify({
      q: ['INSERT INTO ks.inbox (uid, seq, content) VALUES (?, ?, ?)'], b: [Buffer.from('hi').toString('base64')],
      r: [[0, 2, 9, 77, Buffer.from('bob').toString('base64'), 50, ['bob', 1, { $r: 0 }]]],
    }));
    const [r] = decodeBody(json);
    assert.deepEqual({ ...r, routingKey: r.routingKey.toString() }, {
      query: 'INSERT INTO ks.inbox (uid, seq, content) VALUES (?, ?, ?)', shard: 2, epoch: 9, ts: 77, routingKey: 'bob', bytes: 50,
      params: ['bob', 1, Buffer.from('hi')],
    });
  });

  it('refuses a truncated body or an unknown version instead of returning garbage', () => {
    const body = encodeBody(rows);
    assert.throws(() => decodeBody(body.subarray(0, body.length - 3)), /truncated/);
    assert.throws(() => decodeBody(Buffer.from([0x09, 0])), /unknown version/);
  });
});
