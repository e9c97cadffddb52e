/**
 * The supervisor and worker processes' start-up checks. The hot upgrade itself is in
 * hotswap.test.ts.
 */
import * as assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import * as path from 'node:path';
import { loadSupervisorConfig, workerEnv } from './supervisor-config';

const SECRET = 'supervisor-test-secret-0123456789';

function run(script: string, env: Record<string, string>): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('IM_')));
  const child = spawn(process.execPath, [path.join(__dirname, script)], { env: { ...base, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout!.on('data', (d: Buffer) => { stdout += d.toString(); });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  return new Promise((resolve) => child.on('exit', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); }));
}

describe('gateway supervisor settings', () => {
  it('checks the gateway settings and its own, naming the field', () => {
    assert.throws(() => loadSupervisorConfig({}, [], '/w.js'), /config IM_AUTH_SECRET:/);
    assert.throws(() => loadSupervisorConfig({ IM_AUTH_SECRET: SECRET, IM_SUPERVISOR_ADDR: 'nowhere' }, [], '/w.js'), /config IM_SUPERVISOR_ADDR:/);
    assert.throws(() => loadSupervisorConfig({ IM_AUTH_SECRET: SECRET, IM_BUS: 'inprocess' }, [], '/w.js'), /config IM_BUS:/);
    assert.throws(() => loadSupervisorConfig({ IM_AUTH_SECRET: SECRET, IM_HANDOFF_TIMEOUT: 'soon' }, [], '/w.js'), /config IM_HANDOFF_TIMEOUT:/);
    const c = loadSupervisorConfig({ IM_AUTH_SECRET: SECRET, IM_GATEWAY_ADDR: '127.0.0.1:7300' }, ['--supervisor-addr', '127.0.0.1:7309'], '/opt/im/dist/gateway/upgrade/worker-main.js');
    assert.deepEqual([c.listen, c.controlAddr, c.workerScript], [{ host: '127.0.0.1', port: 7300 }, { host: '127.0.0.1', port: 7309 }, '/opt/im/dist/gateway/upgrade/worker-main.js']);
    assert.equal(loadSupervisorConfig({ IM_AUTH_SECRET: SECRET }, [], '/w.js').controlAddr, undefined, 'the control port is off unless set');
  });

  it('keeps the admin port for itself: workers would collide on it', () => {
    assert.deepEqual(workerEnv({ IM_ADMIN_ADDR: '127.0.0.1:9100', IM_SUPERVISOR_ADDR: '127.0.0.1:7309', IM_NODE_ID: 'gw-1' }), { IM_NODE_ID: 'gw-1' });
  });

  it('the supervisor exits 2 naming a bad setting, before listening', async () => {
    const r = await run('supervisor-main.js', { IM_AUTH_SECRET: SECRET, IM_WORKER_READY_TIMEOUT: '1ms' });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /config IM_WORKER_READY_TIMEOUT:/);
    assert.equal(r.stdout, '');
  });

  it('a worker started by hand (no supervisor channel) exits 2 saying how to run it', async () => {
    const r = await run('worker-main.js', { IM_AUTH_SECRET: SECRET });
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, /dist\/gateway\/upgrade\/supervisor-main\.js/);
  });

  it('the entry points at their paths of earlier releases (dist/gateway/*-main.js) run these ones', async () => {
    // A supervisor of an earlier release forks dist/gateway/worker-main.js at an upgrade.
    const worker = await run('../worker-main.js', { IM_AUTH_SECRET: SECRET });
    assert.equal(worker.code, 2, worker.stderr);
    assert.match(worker.stderr, /a gateway worker runs under the supervisor/);
    const supervisor = await run('../supervisor-main.js', { IM_AUTH_SECRET: SECRET, IM_WORKER_READY_TIMEOUT: '1ms' });
    assert.equal(supervisor.code, 2, supervisor.stderr);
    assert.match(supervisor.stderr, /config IM_WORKER_READY_TIMEOUT:/);
  });
});
