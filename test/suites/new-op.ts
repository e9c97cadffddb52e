/** A new business op is a logic change only: registered in logic, called through the unchanged gateway. */
import * as assert from 'node:assert/strict';
import { frameBytes } from '../../proto/wire';
import { Mode, TestSystem } from '../harness';
import { needsAll } from './needs';

export function newOpSuite(mode: Mode): void {
  describe(`e2e new op through the unchanged gateway (${mode.name})`, () => {
    let t: TestSystem;
    before(async function () {
      await needsAll(this, mode);
      t = await TestSystem.start(mode, {
        // An op the gateway has never heard of: it answers with the caller's uid and the body reversed.
        registerOps: (registry) => registry.register(900, async (ctx, body) =>
          Buffer.from(`${ctx.uid}:${Buffer.from(body).toString('utf8').split('').reverse().join('')}`)),
      });
    });
    after(async () => { await t?.stop(); });

    it('the gateway forwards op 900 with the authenticated uid and returns logic\'s reply', async () => {
      const r = await t.rawAuthed('alice');
      r.write(frameBytes({ op: 900, requestId: 5, body: Buffer.from('olleh') }));
      const reply = await r.waitFor((f) => f.requestId === 5);
      assert.equal(reply.error, null);
      assert.equal(Buffer.from(reply.body).toString('utf8'), `${t.uid('alice')}:hello`);
    });
  });
}
