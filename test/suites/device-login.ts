/**
 * One session per (uid, device id): a newer login of a device replaces the older session, which
 * is told KICKED (do not reconnect) and gets no more pushes. Of two logins at once exactly one
 * survives. Embedded and distributed (where the two logins may land on different gateways;
 * test/cluster.test.ts pins them to different ones).
 */
import * as assert from 'node:assert/strict';
import { DisconnectCode } from '../../common/errors';
import type { ImClient } from '../../client/sdk';
import type { DisconnectedEvent } from '../../client/types';
import { Inbox, Mode, TestSystem, text } from '../harness';
import { needsAll } from './needs';

/** Resolves with the client's first 'disconnected' event. */
export function nextDisconnect(c: ImClient): Promise<DisconnectedEvent> {
  return new Promise((resolve) => c.once('disconnected', resolve));
}

/**
 * `kicked` was replaced: it was told KICKED without reconnecting and stays down, while a message
 * `send` sends now reaches `survivor` (and, its connection being gone, never `kicked`).
 */
export async function assertReplaced(
  kicked: { c: ImClient; inbox: Inbox; event: DisconnectedEvent },
  survivor: { c: ImClient; inbox: Inbox },
  send: (body: string) => Promise<unknown>,
): Promise<void> {
  assert.deepEqual([kicked.event.code, kicked.event.reconnect], [DisconnectCode.KICKED, false]);
  assert.equal(kicked.c.state, 'idle', 'the SDK does not reconnect a kicked session');
  assert.equal(survivor.c.state, 'connected');
  const before = kicked.inbox.messages.length;
  await send('for the newer login');
  const got = await survivor.inbox.waitFor(survivor.inbox.messages.length + 1);
  assert.equal(text(got[got.length - 1]), 'for the newer login');
  assert.equal(kicked.inbox.messages.length, before);
}

export function deviceLoginSuite(mode: Mode): void {
  describe(`e2e device login replaces the older session (${mode.name})`, function () {
    let t: TestSystem;
    before(async function () {
      await needsAll(this, mode);
      t = await TestSystem.start(mode);
    });
    after(async () => { await t?.stop(); });

    it('a second login of a device: the first gets KICKED and no more pushes', async () => {
      const first = await t.client('zed', 'phone');
      const kicked = nextDisconnect(first);
      const second = await t.client('zed', 'phone');
      const other = await t.client('zed', 'laptop'); // another device of the user is left alone
      const alice = await t.client('alice');
      await assertReplaced(
        { c: first, inbox: t.inbox(first), event: await kicked }, { c: second, inbox: t.inbox(second) },
        (body) => alice.send(t.uid('zed'), body),
      );
      assert.equal(other.state, 'connected');
      await t.inbox(other).waitFor(1);
    });

    it('two logins of a device at once: exactly one survives', async () => {
      const [a, b] = await Promise.all([t.client('ray', 'phone'), t.client('ray', 'phone')]);
      const event = await Promise.race([nextDisconnect(a).then((e) => ({ e, kicked: a })), nextDisconnect(b).then((e) => ({ e, kicked: b }))]);
      const survivor = event.kicked === a ? b : a;
      const alice = await t.client('alice', 'race');
      await assertReplaced(
        { c: event.kicked, inbox: t.inbox(event.kicked), event: event.e }, { c: survivor, inbox: t.inbox(survivor) },
        (body) => alice.send(t.uid('ray'), body),
      );
    });
  });
}
