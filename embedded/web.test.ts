/** The web page's server (embedded/web.ts): static files, /config.json, and the development token rules. */
import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as path from 'node:path';
import { tempDir } from '../client/client.test-support';
import { verifyToken } from '../common/jwt';
import { silentLogger } from '../common/log';
import { loadEmbeddedConfig } from './config';
import { DEV_TOKEN_PATH, DEV_TOKEN_TTL_SECONDS, isLoopbackHost, WebServer } from './web';

const SECRET = 'web-test-secret-0123456789';

interface Reply { status: number; headers: http.IncomingHttpHeaders; body: string }

function request(port: number, method: string, pathname: string, opts: { headers?: Record<string, string>; body?: string } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: pathname, headers: opts.headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => resolve({ status: res.statusCode!, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

const json = { 'Content-Type': 'application/json' };
const errorCode = (r: Reply) => (JSON.parse(r.body) as { error: { code: number } }).error.code;

describe('embedded web page server', () => {
  const servers: WebServer[] = [];
  async function start(host: string, root?: string): Promise<number> {
    const s = new WebServer({ host, port: 0, routerUrl: 'http://127.0.0.1:7180', secret: SECRET, sign: { audience: 'im' }, root, logger: silentLogger });
    servers.push(s);
    return s.start();
  }
  afterEach(async () => { await Promise.all(servers.splice(0).map((s) => s.stop())); });

  it('knows loopback hosts', () => {
    for (const h of ['127.0.0.1', '127.8.9.10', 'localhost', '::1', '[::1]', '::ffff:127.0.0.1']) assert.ok(isLoopbackHost(h), h);
    for (const h of ['0.0.0.0', '::', '10.0.0.1', '128.0.0.1', 'example.com', '127.0.0.1.example.com', '']) assert.ok(!isLoopbackHost(h), h);
  });

  it('signs a token for a uid with the system key, on loopback', async () => {
    const port = await start('127.0.0.1');
    const r = await request(port, 'POST', DEV_TOKEN_PATH, { headers: json, body: JSON.stringify({ uid: 'alice' }) });
    assert.equal(r.status, 200, r.body);
    const body = JSON.parse(r.body) as { uid: string; token: string; expiresAtMs: number };
    assert.equal(body.uid, 'alice');
    const claims = verifyToken({ secret: SECRET, audience: 'im' }, body.token);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.exp - claims.iat, DEV_TOKEN_TTL_SECONDS);
    assert.equal(body.expiresAtMs, claims.exp * 1000);
    const config = await request(port, 'GET', '/config.json');
    assert.deepEqual(JSON.parse(config.body), { routerUrl: 'http://127.0.0.1:7180', devTokens: true });
  });

  it('refuses bad requests with a clear error', async () => {
    const port = await start('127.0.0.1');
    const post = (body: string, headers: Record<string, string> = json) => request(port, 'POST', DEV_TOKEN_PATH, { headers, body });
    const cases: Array<[Promise<Reply>, number, RegExp]> = [
      [post('{"uid":"a:b"}'), 400, /uid/],
      [post('{"uid":42}'), 400, /uid/],
      [post('not json'), 400, /not JSON/],
      [post('null'), 400, /uid/],
      [post('x'.repeat(2000)), 413, /larger/],
      // A cross-site form or simple fetch cannot send JSON without a preflight this server never grants.
      [post('{"uid":"alice"}', { 'Content-Type': 'text/plain' }), 415, /application\/json/],
      [request(port, 'GET', DEV_TOKEN_PATH), 405, /method GET/],
      // DNS rebinding: a page on another name that resolves to 127.0.0.1.
      [post('{"uid":"alice"}', { ...json, Host: 'evil.example:80' }), 403, /loopback Host/],
      [post('{"uid":"alice"}', { ...json, Origin: 'http://evil.example' }), 403, /loopback origin/],
      [request(port, 'DELETE', '/'), 405, /method DELETE/],
      [request(port, 'GET', '/../etc/passwd'), 404, /no such page/],
    ];
    for (const [reply, status, message] of cases) {
      const r = await reply;
      assert.equal(r.status, status, r.body);
      assert.match(r.body, message);
      assert.equal(errorCode(r), 2000);
    }
  });

  it('gives no tokens when bound beyond loopback, and says so', async () => {
    const port = await start('0.0.0.0');
    const r = await request(port, 'POST', DEV_TOKEN_PATH, { headers: json, body: '{"uid":"alice"}' });
    assert.equal(r.status, 403);
    assert.match(r.body, /only when the web listener is bound to loopback \(IM_WEB_ADDR is 0\.0\.0\.0\)/);
    assert.equal(JSON.parse((await request(port, 'GET', '/config.json')).body).devTokens, false);
  });

  it('serves the built page, and a clear 503 when it is not built', async () => {
    const root = tempDir('im-web-root-');
    fs.writeFileSync(path.join(root, 'index.html'), '<!doctype html><title>t</title>');
    const port = await start('127.0.0.1', root);
    const page = await request(port, 'GET', '/');
    assert.equal(page.status, 200);
    assert.match(String(page.headers['content-type']), /^text\/html/);
    assert.match(String(page.headers['content-security-policy']), /default-src 'self'/);
    const missing = await request(port, 'GET', '/app.js');
    assert.equal(missing.status, 503);
    assert.match(missing.body, /npm run build/);
  });

  it('IM_WEB_ADDR and IM_GATEWAY_WS_ADDR: on by default on loopback in embedded mode, off with "off"', () => {
    const defaults = loadEmbeddedConfig({}, []);
    assert.deepEqual(defaults.web, { host: '127.0.0.1', port: 7170 });
    assert.deepEqual(defaults.gateway?.ws, { host: '127.0.0.1', port: 7102, tls: false });
    const off = loadEmbeddedConfig({ IM_WEB_ADDR: 'off', IM_GATEWAY_WS_ADDR: 'off' }, []);
    assert.equal(off.web, undefined);
    assert.equal(off.gateway?.ws, undefined);
    assert.throws(() => loadEmbeddedConfig({ IM_WEB_ADDR: 'nope' }, []), /IM_WEB_ADDR/);
  });
});
