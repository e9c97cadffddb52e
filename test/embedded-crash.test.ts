/**
 * kill -9 of the embedded process under load loses no acknowledged message. The SQLite store
 * acknowledges an append once it is written to the message log, indexes it into the tables behind
 * (replayed at open after a crash: storage/sqlite/message-log.ts), and writes conversation
 * summaries behind that (storage/sqlite/summaries.ts), so this kills a real `node dist/embedded/main.js`
 * while senders are busy, starts it again over the same data dir, and checks by sync that every
 * acknowledged send is at its seq in both inboxes, that unread counts (rebuilt from the inbox)
 * cover them, and that new sends continue after them. Then every send is retried with its
 * clientMsgId, as an app does after a lost connection: an acknowledged one must answer as a
 * duplicate with its original msgId and seqs, one whose answer the kill cut off is stored at most
 * once, and no inbox holds a message twice.
 */
import { strict as assert } from 'node:assert';
import { randomBytes } from 'node:crypto';
import { ImClient } from '../client/sdk';
import type { Message, SendResp } from '../proto/wire';
import { signToken } from '../common/jwt';
import { syncAll } from '../client/client.test-support';
import { tempDir } from './harness';
import { freePort } from './infra';
import { ServiceProc } from './procs';

const LOOPBACK = '127.0.0.1';
const PAIRS = 6;
const KILL_AFTER_ACKS = 300;

interface Sent { from: string; to: string; clientMsgId: string; text: string }
interface Acked extends Sent { resp: SendResp }

describe('embedded process: kill -9 under load', function () {
  this.timeout(120_000);
  const secret = randomBytes(16).toString('hex');
  const ns = randomBytes(3).toString('hex');
  let dataDir: string;
  let env: Record<string, string>;
  let proc: ServiceProc | undefined;
  const clients: ImClient[] = [];

  before(async () => {
    dataDir = tempDir('im-crash-');
    const [gatewayPort, routerPort] = await Promise.all([freePort(), freePort()]);
    env = {
      IM_DATA_DIR: dataDir, IM_AUTH_SECRET: secret, IM_LOGIC_PORT: '0', IM_HTTP_ADDR: `${LOOPBACK}:0`, IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off',
      IM_GATEWAY_ADDR: `${LOOPBACK}:${gatewayPort}`, IM_ROUTER_HTTP_ADDR: `${LOOPBACK}:${routerPort}`,
      IM_RATE_LIMIT: '1000000', IM_RATE_BURST: '1000000',
    };
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));
  });
  after(async () => {
    await proc?.stop('SIGKILL');
  });

  const routerUrl = () => `http://${env.IM_ROUTER_HTTP_ADDR}`;
  const client = async (uid: string, receive: boolean) => {
    const c = new ImClient({
      routerUrl: routerUrl(), token: signToken(secret, uid, 3600), receiveMessages: receive, autoReconnect: false,
      sendMaxAttempts: 1,
    });
    clients.push(c);
    c.on('error', () => undefined);
    await c.connect();
    return c;
  };

  it('keeps every acknowledged message, its seqs and its unread count, and stores each retried send once', async () => {
    proc = await ServiceProc.spawn('embedded', 'embedded', env);
    const acked: Acked[] = [];
    const unanswered: Sent[] = [];
    const senders = await Promise.all(Array.from({ length: PAIRS }, (_, i) => client(`${ns}-s${i}`, false)));
    let killed = false;
    let reachedKill!: () => void;
    const enough = new Promise<void>((resolve) => { reachedKill = resolve; });
    // Four sends in flight per sender until the process dies under them.
    const load = senders.flatMap((c, i) => Array.from({ length: 4 }, async (_, lane) => {
      for (let n = 0; !killed; n++) {
        const send: Sent = { from: `${ns}-s${i}`, to: `${ns}-r${i}`, clientMsgId: `${ns}-${i}-${lane}-${n}`, text: `s${i} lane ${lane} #${n}` };
        let resp: SendResp;
        try {
          resp = await c.send(send.to, send.text, { clientMsgId: send.clientMsgId });
        } catch {
          unanswered.push(send); // the process is gone: stored or not, this send was never acknowledged
          return;
        }
        acked.push({ ...send, resp });
        if (acked.length >= KILL_AFTER_ACKS) reachedKill();
      }
    }));
    await enough;
    proc.signal('SIGKILL');
    killed = true;
    await proc.exited;
    await Promise.all(load);
    const ackedAtKill = acked.length;
    await Promise.all(clients.splice(0).map((c) => c.close().catch(() => undefined)));

    proc = await ServiceProc.spawn('embedded', 'embedded', env);
    // Sends never paused, so the kill left messages written to the log and not yet indexed.
    assert.match(proc.log, /replayed the message log/, 'the restart replayed the message log');
    for (let i = 0; i < PAIRS; i++) {
      const [s, r] = [`${ns}-s${i}`, `${ns}-r${i}`];
      const mine = acked.filter((a) => a.from === s);
      const sender = await client(s, false);
      const receiver = await client(r, false);
      const sent = new Map((await syncAll(sender)).map((m) => [m.seq, m]));
      const got = await syncAll(receiver);
      const byMsgId = new Map(got.map((m) => [m.msgId, m]));
      for (const a of mine) {
        const m = sent.get(a.resp.seq);
        assert.equal(m?.msgId, a.resp.msgId, `${s}'s acknowledged send at seq ${a.resp.seq} survives`);
        assert.equal(Buffer.from(m!.content).toString(), a.text);
        assert.equal(byMsgId.get(a.resp.msgId)?.convSeq, a.resp.convSeq, `${r} has ${a.resp.msgId}`);
      }
      assert.deepEqual(got.map((m) => m.seq), got.map((_, k) => k + 1), `${r}'s timeline has no gap`);
      const unread = await receiver.unread();
      assert.equal(unread.total, got.length, `${r}: every stored message counts as unread`);

      // The app retries everything it sent: what was acknowledged answers as the original.
      for (const a of mine) {
        const again = await sender.send(r, a.text, { clientMsgId: a.clientMsgId });
        assert.equal(again.duplicate, true, `${s}'s retry of ${a.clientMsgId} is a duplicate`);
        assert.deepEqual([again.msgId, again.seq, again.convSeq], [a.resp.msgId, a.resp.seq, a.resp.convSeq], `${s}'s retry of ${a.clientMsgId} answers with the original`);
      }
      // What the kill cut off is stored now if it was not before: at most once, either way.
      const cut = unanswered.filter((u) => u.from === s);
      for (const u of cut) await sender.send(r, u.text, { clientMsgId: u.clientMsgId });
      const finalSent = await syncAll(sender);
      const finalGot = await syncAll(receiver);
      for (const [who, inbox] of [[s, finalSent], [r, finalGot]] as const) {
        const ids = inbox.filter((m) => m.from === s).map((m) => m.clientMsgId);
        assert.equal(new Set(ids).size, ids.length, `${who}'s inbox holds no send of ${s} twice`);
        assert.equal(new Set(inbox.map((m) => m.msgId)).size, inbox.length, `${who}'s inbox holds no message twice`);
        for (const x of [...mine, ...cut]) assert.ok(ids.includes(x.clientMsgId), `${who} has ${x.clientMsgId}`);
        assert.deepEqual(inbox.map((m) => m.seq), inbox.map((_, k) => k + 1), `${who}'s timeline has no gap`);
      }
      const next = await sender.send(r, 'after the restart');
      assert.equal(next.seq, finalSent.length + 1, `${s}'s seq continues after every stored message`);
    }
    assert.ok(ackedAtKill >= KILL_AFTER_ACKS);
    assert.ok(unanswered.length > 0, 'the kill cut off sends in flight');
  });
});
