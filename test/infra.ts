/**
 * Suites that need a real NATS or Cassandra detect them. Absent: the suite is skipped with a loud
 * "skipped: …" line. With IM_REQUIRE_INFRA=1 (CI), absent is a failure instead.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { freePort, reachable } from '../common/net';
import { Client } from 'cassandra-driver';
import { eventually } from './wait';

/**
 * The URL, with credentials, that scripts/nats-start.sh wrote for the tests (its dev user, all
 * permissions: .run/nats/dev.url, or $NATS_DIR/dev.url) — so the suites work against the server CI
 * and `make infra-up` start, which refuses a connection without credentials.
 */
function startScriptUrl(): string | undefined {
  const dir = process.env.NATS_DIR ?? path.resolve(__dirname, '..', '..', '.run', 'nats');
  try {
    return fs.readFileSync(path.join(dir, 'dev.url'), 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

export const NATS_URL = process.env.IM_NATS_URL ?? startScriptUrl() ?? 'nats://127.0.0.1:4222';
/** NATS_URL without its credentials, for titles and messages. */
export const NATS_WHERE = NATS_URL.replace(/\/\/[^@/]*@/, '//');
export const CASSANDRA_CONTACT = process.env.IM_CASSANDRA_CONTACT_POINTS ?? '127.0.0.1:9042';
export const REQUIRE_INFRA = /^(1|true|yes)$/i.test(process.env.IM_REQUIRE_INFRA ?? '');

export { freePort, reachable };

function hostPort(url: string, defPort: number): [string, number] {
  const m = /^(?:\w+:\/\/)?(?:[^@/\s]*@)?([^:/,]+)(?::(\d+))?/.exec(url.split(',')[0].trim());
  return [m?.[1] ?? '127.0.0.1', Number(m?.[2] ?? defPort)];
}

export const natsReachable = () => reachable(...hostPort(NATS_URL, 4222));
export const cassandraReachable = () => reachable(...hostPort(CASSANDRA_CONTACT, 9042));

/**
 * Call in a suite's before(): skips the suite (loudly) when the server is absent, or fails it when
 * IM_REQUIRE_INFRA is set.
 */
export async function needs(ctx: Mocha.Context, what: 'nats' | 'cassandra'): Promise<void> {
  const ok = what === 'nats' ? await natsReachable() : await cassandraReachable();
  if (ok) return;
  const where = what === 'nats' ? NATS_WHERE : CASSANDRA_CONTACT;
  if (REQUIRE_INFRA) throw new Error(`${what} is required (IM_REQUIRE_INFRA=1) but not reachable at ${where}`);
  process.stdout.write(`\n  !!! skipped: ${ctx.test?.parent?.fullTitle() ?? what} — no ${what} at ${where} (start it with \`make infra-up\`, or set IM_REQUIRE_INFRA=1 to make this a failure)\n\n`);
  ctx.skip();
}

/** Whether a process with this pid exists (signal 0 checks without signalling). */
export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const NATS_SERVER_BIN = process.env.NATS_SERVER_BIN ?? 'nats-server';

/** What scripts/nats-config.js wrote: the server config and each role's credential (IM_NATS_* settings). */
export interface NatsAuthFiles {
  config: string;
  logicEnv: Record<string, string>;
  gatewayEnv: (node: string) => Record<string, string>;
}

/**
 * scripts/nats-config.js into dir, for a server on 127.0.0.1:port: per-role credentials with only
 * their permissions (logic, and one per gateway node), as `make up` and CI run NATS.
 */
export function writeNatsAuthConfig(dir: string, port: number, gatewayNodes: string[]): NatsAuthFiles {
  const script = path.resolve(__dirname, '..', '..', 'scripts', 'nats-config.js');
  execFileSync(process.execPath, [script, '--dir', dir, '--port', String(port), '--gateways', gatewayNodes.join(',')],
    { stdio: ['ignore', 'ignore', 'inherit'] });
  return {
    config: path.join(dir, 'nats.conf'),
    logicEnv: { IM_NATS_NKEY_SEED_FILE: path.join(dir, 'logic.nk') },
    gatewayEnv: (node) => ({ IM_NATS_NKEY_SEED_FILE: path.join(dir, `gateway-${node}.nk`) }),
  };
}

/**
 * Spawns a test-owned nats-server on the port (with configFile: that config, which must listen on
 * 127.0.0.1:port) and waits until it accepts connections (or fails with its stderr).
 */
export async function startNatsServer(port: number, configFile?: string): Promise<ChildProcess> {
  const args = configFile ? ['-c', configFile] : ['-a', '127.0.0.1', '-p', String(port)];
  const p = spawn(NATS_SERVER_BIN, args, { stdio: ['ignore', 'ignore', 'pipe'] });
  let stderr = '';
  p.stderr!.on('data', (d: Buffer) => { stderr = (stderr + d.toString()).slice(-2000); });
  p.on('error', (err) => { stderr += String(err); });
  const exited = () => p.exitCode !== null || p.signalCode !== null;
  const up = await eventually(async () => exited() || reachable('127.0.0.1', port, 200), `nats-server on ${port}`, 10_000).catch(() => false);
  if (up !== true || exited()) {
    p.kill('SIGKILL');
    throw new Error(exited() ? `nats-server exited during startup: ${stderr}` : `nats-server not accepting on ${port}: ${stderr}`);
  }
  return p;
}

export function stopNatsServer(p: ChildProcess, signal: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  if (p.exitCode !== null || p.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    p.once('exit', () => resolve());
    p.kill(signal);
  });
}

/** Drops a test keyspace; a Cassandra that is gone leaves nothing to drop. */
export async function dropKeyspace(keyspace: string, contact = CASSANDRA_CONTACT): Promise<void> {
  if (!/^[a-z][a-z0-9_]*$/.test(keyspace)) throw new Error(`not a keyspace name: ${keyspace}`);
  if (!(await reachable(...hostPort(contact, 9042)))) return;
  const admin = new Client({ contactPoints: contact.split(','), localDataCenter: 'datacenter1' });
  try {
    await admin.connect();
    await admin.execute(`DROP KEYSPACE IF EXISTS ${keyspace}`);
  } catch { /* gone mid-way: nothing left to drop */ } finally {
    await admin.shutdown().catch(() => undefined);
  }
}
