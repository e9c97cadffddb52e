/**
 * The SDK as a package (client/package.json): `npm pack` makes a tarball, which an empty project
 * outside this repository installs (from the local npm cache: its only dependency is `ws`), then
 * uses against a real embedded system — from a CommonJS script, an ES module and TypeScript over
 * TCP and WebSocket, and the browser build, run where there is no Node API at all (a vm context
 * holding only the web globals it needs), over WebSocket.
 */
import * as assert from 'node:assert/strict';
import { execFile, execFileSync, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as vm from 'node:vm';
import { WebSocket } from 'ws';
import { signToken } from '../common/jwt';
import { EmbeddedSystem, startEmbedded } from '../embedded/system';
import { tempDir } from './client.test-support';

const SOURCE_DIR = path.resolve(__dirname, '..', '..', 'client');
const REPO = path.resolve(SOURCE_DIR, '..');
const NAME = '@im-backend/sdk';
/** Server-side packages the SDK must not bring along. */
const SERVER_ONLY = ['better-sqlite3', 'cassandra-driver', '@opentelemetry/api', '@grpc/grpc-js', 'nats', 'protobufjs', 'prom-client'];

function npm(args: string[], cwd: string): string {
  return execFileSync('npm', args, { cwd, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, npm_config_update_notifier: 'false' } });
}

/**
 * Runs node on a file of the consumer project; its stdout ends with one JSON line. Asynchronous:
 * the server it talks to runs in this process.
 */
function run(project: string, args: string[], env: Record<string, string>): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    execFile(process.execPath, args, { cwd: project, encoding: 'utf8', timeout: 30_000, env: { PATH: process.env.PATH, ...env } }, (err, stdout, stderr) => {
      if (err) reject(new Error(`node ${args.join(' ')} failed (${err.message}):\n${stdout}\n${stderr}`));
      else resolve(JSON.parse(stdout.trim().split('\n').pop()!));
    });
  });
}

/** A script using the package the way an app would: bob listens, alice sends, each over `transport`. */
const SCRIPT_BODY = `
const env = process.env;
async function main() {
  const bob = new ImClient({ routerUrl: env.ROUTER_URL, token: env.BOB_TOKEN, transport: env.TRANSPORT });
  const alice = new ImClient({ routerUrl: env.ROUTER_URL, token: env.ALICE_TOKEN, transport: env.TRANSPORT, receiveMessages: false });
  const got = new Promise((resolve) => bob.on('message', (m) => { if (new TextDecoder().decode(m.content) === env.TEXT) resolve(m); }));
  await bob.connect();
  await alice.connect();
  const sent = await alice.send('bob', env.TEXT);
  const m = await got;
  await Promise.all([alice.close(), bob.close()]);
  console.log(JSON.stringify({ platform: SDK_PLATFORM, msgId: sent.msgId, receivedId: m.msgId, text: new TextDecoder().decode(m.content), code: Code.RATE_LIMITED }));
}
main().catch((err) => { console.error(err); process.exit(1); });
`;

describe('client/package.json: the SDK as a package of its own', function () {
  this.timeout(180_000);
  let sys: EmbeddedSystem;
  let project: string;
  let installed: string;
  let env: Record<string, string>;

  before(async () => {
    const packDir = tempDir('im-sdk-pack-');
    // prepack builds (client/build.js): the bundles and the declarations.
    const tarball = path.join(packDir, npm(['pack', '--pack-destination', packDir, '--silent'], SOURCE_DIR).trim().split('\n').pop()!);
    assert.ok(fs.existsSync(tarball), `npm pack made no ${tarball}`);
    project = tempDir('im-sdk-consumer-');
    fs.writeFileSync(path.join(project, 'package.json'), JSON.stringify({ name: 'consumer', version: '1.0.0', private: true }));
    const flags = ['install', '--no-audit', '--no-fund', '--no-package-lock', tarball];
    try {
      npm([...flags, '--offline'], project);
    } catch {
      npm([...flags, '--prefer-offline'], project); // ws not in the local cache: the registry has it
    }
    installed = path.join(project, 'node_modules', ...NAME.split('/'));
    sys = await startEmbedded({ dataDir: tempDir(), gateway: { ws: { host: '127.0.0.1', port: 0 } } });
    env = {
      ROUTER_URL: sys.routerUrl,
      ALICE_TOKEN: signToken(sys.authSecret, 'alice', 600),
      BOB_TOKEN: signToken(sys.authSecret, 'bob', 600),
    };
  });
  after(async () => { await sys?.stop(); });

  it('installs with ws as its only dependency, none of the server\'s, and the files its exports name', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(installed, 'package.json'), 'utf8'));
    assert.deepEqual(Object.keys(pkg.dependencies ?? {}), ['ws']);
    const modules = fs.readdirSync(path.join(project, 'node_modules')).filter((n) => !n.startsWith('.'));
    assert.deepEqual(modules.sort(), ['@im-backend', 'ws']);
    for (const dep of SERVER_ONLY) assert.ok(!fs.existsSync(path.join(project, 'node_modules', dep)), dep);
    const targets = [pkg.main, pkg.types, ...Object.values(pkg.exports['.'] as Record<string, string>), pkg.exports['./browser.global.js']];
    for (const t of targets) assert.ok(fs.existsSync(path.join(installed, t)), `${t} is in the package`);
    for (const f of ['browser.mjs', 'browser.global.js']) {
      assert.doesNotMatch(fs.readFileSync(path.join(installed, 'dist', f), 'utf8'), /\bfrom\s*["']node:|\brequire\(["']/, f);
    }
  });

  it('a CommonJS script sends and receives over TCP, an ES module over WebSocket', async () => {
    fs.writeFileSync(path.join(project, 'app.cjs'), `const { ImClient, Code, SDK_PLATFORM } = require('${NAME}');\n${SCRIPT_BODY}`);
    fs.writeFileSync(path.join(project, 'app.mjs'), `import { ImClient, Code, SDK_PLATFORM } from '${NAME}';\n${SCRIPT_BODY}`);
    const tcp = await run(project, ['app.cjs'], { ...env, TRANSPORT: 'tcp', TEXT: 'hi over tcp' });
    assert.equal(tcp.platform, 'node');
    assert.equal(tcp.text, 'hi over tcp');
    assert.equal(tcp.receivedId, tcp.msgId);
    assert.equal(tcp.code, 1007);
    const ws = await run(project, ['app.mjs'], { ...env, TRANSPORT: 'websocket', TEXT: 'hi over websocket' });
    assert.equal(ws.text, 'hi over websocket');
    assert.equal(ws.receivedId, ws.msgId);
  });

  it('its declarations type-check a strict TypeScript consumer (and catch a misuse)', () => {
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    const check = (code: string) => {
      fs.writeFileSync(path.join(project, 'check.ts'), code);
      return spawnSync(process.execPath, [tsc, '--noEmit', '--strict', '--module', 'nodenext', '--moduleResolution', 'nodenext',
        '--target', 'es2022', '--types', 'node', '--typeRoots', path.join(REPO, 'node_modules', '@types'), 'check.ts'], { cwd: project, encoding: 'utf8' });
    };
    const ok = check(`import { ImClient, ImClientError, type Message, type SendResp } from '${NAME}';
const c = new ImClient({ routerUrl: 'http://127.0.0.1:7180', token: () => 'jwt', transport: 'websocket' });
c.on('message', (m: Message) => void m.seq);
c.on('disconnected', (d) => void d.reconnect);
export const r: Promise<SendResp> = c.send('bob', 'hi');
export const isErr = (e: unknown) => e instanceof ImClientError && e.retryable;
`);
    assert.equal(ok.status, 0, `tsc: ${ok.stdout}${ok.stderr}`);
    const bad = check(`import { ImClient } from '${NAME}';\nnew ImClient({ routerUrl: 'x', token: 1 });\n`);
    assert.notEqual(bad.status, 0, 'a wrong option type must not type-check');
    assert.match(bad.stdout, /TokenProvider/);
  });

  it('its declarations type-check a browser TypeScript project: DOM lib, no @types/node, skipLibCheck off', () => {
    const tsc = path.join(REPO, 'node_modules', 'typescript', 'bin', 'tsc');
    fs.writeFileSync(path.join(project, 'browser-check.ts'), `import { Code, ImClient, ImClientError, ImError, type Message, type SendResp } from '${NAME}';
const c = new ImClient({ routerUrl: 'https://im.example.com', token: () => 'jwt', transport: 'websocket' });
c.on('message', (m: Message) => void m.seq);
export const r: Promise<SendResp> = c.send('bob', 'hi');
export const isErr = (e: unknown) => (e instanceof ImClientError && e.retryable) || (e instanceof ImError && e.code === Code.UNAVAILABLE);
`);
    fs.writeFileSync(path.join(project, 'tsconfig.browser.json'), JSON.stringify({
      compilerOptions: { strict: true, noEmit: true, skipLibCheck: false, target: 'es2022', module: 'es2022', moduleResolution: 'bundler', lib: ['es2022', 'dom'], types: [] },
      files: ['browser-check.ts'],
    }));
    const res = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.browser.json'], { cwd: project, encoding: 'utf8' });
    assert.equal(res.status, 0, `tsc: ${res.stdout}${res.stderr}`);
  });

  it('the browser build runs with no Node API at all and talks WebSocket to the gateway', async () => {
    // Only web globals: no require, process, Buffer. WebSocket is the ws package's, which follows the WHATWG API.
    const context = vm.createContext({
      WebSocket, fetch, crypto: globalThis.crypto, TextEncoder, TextDecoder, URL, AbortController, console,
      setTimeout, clearTimeout, setInterval, clearInterval, queueMicrotask,
    });
    vm.runInContext(fs.readFileSync(path.join(installed, 'dist', 'browser.global.js'), 'utf8'), context);
    const sdk = context.ImSdk as typeof import('./sdk');
    assert.equal(sdk.SDK_PLATFORM, 'browser');
    assert.equal(vm.runInContext('typeof process + typeof Buffer + typeof require', context), 'undefinedundefinedundefined');
    const carol = new sdk.ImClient({ routerUrl: sys.routerUrl, token: signToken(sys.authSecret, 'carol', 600) });
    const dave = new sdk.ImClient({ routerUrl: sys.routerUrl, token: signToken(sys.authSecret, 'dave', 600), transport: 'tcp', maxReconnectAttempts: 0 });
    try {
      await assert.rejects(dave.connect(), /no TCP in this environment/);
      const got = new Promise<{ from: string; content: Uint8Array }>((resolve) => carol.on('message', (m) => { if (m.from === 'carol') resolve(m); }));
      await carol.connect();
      const sent = await carol.send('carol', 'note to self from a browser');
      const m = await got;
      assert.equal(new TextDecoder().decode(m.content), 'note to self from a browser');
      assert.ok(sent.msgId);
    } finally {
      await Promise.all([carol.close(), dave.close()]);
    }
  });
});
