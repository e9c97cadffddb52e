/**
 * A client that half-closes (TCP FIN, or TLS close_notify and FIN) after its last request: every
 * request it sent before is still answered, then the gateway closes the socket without a
 * Disconnect. Logic is made slow by a condition the test controls (OP_HOLD, answered on
 * release()), so the FIN reaches the gateway while a reply is still owed, whatever the machine's
 * load. The bounds (the logic call timeout, the idle timeout) are in connection-deadlines.test.ts
 * and at the end here. On WebSocket a close frame is the client's last word: see the last test.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Code } from '../common/errors';
import { encode, type Frame, Op } from '../proto/wire';
import { makeTestPki } from '../test/tls-certs';
import { eventually, Harness, OP_HANG, OP_HOLD, parseEcho, startGateway, TestClient, token } from './gateway.test-support';

/** The gateway's side of its only connection has read the client's FIN. */
function finRead(h: Harness): boolean {
  const conns = h.gateway.upgradeHost.connections();
  return conns.length === 1 && (conns[0].socket as net.Socket).readableEnded;
}

const ids = (frames: Frame[]) => frames.map((f) => `${f.op}/${f.requestId}${f.error ? ` error ${f.error.code}` : ''}`);

/**
 * Auth, a call logic holds, and Ping in one write, then the FIN. Once the gateway has read the FIN
 * (the held call still unanswered) logic answers: AuthOk, Pong and the held reply arrive, in the
 * order they were answered, and then the close, with nothing else.
 */
async function answersAllBeforeClose(h: Harness, c: TestClient, uid: string): Promise<void> {
  const authId = c.send({ op: Op.AUTH, body: encode('Auth', { token: token(uid), deviceId: 'd' }) });
  const holdId = c.send({ op: OP_HOLD, body: Buffer.from('held') });
  const pingId = c.send({ op: Op.PING, body: encode('Ping', {}) });
  c.socket.end();
  // (Or the socket closed already: the failure this test is about.)
  await eventually(() => h.logicServer!.held === 1 && (finRead(h) || c.closed), 'the held call at logic and the FIN read');
  assert.equal(c.closed, false, 'still open: a reply is owed');
  h.logicServer!.release();
  await c.waitClosed();
  assert.deepEqual(ids(c.frames), [`${Op.AUTH}/${authId}`, `${Op.PING}/${pingId}`, `${OP_HOLD}/${holdId}`]);
  assert.equal(parseEcho(c.frames[2]).body, 'held');
  await eventually(() => h.gateway.connectionCount === 0 && h.gateway.upgradeHost.connections().length === 0, 'the gateway to forget it');
}

describe('half-close: every request before the client\'s FIN is answered, then the gateway closes', () => {
  let h: Harness;
  afterEach(async () => h?.stop());

  it('TCP: Auth, a slow logic call and Ping, then FIN: AuthOk, Pong, the slow reply, then the close', async () => {
    h = await startGateway();
    await answersAllBeforeClose(h, await h.connect(), 'hc-tcp');
  });

  it('TCP: FIN with nothing owed closes at once; a partial frame before it is dropped', async () => {
    h = await startGateway();
    const c = await h.connect();
    const authId = c.send({ op: Op.AUTH, body: encode('Auth', { token: token('hc-partial'), deviceId: 'd' }) });
    c.socket.write(Buffer.from([0, 0, 0, 9, 8])); // 1 of the 9 bytes a frame declares
    c.socket.end();
    await c.waitClosed();
    assert.deepEqual(ids(c.frames), [`${Op.AUTH}/${authId}`]);
    await eventually(() => h.gateway.upgradeHost.connections().length === 0, 'the gateway to forget it');
  });

  it('TCP: bounded by the logic call timeout: a call logic never answers gets TIMEOUT, then the close', async () => {
    h = await startGateway(); // the harness's logic client times calls out after 1 s
    const c = await h.connect();
    await c.authOk(token('hc-hang'), 'd');
    const hangId = c.send({ op: OP_HANG, body: Buffer.from('never') });
    c.socket.end();
    await c.waitClosed();
    assert.deepEqual(ids(c.frames), [`${OP_HANG}/${hangId} error ${Code.TIMEOUT}`]);
  });

  describe('TLS', () => {
    let tmp: string;
    before(() => { tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'im-half-close-')); });
    after(() => fs.rmSync(tmp, { recursive: true, force: true }));

    it('close_notify and FIN after a slow logic call: AuthOk, Pong, the slow reply, then the close', async () => {
      const pki = makeTestPki(tmp);
      h = await startGateway({
        plaintext: false, tls: { host: '127.0.0.1', port: 0, certFile: path.join(pki.dir, 'server.pem'), keyFile: path.join(pki.dir, 'server.key') },
      });
      await answersAllBeforeClose(h, await TestClient.connectTls(h.tlsPort!, fs.readFileSync(pki.caPem)), 'hc-tls');
    });
  });

  it('WebSocket: a close frame ends the session at once (a closing client reads no more); a reply owed then is dropped', async () => {
    h = await startGateway({ ws: { host: '127.0.0.1', port: 0 } });
    const c = await h.connectWs();
    await c.authOk(token('hc-ws'), 'd');
    c.send({ op: OP_HOLD, body: Buffer.from('held') });
    await eventually(() => h.logicServer!.held === 1, 'the held call at logic');
    c.ws!.close(1000, 'bye');
    await c.waitClosed();
    assert.equal(c.closeCode, 1000);
    await eventually(() => h.gateway.upgradeHost.connections().length === 0, 'the gateway to forget it');
    h.logicServer!.release(); // the late reply finds no connection: dropped, nothing breaks
    const next = await h.connectWs();
    await next.authOk(token('hc-ws-2'), 'd');
    assert.equal((await next.ping()).error, null);
  });
});
