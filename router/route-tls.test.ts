/**
 * The route API over HTTPS (IM_ROUTER_HTTP_TLS_*), as an operator runs it: a real router process
 * (dist/router/main.js) and `npm start` (dist/embedded/main.js), with certificates from a CA made
 * here with openssl. The SDK and `im` fetch the route list over https:// trusting the test CA
 * (their tls.ca / --tls-ca), then connect; another CA, plain http:// to the HTTPS port, and a
 * route fetch to a plain port over https:// fail saying why; a renewed certificate is served
 * without a restart, and a bad renewal keeps the one in use.
 */
import * as assert from 'node:assert/strict';
import { randomBytes, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import type { TLSSocket } from 'node:tls';
import { main as cliMain } from '../cli/main';
import { fetchRoute } from '../client/route';
import { ImClient, type ImClientOptions } from '../client/sdk';
import { signToken } from '../common/jwt';
import { eventually } from '../test/wait';
import { collect, text } from '../test/harness';
import { freePort } from '../test/infra';
import { ServiceProc } from '../test/procs';
import { makeTestPki, signServerCert, type TestPki } from '../test/tls-certs';
import { RouterClient } from './client';

const HOST = '127.0.0.1';

/** The serial of the certificate an HTTPS request to port sees now (the request must succeed). */
function servedSerial(port: number, ca: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = https.get({ host: HOST, port, path: '/healthz', ca: fs.readFileSync(ca), agent: false }, (res) => {
      res.resume();
      if (res.statusCode !== 200) return reject(new Error(`healthz answered ${res.statusCode}`));
      resolve((res.socket as TLSSocket).getPeerCertificate().serialNumber.toUpperCase());
    });
    req.on('error', reject);
  });
}

/** A plain HTTP GET's outcome: its status, or the error that ended it. */
function plainGet(port: number): Promise<{ status?: number; error?: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: HOST, port, path: '/v1/route', agent: false }, (res) => {
      res.resume();
      resolve({ status: res.statusCode });
    });
    req.setTimeout(10_000, () => req.destroy(new Error('no answer within 10 s')));
    req.on('error', (err) => resolve({ error: err.message }));
  });
}

const serialOf = (certFile: string) => new X509Certificate(fs.readFileSync(certFile)).serialNumber.toUpperCase();

describe('route API over HTTPS (real router and embedded processes)', function () {
  this.timeout(90_000);
  const ns = randomBytes(3).toString('hex');
  const stops: Array<() => unknown> = [];
  let tmp: string;
  let pki: TestPki;

  before(() => {
    tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'im-route-tls-'));
    pki = makeTestPki(tmp);
  });
  after(async () => {
    for (const stop of stops.splice(0).reverse()) {
      try { await stop(); } catch { /* keep tearing down */ }
    }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  /** Own copies of the certificate and key, so a test can replace them. */
  function certFiles(name: string): { IM_ROUTER_HTTP_TLS_CERT: string; IM_ROUTER_HTTP_TLS_KEY: string } {
    const cert = path.join(tmp, `${name}-cert.pem`);
    const key = path.join(tmp, `${name}-key.pem`);
    fs.copyFileSync(path.join(pki.dir, 'server.pem'), cert);
    fs.copyFileSync(path.join(pki.dir, 'server.key'), key);
    return { IM_ROUTER_HTTP_TLS_CERT: cert, IM_ROUTER_HTTP_TLS_KEY: key };
  }

  async function spawnRouter(files: Record<string, string>): Promise<{ proc: ServiceProc; grpc: string; httpPort: number }> {
    const [grpcPort, httpPort] = await Promise.all([freePort(), freePort()]);
    const grpc = `${HOST}:${grpcPort}`;
    const proc = await ServiceProc.spawn('router', 'router', {
      IM_ROUTER_GRPC_ADDR: grpc, IM_ROUTER_HTTP_ADDR: `${HOST}:${httpPort}`, IM_ROUTER_HTTP_TLS_RELOAD_INTERVAL: '200ms',
      IM_LOG_LEVEL: 'info', ...files,
    });
    stops.push(() => proc.stop('SIGTERM'));
    return { proc, grpc, httpPort };
  }

  it('a router process serves HTTPS only: the test CA is trusted; another CA and plain http:// are refused, saying why', async () => {
    const { proc, grpc, httpPort } = await spawnRouter(certFiles('router'));
    assert.equal(proc.info.httpTls, true);
    // A gateway heartbeats over gRPC as a gateway process would, so the list has an entry.
    const rc = new RouterClient({ address: grpc });
    stops.push(() => rc.close());
    const node = `gw-route-tls-${ns}`;
    await rc.heartbeat({ node, addr: '127.0.0.1:1', tlsAddr: '127.0.0.1:2', region: '', zone: '', connections: 0, capacity: 100, draining: false });

    const base = `https://${HOST}:${httpPort}`;
    const answer = await fetchRoute(base, 5000, undefined, {}, { ca: fs.readFileSync(pki.caPem) });
    assert.deepEqual(answer.gateways.map((g) => [g.node, g.addr, g.tlsAddr]), [[node, '127.0.0.1:1', '127.0.0.1:2']]);

    // Another CA, and Node's bundled CAs (no ca): the certificate is refused before any request.
    for (const ca of [fs.readFileSync(pki.otherCaPem), undefined]) {
      await assert.rejects(fetchRoute(base, 5000, undefined, {}, { ca }), (e: { code: number; message: string; retryable: boolean }) =>
        /route API https:\/\/.* unreachable: TLS: .*(self.signed|unable to (verify|get)).*not trusted: pass its CA as tls\.ca/i.test(e.message)
        && e.retryable === true);
    }
    // The SDK with the wrong CA fails to connect with that error.
    const wrong = new ImClient({ routerUrl: base, token: signToken('route-tls-secret-0123456789', 'u', 60), tls: { ca: fs.readFileSync(pki.otherCaPem) }, maxReconnectAttempts: 0 });
    wrong.on('error', () => undefined);
    stops.push(() => wrong.close());
    await assert.rejects(wrong.connect(), /route API https:.*TLS: .*not trusted/);

    // Plain HTTP to the HTTPS port: no answer, the connection is closed, and the SDK's error says why.
    const plain = await plainGet(httpPort);
    assert.equal(plain.status, undefined, 'the HTTPS port answered plain HTTP');
    assert.match(plain.error ?? '', /socket hang up|ECONNRESET/);
    await assert.rejects(fetchRoute(`http://${HOST}:${httpPort}`, 5000), /unreachable: .*an HTTPS listener\? use an https:\/\/ URL/);
    assert.equal(proc.running, true);
  });

  it('serves a renewed certificate without a restart; a bad renewal keeps the one in use', async () => {
    const files = certFiles('reload');
    const { proc, httpPort } = await spawnRouter(files);
    const first = serialOf(files.IM_ROUTER_HTTP_TLS_CERT);
    assert.equal(await servedSerial(httpPort, pki.caPem), first);

    // Key first, then the certificate, as a tool that writes two files does.
    const renewed = signServerCert(pki, 'route-renewed');
    fs.copyFileSync(renewed.key, files.IM_ROUTER_HTTP_TLS_KEY);
    fs.copyFileSync(renewed.cert, files.IM_ROUTER_HTTP_TLS_CERT);
    const second = serialOf(renewed.cert);
    assert.notEqual(second, first);
    await eventually(async () => (await servedSerial(httpPort, pki.caPem)) === second, 'the renewed certificate to be served', 20_000);
    assert.match(proc.log, /tls certificate reloaded/);

    const failures = () => (proc.log.match(/tls certificate not reloaded/g) ?? []).length;
    fs.copyFileSync(pki.clientKey, files.IM_ROUTER_HTTP_TLS_KEY);
    await eventually(() => failures() === 1, 'the mismatched key to be refused', 20_000);
    assert.match(proc.log, /IM_ROUTER_HTTP_TLS_KEY.*is not the PEM private key of/);
    assert.equal(await servedSerial(httpPort, pki.caPem), second);
    const answer = await fetchRoute(`https://${HOST}:${httpPort}`, 5000, undefined, {}, { ca: fs.readFileSync(pki.caPem) });
    assert.ok(Array.isArray(answer.gateways));
    assert.equal(proc.running, true);
  });

  it('exits 2 at start naming the setting when the certificate files are unusable', async () => {
    const files = certFiles('bad');
    fs.writeFileSync(files.IM_ROUTER_HTTP_TLS_CERT, 'not a certificate');
    await assert.rejects(spawnRouter(files), /exited during startup \(2\).*IM_ROUTER_HTTP_TLS_CERT/s);
    await assert.rejects(spawnRouter({ IM_ROUTER_HTTP_TLS_KEY: files.IM_ROUTER_HTTP_TLS_KEY }), /exited during startup \(2\).*IM_ROUTER_HTTP_TLS_CERT: required/s);
  });

  it('embedded mode (npm start) takes the same settings: the SDK and `im --tls-ca` fetch routes over https:// and connect', async () => {
    const routerPort = await freePort();
    const secret = `route-tls-secret-${ns}`;
    const gatewayCert = { IM_GATEWAY_TLS_CERT: path.join(pki.dir, 'server.pem'), IM_GATEWAY_TLS_KEY: path.join(pki.dir, 'server.key') };
    const proc = await ServiceProc.spawn('embedded', 'embedded', {
      IM_DATA_DIR: path.join(tmp, 'embedded'), IM_AUTH_SECRET: secret, IM_LOGIC_PORT: '0', IM_HTTP_ADDR: 'off', IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off',
      IM_GATEWAY_ADDR: `${HOST}:0`, IM_GATEWAY_TLS_ADDR: `${HOST}:0`, ...gatewayCert,
      IM_ROUTER_HTTP_ADDR: `${HOST}:${routerPort}`, ...certFiles('embedded'),
    });
    stops.push(() => proc.stop('SIGTERM'));
    const routerUrl = `https://${HOST}:${routerPort}`;
    assert.match(String(proc.info.line), new RegExp(`route API ${routerUrl.replace(/\./g, '\\.')}/v1/route`));

    const client = (who: string, extra: Partial<ImClientOptions> = {}) => {
      const c = new ImClient({ routerUrl, token: signToken(secret, who, 3600), tls: { ca: fs.readFileSync(pki.caPem) }, ...extra });
      c.on('error', () => undefined);
      stops.push(() => c.close());
      return c;
    };
    const [alice, bob] = [`alice_${ns}`, `bob_${ns}`];
    const a = client(alice);
    const b = client(bob);
    const inbox = collect(b);
    await a.connect();
    await b.connect();
    await a.send(bob, 'routed over https');
    await eventually(() => inbox.messages.some((m) => text(m) === 'routed over https'), 'the message', 10_000);
    // The CA is what makes it work: trusting another one fails at the route fetch.
    await assert.rejects(client(`carol_${ns}`, { tls: { ca: fs.readFileSync(pki.otherCaPem) }, maxReconnectAttempts: 0 }).connect(), /route API https:.*TLS: .*not trusted/);

    const out: string[] = [];
    const err: string[] = [];
    const io = { stdout: (t: string) => void out.push(t), stderr: (t: string) => void err.push(t), env: { IM_AUTH_SECRET: secret } };
    assert.equal(await cliMain(['send', alice, bob, 'from im over https', '--router', routerUrl, '--tls-ca', pki.caPem], io), 0, err.join(''));
    await eventually(() => inbox.messages.some((m) => text(m) === 'from im over https'), 'the message from im', 10_000);
    assert.equal(await cliMain(['send', alice, bob, 'x', '--router', routerUrl, '--tls-ca', pki.otherCaPem], io), 1);
    assert.match(err.join(''), /route API https:.*not trusted/);
  });
});
