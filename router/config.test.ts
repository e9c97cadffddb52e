import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { ConfigError } from '../common/config';
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
    const { out } = run({ IM_GATEWAY_TTL: 'forever' });
    const r = await out;
    assert.equal(r.code, 2);
    assert.match(r.stderr, /IM_GATEWAY_TTL/);
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
