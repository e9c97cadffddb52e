/**
 * The gateway's settings as config.ts reads them from env and flags (and the supervisor's, which
 * take the gateway's): defaults, the WebSocket and TLS listeners, bad values refused naming the setting.
 */
import * as assert from 'node:assert/strict';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { loadEmbeddedConfig } from '../embedded/config';
import { makeTestPki, type TestPki } from '../test/tls-certs';
import { gatewayShutdownTimeoutMs, loadGatewayConfig, SHUTDOWN_MARGIN_MS } from './config';
import { loadSupervisorConfig } from './upgrade/supervisor-config';

const S = 'gateway-config-secret';

describe('loadGatewayConfig', () => {
  it('applies defaults', () => {
    const c = loadGatewayConfig({ IM_AUTH_SECRET: S }, []);
    assert.equal(c.node, `gw-${os.hostname()}`);
    assert.deepEqual(c.listen, { host: '127.0.0.1', port: 7100 });
    assert.equal(c.publicAddr, undefined);
    assert.deepEqual(c.logicAddresses, ['127.0.0.1:7190']);
    assert.equal(c.routerAddr, '127.0.0.1:7181');
    assert.equal(c.maxFrameBytes, 65536);
    assert.equal(c.heartbeatIntervalMs, 30_000);
    assert.equal(c.idleTimeoutMs, 90_000);
    assert.equal(c.authTimeoutMs, 5000);
    assert.equal(c.maxWriteQueueBytes, 1024 * 1024);
    assert.equal(c.rateLimitPerSec, 50);
    assert.equal(c.rateLimitBurst, 100);
    assert.equal(c.maxConnections, 50_000);
    assert.equal(c.drainWindowMs, 30_000);
  });

  it('IM_GATEWAY_WS_ADDR turns the WebSocket listener on; IM_GATEWAY_WS_PUBLIC_URL is checked and needs it', () => {
    assert.equal(loadGatewayConfig({ IM_AUTH_SECRET: S }, []).ws, undefined);
    assert.deepEqual(loadGatewayConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_WS_ADDR: '0.0.0.0:7101' }, []).ws, { host: '0.0.0.0', port: 7101, tls: false });
    assert.deepEqual(loadGatewayConfig({ IM_AUTH_SECRET: S }, ['--ws-addr', '127.0.0.1:0', '--ws-public-url', 'wss://im.example.com/ws']).ws,
      { host: '127.0.0.1', port: 0, tls: false, publicUrl: 'wss://im.example.com/ws' });
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_WS_ADDR: 'nope' }, []), /IM_GATEWAY_WS_ADDR/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_WS_ADDR: ':7101', IM_GATEWAY_WS_PUBLIC_URL: 'http://x/' }, []),
      /IM_GATEWAY_WS_PUBLIC_URL/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_WS_PUBLIC_URL: 'ws://x/' }, []), /IM_GATEWAY_WS_PUBLIC_URL/);
  });

  it('IM_DRAIN_WINDOW sets the drain window, and the process shutdown bound follows it', () => {
    assert.equal(loadGatewayConfig({ IM_AUTH_SECRET: S, IM_DRAIN_WINDOW: '2m' }, []).drainWindowMs, 120_000);
    assert.equal(loadGatewayConfig({ IM_AUTH_SECRET: S }, ['--drain-window', '500ms']).drainWindowMs, 500);
    assert.equal(gatewayShutdownTimeoutMs({ IM_DRAIN_WINDOW: '2m' }, []), 120_000 + SHUTDOWN_MARGIN_MS);
    assert.equal(gatewayShutdownTimeoutMs({}, []), 30_000 + SHUTDOWN_MARGIN_MS);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_DRAIN_WINDOW: 'soon' }, []), /IM_DRAIN_WINDOW/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_DRAIN_WINDOW: '10ms' }, []), /IM_DRAIN_WINDOW/);
    assert.equal(gatewayShutdownTimeoutMs({ IM_DRAIN_WINDOW: 'soon' }, []), 30_000 + SHUTDOWN_MARGIN_MS, 'never throws');
  });

  it('reads env and lets flags override it', () => {
    const c = loadGatewayConfig({
      IM_AUTH_SECRET: S, IM_NODE_ID: 'gw-a', IM_GATEWAY_ADDR: '0.0.0.0:9000', IM_GATEWAY_PUBLIC_ADDR: 'gw.example.com:443',
      IM_LOGIC_ADDRS: 'l1:7190, l2:7190', IM_HEARTBEAT_INTERVAL: '10s', IM_REGION: 'eu', IM_ZONE: 'eu-1a',
    }, ['--node', 'gw-b', '--max-connections=10']);
    assert.equal(c.node, 'gw-b');
    assert.deepEqual(c.listen, { host: '0.0.0.0', port: 9000 });
    assert.equal(c.publicAddr, 'gw.example.com:443');
    assert.deepEqual(c.logicAddresses, ['l1:7190', 'l2:7190']);
    assert.equal(c.heartbeatIntervalMs, 10_000);
    assert.equal(c.idleTimeoutMs, 30_000, 'idle follows the heartbeat');
    assert.equal(c.maxConnections, 10);
    assert.deepEqual([c.region, c.zone], ['eu', 'eu-1a']);
  });

  it('reads the token keys and aud/iss; IM_AUTH_KEYS alone is enough', () => {
    const c = loadGatewayConfig({ IM_AUTH_KEYS: 'k1:old-secret-0123456789,k2:new-secret-0123456789', IM_AUTH_AUDIENCE: 'im', IM_AUTH_ISSUER: 'me' }, []);
    assert.equal(c.auth.secret, undefined);
    assert.deepEqual([...c.auth.keys!.keys()], ['k1', 'k2']);
    assert.deepEqual([c.auth.audience, c.auth.issuer], ['im', 'me']);
    assert.equal(loadGatewayConfig({ IM_AUTH_SECRET: S }, []).auth.secret, S);
  });

  it('fails naming the setting', () => {
    assert.throws(() => loadGatewayConfig({}, []), /IM_AUTH_SECRET/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: 'short' }, []), /config IM_AUTH_SECRET: secret shorter than 16/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_KEYS: 'k1:short' }, []), /config IM_AUTH_KEYS:/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_LOGIC_ADDRS: 'nope' }, []), /IM_LOGIC_ADDRS/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_RATE_LIMIT: 'lots' }, []), /IM_RATE_LIMIT/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_IDLE_TIMEOUT: '5s', IM_HEARTBEAT_INTERVAL: '10s' }, []), /IM_IDLE_TIMEOUT/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_PUBLIC_ADDR: 'x' }, []), /IM_GATEWAY_PUBLIC_ADDR/);
  });
});

describe('gateway TLS settings (IM_GATEWAY_TLS_*, IM_GATEWAY_PLAINTEXT)', () => {
  let pki: TestPki;
  let dir: string;
  let tlsEnv: Record<string, string>;

  before(() => {
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-gw-tls-config-'));
    pki = makeTestPki(dir);
    tlsEnv = { IM_AUTH_SECRET: S, IM_GATEWAY_TLS_ADDR: '0.0.0.0:7443', IM_GATEWAY_TLS_CERT: path.join(dir, 'server.pem'), IM_GATEWAY_TLS_KEY: path.join(dir, 'server.key') };
  });
  after(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('is off by default: plaintext only', () => {
    const c = loadGatewayConfig({ IM_AUTH_SECRET: S }, []);
    assert.equal(c.plaintext, true);
    assert.equal(c.tls, undefined);
  });

  it('reads the TLS listener, its files and reload interval; plaintext can be turned off; flags work', () => {
    const c = loadGatewayConfig({ ...tlsEnv, IM_GATEWAY_PLAINTEXT: 'false', IM_GATEWAY_TLS_PUBLIC_ADDR: 'gw.example.com:443' }, ['--tls-reload-interval', '2s']);
    assert.equal(c.plaintext, false);
    assert.deepEqual(c.tls, {
      listen: { host: '0.0.0.0', port: 7443 }, publicAddr: 'gw.example.com:443',
      certFile: tlsEnv.IM_GATEWAY_TLS_CERT, keyFile: tlsEnv.IM_GATEWAY_TLS_KEY, reloadIntervalMs: 2000,
    });
    assert.equal(loadGatewayConfig(tlsEnv, []).tls?.reloadIntervalMs, 10_000);
    assert.equal(loadGatewayConfig({ IM_AUTH_SECRET: S }, ['--tls-addr', '127.0.0.1:0', '--tls-cert', tlsEnv.IM_GATEWAY_TLS_CERT, '--tls-key', tlsEnv.IM_GATEWAY_TLS_KEY]).tls?.listen.port, 0);
  });

  it('fails at start naming the setting', () => {
    const bad = (env: Record<string, string>, re: RegExp) => assert.throws(() => loadGatewayConfig({ ...tlsEnv, ...env }, []), re);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_PLAINTEXT: 'false' }, []), /config IM_GATEWAY_PLAINTEXT: false needs IM_GATEWAY_TLS_ADDR/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_TLS_CERT: tlsEnv.IM_GATEWAY_TLS_CERT }, []), /config IM_GATEWAY_TLS_CERT: set IM_GATEWAY_TLS_ADDR too/);
    bad({ IM_GATEWAY_TLS_KEY: '' }, /config IM_GATEWAY_TLS_KEY: required/);
    bad({ IM_GATEWAY_TLS_CERT: path.join(dir, 'missing.pem') }, /config IM_GATEWAY_TLS_CERT: cannot read/);
    bad({ IM_GATEWAY_TLS_CERT: path.join(dir, 'server.key') }, /config IM_GATEWAY_TLS_CERT: .* no PEM certificate/);
    bad({ IM_GATEWAY_TLS_KEY: pki.clientKey }, /config IM_GATEWAY_TLS_KEY: .* is not the PEM private key of/);
    bad({ IM_GATEWAY_TLS_ADDR: 'nope' }, /config IM_GATEWAY_TLS_ADDR/);
    bad({ IM_GATEWAY_TLS_PUBLIC_ADDR: 'nope' }, /config IM_GATEWAY_TLS_PUBLIC_ADDR/);
    bad({ IM_GATEWAY_TLS_RELOAD_INTERVAL: '10ms' }, /config IM_GATEWAY_TLS_RELOAD_INTERVAL/);
    bad({ IM_GATEWAY_PLAINTEXT: 'maybe' }, /config IM_GATEWAY_PLAINTEXT/);
    bad({ IM_GATEWAY_ADDR: '0.0.0.0:7443' }, /config IM_GATEWAY_TLS_ADDR: must differ from IM_GATEWAY_ADDR/);
  });

  it('wss:// (IM_GATEWAY_WS_TLS): on by default when plaintext is off, optional beside plaintext, never without a certificate', () => {
    const ws = (env: Record<string, string>, argv: string[] = []) => loadGatewayConfig({ ...tlsEnv, IM_GATEWAY_WS_ADDR: '0.0.0.0:7101', ...env }, argv).ws;
    assert.equal(ws({ IM_GATEWAY_PLAINTEXT: 'false' })?.tls, true);
    assert.equal(ws({})?.tls, false, 'plaintext on: ws:// unless asked');
    assert.equal(ws({ IM_GATEWAY_WS_TLS: 'true' })?.tls, true);
    assert.equal(ws({}, ['--ws-tls', 'true'])?.tls, true);
    assert.deepEqual(ws({ IM_GATEWAY_PLAINTEXT: 'false', IM_GATEWAY_WS_PUBLIC_URL: 'wss://im.example.com/ws' }), { host: '0.0.0.0', port: 7101, tls: true, publicUrl: 'wss://im.example.com/ws' });
    const bad = (env: Record<string, string>, re: RegExp) => assert.throws(() => ws(env), re);
    bad({ IM_GATEWAY_PLAINTEXT: 'false', IM_GATEWAY_WS_TLS: 'false' }, /config IM_GATEWAY_WS_TLS: false with IM_GATEWAY_PLAINTEXT=false/);
    bad({ IM_GATEWAY_PLAINTEXT: 'false', IM_GATEWAY_WS_PUBLIC_URL: 'ws://im.example.com/' }, /config IM_GATEWAY_WS_PUBLIC_URL: the WebSocket listener serves wss:\/\/ only/);
    bad({ IM_GATEWAY_WS_TLS: 'yes please' }, /config IM_GATEWAY_WS_TLS/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_WS_ADDR: ':7101', IM_GATEWAY_WS_TLS: 'true' }, []), /config IM_GATEWAY_WS_TLS: true needs IM_GATEWAY_TLS_ADDR/);
    assert.throws(() => loadGatewayConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_WS_TLS: 'true' }, []), /config IM_GATEWAY_WS_TLS: set only with IM_GATEWAY_WS_ADDR/);
    // Embedded mode reads it the same way.
    assert.equal(loadEmbeddedConfig({ ...tlsEnv, IM_GATEWAY_PLAINTEXT: 'false', IM_GATEWAY_WS_ADDR: '127.0.0.1:0' }, []).gateway?.ws?.tls, true);
  });

  it('reads the same settings for the supervisor and embedded mode', () => {
    const sup = loadSupervisorConfig({ ...tlsEnv, IM_GATEWAY_PLAINTEXT: 'false' }, [], 'worker-main.js');
    assert.deepEqual([sup.plaintext, sup.tlsListen], [false, { host: '0.0.0.0', port: 7443 }]);
    const emb = loadEmbeddedConfig({ ...tlsEnv, IM_GATEWAY_PLAINTEXT: 'false' }, []);
    assert.equal(emb.gateway?.plaintext, false);
    assert.equal(emb.gateway?.tls?.port, 7443);
    assert.equal(emb.gateway?.tls?.certFile, tlsEnv.IM_GATEWAY_TLS_CERT);
    assert.equal(loadEmbeddedConfig({ IM_AUTH_SECRET: S }, ['--gateway-tls-addr', '127.0.0.1:0', '--gateway-tls-cert', tlsEnv.IM_GATEWAY_TLS_CERT,
      '--gateway-tls-key', tlsEnv.IM_GATEWAY_TLS_KEY]).gateway?.tls?.host, '127.0.0.1');
    assert.throws(() => loadEmbeddedConfig({ IM_AUTH_SECRET: S, IM_GATEWAY_PLAINTEXT: 'off' }, []), /config IM_GATEWAY_PLAINTEXT/);
  });
});
