/**
 * ReloadableTlsContext on its own, as another listener (a WSS server) would use it: attach() keeps a
 * real https.Server on the current certificate, and check() picks up a renewal or refuses a bad one.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import { X509Certificate } from 'node:crypto';
import { listen } from '../common/net';
import { makeTestPki, signServerCert, type TestPki } from '../test/tls-certs';
import { ReloadableTlsContext } from './tls';

describe('ReloadableTlsContext', () => {
  let dir: string;
  let pki: TestPki;
  let cert: string;
  let key: string;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-tls-context-'));
    pki = makeTestPki(dir);
  });
  beforeEach(() => {
    cert = path.join(dir, 'live.pem');
    key = path.join(dir, 'live.key');
    fs.copyFileSync(path.join(dir, 'server.pem'), cert);
    fs.copyFileSync(path.join(dir, 'server.key'), key);
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  /** The serial of the certificate an HTTPS request to the server sees. */
  function servedSerial(port: number): Promise<string> {
    return new Promise((resolve, reject) => {
      const req = https.get({ host: '127.0.0.1', port, path: '/', ca: fs.readFileSync(pki.caPem), agent: false }, (res) => {
        resolve((res.socket as import('node:tls').TLSSocket).getPeerCertificate().serialNumber.toUpperCase());
        res.resume();
      });
      req.on('error', reject);
    });
  }

  it('keeps an attached https.Server on the current certificate, and keeps the old one when the new files are bad', async () => {
    const ctx = new ReloadableTlsContext({ certFile: cert, keyFile: key });
    await ctx.start();
    const server = https.createServer((_req, res) => res.end('ok'));
    ctx.attach(server);
    const port = await listen(server, '127.0.0.1', 0);
    try {
      const first = new X509Certificate(fs.readFileSync(cert)).serialNumber.toUpperCase();
      assert.equal(await servedSerial(port), first);
      assert.equal(await ctx.check(), false, 'nothing changed');

      const renewed = signServerCert(pki, 'ctx-renewed');
      fs.copyFileSync(renewed.cert, cert);
      fs.copyFileSync(renewed.key, key);
      assert.equal(await ctx.check(), true);
      const second = new X509Certificate(fs.readFileSync(renewed.cert)).serialNumber.toUpperCase();
      assert.equal(ctx.current.serialNumber.toUpperCase(), second);
      assert.equal(await servedSerial(port), second);

      fs.writeFileSync(key, 'not a key');
      assert.equal(await ctx.check(), false, 'a bad key is refused');
      assert.equal(await servedSerial(port), second);
      fs.rmSync(cert);
      assert.equal(await ctx.check(), false, 'a missing file is refused');
      assert.equal(await servedSerial(port), second);
    } finally {
      ctx.stop();
      server.close();
    }
  });

  it('refuses unusable files at construction, naming the setting', () => {
    assert.throws(() => new ReloadableTlsContext({ certFile: path.join(dir, 'nope.pem'), keyFile: key }), /config IM_GATEWAY_TLS_CERT: cannot read/);
    assert.throws(() => new ReloadableTlsContext({ certFile: cert, keyFile: pki.clientKey, keySetting: 'IM_WS_TLS_KEY' }), /config IM_WS_TLS_KEY: .*not the PEM private key/);
  });
});
