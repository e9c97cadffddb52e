/**
 * A Cassandra connection lost in the middle of a request is an availability failure (1100,
 * retryable for the client's whole window), not INTERNAL. A TCP proxy between the driver and the
 * real node cuts the connection while a request is unanswered; the shared node itself is untouched.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Code } from '../../common/errors';
import { newId, peerConvId } from '../../common/ids';
import { splitAddr } from '../../test/harness';
import { CASSANDRA_CONTACT, dropKeyspace, needs } from '../../test/infra';
import { TcpProxy } from '../../test/tcp-proxy';
import { CassandraStore } from './store';
import type { AppendInput } from '../store';

const KS = `im_test_${randomBytes(4).toString('hex')}_faults`;

function send(from: string, to: string, text: string): AppendInput {
  return {
    msgId: newId(), convId: peerConvId(from, to), from, to, groupId: '', clientMsgId: newId(),
    contentType: 'text/plain', content: Buffer.from(text), sentAtMs: Date.now(), recipients: [from, to],
    dedupWindowMs: 60_000,
  };
}

describe('CassandraStore: connection lost mid-request (real Cassandra behind a proxy)', function () {
  this.timeout(60_000);
  let proxy: TcpProxy | undefined;
  let store: CassandraStore | undefined;

  before(async function () {
    await needs(this, 'cassandra');
    const [host, port] = splitAddr(CASSANDRA_CONTACT.split(',')[0]);
    proxy = await TcpProxy.start({ host, port });
    // The cut write may have applied: the retry re-drives the journaled send, storing it once.
    store = await CassandraStore.open({ contactPoints: [proxy.addr], keyspace: KS, consistency: 'ONE' });
  });
  after(async () => {
    await store?.close();
    await proxy?.close();
    await dropKeyspace(KS);
  });

  it('fails the append with UNAVAILABLE (retryable), and a retry of it succeeds once the driver reconnects', async () => {
    const [alice, bob] = [`alice-${newId()}`, `bob-${newId()}`];
    // Warm up: statements are prepared, so the request cut below is the append's own write.
    await store!.appendMessage(send(alice, bob, 'warm-up'));
    const input = send(alice, bob, 'cut');
    const inFlight = proxy!.holdRepliesUntilRequest();
    const append = store!.appendMessage(input);
    await inFlight;
    proxy!.cutAll();
    await assert.rejects(append, (err: { code?: number; retryable?: boolean; message?: string }) => {
      assert.equal(err.code, Code.UNAVAILABLE, `got ${err.code}: ${err.message}`);
      assert.equal(err.retryable, true);
      return true;
    });
    // The retry (same clientMsgId) lands exactly once, whether or not the cut write had applied.
    let result;
    for (let attempt = 0; !result; attempt++) {
      try {
        result = await store!.appendMessage({ ...input, msgId: newId() });
      } catch (err) {
        if (attempt >= 200 || (err as { retryable?: boolean }).retryable !== true) throw err;
        await new Promise((r) => setTimeout(r, 50)); // backoff between retries while the driver reconnects
      }
    }
    const inbox = (await store!.sync(bob, 0, 10)).items.map((m) => Buffer.from(m.content).toString());
    assert.deepEqual(inbox, ['warm-up', 'cut']);
  });
});
