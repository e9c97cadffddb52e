/**
 * The system under test: started by the bench as separate processes (embedded mode, or the
 * distributed services on real NATS and Cassandra / a SQLite stand-in), or an existing deployment
 * found through its route API. Processes the bench starts get a temp data dir, ephemeral ports,
 * the probe preload (heap readings), optionally --cpu-prof, and are stopped (SIGTERM, then
 * SIGKILL after a bound) by stop(), which is idempotent.
 */
import { ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as readline from 'node:readline';
import { parseHostPort } from '../common/config';
import type { HostPort } from './ipc';
import { pidListeningOn } from './proc-stats';
import { Client } from 'cassandra-driver';
import { storeDesign } from './results';
import { readSettings } from '../storage/cassandra/schema';
import { NATS_URL, startNatsServer, writeNatsAuthConfig } from '../test/infra';

/** The IM_NATS_* credential settings a benchmark passes on to the services of a running NATS. */
const NATS_CREDENTIAL_SETTINGS = ['IM_NATS_USER', 'IM_NATS_PASSWORD', 'IM_NATS_NKEY_SEED_FILE', 'IM_NATS_TLS_CA'];
import { freePort, reachable, tcpTarget } from './net-util';

export type TargetKind = 'embedded' | 'distributed' | 'url';

export interface TargetOptions {
  kind: TargetKind;
  /** distributed: logic on SQLite (tmpfs) instead of Cassandra. */
  noDb: boolean;
  /** url: the route API. */
  routerUrl?: string;
  gateways: number;
  logics: number;
  heartbeatIntervalMs: number;
  cassandraKeyspace: string;
  /** Write a V8 CPU profile of every server process into this dir (on exit). */
  cpuProfDir?: string;
  /** Run ids go into node ids, so runs sharing a NATS never see each other's subjects. */
  runId: string;
  env: NodeJS.ProcessEnv;
  log: (line: string) => void;
  startTimeoutMs?: number;
  /**
   * Clients over TLS: the gateways started get a TLS listener with `tlsFiles` and no plaintext one
   * (IM_GATEWAY_PLAINTEXT=false); a url target's gateways are reached at their tlsAddr.
   */
  tls?: boolean;
  tlsFiles?: { certFile: string; keyFile: string };
}

export interface MemoryUsage { rss: number; heapTotal: number; heapUsed: number; external: number; arrayBuffers: number }

export interface ServerProc {
  role: 'embedded' | 'router' | 'logic' | 'gateway' | 'nats' | 'echo';
  name: string;
  pid: number;
  child: ChildProcess;
  /** Set once stop() began: shutdown noise is not forwarded. */
  stopping: boolean;
  /** process.memoryUsage() of the server (after a full GC when gc is true). */
  probe(gc: boolean): Promise<MemoryUsage | undefined>;
  /** Writes a V8 heap snapshot to `file`; resolves false when the process cannot. */
  heapSnapshot(file: string): Promise<boolean>;
}

export interface Target {
  kind: TargetKind;
  description: string;
  gateways: HostPort[];
  routerUrl: string;
  secret: string;
  servers: ServerProc[];
  /** Shared infrastructure found by command line (its CPU includes anyone else's load). */
  infra: Array<{ role: string; pid: number }>;
  notes: string[];
  stop(): Promise<void>;
}

const PROBE = path.join(__dirname, 'probe.js');
const DIST = path.resolve(__dirname, '..');
const LOOPBACK = '127.0.0.1';
const MAX_FORWARDED_WARNINGS = 5;

/** Settings for servers the bench starts: it measures capacity, not the per-client flood limits. */
function serverTuning(o: TargetOptions): Record<string, string> {
  return {
    IM_RATE_LIMIT: '1000000',
    IM_RATE_BURST: '1000000',
    IM_MAX_CONNECTIONS: '200000',
    IM_HEARTBEAT_INTERVAL: String(o.heartbeatIntervalMs),
    IM_LOG_LEVEL: 'warn',
  };
}

/**
 * The caller's environment without IM_* settings, which would otherwise leak into our servers.
 * Tracing is off unless the caller configures it (OTEL_*): the services trace by default, and
 * exporting to an absent collector is work the bench would otherwise measure.
 */
function baseEnv(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  const out: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(env)) if (!k.startsWith('IM_')) out[k] = v;
  if (!tracingConfigured(env)) out.OTEL_SDK_DISABLED = 'true';
  return out;
}

/** The gateway's TLS-only settings for --tls (gateway/config.ts), or none. */
function gatewayTlsEnv(o: TargetOptions): Record<string, string> {
  if (!o.tls) return {};
  if (!o.tlsFiles) throw new Error('--tls: no certificate for the gateways');
  return {
    IM_GATEWAY_TLS_ADDR: `${LOOPBACK}:0`, IM_GATEWAY_TLS_CERT: o.tlsFiles.certFile, IM_GATEWAY_TLS_KEY: o.tlsFiles.keyFile,
    IM_GATEWAY_PLAINTEXT: 'false',
  };
}

function tracingConfigured(env: NodeJS.ProcessEnv): boolean {
  return env.OTEL_SDK_DISABLED !== undefined || env.OTEL_TRACES_EXPORTER !== undefined;
}

function tracingNote(env: NodeJS.ProcessEnv): string {
  return tracingConfigured(env)
    ? `tracing as configured by the caller (OTEL_SDK_DISABLED=${env.OTEL_SDK_DISABLED ?? ''}, OTEL_TRACES_EXPORTER=${env.OTEL_TRACES_EXPORTER ?? ''})`
    : 'tracing off (OTEL_SDK_DISABLED=true; set OTEL_* to measure with tracing)';
}

export async function startTarget(o: TargetOptions): Promise<Target> {
  if (o.kind === 'url') return urlTarget(o);
  const servers: ServerProc[] = [];
  const tempDirs: string[] = [];
  const notes: string[] = [tracingNote(o.env)];
  const infra: Array<{ role: string; pid: number }> = [];
  let stopping: Promise<void> | undefined;
  const stop = () => (stopping ??= stopAll(servers, tempDirs));
  const secret = randomBytes(32).toString('hex');
  const spawnOpts = { cpuProfDir: o.cpuProfDir, log: o.log, timeoutMs: o.startTimeoutMs ?? 60_000 };
  try {
    if (o.kind === 'embedded') {
      const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-bench-embedded-'));
      tempDirs.push(dataDir);
      const env = {
        ...baseEnv(o.env), ...serverTuning(o), IM_DATA_DIR: dataDir, IM_AUTH_SECRET: secret,
        IM_GATEWAY_ADDR: `${LOOPBACK}:0`, IM_ROUTER_HTTP_ADDR: `${LOOPBACK}:0`, IM_LOGIC_PORT: '0', IM_HTTP_ADDR: `${LOOPBACK}:0`, IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off', IM_NODE_ID: `bench-${o.runId}`,
        ...gatewayTlsEnv(o),
      };
      const { proc, fields } = await spawnService({
        ...spawnOpts, role: 'embedded', name: 'embedded', script: 'embedded/main.js', env,
        ready: (line) => {
          // "gateway tcp://A tls://B  route API …": --tls runs TLS only, so only tls://B.
          const m = /gateway (?:tcp:\/\/(\S+) ?)?(?:tls:\/\/(\S+))?\s+route API (\S+)\/v1\/route/.exec(line);
          return m ? { gateway: o.tls ? m[2] : m[1], http: m[3] } : undefined;
        },
      });
      servers.push(proc);
      notes.push(`embedded: one process (router + logic + gateway + SQLite), data in ${dataDir} (${os.tmpdir()})`);
      return {
        kind: 'embedded', description: 'embedded (one process, SQLite)', gateways: [tcpTarget(String(fields.gateway))],
        routerUrl: String(fields.http), secret, servers, infra, notes, stop,
      };
    }

    // ---- distributed: NATS, then router, logic (one after another: the first creates the schema), gateways.
    // Unset: the server `make infra-up` started, through its dev credential (.run/nats/dev.url, all
    // permissions), as the test suites reach it; else the open default.
    const natsUrl = o.env.IM_NATS_URL ?? NATS_URL;
    const natsHost = parseHostPort(natsUrl.replace(/^\w+:\/\//, '').replace(/^[^@/]*@/, '').split(',')[0]);
    let busUrl = natsUrl;
    const gatewayNodes = Array.from({ length: o.gateways }, (_, i) => `bench-${o.runId}-gw-${i + 1}`);
    // A running server: every service gets the credential settings of this environment, if any.
    const shared = Object.fromEntries(NATS_CREDENTIAL_SETTINGS.filter((k) => o.env[k] !== undefined).map((k) => [k, o.env[k]!]));
    let natsCreds = { logic: shared, gateway: (_node: string): Record<string, string> => shared };
    if (natsHost && await reachable(natsHost.host, natsHost.port)) {
      notes.push(`NATS: using the running server at ${natsUrl.replace(/\/\/[^@/]*@/, '//')} (shared; its CPU includes other users' traffic)`);
      const pid = pidListeningOn(natsHost.port);
      if (pid) infra.push({ role: 'nats', pid });
    } else {
      // A private server runs as `make up` runs it: each role with its own credential and permissions.
      const port = await freePort();
      const natsDir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-bench-nats-'));
      tempDirs.push(natsDir);
      const auth = writeNatsAuthConfig(natsDir, port, gatewayNodes);
      const child = await startNatsServer(port, auth.config);
      o.log(`started nats-server (pid ${child.pid}) on ${port}`);
      servers.push({ role: 'nats', name: 'nats', pid: child.pid!, child, stopping: false, probe: async () => undefined, heapSnapshot: async () => false });
      natsCreds = { logic: auth.logicEnv, gateway: auth.gatewayEnv };
      busUrl = `nats://${LOOPBACK}:${port}`;
      notes.push(`NATS: started a private nats-server on ${busUrl}, with per-role credentials (scripts/nats-config.js)`);
    }
    let storeEnv: Record<string, string>;
    if (o.noDb) {
      const shm = fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir();
      const dataDir = fs.mkdtempSync(path.join(shm, 'im-bench-nodb-'));
      tempDirs.push(dataDir);
      storeEnv = { IM_STORE: 'sqlite', IM_DATA_DIR: dataDir };
      notes.push(`store: "distributed without the database" — logic on SQLite in ${dataDir} (tmpfs) as a stand-in for Cassandra`);
    } else {
      const contact = o.env.IM_CASSANDRA_CONTACT_POINTS ?? '127.0.0.1:9042';
      const cp = parseHostPort(contact.split(',')[0]) ?? { host: contact.split(',')[0], port: 9042 };
      if (!(await reachable(cp.host, cp.port))) {
        throw new Error(`no Cassandra at ${contact}: start it with \`make infra-up\` (or cassandra/start.sh), or use --no-db`);
      }
      storeEnv = {
        IM_STORE: 'cassandra', IM_CASSANDRA_CONTACT_POINTS: contact, IM_CASSANDRA_CONSISTENCY: 'ONE',
        IM_CASSANDRA_KEYSPACE: o.cassandraKeyspace,
      };
      notes.push(`store: Cassandra at ${contact}, keyspace ${o.cassandraKeyspace}, consistency ONE (shared node)`);
      const pid = pidListeningOn(cp.port);
      if (pid) infra.push({ role: 'cassandra', pid });
    }
    const env = { ...baseEnv(o.env), ...serverTuning(o) };
    const router = await spawnService({
      ...spawnOpts, role: 'router', name: 'router', script: 'router/main.js',
      env: { ...env, IM_ROUTER_GRPC_ADDR: `${LOOPBACK}:0`, IM_ROUTER_HTTP_ADDR: `${LOOPBACK}:0` },
      ready: jsonListening('router'),
    });
    servers.push(router.proc);
    const routerGrpc = String(router.fields.grpc);
    const common = { ...env, IM_BUS: 'nats', IM_NATS_URL: busUrl, IM_ROUTER_GRPC_ADDR: routerGrpc };
    const logicAddrs: string[] = [];
    for (let i = 1; i <= o.logics; i++) {
      const logic = await spawnService({
        ...spawnOpts, role: 'logic', name: `logic-${i}`, script: 'logic/main.js',
        env: { ...common, ...storeEnv, ...natsCreds.logic, IM_LOGIC_ADDR: `${LOOPBACK}:0` }, ready: jsonListening('logic'),
      });
      servers.push(logic.proc);
      logicAddrs.push(String(logic.fields.addr));
    }
    const gateways: HostPort[] = [];
    for (let i = 1; i <= o.gateways; i++) {
      const gw = await spawnService({
        ...spawnOpts, role: 'gateway', name: `gw-${i}`, script: 'gateway/main.js',
        env: {
          ...common, ...natsCreds.gateway(gatewayNodes[i - 1]), IM_NODE_ID: gatewayNodes[i - 1], IM_GATEWAY_ADDR: `${LOOPBACK}:0`,
          IM_LOGIC_ADDRS: logicAddrs.join(','), IM_AUTH_SECRET: secret, ...gatewayTlsEnv(o),
        },
        ready: jsonListening('gateway'),
      });
      servers.push(gw.proc);
      gateways.push(tcpTarget(String(o.tls ? gw.fields.tlsAddr : gw.fields.addr)));
    }
    const design = o.noDb ? '' : storeDesign(await inboxLayoutOf(storeEnv.IM_CASSANDRA_CONTACT_POINTS, o.env.IM_CASSANDRA_DC ?? 'datacenter1', o.cassandraKeyspace, o.log));
    const description = `distributed (router + ${o.logics} logic + ${o.gateways} gateway, NATS, ${o.noDb ? 'SQLite stand-in, no database' : `Cassandra, ${design}`})`;
    return { kind: 'distributed', description, gateways, routerUrl: `http://${router.fields.http}`, secret, servers, infra, notes, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

/**
 * The inbox row layout of the bench keyspace (store_settings, storage/cassandra/schema.ts), read
 * once logic has created or upgraded it; undefined when it cannot be read.
 */
async function inboxLayoutOf(contact: string, dc: string, keyspace: string, log: (line: string) => void): Promise<number | undefined> {
  const client = new Client({ contactPoints: contact.split(','), localDataCenter: dc });
  try {
    await client.connect();
    const { inboxLayout } = await readSettings(client, keyspace);
    if (inboxLayout !== 9) log(`keyspace ${keyspace} keeps the version-${inboxLayout} inbox rows (created before schema 9): drop it to measure today's store`);
    return inboxLayout;
  } catch (err) {
    log(`could not read ${keyspace}.store_settings: ${(err as Error).message}`);
    return undefined;
  } finally {
    await client.shutdown().catch(() => undefined);
  }
}

/** An existing deployment: gateways from its route API, the secret from IM_AUTH_SECRET. */
async function urlTarget(o: TargetOptions): Promise<Target> {
  const url = o.routerUrl!.replace(/\/+$/, '');
  const secret = o.env.IM_AUTH_SECRET;
  if (!secret) throw new Error('--target <router url> needs IM_AUTH_SECRET in the environment (the secret the gateways verify tokens with)');
  const res = await fetch(`${url}/v1/route`);
  if (!res.ok) throw new Error(`${url}/v1/route answered HTTP ${res.status}`);
  const body = await res.json() as { gateways?: Array<{ addr: string; tlsAddr?: string }> };
  // --tls: the TLS listeners (route API `tlsAddr`); otherwise the plaintext ones (`addr`, "" when off).
  const addrs = (body.gateways ?? []).map((g) => (o.tls ? g.tlsAddr : g.addr)).filter((a): a is string => !!a);
  const gateways = addrs.map(tcpTarget);
  if (gateways.length === 0) throw new Error(`${url}/v1/route lists no gateways${o.tls ? ' with a tlsAddr' : ' with a plaintext addr'}`);
  return {
    kind: 'url', description: `deployment at ${url} (${gateways.length} gateways)`, gateways, routerUrl: url, secret,
    servers: [], infra: [], notes: ['servers not started by the bench: pass --pids to sample their CPU and RSS'],
    stop: async () => {},
  };
}

/** Line parser for the JSON "<svc> listening" line every service main prints. */
function jsonListening(svc: string): (line: string) => Record<string, unknown> | undefined {
  return (line) => {
    if (!line.startsWith('{')) return undefined;
    try {
      const rec = JSON.parse(line) as Record<string, unknown>;
      return rec.msg === `${svc} listening` ? rec : undefined;
    } catch {
      return undefined;
    }
  };
}

interface SpawnServiceOptions {
  role: ServerProc['role'];
  name: string;
  script: string;
  env: NodeJS.ProcessEnv;
  ready: (line: string) => Record<string, unknown> | undefined;
  cpuProfDir?: string;
  log: (line: string) => void;
  timeoutMs: number;
}

/** V8 flags each role runs with in production (k8s/im/values.yaml maxSemiSpaceMiB; scripts/up.sh; package.json start): measured as deployed. */
const ROLE_NODE_FLAGS: Partial<Record<string, string[]>> = {
  logic: ['--max-semi-space-size=128'],
  gateway: ['--max-semi-space-size=32'],
  // As `npm start` and the image's default command run it (package.json, Dockerfile).
  embedded: ['--max-semi-space-size=64'],
};

async function spawnService(o: SpawnServiceOptions): Promise<{ proc: ServerProc; fields: Record<string, unknown> }> {
  const args = ['--expose-gc', ...(ROLE_NODE_FLAGS[o.role] ?? []), '-r', PROBE];
  if (o.cpuProfDir) args.push('--cpu-prof', `--cpu-prof-dir=${o.cpuProfDir}`, `--cpu-prof-name=${o.name}.cpuprofile`);
  args.push(path.join(DIST, o.script));
  const child = spawn(process.execPath, args, { env: o.env, stdio: ['ignore', 'pipe', 'pipe', 'ipc'] });
  const proc = probeable(o.role, o.name, child);
  const tail: string[] = [];
  const keep = (l: string) => {
    tail.push(l);
    if (tail.length > 30) tail.shift();
  };
  let warnings = 0;
  readline.createInterface({ input: child.stderr! }).on('line', (l) => {
    keep(l);
    if (!/"level":"(error|warn)"/.test(l) || proc.stopping) return;
    // A few lines say what is wrong; a flood (one per connection) would bury the progress lines.
    if (++warnings <= MAX_FORWARDED_WARNINGS) o.log(`[${o.name}] ${l.slice(0, 300)}`);
    else if (warnings === MAX_FORWARDED_WARNINGS + 1) o.log(`[${o.name}] further warnings not shown`);
  });
  const lines = readline.createInterface({ input: child.stdout! });
  const fields = await new Promise<Record<string, unknown>>((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${o.name} did not start within ${o.timeoutMs}ms:\n${tail.join('\n')}`));
    }, o.timeoutMs);
    lines.on('line', (l) => {
      keep(l);
      const f = o.ready(l);
      if (f) {
        clearTimeout(timer);
        resolve(f);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${o.name} exited during startup (code ${code}, signal ${signal}):\n${tail.join('\n')}`));
    });
  });
  o.log(`started ${o.name} (pid ${child.pid})`);
  return { proc, fields };
}

function probeable(role: ServerProc['role'], name: string, child: ChildProcess): ServerProc {
  let nextId = 1;
  const ask = <T>(msg: Record<string, unknown>, timeoutMs: number, pick: (m: Record<string, unknown>) => T): Promise<T | undefined> =>
    new Promise((resolve) => {
      if (!child.connected) return resolve(undefined);
      const id = nextId++;
      const timer = setTimeout(() => { child.off('message', onMsg); resolve(undefined); }, timeoutMs);
      const onMsg = (m: Record<string, unknown>) => {
        if (m?.t !== 'probe-reply' || m.id !== id) return;
        clearTimeout(timer);
        child.off('message', onMsg);
        resolve(pick(m));
      };
      child.on('message', onMsg);
      child.send({ ...msg, id }, () => {});
    });
  return {
    role, name, pid: child.pid!, child, stopping: false,
    probe: (gc) => ask({ t: 'probe', gc }, 10_000, (m) => m.mem as MemoryUsage),
    heapSnapshot: async (file) => (await ask({ t: 'snapshot', path: file }, 120_000, (m) => typeof m.file === 'string')) ?? false,
  };
}

/** The raw ceiling's echo server (bench/echo-server.ts) as its own process, probe-able. */
export async function startEchoServer(log: (line: string) => void): Promise<{ proc: ServerProc; port: number }> {
  const { proc, fields } = await spawnService({
    role: 'echo', name: 'echo', script: 'bench/echo-server.js', env: process.env, log, timeoutMs: 15_000,
    ready: (line) => {
      try {
        const rec = JSON.parse(line) as Record<string, unknown>;
        return typeof rec.echo === 'number' ? rec : undefined;
      } catch {
        return undefined;
      }
    },
  });
  return { proc, port: Number(fields.echo) };
}

/** Gateways first (they drain clients), then logic, router, NATS: the reverse of starting. */
async function stopAll(servers: ServerProc[], tempDirs: string[]): Promise<void> {
  for (const s of servers) s.stopping = true;
  for (const s of [...servers].reverse()) await stopProcess(s.child, 25_000);
  for (const d of tempDirs) fs.rmSync(d, { recursive: true, force: true });
}

export function stopProcess(child: ChildProcess, timeoutMs: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}
