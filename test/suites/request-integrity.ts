/**
 * Requests that look alike must not be taken for one another: a string that is not valid UTF-8
 * is refused instead of being replaced (which made two client_msg_ids equal), and a reused
 * client_msg_id with different content is refused instead of being acknowledged as the first
 * message. In both cases the second send used to be acknowledged and then lost.
 */
import * as assert from 'node:assert/strict';
import * as protobuf from 'protobufjs';
import { Code } from '../../common/errors';
import type { ImClient } from '../../client/sdk';
import { decode, frameBytes, Op } from '../../proto/wire';
import { Mode, TestSystem, text } from '../harness';
import { needsAll } from './needs';

/** The SendReq bodies from issue 11: to "repro-b", client_msg_ids "id-\xff" and "id-\xfe". */
const FIRST = Buffer.from('2a07726570726f2d623a0469642dff52056669727374', 'hex');
const SECOND = Buffer.from('2a07726570726f2d623a0469642dfe52067365636f6e64', 'hex');

export function requestIntegritySuite(mode: Mode): void {
describe(`e2e request integrity (${mode.name})`, function () {
  let t: TestSystem;

  before(async function () {
    await needsAll(this, mode);
    t = await TestSystem.start(mode);
  });
  after(async () => { await t?.stop(); });

  it('refuses SendReq bodies whose client_msg_id is not UTF-8 with BAD_REQUEST; nothing is stored', async () => {
    const r = await t.rawAuthed('utf8-sender');
    r.write(frameBytes({ op: Op.SEND, requestId: 1, body: FIRST }));
    r.write(frameBytes({ op: Op.SEND, requestId: 2, body: SECOND }));
    const replies = await r.waitForCount((f) => f.op === Op.SEND, 2);
    for (const f of replies) {
      assert.equal(f.error?.code, Code.BAD_REQUEST, `request ${f.requestId}: ${JSON.stringify(f.error)}`);
      assert.equal(f.error?.retryable, false);
    }
    // Nothing was stored for the sender, so nothing can have been acknowledged as another's duplicate.
    const sync = await r.request(Op.SYNC, 'SyncReq', { fromSeq: 0, limit: 10 });
    assert.equal(decode('SyncResp', sync.body).maxSeq, 0);
  });

  it('refuses an Auth whose device id is not UTF-8 with BAD_REQUEST', async () => {
    const r = await t.raw();
    // Auth{token: <valid>, device_id: "d-\xff"}: device_id written as raw bytes (same wire type).
    const body = protobuf.Writer.create().uint32(10).string(t.token('utf8-auth'))
      .uint32(18).bytes(Buffer.from([0x64, 0x2d, 0xff])).finish();
    r.write(frameBytes({ op: Op.AUTH, requestId: 99, body }));
    const reply = await r.waitFor((f) => f.op === Op.AUTH && f.requestId === 99);
    assert.equal(reply.error?.code, Code.BAD_REQUEST);
    const again = await r.request(Op.AUTH, 'Auth', { token: t.token('utf8-auth'), deviceId: 'd-ok' });
    assert.equal(again.error, null, 'the connection can still authenticate properly');
  });

  describe('a reused client_msg_id', () => {
    let alice: ImClient;
    let bob: ImClient;
    before(async () => {
      alice = await t.client('alice');
      bob = await t.client('bob');
    });

    it('with other content is refused with IDEMPOTENCY_CONFLICT (not retryable); the same content is a duplicate', async () => {
      const first = await alice.send(t.uid('bob'), 'first', { clientMsgId: 'reused-1' });
      await assert.rejects(alice.send(t.uid('bob'), 'second', { clientMsgId: 'reused-1' }), (err: { code?: number; retryable?: boolean }) => {
        assert.equal(err.code, Code.IDEMPOTENCY_CONFLICT);
        assert.equal(err.retryable, false);
        return true;
      });
      const retry = await alice.send(t.uid('bob'), 'first', { clientMsgId: 'reused-1' });
      assert.equal(retry.duplicate, true);
      assert.equal(retry.msgId, first.msgId);
      assert.equal(retry.seq, first.seq);
      // bob's inbox holds exactly the first message: its max seq says nothing else was stored.
      const after = await alice.send(t.uid('bob'), 'marker', { clientMsgId: 'marker-1' });
      const got = await t.inbox(bob).waitFor(2);
      assert.deepEqual(got.map(text), ['first', 'marker']);
      assert.equal(after.duplicate, false);
    });
  });
});
}
