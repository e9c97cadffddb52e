/**
 * A Cassandra node of a test's own, started by the project's cassandra/start.sh on free ports
 * with its own data folder, so the test may kill -9 and restart it without touching the shared
 * node other suites use.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { freePort } from '../common/net';

const run = promisify(execFile);
const START = path.resolve(__dirname, '..', '..', 'cassandra', 'start.sh');

export class OwnCassandraNode {
  private constructor(readonly base: string, readonly cqlPort: number, private readonly storagePort: number) {}

  static async create(): Promise<OwnCassandraNode> {
    const base = mkdtempSync(path.join(os.tmpdir(), 'im-cassandra-'));
    return new OwnCassandraNode(base, await freePort(), await freePort());
  }

  get contactPoint(): string { return `127.0.0.1:${this.cqlPort}`; }

  /** start.sh: waits until CQL answers; keeps the data folder (a restart recovers from it). */
  async start(): Promise<void> {
    await run(START, [], {
      env: { ...process.env, CASSANDRA_BASE: this.base, CQL_PORT: String(this.cqlPort), STORAGE_PORT: String(this.storagePort) },
      timeout: 240_000,
    });
  }

  pid(): number {
    return Number(readFileSync(path.join(this.base, 'cassandra.pid'), 'utf8').trim());
  }

  /** SIGKILL, and waits until the process is gone. */
  async kill9(): Promise<void> {
    const pid = this.pid();
    process.kill(pid, 'SIGKILL');
    while (alive(pid)) await new Promise((r) => setTimeout(r, 20));
  }

  /** Stops the node (if running) and removes its data folder. */
  async destroy(): Promise<void> {
    try { await this.kill9(); } catch { /* not running */ }
    rmSync(this.base, { recursive: true, force: true });
  }
}

function alive(pid: number): boolean {
  try { process.kill(pid, 0); return true; } catch { return false; }
}
