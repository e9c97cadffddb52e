/**
 * Cassandra over TLS (issue 14, item 4) against a real node of its own whose CQL port speaks TLS
 * only and requires client certificates (start.sh with CASSANDRA_CLIENT_KEYSTORE and
 * CASSANDRA_CLIENT_TRUSTSTORE; certificates made by openssl, the truststore by the JDK's keytool,
 * at test time): the settings an operator sets (IM_CASSANDRA_TLS, IM_CASSANDRA_TLS_CA,
 * IM_CASSANDRA_TLS_CERT/_KEY) reach the driver, a message is stored and read back, `im migrate`
 * runs; a plaintext client, a client trusting another CA, a client without a certificate and one
 * whose certificate another CA signed are refused, quickly and saying why. The hostname check is
 * shown against a plain TLS listener.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import { once } from 'node:events';
import * as net from 'node:net';
import * as tls from 'node:tls';
import * as os from 'node:os';
import * as path from 'node:path';
import { main as cli } from '../cli/main';
import { loadStoreConfig } from '../storage/config';
import { ImError } from '../common/errors';
import { newId, peerConvId } from '../common/ids';
import { openStore } from '../storage/open';
import type { Store } from '../storage/store';
import { CassandraNode } from './cassandra-node';
import { freePort, REQUIRE_INFRA } from './infra';
import { makeClientTruststore, makeTestPki, type TestPki } from './tls-certs';

const LIB = path.join(__dirname, '..', '..', 'cassandra', 'lib');
/** A refused connect must fail well before this (the driver's connect timeout is 5 s). */
const REFUSAL_BOUND_MS = 15_000;

function haveJars(): boolean {
  try {
    return fs.readdirSync(LIB).some((f) => /^cassandra-all-.*\.jar$/.test(f));
  } catch {
    return false;
  }
}

describe('Cassandra over TLS (own node, TLS-only CQL port, client certificates required)', function () {
  this.timeout(180_000);
  let base = '';
  let pki: TestPki;
  let node: CassandraNode | undefined;
  const stores: Store[] = [];
  const keyspace = `im_tls_${randomBytes(4).toString('hex')}`;
  const settings = (extra: Record<string, string>) => ({
    IM_STORE: 'cassandra', IM_CASSANDRA_CONTACT_POINTS: node!.contact, IM_CASSANDRA_KEYSPACE: keyspace,
    IM_CASSANDRA_CONSISTENCY: 'ONE', ...extra,
  });
  /** TLS trusting the test CA and presenting a client certificate the node accepts. */
  const withClientCert = (extra: Record<string, string> = {}) => settings({
    IM_CASSANDRA_TLS: 'true', IM_CASSANDRA_TLS_CA: pki.caPem, IM_CASSANDRA_TLS_CERT: pki.clientCert, IM_CASSANDRA_TLS_KEY: pki.clientKey, ...extra,
  });
  /** Opens through the operator's settings, as logic and `im migrate` do. */
  const open = async (env: Record<string, string>) => {
    const store = await openStore(loadStoreConfig(env, []));
    stores.push(store);
    return store;
  };
  /** The open's error, and how long it took to come. */
  const refusal = async (env: Record<string, string>) => {
    const t0 = Date.now();
    const err = await open(env).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof ImError, `expected the open to fail with an ImError, got ${String(err)}`);
    assert.ok(Date.now() - t0 < REFUSAL_BOUND_MS, `refused only after ${Date.now() - t0} ms`);
    return err;
  };

  before(async function () {
    if (!haveJars()) {
      if (REQUIRE_INFRA) throw new Error(`Cassandra jars are required (IM_REQUIRE_INFRA=1) but ${LIB} has none (run cassandra/fetch.sh)`);
      process.stdout.write(`\n  !!! skipped: ${this.test?.parent?.fullTitle()} — no Cassandra jars in ${LIB} (run cassandra/fetch.sh, or set IM_REQUIRE_INFRA=1 to make this a failure)\n\n`);
      this.skip();
    }
    base = fs.mkdtempSync(path.join(os.tmpdir(), 'im-cassandra-tls-'));
    const pkiDir = path.join(base, 'pki');
    fs.mkdirSync(pkiDir);
    pki = makeTestPki(pkiDir);
    node = new CassandraNode({
      base: path.join(base, 'node'), cqlPort: await freePort(), storagePort: await freePort(),
      env: {
        CASSANDRA_CLIENT_KEYSTORE: pki.serverKeystore, CASSANDRA_CLIENT_KEYSTORE_PASSWORD: pki.keystorePassword,
        CASSANDRA_CLIENT_TRUSTSTORE: makeClientTruststore(pki), CASSANDRA_CLIENT_TRUSTSTORE_PASSWORD: pki.keystorePassword,
        // start.sh's readiness probe presents it too: the node answers nothing else.
        CASSANDRA_PROBE_CERT: pki.clientCert, CASSANDRA_PROBE_KEY: pki.clientKey,
      },
    });
    await node.start(true);
  });

  after(async () => {
    for (const s of stores) await s.close().catch(() => undefined);
    await node?.stop().catch(() => undefined);
    if (base) fs.rmSync(base, { recursive: true, force: true });
  });

  it('connects with IM_CASSANDRA_TLS, the CA and a client certificate the CA signed, stores a message and reads it back', async () => {
    const store = await open(withClientCert());
    const [a, b] = ['tls-a', 'tls-b'];
    const res = await store.appendMessage({
      msgId: newId(), convId: peerConvId(a, b), from: a, to: b, groupId: '', clientMsgId: 'c1',
      contentType: 'text/plain', content: Buffer.from('over TLS'), sentAtMs: Date.now(),
      recipients: [a, b], dedupWindowMs: 60_000,
    });
    const page = await store.sync(b, 0, 10);
    assert.deepEqual(page.items.map((e) => e.msgId), [res.message.msgId]);
  });

  it('runs `im migrate` over TLS from the same settings', async () => {
    let stdout = '';
    let stderr = '';
    const code = await cli(['migrate'], {
      stdout: (t) => { stdout += t; }, stderr: (t) => { stderr += t; },
      env: withClientCert(),
    });
    assert.equal(code, 0, stderr);
    assert.match(JSON.parse(stdout.trim()).store, / tls$/);
  });

  it('refuses a plaintext client on the TLS-only port with UNAVAILABLE, not a hang', async () => {
    const err = await refusal(settings({}));
    assert.equal(err.name, 'UnavailableError');
    assert.match(err.message, /no Cassandra host available \(127\.0\.0\.1:\d+: /);
  });

  it('refuses a server certificate from a CA it was not told to trust', async () => {
    // The client certificate is a good one: what fails is the client's check of the node.
    const err = await refusal(withClientCert({ IM_CASSANDRA_TLS_CA: pki.otherCaPem }));
    assert.match(err.message, /unable to verify the first certificate|self.signed certificate in certificate chain/);
    // Without IM_CASSANDRA_TLS_CA only Node's public CAs are trusted: the private CA is not either.
    const err2 = await refusal(settings({ IM_CASSANDRA_TLS: 'true', IM_CASSANDRA_TLS_CERT: pki.clientCert, IM_CASSANDRA_TLS_KEY: pki.clientKey }));
    assert.match(err2.message, /unable to verify the first certificate|self.signed certificate in certificate chain/);
  });

  it('is refused by the node without a client certificate, or with one another CA signed', async () => {
    const none = await refusal(settings({ IM_CASSANDRA_TLS: 'true', IM_CASSANDRA_TLS_CA: pki.caPem }));
    assert.equal(none.name, 'UnavailableError');
    assert.match(none.message, /no Cassandra host available \(127\.0\.0\.1:\d+: .*certificate/i);
    const other = await refusal(withClientCert({ IM_CASSANDRA_TLS_CERT: pki.otherClientCert, IM_CASSANDRA_TLS_KEY: pki.otherClientKey }));
    assert.equal(other.name, 'UnavailableError');
    assert.match(other.message, /no Cassandra host available \(127\.0\.0\.1:\d+: .*certificate/i);
  });

  it('checks that the certificate names the node unless IM_CASSANDRA_TLS_VERIFY_HOSTNAME=false', async () => {
    // A TLS listener with a CA-signed certificate for another name: the handshake is all this
    // needs (a node would present the same certificate), so no second Cassandra node is started.
    const context = tls.createSecureContext({ cert: fs.readFileSync(pki.otherNameCert), key: fs.readFileSync(pki.otherNameKey) });
    let handshakes = 0;
    const server = net.createServer((raw) => {
      const sock = new tls.TLSSocket(raw, { isServer: true, secureContext: context });
      sock.on('error', () => undefined);
      // A reset right after the handshake fails the client's open at once (a clean close would
      // leave it waiting for its read timeout).
      sock.on('secure', () => { handshakes++; raw.resetAndDestroy(); });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    try {
      const env = (extra: Record<string, string>) => ({
        ...settings({ IM_CASSANDRA_TLS: 'true', IM_CASSANDRA_TLS_CA: pki.caPem, ...extra }),
        IM_CASSANDRA_CONTACT_POINTS: `127.0.0.1:${port}`,
      });
      const err = await refusal(env({}));
      assert.match(err.message, /Hostname\/IP does not match certificate's altnames/);
      // Unchecked name, checked chain: the handshake completes, and only the listener's reset fails the open.
      const other = await refusal(env({ IM_CASSANDRA_TLS_VERIFY_HOSTNAME: 'false' }));
      assert.doesNotMatch(other.message, /altnames|certificate/);
      assert.ok(handshakes > 0, 'no handshake completed with hostname verification off');
    } finally {
      server.close();
    }
  });
});
