/** A restart over the same data keeps history, groups and seqs. */
import * as assert from 'node:assert/strict';
import { Mode, TestSystem, text } from '../harness';
import { needsAll } from './needs';

export function restartSuite(mode: Mode): void {
  describe(`e2e restart (${mode.name})`, function () {
    before(async function () { await needsAll(this, mode); });

    it('keeps history, groups and seq', async () => {
      let t = await TestSystem.start(mode);
      const persist = t.sys.persist;
      const ns = t.ns;
      let groupId: string;
      try {
        const alice = await t.client('alice');
        await alice.send(t.uid('bob'), 'before 1');
        await alice.send(t.uid('bob'), 'before 2');
        groupId = (await alice.createGroup('g', [t.uid('bob')])).group!.groupId;
        await alice.sendGroup(groupId, 'group before');
      } finally {
        await t.stop();
      }
      t = await TestSystem.start(mode, { persist }, ns); // the same data and users as before
      try {
        const bob = await t.client('bob');
        const got = await t.inbox(bob).waitFor(3);
        assert.deepEqual(got.map(text), ['before 1', 'before 2', 'group before']);
        const alice = await t.client('alice');
        const r = await alice.send(t.uid('bob'), 'after');
        // Embedded: gap-free. Distributed: above every earlier seq; the restart moved the shards to
        // new owners, whose seqs start above the persisted bound (docs/sequencer.md, gaps).
        const continues = (seq: number, what: string) => (mode.name === 'embedded' ? assert.equal(seq, 4, what) : assert.ok(seq > 3, what));
        continues(r.seq, 'alice seq continues');
        const members = await alice.groupMembers(groupId);
        assert.deepEqual(members.group?.members, t.uids('alice', 'bob'));
        const all = await t.inbox(bob).waitFor(4);
        continues(all[3].seq, 'bob seq continues');
        assert.equal(text(all[3]), 'after');
        const hist = await bob.history({ with: t.uid('alice') });
        assert.deepEqual(hist.messages.map(text), ['after', 'before 2', 'before 1']);
      } finally {
        await t.stop();
      }
    });
  });
}
