/**
 * A private single-node Cassandra run with the project's own scripts (cassandra/start.sh and
 * stop.sh) under its own CASSANDRA_BASE and ports, so that a kill -9 of it never touches the
 * shared node on 9042. Restarts keep the data (the same commit log and sstables), as a machine
 * whose Cassandra crashed would.
 */
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { alive } from './infra';
import { eventually } from './wait';

const REPO = path.join(__dirname, '..', '..');
const SCRIPTS = path.join(REPO, 'cassandra');
/** Output kept from a script run for its failure message. */
const MAX_OUTPUT_CHARS = 8000;

export interface CassandraNodeOptions {
  /** Data, logs and pid file; wiped on the first start. */
  base: string;
  cqlPort: number;
  storagePort: number;
  /** Seconds start.sh waits for CQL. */
  startTimeoutS?: number;  // 120
  /** More of start.sh's settings, e.g. CASSANDRA_CLIENT_KEYSTORE for a TLS-only CQL port. */
  env?: Record<string, string>;
}

export class CassandraNode {
  constructor(private readonly o: CassandraNodeOptions) {}

  get contact(): string {
    return `127.0.0.1:${this.o.cqlPort}`;
  }

  /** Starts it (fresh: wipes the base first) and resolves once it answers CQL. */
  start(fresh = false): Promise<void> {
    return this.script('start.sh', fresh ? ['--fresh'] : []);
  }

  /** SIGTERM (drain), SIGKILL after a bound. Idempotent: a node that is not running is left alone. */
  stop(): Promise<void> {
    return this.script('stop.sh', []);
  }

  /** The JVM's pid while start.sh's pid file names one. */
  pid(): number | undefined {
    try {
      const pid = Number(fs.readFileSync(path.join(this.o.base, 'cassandra.pid'), 'utf8').trim());
      return Number.isInteger(pid) && pid > 0 ? pid : undefined;
    } catch {
      return undefined;
    }
  }

  /** kill -9, then waits (bounded) until the process is gone. */
  async kill9(timeoutMs = 10_000): Promise<void> {
    const pid = this.pid();
    if (pid === undefined) throw new Error(`no Cassandra pid file under ${this.o.base}`);
    process.kill(pid, 'SIGKILL');
    await eventually(() => !alive(pid), `Cassandra pid ${pid} to be gone after SIGKILL`, timeoutMs);
  }

  private script(name: string, args: string[]): Promise<void> {
    const env = {
      ...process.env, CASSANDRA_BASE: this.o.base, CQL_PORT: String(this.o.cqlPort), STORAGE_PORT: String(this.o.storagePort),
      CASSANDRA_START_TIMEOUT: String(this.o.startTimeoutS ?? 120), CASSANDRA_STOP_TIMEOUT: '20', ...this.o.env,
    };
    const child = spawn('bash', [path.join(SCRIPTS, name), ...args], { cwd: REPO, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    const keep = (d: Buffer) => { out = (out + d.toString()).slice(-MAX_OUTPUT_CHARS); };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
    return new Promise((resolve, reject) => {
      child.on('error', reject);
      child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`cassandra/${name} exited ${code}:\n${out}`))));
    });
  }
}
