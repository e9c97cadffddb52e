/**
 * The real service processes for release tests: `node dist/<svc>/main.js` with env settings, as
 * an operator runs them. Every process gets fixed ports (free ones picked up front) so it can be
 * stopped and started again at the same address while the others keep running, and is waited on
 * through the one JSON "listening" line common/service-main.ts prints. A private nats-server can
 * be restarted the same way. Everything is torn down by stop(), with SIGKILL for stragglers.
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as http from 'node:http';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  CASSANDRA_CONTACT, dropKeyspace, freePort, NATS_SERVER_BIN, REQUIRE_INFRA, startNatsServer, stopNatsServer, writeNatsAuthConfig,
  type NatsAuthFiles,
} from './infra';
import { eventually } from './wait';

const DIST = path.join(__dirname, '..');
const LOOPBACK = '127.0.0.1';
/** Output kept per process for failure messages. */
const MAX_OUTPUT_CHARS = 20_000;

export type Service = 'router' | 'logic' | 'gateway';
/** What a ServiceProc runs: a service main, or the whole system in one process (`npm start`). */
export type Main = Service | 'embedded' | 'gateway-supervisor';

export interface Exit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** When the process exited (Date.now()). */
  atMs: number;
}

/** One running service process. */
export class ServiceProc {
  /** The fields of its "listening" line. */
  info: Record<string, unknown> = {};
  readonly exited: Promise<Exit>;
  private output = '';

  private constructor(readonly name: string, readonly child: ChildProcess) {
    this.exited = new Promise((resolve) => {
      child.on('exit', (code, signal) => resolve({ code, signal, atMs: Date.now() }));
    });
    const keep = (d: Buffer) => { this.output = (this.output + d.toString()).slice(-MAX_OUTPUT_CHARS); };
    child.stdout!.on('data', keep);
    child.stderr!.on('data', keep);
  }

  /** Spawns `node dist/<svc>/main.js` (the supervisor: dist/gateway/upgrade/supervisor-main.js) and resolves once it printed its listening line. */
  static async spawn(name: string, svc: Main, env: Record<string, string>, timeoutMs = 30_000): Promise<ServiceProc> {
    // Only the given IM_* settings reach the child, whatever the runner's own environment holds.
    const base = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('IM_')));
    const script = svc === 'gateway-supervisor' ? path.join(DIST, 'gateway', 'upgrade', 'supervisor-main.js') : path.join(DIST, svc, 'main.js');
    const child = spawn(process.execPath, [script], {
      // No tracing: nothing collects it here, and export errors would drown the log.
      env: { ...base, IM_LOG_LEVEL: 'warn', OTEL_SDK_DISABLED: 'true', ...env }, stdio: ['ignore', 'pipe', 'pipe'],
    });
    const p = new ServiceProc(name, child);
    let buf = '';
    const listening = new Promise<Record<string, unknown>>((resolve) => {
      child.stdout!.on('data', (d: Buffer) => {
        buf += d.toString();
        for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
          const ready = readyFields(svc, buf.slice(0, nl));
          buf = buf.slice(nl + 1);
          if (ready) resolve(ready);
        }
      });
    });
    let timer: NodeJS.Timeout | undefined;
    try {
      p.info = await Promise.race([
        listening,
        p.exited.then((e): never => { throw new Error(`${name} exited during startup (${e.code ?? e.signal}): ${p.output}`); }),
        new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${name} not listening after ${timeoutMs}ms: ${p.output}`)), timeoutMs); }),
      ]);
    } catch (err) {
      child.kill('SIGKILL');
      throw err;
    } finally {
      clearTimeout(timer);
    }
    return p;
  }

  get running(): boolean {
    return this.child.exitCode === null && this.child.signalCode === null;
  }

  /** What it printed (tail), for assertion messages. */
  get log(): string {
    return this.output;
  }

  signal(sig: NodeJS.Signals): void {
    if (this.running) this.child.kill(sig);
  }

  /** Watches its output from now on for `text`; the function returned says whether it came. */
  watchFor(text: string): () => boolean {
    let tail = '';
    let seen = false;
    const on = (d: Buffer) => {
      tail = (tail + d.toString()).slice(-(text.length + 64 * 1024));
      if (!tail.includes(text)) return;
      seen = true;
      this.child.stderr!.off('data', on);
    };
    this.child.stderr!.on('data', on); // the log (common/log.ts)
    return () => seen;
  }

  /** Sends `sig` and waits for the exit; SIGKILL after timeoutMs. */
  async stop(sig: NodeJS.Signals = 'SIGTERM', timeoutMs = 30_000): Promise<Exit> {
    this.signal(sig);
    const timer = setTimeout(() => this.signal('SIGKILL'), timeoutMs);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

export interface ProcClusterOptions {
  logics?: number;    // 2
  gateways?: number;  // 2
  /** Extra env for every gateway (e.g. IM_DRAIN_WINDOW). */
  gatewayEnv?: Record<string, string>;
  logicEnv?: Record<string, string>;
  routerEnv?: Record<string, string>;
  /** The Cassandra the logic processes use (default IM_CASSANDRA_CONTACT_POINTS or 127.0.0.1:9042). */
  cassandraContact?: string;
}

/**
 * Router, logic and gateway processes on a private nats-server and a fresh Cassandra keyspace.
 * Gateways list every logic address, as `make up` runs them; NATS requires credentials, each role
 * with its own and only its permissions (scripts/nats-config.js), as `make up` runs it too.
 */
export class ProcCluster {
  readonly keyspace = `im_rel_${randomBytes(4).toString('hex')}`;
  readonly authSecret = `release-secret-${randomBytes(8).toString('hex')}`;
  router!: ServiceProc;
  readonly logics: ServiceProc[] = [];
  readonly gateways: ServiceProc[] = [];
  private nats: ChildProcess | undefined;
  private natsPort = 0;
  private natsDir = '';
  private natsAuth!: NatsAuthFiles;
  private routerGrpcPort = 0;
  private routerHttpPort = 0;
  private logicPorts: number[] = [];
  private gatewayPorts: number[] = [];
  private readonly helpers: http.Server[] = [];

  private constructor(private readonly o: ProcClusterOptions) {}

  static async start(options: ProcClusterOptions = {}): Promise<ProcCluster> {
    const c = new ProcCluster(options);
    try {
      await c.boot();
    } catch (err) {
      await c.stop();
      throw err;
    }
    return c;
  }

  get routerUrl(): string {
    return `http://${LOOPBACK}:${this.routerHttpPort}`;
  }

  get natsUrl(): string {
    return `nats://${LOOPBACK}:${this.natsPort}`;
  }

  get cassandraContact(): string {
    return this.o.cassandraContact ?? CASSANDRA_CONTACT;
  }

  gatewayAddr(i: number): string {
    return `${LOOPBACK}:${this.gatewayPorts[i]}`;
  }

  nodeOf(i: number): string {
    return `gw-${this.keyspace}-${i}`;
  }

  private async boot(): Promise<void> {
    const nLogic = this.o.logics ?? 2;
    const nGw = this.o.gateways ?? 2;
    [this.natsPort, this.routerGrpcPort, this.routerHttpPort] = await Promise.all([freePort(), freePort(), freePort()]);
    this.logicPorts = await Promise.all(Array.from({ length: nLogic }, () => freePort()));
    this.gatewayPorts = await Promise.all(Array.from({ length: nGw }, () => freePort()));
    this.natsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-procs-nats-'));
    this.natsAuth = writeNatsAuthConfig(this.natsDir, this.natsPort, Array.from({ length: nGw }, (_, i) => this.nodeOf(i)));
    this.nats = await startNatsServer(this.natsPort, this.natsAuth.config);
    this.router = await this.spawnRouter();
    // One after the other: the first one creates the keyspace and its tables.
    for (let i = 0; i < nLogic; i++) this.logics.push(await this.spawnLogic(i));
    for (let i = 0; i < nGw; i++) this.gateways.push(await this.spawnGateway(i));
  }

  spawnRouter(): Promise<ServiceProc> {
    return ServiceProc.spawn('router', 'router', {
      IM_ROUTER_GRPC_ADDR: `${LOOPBACK}:${this.routerGrpcPort}`, IM_ROUTER_HTTP_ADDR: `${LOOPBACK}:${this.routerHttpPort}`,
      // Every test client comes from 127.0.0.1: the per-IP route limit would only slow reconnects.
      IM_ROUTE_RATE: '0',
      ...this.o.routerEnv,
    });
  }

  spawnLogic(i: number): Promise<ServiceProc> {
    return ServiceProc.spawn(`logic-${i}`, 'logic', {
      IM_LOGIC_ADDR: `${LOOPBACK}:${this.logicPorts[i]}`, IM_ROUTER_GRPC_ADDR: `${LOOPBACK}:${this.routerGrpcPort}`,
      IM_STORE: 'cassandra', IM_CASSANDRA_CONTACT_POINTS: this.cassandraContact, IM_CASSANDRA_KEYSPACE: this.keyspace,
      IM_CASSANDRA_CONSISTENCY: 'ONE', IM_BUS: 'nats', IM_NATS_URL: this.natsUrl, ...this.natsAuth.logicEnv,
      ...this.o.logicEnv,
    });
  }

  spawnGateway(i: number): Promise<ServiceProc> {
    return ServiceProc.spawn(`gateway-${i}`, 'gateway', {
      IM_NODE_ID: this.nodeOf(i), IM_GATEWAY_ADDR: this.gatewayAddr(i), IM_AUTH_SECRET: this.authSecret,
      IM_LOGIC_ADDRS: this.logicPorts.map((p) => `${LOOPBACK}:${p}`).join(','),
      IM_ROUTER_GRPC_ADDR: `${LOOPBACK}:${this.routerGrpcPort}`, IM_BUS: 'nats', IM_NATS_URL: this.natsUrl,
      ...this.natsAuth.gatewayEnv(this.nodeOf(i)), ...this.o.gatewayEnv,
    });
  }

  /** Stops logic i with `sig` and starts it again at the same address. Returns its exit. */
  async restartLogic(i: number, sig: NodeJS.Signals): Promise<Exit> {
    return (await this.restartLogics([i], sig))[0];
  }

  /** Stops these logic processes together (all down at once), then starts each at its address. */
  async restartLogics(indices: number[], sig: NodeJS.Signals): Promise<Exit[]> {
    const exits = await Promise.all(indices.map((i) => this.logics[i].stop(sig)));
    for (const i of indices) this.logics[i] = await this.spawnLogic(i);
    return exits;
  }

  /** Stops gateway i with `sig` and starts it again at the same address and node id. */
  async restartGateway(i: number, sig: NodeJS.Signals): Promise<Exit> {
    const exit = await this.gateways[i].stop(sig);
    this.gateways[i] = await this.spawnGateway(i);
    return exit;
  }

  async restartRouter(sig: NodeJS.Signals = 'SIGTERM'): Promise<Exit> {
    const exit = await this.router.stop(sig);
    this.router = await this.spawnRouter();
    return exit;
  }

  /**
   * Stops the nats-server and starts it again on the same port: once every logic and gateway
   * process has lost it (it logs so), or at once with untilLost false.
   */
  async restartNats(sig: NodeJS.Signals, { untilLost = true } = {}): Promise<void> {
    const lost = [...this.logics, ...this.gateways].map((p) => p.watchFor('nats disconnected'));
    if (this.nats) await stopNatsServer(this.nats, sig);
    this.nats = undefined;
    if (untilLost) await eventually(() => lost.every((seen) => seen()), 'every process to lose NATS', 15_000);
    this.nats = await startNatsServer(this.natsPort, this.natsAuth.config);
  }

  /** The route API's answer right now (nodes, best first). */
  async route(): Promise<Array<{ node: string; addr: string }>> {
    const body = await httpGet(`${this.routerUrl}/v1/route`);
    return (JSON.parse(body) as { gateways: Array<{ node: string; addr: string }> }).gateways;
  }

  /**
   * A route API URL that answers what the real one answers, with gateway `i` moved to the front
   * when it is listed: a test can place a client on a gateway and still be routed by the router
   * (a draining or dead gateway is absent from the real answer, so it is absent here too).
   */
  async routeUrlPreferring(i: number): Promise<string> {
    const node = this.nodeOf(i);
    const srv = http.createServer((_req, res) => {
      httpGet(`${this.routerUrl}/v1/route`).then((body) => {
        const answer = JSON.parse(body) as { gateways: Array<{ node: string }> };
        answer.gateways.sort((a, b) => Number(b.node === node) - Number(a.node === node));
        res.setHeader('content-type', 'application/json');
        res.end(JSON.stringify(answer));
      }, () => {
        res.statusCode = 503;
        res.end('{}');
      });
    });
    await new Promise<void>((resolve) => srv.listen(0, LOOPBACK, resolve));
    this.helpers.push(srv);
    return `http://${LOOPBACK}:${(srv.address() as { port: number }).port}`;
  }

  /** Kills whatever still runs (gateways first), drops the keyspace. Idempotent. */
  async stop(): Promise<void> {
    for (const s of this.helpers.splice(0)) {
      s.closeAllConnections();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    }
    const all = [...this.gateways.splice(0), ...this.logics.splice(0), ...(this.router ? [this.router] : [])];
    await Promise.all(all.map((p) => p.stop('SIGKILL', 5000)));
    if (this.nats) await stopNatsServer(this.nats, 'SIGKILL');
    this.nats = undefined;
    if (this.natsDir) fs.rmSync(this.natsDir, { recursive: true, force: true });
    await dropKeyspace(this.keyspace, this.cassandraContact);
  }
}

/**
 * The fields of a process's ready line, undefined for any other line: a service prints one JSON
 * "<svc> listening" line (common/service-main.ts); the embedded main prints one line for people.
 */
function readyFields(svc: Main, line: string): Record<string, unknown> | undefined {
  if (svc === 'embedded') return line.startsWith('im embedded: gateway') ? { line } : undefined;
  try {
    const j = JSON.parse(line) as Record<string, unknown>;
    return j.msg === `${svc} listening` ? j : undefined;
  } catch {
    return undefined; // a log line that is not JSON: not ours to parse
  }
}

function httpGet(url: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => { body += d; });
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`GET ${url}: HTTP ${res.statusCode}`))));
      res.on('error', reject);
    });
    req.setTimeout(5000, () => req.destroy(new Error(`GET ${url}: timed out`)));
    req.on('error', reject);
  });
}

/**
 * Suites that restart NATS run their own nats-server: without the binary they skip loudly, or
 * fail with IM_REQUIRE_INFRA=1.
 */
export function needsNatsServerBinary(ctx: Mocha.Context): void {
  const r = spawnSync(NATS_SERVER_BIN, ['--version'], { encoding: 'utf8' });
  if (r.status === 0) return;
  if (REQUIRE_INFRA) throw new Error(`${NATS_SERVER_BIN} is required (IM_REQUIRE_INFRA=1) but does not run: ${r.error?.message ?? r.stderr}`);
  process.stdout.write(`\n  !!! skipped: ${ctx.test?.parent?.fullTitle() ?? 'nats-server'} — no runnable ${NATS_SERVER_BIN} (apt-get install nats-server, or set IM_REQUIRE_INFRA=1 to make this a failure)\n\n`);
  ctx.skip();
}
