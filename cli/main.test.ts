/** The `im` CLI end to end: main() (and once the real bin) against a real embedded system. */
import * as assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { verifyToken } from '../common/jwt';
import { EmbeddedSystem, startEmbedded } from '../embedded/system';
import { main } from './main';
import { eventually } from '../test/wait';
import { deadAddr, tempDir } from '../client/client.test-support';

interface Run { code: number; lines: Record<string, any>[]; stderr: string }

describe('cli (im) against the embedded system', function () {
  let sys: EmbeddedSystem;
  let env: Record<string, string>;

  before(async () => {
    sys = await startEmbedded({ dataDir: tempDir() });
    // The secret comes from the data dir the server created, as for an operator on the same box.
    env = { IM_ROUTER_URL: sys.routerUrl, IM_DATA_DIR: sys.dataDir };
  });
  after(async () => { await sys.stop(); });

  function start(argv: string[], extraEnv: Record<string, string> = {}, signal?: AbortSignal): { done: Promise<Run>; stdout: string[] } {
    const stdout: string[] = [];
    let stderr = '';
    const done = main(argv, {
      stdout: (t) => { stdout.push(t); },
      stderr: (t) => { stderr += t; },
      env: { ...env, ...extraEnv },
      signal,
    }).then((code) => ({
      code,
      lines: stdout.join('').split('\n').filter(Boolean).map((l) => JSON.parse(l)),
      stderr,
    }));
    return { done, stdout };
  }
  const im = (...argv: string[]) => start(argv).done;

  async function ok(...argv: string[]): Promise<Record<string, any>[]> {
    const r = await im(...argv);
    assert.equal(r.code, 0, `im ${argv.join(' ')} failed: ${r.stderr}`);
    assert.equal(r.stderr, '');
    return r.lines;
  }

  it('token: mints a token the server accepts, with its expiry', async () => {
    const [t] = await ok('token', 'alice', '--ttl', '2m');
    assert.equal(t.uid, 'alice');
    const claims = verifyToken({ secret: sys.authSecret }, t.token);
    assert.equal(claims.sub, 'alice');
    assert.equal(claims.exp - claims.iat, 120);
    assert.equal(new Date(t.expiresAt).getTime(), claims.exp * 1000);
  });

  it('token: signs with the key IM_AUTH_SIGNING_KID names (kid in the header) and sets aud/iss as configured', async () => {
    const keys = { IM_AUTH_KEYS: 'k1:cli-old-key-0123456789,k2:cli-new-key-0123456789', IM_AUTH_AUDIENCE: 'im', IM_AUTH_ISSUER: 'ops' };
    const r = await start(['token', 'alice'], { ...keys, IM_AUTH_SIGNING_KID: 'k2' }).done;
    assert.equal(r.code, 0, r.stderr);
    const token: string = r.lines[0].token;
    assert.equal(JSON.parse(Buffer.from(token.split('.')[0], 'base64url').toString()).kid, 'k2');
    const auth = { keys: new Map([['k2', 'cli-new-key-0123456789']]), audience: 'im', issuer: 'ops' };
    assert.equal(verifyToken(auth, token).sub, 'alice');
    const unknown = await start(['token', 'alice'], { ...keys, IM_AUTH_SIGNING_KID: 'k3' }).done;
    assert.equal(unknown.code, 1);
    assert.match(unknown.stderr, /IM_AUTH_SIGNING_KID/);
  });

  it('send, then listen --count: synced messages first, then pushed ones, in seq order', async () => {
    const [s1] = await ok('send', 'amy', 'bob', 'first');
    assert.equal(s1.seq, 1);
    assert.equal(s1.duplicate, false);
    assert.ok(s1.msgId);
    await ok('send', 'amy', 'bob', 'second', 'in', 'words');
    const listening = start(['listen', 'bob', '--count', '3', '--timeout', '15']);
    // Once the two synced lines are out, the listener is connected: the third one is a push.
    await eventually(() => listening.stdout.length >= 2, 'the two synced lines');
    await ok('send', 'cy', 'bob', 'third');
    const r = await listening.done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.lines.map((l) => [l.seq, l.from, l.to, l.text]), [
      [1, 'amy', 'bob', 'first'], [2, 'amy', 'bob', 'second in words'], [3, 'cy', 'bob', 'third'],
    ]);
    assert.equal(r.lines[0].msgId, s1.msgId);
    assert.equal(r.lines[0].convId, 'p:amy:bob');
    assert.ok(r.lines.every((l) => typeof l.sentAtMs === 'number' && l.groupId === ''));
  });

  it('send --client-msg-id: a repeat is reported as a duplicate of the same message', async () => {
    const [a] = await ok('send', 'dee', 'eve', 'once', '--client-msg-id', 'cli-1');
    const [b] = await ok('send', 'dee', 'eve', 'once', '--client-msg-id=cli-1');
    assert.deepEqual([b.msgId, b.seq, b.duplicate], [a.msgId, a.seq, true]);
  });

  it('listen --from-seq and --timeout: prints what is after the seq and exits 0 when time is up', async () => {
    await ok('send', 'fay', 'gil', 'g1');
    await ok('send', 'fay', 'gil', 'g2');
    const r = await im('listen', 'gil', '--from-seq', '1', '--timeout', '0.3');
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.lines.map((l) => l.text), ['g2']);
  });

  it('group create/add/remove/members/leave and gsend, history, sync', async () => {
    const [g] = await ok('group', 'create', 'hal', 'team', 'ian', 'jay');
    assert.ok(g.groupId);
    assert.deepEqual(g.members, ['hal', 'ian', 'jay']);
    assert.equal(g.owner, 'hal');
    const [added] = await ok('group', 'add', 'hal', g.groupId, 'kay');
    assert.deepEqual(added.members, ['hal', 'ian', 'jay', 'kay']);
    const [removed] = await ok('group', 'remove', 'hal', g.groupId, 'jay');
    assert.deepEqual(removed.members, ['hal', 'ian', 'kay']);
    await ok('group', 'leave', 'kay', g.groupId);
    const [members] = await ok('group', 'members', 'ian', g.groupId);
    assert.deepEqual(members.members, ['hal', 'ian']);

    const [sent] = await ok('gsend', 'ian', g.groupId, 'hello team');
    assert.equal(sent.duplicate, false);
    const hist = await ok('history', 'hal', '--group', g.groupId);
    assert.deepEqual(hist.map((m) => [m.from, m.text, m.groupId]), [['ian', 'hello team', g.groupId]]);
    const synced = await ok('sync', 'hal');
    assert.deepEqual(synced.map((m) => m.text), ['hello team']);
  });

  it('sync pages through everything; history --with; unread and read', async () => {
    for (let i = 1; i <= 3; i++) await ok('send', 'lou', 'mia', `n${i}`);
    assert.deepEqual((await ok('sync', 'mia')).map((m) => m.seq), [1, 2, 3]);
    assert.deepEqual((await ok('sync', 'mia', '--from-seq', '2')).map((m) => m.text), ['n3']);
    const hist = await ok('history', 'mia', '--with', 'lou', '--limit', '2');
    assert.deepEqual(hist.map((m) => m.text), ['n3', 'n2']);
    const [before] = await ok('unread', 'mia');
    assert.equal(before.total, 3);
    const [after] = await ok('read', 'mia', 'p:lou:mia', '2');
    assert.equal(after.count, 1);
    assert.equal(after.readSeq, 2);
  });

  it('business errors: exit 1 and one clear line on stderr', async () => {
    const [g] = await ok('group', 'create', 'ned', 'closed');
    const r = await im('gsend', 'oz', g.groupId, 'let me in');
    assert.equal(r.code, 1);
    assert.deepEqual(r.lines, []);
    assert.match(r.stderr, /^im: NOT_GROUP_MEMBER \(2002\): .+\n$/);
  });

  it('an unreachable route API or a missing secret: exit 1 with the reason', async () => {
    const dead = await deadAddr();
    const r = await im('send', 'pam', 'quin', 'hi', '--router', `http://${dead}`);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^im: UNAVAILABLE \(1100\): could not connect .*route API/);
    assert.equal(r.stderr.trim().split('\n').length, 1);
    const noSecret = await start(['token', 'pam'], { IM_DATA_DIR: tempDir() }).done;
    assert.equal(noSecret.code, 1);
    assert.match(noSecret.stderr, /no operator secret: set IM_AUTH_SECRET/);
    const envSecret = await start(['token', 'pam'], { IM_DATA_DIR: tempDir(), IM_AUTH_SECRET: sys.authSecret }).done;
    assert.equal(envSecret.code, 0, envSecret.stderr);
  });

  it('migrate: applies the schema of the configured store (a fresh SQLite dir here) and says which', async () => {
    const dir = tempDir();
    const r = await start(['migrate'], { IM_STORE: 'sqlite', IM_DATA_DIR: dir }).done;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.lines[0].ok, true);
    assert.equal(r.lines[0].store, `sqlite ${dir}`);
    assert.ok(fs.existsSync(path.join(dir, 'im.db')));
    const bad = await start(['migrate'], { IM_STORE: 'postgres' }).done;
    assert.equal(bad.code, 1);
    assert.match(bad.stderr, /IM_STORE/);
  });

  it('usage errors: exit 2 with usage on stderr', async () => {
    for (const argv of [[], ['help'], ['frobnicate'], ['send', 'a', 'b'], ['token', 'a', '--nope', 'x'],
      ['history', 'a'], ['history', 'a', '--with', 'b', '--group', 'g'], ['listen', 'a', '--count', 'many'],
      ['token', 'bad uid'], ['read', 'a', 'p:a:b', '-1'], ['group', 'explode', 'a']]) {
      const r = await im(...argv);
      assert.equal(r.code, 2, `im ${argv.join(' ')} should be a usage error; stderr: ${r.stderr}`);
      assert.deepEqual(r.lines, []);
      assert.ok(r.stderr.length > 0);
    }
    const help = await im();
    assert.match(help.stderr, /^usage: im <command>/);
  });

  it('listen ends cleanly when aborted (SIGINT in the bin)', async () => {
    const ac = new AbortController();
    await ok('send', 'amy', 'rex', 'before');
    const listening = start(['listen', 'rex'], {}, ac.signal);
    // Its synced line is out: the listener is connected, and is aborted while it listens.
    await eventually(() => listening.stdout.length >= 1, 'the synced line');
    ac.abort();
    const r = await listening.done;
    assert.equal(r.code, 0, r.stderr);
  });

  it('the built bin runs, prints JSON and exits on its own', async () => {
    const bin = path.join(__dirname, 'main.js');
    const run = (args: string[]) => new Promise<{ code: number; stdout: string; stderr: string }>((resolve) => {
      execFile(process.execPath, [bin, ...args], { env: { ...process.env, ...env }, timeout: 15_000 }, (err, stdout, stderr) => {
        resolve({ code: err ? (typeof err.code === 'number' ? err.code : -1) : 0, stdout, stderr });
      });
    });
    const sent = await run(['send', 'sue', 'tim', 'from the bin']);
    assert.equal(sent.code, 0, sent.stderr);
    assert.equal(JSON.parse(sent.stdout).seq, 1);
    const usage = await run([]);
    assert.equal(usage.code, 2);
    assert.match(usage.stderr, /usage: im/);
  });
});
