/**
 * One service main as an operator starts it (`node dist/<svc>/main.js` with env settings), for
 * tests that check what the process itself does: its exit code and stderr on a bad setting, its
 * one "listening" line, its exit on SIGTERM. test/procs.ts runs whole clusters of them.
 */
import { strict as assert } from 'node:assert';
import { spawn, type ChildProcess } from 'node:child_process';
import * as path from 'node:path';

const DIST = path.join(__dirname, '..');

export interface Exit { code: number | null; signal: NodeJS.Signals | null; stdout: string; stderr: string }
export interface Launched {
  child: ChildProcess;
  exit: Promise<Exit>;
  /** The first stdout line, parsed; rejects if the process exits first. */
  firstLine: Promise<Record<string, unknown>>;
}

/** Only the given IM_* settings reach the child, whatever the test runner's own env holds. */
function childEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('IM_')));
  return { ...base, ...env };
}

export function launchMain(service: 'gateway' | 'logic' | 'router', env: Record<string, string>): Launched {
  const child = spawn(process.execPath, [path.join(DIST, service, 'main.js')], { env: childEnv(env), stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  let onLine: (line: string) => void = () => undefined;
  const line = new Promise<string>((resolve) => { onLine = resolve; });
  child.stdout!.on('data', (d: Buffer) => {
    stdout += d.toString();
    const nl = stdout.indexOf('\n');
    if (nl >= 0) onLine(stdout.slice(0, nl));
  });
  child.stderr!.on('data', (d: Buffer) => { stderr += d.toString(); });
  const exit = new Promise<Exit>((resolve) => child.on('exit', (code, signal) => resolve({ code, signal, stdout, stderr })));
  const firstLine = Promise.race([
    line.then((l) => JSON.parse(l) as Record<string, unknown>),
    exit.then((r): never => { throw new Error(`${service} exited early (${r.code}): ${r.stderr}`); }),
  ]);
  firstLine.catch(() => undefined);
  return { child, exit, firstLine };
}

/**
 * A router and, next to it, a logic process on SQLite in dataDir with logicEnv (its NATS settings),
 * both pushed onto procs; with their listening lines (r, l).
 */
export async function launchRouterAndLogic(procs: Launched[], dataDir: string, logicEnv: Record<string, string>):
  Promise<{ router: Launched; logic: Launched; r: Record<string, unknown>; l: Record<string, unknown> }> {
  const router = launchMain('router', { IM_ROUTER_GRPC_ADDR: '127.0.0.1:0', IM_ROUTER_HTTP_ADDR: '127.0.0.1:0', IM_LOG_LEVEL: 'warn' });
  procs.push(router);
  const r = await router.firstLine;
  const logic = launchMain('logic', {
    IM_STORE: 'sqlite', IM_DATA_DIR: dataDir, IM_LOGIC_ADDR: '127.0.0.1:0', IM_ROUTER_GRPC_ADDR: String(r.grpc), IM_LOG_LEVEL: 'warn',
    ...logicEnv,
  });
  procs.push(logic);
  return { router, logic, r, l: await logic.firstLine };
}

/** SIGKILL to each of them still running (emptying the list), and waits for every exit. */
export async function killAll(procs: Launched[]): Promise<void> {
  for (const p of procs.splice(0)) {
    if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGKILL');
    await p.exit;
  }
}

/** Starts the main with a bad setting and checks it exits 2 naming `field`, claiming nothing. */
export async function expectConfigExit(service: 'gateway' | 'logic' | 'router', env: Record<string, string>, field: string): Promise<void> {
  const { exit, child } = launchMain(service, env);
  const timer = setTimeout(() => child.kill('SIGKILL'), 15_000);
  const r = await exit;
  clearTimeout(timer);
  assert.equal(r.code, 2, `exit ${r.code} ${r.signal ?? ''}; stderr: ${r.stderr}`);
  assert.match(r.stderr, new RegExp(`config ${field}:`));
  assert.equal(r.stdout, '', 'nothing claims to be listening');
}
