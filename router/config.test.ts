import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ConfigError } from '../common/config';
import { makeTestPki } from '../test/tls-certs';
import { loadRouterConfig } from './config';

describe('loadRouterConfig', () => {
  it('has working defaults', () => {
    const c = loadRouterConfig({}, []);
    assert.equal(c.grpcHost, '127.0.0.1');
    assert.equal(c.grpcPort, 7181);
    assert.equal(c.httpHost, '127.0.0.1');
    assert.equal(c.httpPort, 7180);
    assert.equal(c.gatewayTtlMs, 10_000);
    assert.equal(c.logLevel, 'info');
    assert.equal(c.clientHeartbeatIntervalMs, 30_000);
    assert.deepEqual([c.backoffBaseMs, c.backoffMaxMs], [500, 30_000]);
    assert.deepEqual(c.regionCidrs, []);
    assert.deepEqual(c.trustedProxies, []);
    assert.deepEqual([c.routeRatePerSec, c.routeRateBurst, c.routeRateMaxIps], [10, 50, 100_000]);
  });

  it('reads the route API settings: regions inline and from a JSON file, proxies, limits, backoff', () => {
    const files: Record<string, string> = { '/etc/im/regions.json': '{"10.0.0.0/8": "eu-west", "2001:db8::/32": "ap-south"}' };
    const c = loadRouterConfig({
      IM_REGION_CIDRS: '192.168.0.0/16=us-east, 10.1.0.0/16=eu-north',
      IM_REGION_CIDRS_FILE: '/etc/im/regions.json',
      IM_TRUSTED_PROXIES: '127.0.0.1, 172.16.0.0/12,fd00::/8',
      IM_ROUTE_RATE: '0', IM_ROUTE_BURST: '7', IM_ROUTE_RATE_MAX_IPS: '1000',
      IM_HEARTBEAT_INTERVAL: '20s', IM_BACKOFF_BASE: '100ms', IM_BACKOFF_MAX: '5s',
    }, ['--route-burst', '9'], (p) => {
      if (!(p in files)) throw new Error(`ENOENT ${p}`);
      return files[p];
    });
    assert.deepEqual(c.regionCidrs, [
      { cidr: '10.0.0.0/8', region: 'eu-west' }, { cidr: '2001:db8::/32', region: 'ap-south' },
      { cidr: '192.168.0.0/16', region: 'us-east' }, { cidr: '10.1.0.0/16', region: 'eu-north' },
    ]);
    assert.deepEqual(c.trustedProxies, ['127.0.0.1', '172.16.0.0/12', 'fd00::/8']);
    assert.deepEqual([c.routeRatePerSec, c.routeRateBurst, c.routeRateMaxIps], [0, 9, 1000]);
    assert.deepEqual([c.clientHeartbeatIntervalMs, c.backoffBaseMs, c.backoffMaxMs], [20_000, 100, 5000]);
  });

  it('names the route API setting at fault', () => {
    const read = (p: string) => {
      if (p === 'bad.json') return '{"10.0.0.0/8": "eu west"}';
      if (p === 'list.json') return '["10.0.0.0/8"]';
      if (p === 'eu.json') return '{"10.0.0.0/8": "eu"}';
      throw new Error(`ENOENT: no such file ${p}`);
    };
    const cases: Array<[Record<string, string>, string, RegExp]> = [
      [{ IM_REGION_CIDRS: '10.0.0.0/8' }, 'IM_REGION_CIDRS', /must be CIDR=region/],
      [{ IM_REGION_CIDRS: '10.0.0.0/8=eu,10.0.0.0/33=us' }, 'IM_REGION_CIDRS', /row 2: "10.0.0.0\/33" is not/],
      [{ IM_REGION_CIDRS: '10.0.0.0/8=' }, 'IM_REGION_CIDRS', /region ""/],
      [{ IM_REGION_CIDRS_FILE: 'missing.json' }, 'IM_REGION_CIDRS_FILE', /cannot read missing.json/],
      [{ IM_REGION_CIDRS_FILE: 'list.json' }, 'IM_REGION_CIDRS_FILE', /JSON object/],
      [{ IM_REGION_CIDRS_FILE: 'bad.json' }, 'IM_REGION_CIDRS_FILE', /region "eu west"/],
      [{ IM_REGION_CIDRS_FILE: 'eu.json', IM_REGION_CIDRS: '10.0.0.0/8=us' }, 'IM_REGION_CIDRS', /listed twice/],
      [{ IM_TRUSTED_PROXIES: '127.0.0.1,lb.internal' }, 'IM_TRUSTED_PROXIES', /"lb.internal"/],
      [{ IM_ROUTE_RATE: '-1' }, 'IM_ROUTE_RATE', />= 0/],
      [{ IM_ROUTE_BURST: '0' }, 'IM_ROUTE_BURST', />= 1/],
      [{ IM_BACKOFF_BASE: '2s', IM_BACKOFF_MAX: '1s' }, 'IM_BACKOFF_MAX', /IM_BACKOFF_BASE/],
      [{ IM_HEARTBEAT_INTERVAL: '10ms' }, 'IM_HEARTBEAT_INTERVAL', />= 1000ms/],
    ];
    for (const [env, field, message] of cases) {
      assert.throws(() => loadRouterConfig(env, [], read),
        (err: unknown) => err instanceof ConfigError && err.field === field && message.test(err.message), `${JSON.stringify(env)} -> ${field} ${message}`);
    }
  });

  it('reads env, and flags over env', () => {
    const c = loadRouterConfig(
      { IM_ROUTER_GRPC_ADDR: '0.0.0.0:9001', IM_ROUTER_HTTP_ADDR: ':9000', IM_GATEWAY_TTL: '30s', IM_LOG_LEVEL: 'debug' },
      ['--grpc-addr', '10.1.2.3:9101', '--gateway-ttl=15s'],
    );
    assert.deepEqual([c.grpcHost, c.grpcPort, c.httpHost, c.httpPort], ['10.1.2.3', 9101, '0.0.0.0', 9000]);
    assert.equal(c.gatewayTtlMs, 15_000);
    assert.equal(c.logLevel, 'debug');
  });

  it('reads IM_ROUTER_HTTP_TLS_*: both files or neither, checked at start naming the setting', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-router-tls-config-'));
    try {
      const pki = makeTestPki(dir);
      const cert = path.join(dir, 'server.pem');
      const key = path.join(dir, 'server.key');
      assert.equal(loadRouterConfig({}, []).httpTls, undefined);
      assert.deepEqual(loadRouterConfig({ IM_ROUTER_HTTP_TLS_CERT: cert, IM_ROUTER_HTTP_TLS_KEY: key }, []).httpTls,
        { certFile: cert, keyFile: key, reloadIntervalMs: 10_000 });
      assert.deepEqual(loadRouterConfig({}, ['--http-tls-cert', cert, '--http-tls-key', key, '--http-tls-reload-interval', '2s']).httpTls,
        { certFile: cert, keyFile: key, reloadIntervalMs: 2000 });
      const refused = (env: Record<string, string>, field: string, message: RegExp) =>
        assert.throws(() => loadRouterConfig(env, []), (err: unknown) => err instanceof ConfigError && err.field === field && message.test(err.message));
      refused({ IM_ROUTER_HTTP_TLS_CERT: cert }, 'IM_ROUTER_HTTP_TLS_KEY', /required with IM_ROUTER_HTTP_TLS_CERT/);
      refused({ IM_ROUTER_HTTP_TLS_KEY: key }, 'IM_ROUTER_HTTP_TLS_CERT', /required with IM_ROUTER_HTTP_TLS_KEY/);
      refused({ IM_ROUTER_HTTP_TLS_CERT: path.join(dir, 'none.pem'), IM_ROUTER_HTTP_TLS_KEY: key }, 'IM_ROUTER_HTTP_TLS_CERT', /cannot read/);
      refused({ IM_ROUTER_HTTP_TLS_CERT: key, IM_ROUTER_HTTP_TLS_KEY: key }, 'IM_ROUTER_HTTP_TLS_CERT', /no PEM certificate/);
      refused({ IM_ROUTER_HTTP_TLS_CERT: cert, IM_ROUTER_HTTP_TLS_KEY: pki.clientKey }, 'IM_ROUTER_HTTP_TLS_KEY', /not the PEM private key/);
      refused({ IM_ROUTER_HTTP_TLS_CERT: cert, IM_ROUTER_HTTP_TLS_KEY: key, IM_ROUTER_HTTP_TLS_RELOAD_INTERVAL: '1ms' }, 'IM_ROUTER_HTTP_TLS_RELOAD_INTERVAL', /./);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the setting in the error for a bad value', () => {
    for (const [name, value] of [['IM_ROUTER_GRPC_ADDR', 'nope'], ['IM_ROUTER_HTTP_ADDR', 'host:99999'],
      ['IM_GATEWAY_TTL', 'soon'], ['IM_LOG_LEVEL', 'loud']]) {
      assert.throws(() => loadRouterConfig({ [name]: value }, []), (err: unknown) => err instanceof ConfigError && err.field === name);
    }
  });
});

describe('router main', () => {
  const main = path.join(__dirname, 'main.js');

  function run(env: Record<string, string>): { child: ReturnType<typeof spawn>; out: Promise<{ code: number | null; stdout: string; stderr: string }> } {
    const child = spawn(process.execPath, [main], { env: { PATH: process.env.PATH ?? '', IM_LOG_LEVEL: 'silent', ...env }, stdio: 'pipe' });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (c: Buffer) => (stdout += c.toString()));
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()));
    const out = new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
      child.on('exit', (code) => resolve({ code, stdout, stderr }));
    });
    return { child, out };
  }

  it('exits 2 naming the bad setting', async () => {
    for (const [name, value] of [['IM_GATEWAY_TTL', 'forever'], ['IM_REGION_CIDRS', '10.0.0.0/8=eu,300.0.0.0/8=us']]) {
      const r = await run({ [name]: value }).out;
      assert.equal(r.code, 2);
      assert.match(r.stderr, new RegExp(name));
    }
  });

  it('prints where it listens as JSON and stops cleanly on SIGTERM', async () => {
    const { child, out } = run({ IM_ROUTER_GRPC_ADDR: '127.0.0.1:0', IM_ROUTER_HTTP_ADDR: '127.0.0.1:0' });
    const line = await new Promise<string>((resolve, reject) => {
      let buf = '';
      child.stdout!.on('data', (c: Buffer) => {
        buf += c.toString();
        const nl = buf.indexOf('\n');
        if (nl >= 0) resolve(buf.slice(0, nl));
      });
      child.on('exit', (code) => reject(new Error(`router exited early with ${code}`)));
    });
    const rec = JSON.parse(line);
    assert.equal(rec.msg, 'router listening');
    assert.match(rec.grpc, /^127\.0\.0\.1:[1-9]\d*$/);
    assert.match(rec.http, /^127\.0\.0\.1:[1-9]\d*$/);
    child.kill('SIGTERM');
    assert.equal((await out).code, 0);
  });
});
