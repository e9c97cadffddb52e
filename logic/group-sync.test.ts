import * as assert from 'node:assert/strict';
import { InProcessBus } from '../bus/bus';
import { silentLogger } from '../common/log';
import type { GroupInfo } from '../storage/store';
import { GroupCache } from './group-cache';
import { GROUP_SUBJECT, GroupSync } from './group-sync';
import { eventually } from '../test/wait';

const group = (groupId: string, members: string[]): GroupInfo => ({ groupId, name: groupId, owner: members[0], members, createdAtMs: 0 });

describe('GroupSync: a change is acked only after every live logic process dropped it', () => {
  const syncs: GroupSync[] = [];
  let bus: InProcessBus;
  beforeEach(() => { bus = new InProcessBus(); });
  afterEach(async () => { for (const s of syncs.splice(0)) s.close(); await bus.close(); });
  const start = (dropped: string[]) => {
    const s = new GroupSync({ bus, invalidate: (g) => dropped.push(g), logger: silentLogger, helloIntervalMs: 20 });
    syncs.push(s);
    return s;
  };

  it('changed() resolves after the other process dropped the group, not before', async () => {
    const droppedA: string[] = [];
    const droppedB: string[] = [];
    const a = start(droppedA);
    start(droppedB);
    await eventually(() => a.fresh, 'a holds its lease');
    const done = a.changed('g1');
    assert.deepEqual(droppedA, ['g1'], 'the own copy goes at once');
    assert.deepEqual(droppedB, [], 'the peer hears it over the bus');
    await done;
    assert.deepEqual(droppedB, ['g1']);
  });

  it('the lease: not fresh before two hellos have come back, nor once the bus is gone', async () => {
    const a = start([]);
    assert.equal(a.fresh, false);
    await eventually(() => a.fresh, 'lease');
    await bus.close();
    assert.equal(a.fresh, false);
  });

  it('a peer that closes says bye: a change then waits for nobody', async () => {
    const a = start([]);
    const b = start([]);
    await eventually(() => a.fresh, 'lease');
    b.close();
    await new Promise((r) => setImmediate(r)); // the bye crosses the (in-process) bus
    let done = false;
    void a.changed('g1').then(() => { done = true; });
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.equal(done, true, 'no wait for the closed peer');
  });

  it('a peer that never acks is waited out for two leases, then the change goes on', async () => {
    const a = start([]);
    // A process that says hello but never answers a change.
    bus.publish(GROUP_SUBJECT, Buffer.from(JSON.stringify({ t: 'hello', from: 'mute' })));
    await eventually(() => a.fresh, 'lease');
    bus.publish(GROUP_SUBJECT, Buffer.from(JSON.stringify({ t: 'hello', from: 'mute' })));
    await new Promise((r) => setImmediate(r));
    let done = false;
    const change = a.changed('g1').then(() => { done = true; });
    // Several bus round trips later (an ack would have come by now) it still waits for the mute peer.
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.equal(done, false);
    await change;
  });
});

describe('GroupCache', () => {
  it('serves from memory only when usable, and evicts the least recently used past its bound', async () => {
    const c = new GroupCache(2);
    let loads = 0;
    const load = (id: string) => async () => { loads++; return group(id, ['a']); };
    await c.get('g1', true, load('g1'));
    await c.get('g2', true, load('g2'));
    await c.get('g1', true, load('g1'));
    assert.equal(loads, 2, 'g1 from memory');
    await c.get('g1', false, load('g1'));
    assert.equal(loads, 3, 'no lease: the store');
    await c.get('g3', true, load('g3'));
    assert.equal(c.size, 2);
    await c.get('g1', true, load('g1'));
    assert.equal(loads, 4, 'g1 was used last and stayed');
    await c.get('g2', true, load('g2'));
    assert.equal(loads, 5, 'g2 was evicted');
  });

  it('a load that overlaps a drop is not kept (it may predate the change)', async () => {
    const c = new GroupCache(10);
    let release!: () => void;
    const slow = () => new Promise<GroupInfo>((r) => { release = () => r(group('g1', ['a', 'b'])); });
    const pending = c.get('g1', true, slow);
    c.drop('g1');
    release();
    await pending;
    assert.equal(c.size, 0);
  });
});
