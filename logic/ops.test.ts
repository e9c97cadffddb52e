import { strict as assert } from 'node:assert';
import { Code } from '../common/errors';
import { decode, encode, Op } from '../proto/wire';
import type { CallContext } from './ops';
import { OpRegistry, registerClientOps } from './ops';
import type { LogicEnv } from './logic.test-support';
import { errorCode, makeLogicEnv } from './logic.test-support';

const ctx = (uid: string, op: number): CallContext => ({ uid, op, deviceId: 'd', connId: 'c', node: 'gw1' });

describe('OpRegistry', () => {
  let env: LogicEnv;
  let registry: OpRegistry;
  beforeEach(() => {
    env = makeLogicEnv();
    registry = new OpRegistry();
    registerClientOps(registry, env.service);
  });
  afterEach(async () => { await env.close(); });

  it('registers every business op of the client protocol', () => {
    for (const op of [Op.SEND, Op.SYNC, Op.HISTORY, Op.READ, Op.UNREAD, Op.GROUP_CREATE, Op.GROUP_ADD,
      Op.GROUP_REMOVE, Op.GROUP_LEAVE, Op.GROUP_MEMBERS]) assert.ok(registry.has(op), `op ${op}`);
    assert.equal(registry.has(Op.AUTH), false);
  });

  it('answers an unknown op with UNKNOWN_OP (1002)', async () => {
    assert.equal(await errorCode(registry.handle(ctx('alice', 999), new Uint8Array())), 1002);
  });

  it('answers a garbage body with BAD_REQUEST (2000)', async () => {
    // Field 1, length-delimited, claims 16 bytes that are not there.
    const garbage = Uint8Array.from([0x0a, 0x10, 0x01]);
    for (const op of [Op.SEND, Op.SYNC, Op.GROUP_CREATE]) {
      assert.equal(await errorCode(registry.handle(ctx('alice', op), garbage)), 2000, `op ${op}`);
    }
    assert.equal(await errorCode(registry.handle(ctx('alice', Op.SEND), Uint8Array.from([0xff, 0xff, 0xff]))), 2000);
  });

  it('turns a custom handler that throws instead of rejecting into a rejection', async () => {
    registry.register(501, () => { throw new Error('thrown, not rejected'); });
    const p = registry.handle(ctx('alice', 501), new Uint8Array());
    await assert.rejects(p, /thrown, not rejected/);
  });

  it('refuses ops below 100 and duplicate registrations', () => {
    assert.throws(() => registry.register(5, async () => new Uint8Array()), /business ops/);
    assert.throws(() => registry.register(Op.SEND, async () => new Uint8Array()), /already registered/);
    registry.register(500, async () => new Uint8Array());
    assert.ok(registry.has(500));
  });

  it('runs a send from bytes to bytes, with the sender taken from the caller, not the body', async () => {
    // A Message-shaped body (field numbers match SendReq) carrying a forged "from".
    const body = encode('Message', { from: 'mallory', to: 'bob', clientMsgId: 'c1', content: Buffer.from('hi') });
    const resp = decode('SendResp', await registry.handle(ctx('alice', Op.SEND), body));
    assert.equal(resp.seq, 1);
    assert.equal(resp.duplicate, false);
    const sync = decode('SyncResp', await registry.handle(ctx('bob', Op.SYNC), encode('SyncReq', { fromSeq: 0 })));
    assert.equal(sync.messages.length, 1);
    assert.equal(sync.messages[0].from, 'alice');
    assert.equal(sync.messages[0].msgId, resp.msgId);
    // A group op round trip.
    const created = decode('GroupResp', await registry.handle(ctx('alice', Op.GROUP_CREATE),
      encode('GroupCreateReq', { name: 'g', members: ['bob'] })));
    assert.deepEqual(created.group!.members, ['alice', 'bob']);
    const left = decode('GroupResp', await registry.handle(ctx('alice', Op.GROUP_LEAVE),
      encode('GroupMembersReq', { groupId: created.group!.groupId })));
    assert.equal(left.group!.owner, 'bob');
    assert.equal(await errorCode(registry.handle(ctx('alice', Op.GROUP_MEMBERS),
      encode('GroupMembersReq', { groupId: created.group!.groupId }))), Code.NOT_GROUP_MEMBER);
  });
});
