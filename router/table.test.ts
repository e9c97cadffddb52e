import * as assert from 'node:assert/strict';
import { BadRequestError, Code, ImError } from '../common/errors';
import type { GatewayStatus, SessionRef } from './api';
import { RouteTable } from './table';

function sess(uid: string, node: string, connId: string, deviceId = 'd'): SessionRef {
  return { uid, deviceId, node, connId };
}

function gw(node: string, over: Partial<GatewayStatus> = {}): GatewayStatus {
  return { node, addr: `10.0.0.1:${7100}`, region: 'eu', zone: 'eu-1a', connections: 0, capacity: 100, draining: false, ...over };
}

/** Order-insensitive view of sessions for comparisons. */
function keys(sessions: SessionRef[]): string[] {
  return sessions.map((s) => `${s.uid}@${s.node}/${s.connId}/${s.deviceId}`).sort();
}

function assertBadRequest(fn: () => unknown): void {
  assert.throws(fn, (err: unknown) => err instanceof BadRequestError && (err as ImError).code === Code.BAD_REQUEST);
}

describe('RouteTable', () => {
  let clock: number;
  let table: RouteTable;
  beforeEach(() => {
    clock = 1_000_000;
    table = new RouteTable({ now: () => clock, gatewayTtlMs: 10_000, maxSessionsPerUid: 3, maxUidsPerLookup: 5 });
  });

  describe('sessions', () => {
    it('binds and looks up sessions across nodes and devices', () => {
      table.bind([sess('alice', 'gw1', 'c1', 'phone'), sess('alice', 'gw2', 'c9', 'desk'), sess('bob', 'gw1', 'c2')]);
      assert.deepEqual(keys(table.lookup(['alice'])), ['alice@gw1/c1/phone', 'alice@gw2/c9/desk']);
      assert.deepEqual(keys(table.lookup(['bob', 'carol'])), ['bob@gw1/c2/d']);
      assert.deepEqual(table.lookup(['carol']), []);
    });

    it('answers a uid asked twice only once', () => {
      table.bind([sess('alice', 'gw1', 'c1')]);
      assert.equal(table.lookup(['alice', 'alice']).length, 1);
    });

    it('rebinding the same (node, connId) replaces the session, even for another uid', () => {
      table.bind([sess('alice', 'gw1', 'c1', 'old')]);
      table.bind([sess('alice', 'gw1', 'c1', 'new')]);
      assert.deepEqual(keys(table.lookup(['alice'])), ['alice@gw1/c1/new']);
      table.bind([sess('bob', 'gw1', 'c1')]);
      assert.deepEqual(table.lookup(['alice']), []);
      assert.deepEqual(keys(table.lookup(['bob'])), ['bob@gw1/c1/d']);
      assert.equal(table.stats().sessions, 1);
    });

    it('unbind matches on node and connId only, and ignores unknown sessions', () => {
      table.bind([sess('alice', 'gw1', 'c1', 'phone'), sess('alice', 'gw2', 'c1'), sess('bob', 'gw1', 'c2')]);
      table.unbind([{ node: 'gw1', connId: 'c1' }, { node: 'gw3', connId: 'nope' }]);
      assert.deepEqual(keys(table.lookup(['alice', 'bob'])), ['alice@gw2/c1/d', 'bob@gw1/c2/d']);
      table.unbind([sess('whoever', 'gw2', 'c1')]);
      assert.deepEqual(keys(table.lookup(['alice', 'bob'])), ['bob@gw1/c2/d']);
      assert.deepEqual(table.stats(), { uids: 1, sessions: 1, nodes: 1, gateways: 0 });
    });

    it('snapshot replaces everything held for that node and leaves other nodes alone', () => {
      table.bind([sess('alice', 'gw1', 'c1'), sess('bob', 'gw1', 'c2'), sess('alice', 'gw2', 'c7')]);
      table.snapshot('gw1', [sess('bob', 'gw1', 'c2'), sess('carol', 'gw1', 'c3')]);
      assert.deepEqual(keys(table.lookup(['alice', 'bob', 'carol'])), ['alice@gw2/c7/d', 'bob@gw1/c2/d', 'carol@gw1/c3/d']);
      table.snapshot('gw1', []);
      assert.deepEqual(keys(table.lookup(['alice', 'bob', 'carol'])), ['alice@gw2/c7/d']);
    });

    it('snapshot refuses sessions of another node and changes nothing', () => {
      table.bind([sess('alice', 'gw1', 'c1')]);
      assertBadRequest(() => table.snapshot('gw1', [sess('bob', 'gw2', 'c2')]));
      assert.deepEqual(keys(table.lookup(['alice', 'bob'])), ['alice@gw1/c1/d']);
    });

    it('binding beyond maxSessionsPerUid evicts that uid\'s oldest session', () => {
      table.bind([sess('alice', 'gw1', 'c1', 'a'), sess('alice', 'gw1', 'c2', 'b'), sess('alice', 'gw2', 'c3', 'c')]);
      table.bind([sess('alice', 'gw2', 'c4', 'e')]);
      assert.deepEqual(keys(table.lookup(['alice'])), ['alice@gw1/c2/b', 'alice@gw2/c3/c', 'alice@gw2/c4/e']);
      // The evicted session left its node's index too: unbinding it later changes nothing.
      table.unbind([sess('alice', 'gw1', 'c1')]);
      assert.equal(table.stats().sessions, 3);
      table.snapshot('gw1', []);
      assert.deepEqual(keys(table.lookup(['alice'])), ['alice@gw2/c3/c', 'alice@gw2/c4/e']);
    });

    it('a login of a device replaces its older session, on any node, and reports it', () => {
      assert.deepEqual(table.bind([sess('alice', 'gw1', 'c1', 'phone'), sess('alice', 'gw1', 'c2', 'desk')]), []);
      const displaced = table.bind([sess('alice', 'gw2', 'c9', 'phone')]);
      assert.deepEqual(keys(displaced), ['alice@gw1/c1/phone']);
      assert.deepEqual(keys(table.lookup(['alice'])), ['alice@gw1/c2/desk', 'alice@gw2/c9/phone']);
      // The older connection's unbind, arriving later, leaves the newer login alone.
      table.unbind([sess('alice', 'gw1', 'c1', 'phone')]);
      assert.deepEqual(keys(table.lookup(['alice'])), ['alice@gw1/c2/desk', 'alice@gw2/c9/phone']);
      // Rebinding the same connection (a hand-over) displaces nothing.
      assert.deepEqual(table.bind([sess('alice', 'gw2', 'c9', 'phone')]), []);
    });

    it('of two logins of one device bound together, the later one survives', () => {
      const displaced = table.bind([sess('alice', 'gw1', 'c1', 'phone'), sess('alice', 'gw2', 'c2', 'phone')]);
      assert.deepEqual(keys(displaced), ['alice@gw1/c1/phone']);
      assert.deepEqual(keys(table.lookup(['alice'])), ['alice@gw2/c2/phone']);
    });

    it('a snapshot displaces nothing', () => {
      table.bind([sess('alice', 'gw2', 'c2', 'phone')]);
      table.snapshot('gw1', [sess('alice', 'gw1', 'c1', 'phone')]);
      assert.deepEqual(keys(table.lookup(['alice'])), ['alice@gw1/c1/phone', 'alice@gw2/c2/phone']);
    });

    it('rejects lookups larger than maxUidsPerLookup', () => {
      assert.equal(table.lookup(['a', 'b', 'c', 'd', 'e']).length, 0);
      assertBadRequest(() => table.lookup(['a', 'b', 'c', 'd', 'e', 'f']));
    });

    it('rejects sessions with a missing uid, node or connId, binding none of the batch', () => {
      for (const bad of [sess('', 'gw1', 'c1'), sess('alice', '', 'c1'), sess('alice', 'gw1', ''), sess('bad:uid', 'gw1', 'c1')]) {
        assertBadRequest(() => table.bind([sess('ok', 'gw1', 'c0'), bad]));
      }
      assert.deepEqual(table.lookup(['ok', 'alice']), []);
      assertBadRequest(() => table.unbind([{ node: 'gw1', connId: '' }]));
    });

    it('keeps its own copy of bound sessions', () => {
      const s = sess('alice', 'gw1', 'c1');
      table.bind([s]);
      s.node = 'mutated';
      table.lookup(['alice'])[0].connId = 'mutated';
      assert.deepEqual(keys(table.lookup(['alice'])), ['alice@gw1/c1/d']);
    });
  });

  describe('gateways', () => {
    it('heartbeat reports known=false for a new node, then true', () => {
      assert.deepEqual(table.heartbeat(gw('gw1')), { known: false });
      assert.deepEqual(table.heartbeat(gw('gw1')), { known: true });
    });

    it('a node that only bound sessions is still unknown to heartbeat (it must snapshot)', () => {
      table.bind([sess('alice', 'gw1', 'c1')]);
      assert.equal(table.heartbeat(gw('gw1')).known, false);
      assert.equal(table.lookup(['alice']).length, 1);
    });

    it('expire drops gateways silent for longer than the TTL, with their sessions', () => {
      table.heartbeat(gw('gw1'));
      table.heartbeat(gw('gw2'));
      table.bind([sess('alice', 'gw1', 'c1'), sess('alice', 'gw2', 'c2'), sess('bob', 'gw1', 'c3')]);
      clock += 6000;
      table.heartbeat(gw('gw2'));
      clock += 4000;
      assert.deepEqual(table.expire(), []); // gw1 is exactly at the TTL: still alive
      clock += 1;
      assert.deepEqual(table.gateways().map((g) => g.node), ['gw2']); // hidden even before the sweep
      assert.deepEqual(keys(table.lookup(['alice', 'bob'])), ['alice@gw2/c2/d']); // its sessions too
      assert.deepEqual(table.expire(), ['gw1']);
      assert.deepEqual(keys(table.lookup(['alice', 'bob'])), ['alice@gw2/c2/d']);
      assert.equal(table.heartbeat(gw('gw1')).known, false);
    });

    it('sessions of a node that never heartbeats expire too', () => {
      table.bind([sess('alice', 'gw9', 'c1')]);
      clock += 10_001;
      assert.deepEqual(table.expire(), ['gw9']);
      assert.deepEqual(table.lookup(['alice']), []);
      assert.deepEqual(table.stats(), { uids: 0, sessions: 0, nodes: 0, gateways: 0 });
    });

    it('gateways() excludes draining gateways, which come back when they stop draining', () => {
      table.heartbeat(gw('gw1'));
      table.heartbeat(gw('gw2', { draining: true }));
      assert.deepEqual(table.gateways().map((g) => g.node), ['gw1']);
      table.heartbeat(gw('gw2'));
      assert.deepEqual(table.gateways().map((g) => g.node), ['gw1', 'gw2']);
    });

    it('lists live gateways in node order with their last heartbeat time', () => {
      table.heartbeat(gw('gw-c', { connections: 50 }));
      clock += 5;
      table.heartbeat(gw('gw-a', { connections: 90 }));
      assert.deepEqual(table.gateways().map((g) => [g.node, g.connections, g.lastSeenMs]), [['gw-a', 90, 1_000_005], ['gw-c', 50, 1_000_000]]);
    });

    it('rejects a heartbeat without a node or with a bad address', () => {
      assertBadRequest(() => table.heartbeat(gw('')));
      assertBadRequest(() => table.heartbeat(gw('gw1', { addr: 'no-port' })));
      assertBadRequest(() => table.heartbeat(gw('gw1', { addr: '', tlsAddr: 'no-port' })));
      assertBadRequest(() => table.heartbeat(gw('gw1', { addr: '', tlsAddr: '' })));
      assertBadRequest(() => table.heartbeat(gw('gw1', { capacity: -1 })));
      assert.deepEqual(table.gateways(), []);
    });

    it('refuses new nodes beyond maxNodes with a retryable error', () => {
      const small = new RouteTable({ now: () => clock, maxNodes: 2 });
      small.heartbeat(gw('gw1'));
      small.bind([sess('alice', 'gw2', 'c1')]);
      assert.throws(() => small.heartbeat(gw('gw3')), (err: unknown) => err instanceof ImError && err.code === Code.OVERLOADED && err.retryable);
      small.heartbeat(gw('gw1')); // known nodes still work
    });
  });
});
