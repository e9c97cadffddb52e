#!/usr/bin/env node
/**
 * `im`: a command-line client over the SDK, for trying the system and for scripts. Output is JSON
 * lines on stdout; failures are one line on stderr and exit code 1 (2 for usage errors).
 * Tokens are minted locally with the operator secret (IM_AUTH_SECRET, or IM_DATA_DIR/auth.secret),
 * or the key IM_AUTH_SIGNING_KID names in IM_AUTH_KEYS.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseDurationMs, Settings } from '../common/config';
import { ImError, codeName } from '../common/errors';
import { isValidUid } from '../common/ids';
import { signToken } from '../common/jwt';
import { loadSigningKey, readSecretFromDataDir } from '../common/secret';
import type { GroupResp, Message } from '../proto/wire';
import { UsageError, arity, intArg, intFlag, parseArgs } from './args';
import type { ClientTlsOptions } from '../client/options';
import { ImClient, ImClientOptions } from '../client/sdk';

export const DEFAULT_ROUTER_URL = 'http://127.0.0.1:7180';
const DEFAULT_TTL_MS = 3_600_000;

export const USAGE = `usage: im <command> [args] [--router URL] [--tls [--tls-ca FILE] [--tls-servername NAME]]

  im token <uid> [--ttl 1h]                         mint a token
  im send <from> <to> <text> [--client-msg-id ID]   send a 1:1 message
  im gsend <from> <groupId> <text> [--client-msg-id ID]
  im group create <owner> <name> [member...]
  im group add|remove <actor> <groupId> <uid...>
  im group members|leave <actor> <groupId>
  im listen <uid> [--from-seq N] [--count N] [--timeout S]
  im sync <uid> [--from-seq N]
  im history <uid> (--with <uid> | --group <groupId>) [--limit N] [--before CONVSEQ]
  im unread <uid>
  im read <uid> <convId> <seq>
  im plan --online N --send-qps N [--group-share F --avg-group-size N] [--json]
                                                    nodes per layer, from the latest bench/results
  im migrate [--store sqlite|cassandra] [--cassandra-keyspace K ...]
                                                    apply schema migrations (IM_STORE, IM_CASSANDRA_*)
  im help

  --router URL   route API, http:// or https:// (default: $IM_ROUTER_URL, else ${DEFAULT_ROUTER_URL})
  --tls          connect to the gateways' TLS listeners (their certificate is verified)
  --tls-ca FILE  trust this PEM CA instead of the system's, for the gateways and an https://
                 --router (implies --tls)
  --tls-servername NAME  the name the gateway certificate must carry (implies --tls)
  Tokens are signed with $IM_AUTH_SECRET, else the file auth.secret in $IM_DATA_DIR (default ./data);
  with $IM_AUTH_SIGNING_KID, with that key of $IM_AUTH_KEYS (kid:secret,...) and its kid in the header.
  $IM_AUTH_AUDIENCE and $IM_AUTH_ISSUER, when set, become the aud and iss claims.
  Output: one JSON object per line on stdout. Exit 0 ok, 1 error, 2 usage.
`;

export interface CliIo {
  /** Receives whole lines, each ending in "\\n". */
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  env: Record<string, string | undefined>;
  /** Aborting ends a running `listen` cleanly (the bin wires SIGINT/SIGTERM to it). */
  signal?: AbortSignal;
  /** Device id for connections (default cli-<pid>). */
  deviceId?: string;
}

interface Ctx {
  io: CliIo;
  routerUrl: string;
  tls: ClientTlsOptions | undefined;
  flags: Map<string, string>;
}

const COMMON_FLAGS = ['router', 'tls-ca', 'tls-servername'];
const COMMAND_FLAGS: Record<string, string[]> = {
  token: ['ttl'],
  send: ['client-msg-id'],
  gsend: ['client-msg-id'],
  group: [],
  listen: ['from-seq', 'count', 'timeout'],
  sync: ['from-seq'],
  history: ['with', 'group', 'limit', 'before'],
  unread: [],
  read: [],
  migrate: ['store', 'data-dir', 'cassandra-contact-points', 'cassandra-dc', 'cassandra-keyspace', 'cassandra-consistency', 'cassandra-replication'],
};

export async function main(argv: readonly string[], ioIn: Partial<CliIo> = {}): Promise<number> {
  const io: CliIo = {
    stdout: ioIn.stdout ?? ((t) => void process.stdout.write(t)),
    stderr: ioIn.stderr ?? ((t) => void process.stderr.write(t)),
    env: ioIn.env ?? process.env,
    signal: ioIn.signal,
    deviceId: ioIn.deviceId,
  };
  const [command, ...rest] = argv;
  if (command === undefined || command === 'help' || command === '--help' || command === '-h') {
    io.stderr(USAGE);
    return 2;
  }
  if (command === 'plan') {
    // The capacity planner reads bench/results; loaded on demand like `migrate`'s storage code.
    const { planMain } = await import('../bench/plan');
    return planMain(rest, { stdout: io.stdout, stderr: io.stderr });
  }
  try {
    const allowed = COMMAND_FLAGS[command];
    if (!allowed) throw new UsageError(`unknown command "${command}"`);
    const { positionals, flags } = parseArgs(rest, new Set([...COMMON_FLAGS, ...allowed]), new Set(['tls']));
    const ctx: Ctx = { io, flags, routerUrl: flags.get('router') ?? (io.env.IM_ROUTER_URL || DEFAULT_ROUTER_URL), tls: tlsFlags(flags) };
    if (!/^https?:\/\/./.test(ctx.routerUrl)) throw new UsageError(`--router must be an http(s) URL, got "${ctx.routerUrl}"`);
    await COMMANDS[command](positionals, ctx);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`im: ${err.message} (see "im help")\n`);
      return 2;
    }
    io.stderr(`im: ${describeError(err)}\n`);
    return 1;
  }
}

function describeError(err: unknown): string {
  if (err instanceof ImError) return `${codeName(err.code)} (${err.code}): ${err.message}`;
  return err instanceof Error ? err.message : String(err);
}

const COMMANDS: Record<string, (args: string[], ctx: Ctx) => Promise<void>> = {
  /** Opening a store applies its pending migrations; nothing else is written. */
  async migrate(args, ctx) {
    arity(args, 0, 0, 'im migrate [--store sqlite|cassandra]');
    // Loaded on demand: the SDK side of this package never needs the storage layer.
    const { loadStoreConfig, describeStore } = await import('../storage/config');
    const { openStore } = await import('../storage/open');
    const argv = [...ctx.flags].flatMap(([k, v]) => [`--${k}`, v]);
    const config = loadStoreConfig(ctx.io.env, argv);
    const store = await openStore(config);
    await store.close();
    out(ctx, { ok: true, ...describeStore(config) });
  },

  async token(args, ctx) {
    arity(args, 1, 1, 'im token <uid> [--ttl 1h]');
    const uid = checkUid(args[0]);
    const ttlMs = durationFlag(ctx.flags, 'ttl', DEFAULT_TTL_MS);
    const ttlSeconds = Math.max(1, Math.round(ttlMs / 1000));
    const nowMs = Date.now();
    const token = tokenSigner(ctx.io.env)(uid, ttlSeconds, nowMs);
    const expiresAt = new Date((Math.floor(nowMs / 1000) + ttlSeconds) * 1000).toISOString();
    out(ctx, { uid, token, expiresAt });
  },

  async send(args, ctx) {
    if (args.length < 3) throw new UsageError('usage: im send <from> <to> <text> [--client-msg-id ID]');
    const [from, to, ...text] = args;
    checkUid(to);
    await withClient(from, ctx, async (c) => {
      const r = await c.send(to, text.join(' '), { clientMsgId: ctx.flags.get('client-msg-id') });
      out(ctx, r);
    });
  },

  async gsend(args, ctx) {
    if (args.length < 3) throw new UsageError('usage: im gsend <from> <groupId> <text> [--client-msg-id ID]');
    const [from, groupId, ...text] = args;
    await withClient(from, ctx, async (c) => {
      const r = await c.sendGroup(groupId, text.join(' '), { clientMsgId: ctx.flags.get('client-msg-id') });
      out(ctx, r);
    });
  },

  async group(args, ctx) {
    const [sub, actor, second, ...more] = args;
    switch (sub) {
      case 'create':
        if (actor === undefined || second === undefined) throw new UsageError('usage: im group create <owner> <name> [member...]');
        more.forEach(checkUid);
        await withClient(actor, ctx, async (c) => out(ctx, groupLine(await c.createGroup(second, more), sub)));
        return;
      case 'add':
      case 'remove':
        if (actor === undefined || second === undefined || more.length === 0) {
          throw new UsageError(`usage: im group ${sub} <actor> <groupId> <uid...>`);
        }
        more.forEach(checkUid);
        await withClient(actor, ctx, async (c) => {
          const r = sub === 'add' ? await c.addMembers(second, more) : await c.removeMembers(second, more);
          out(ctx, groupLine(r, sub));
        });
        return;
      case 'members':
      case 'leave':
        arity(args, 3, 3, `im group ${sub} <actor> <groupId>`);
        await withClient(actor, ctx, async (c) => {
          if (sub === 'members') {
            out(ctx, groupLine(await c.groupMembers(second), sub));
          } else {
            const r = await c.leaveGroup(second);
            out(ctx, r.group ? { ...groupLine(r, sub), left: actor } : { groupId: second, left: actor });
          }
        });
        return;
      default:
        throw new UsageError('usage: im group create|add|remove|members|leave ...');
    }
  },

  async listen(args, ctx) {
    arity(args, 1, 1, 'im listen <uid> [--from-seq N] [--count N] [--timeout S]');
    const fromSeq = intFlag(ctx.flags, 'from-seq', 0);
    const count = intFlag(ctx.flags, 'count', 0, 1);
    const timeoutMs = ctx.flags.has('timeout') ? secondsFlag(ctx.flags, 'timeout') : 0;
    await listen(args[0], ctx, { fromSeq, count, timeoutMs });
  },

  async sync(args, ctx) {
    arity(args, 1, 1, 'im sync <uid> [--from-seq N]');
    let fromSeq = intFlag(ctx.flags, 'from-seq', 0);
    await withClient(args[0], ctx, async (c) => {
      for (;;) {
        const page = await c.sync(fromSeq, 500);
        for (const m of page.messages) out(ctx, messageLine(m));
        const last = page.messages.length ? page.messages[page.messages.length - 1].seq : fromSeq;
        if (!page.hasMore || last <= fromSeq) break;
        fromSeq = last;
      }
    });
  },

  async history(args, ctx) {
    arity(args, 1, 1, 'im history <uid> (--with <uid> | --group <groupId>) [--limit N] [--before CONVSEQ]');
    const peer = ctx.flags.get('with');
    const groupId = ctx.flags.get('group');
    if ((peer === undefined) === (groupId === undefined)) throw new UsageError('history needs exactly one of --with and --group');
    if (peer !== undefined) checkUid(peer);
    const limit = intFlag(ctx.flags, 'limit', 50, 1);
    const beforeConvSeq = intFlag(ctx.flags, 'before', 0);
    await withClient(args[0], ctx, async (c) => {
      const page = await c.history({ with: peer, groupId, limit, beforeConvSeq });
      for (const m of page.messages) out(ctx, { ...messageLine(m), convSeq: m.convSeq });
    });
  },

  async unread(args, ctx) {
    arity(args, 1, 1, 'im unread <uid>');
    await withClient(args[0], ctx, async (c) => out(ctx, await c.unread()));
  },

  async read(args, ctx) {
    arity(args, 3, 3, 'im read <uid> <convId> <seq>');
    const seq = intArg('seq', args[2]);
    await withClient(args[0], ctx, async (c) => {
      const r = await c.markRead(args[1], seq);
      out(ctx, r.unread ?? { convId: args[1] });
    });
  },
};

// --- helpers ---

function out(ctx: Ctx, value: unknown): void {
  ctx.io.stdout(JSON.stringify(value) + '\n');
}

function checkUid(uid: string): string {
  if (!isValidUid(uid)) throw new UsageError(`"${uid}" is not a valid uid (1-64 of A-Z a-z 0-9 _ . @ -)`);
  return uid;
}

function durationFlag(flags: Map<string, string>, name: string, defMs: number): number {
  const v = flags.get(name);
  if (v === undefined) return defMs;
  const ms = parseDurationMs(v);
  if (ms === undefined || ms <= 0) throw new UsageError(`--${name} must be a duration like 30s, 10m, 1h; got "${v}"`);
  return ms;
}

/** --timeout: a number of seconds (fractions allowed), or a duration with a unit. */
function secondsFlag(flags: Map<string, string>, name: string): number {
  const v = flags.get(name)!;
  const ms = /^\d+(\.\d+)?$/.test(v) ? Math.round(Number(v) * 1000) : parseDurationMs(v);
  if (ms === undefined || ms <= 0) throw new UsageError(`--${name} must be a number of seconds, got "${v}"`);
  return ms;
}

/**
 * Mints tokens the way the server's settings say: the key IM_AUTH_SIGNING_KID names in
 * IM_AUTH_KEYS (kid in the header), else the operator secret; aud/iss from IM_AUTH_AUDIENCE and
 * IM_AUTH_ISSUER.
 */
export function tokenSigner(env: Record<string, string | undefined>): (uid: string, ttlSeconds: number, nowMs?: number) => string {
  const { secret, opts } = loadSigningKey(new Settings(env), () => loadSecret(env));
  return (uid, ttlSeconds, nowMs = Date.now()) => signToken(secret, uid, ttlSeconds, nowMs, opts);
}

/** The operator secret (IM_AUTH_SECRET is read by tokenSigner): auth.secret in $IM_DATA_DIR (default ./data). */
function loadSecret(env: Record<string, string | undefined>): string {
  const dataDir = path.resolve(env.IM_DATA_DIR || './data');
  try {
    return readSecretFromDataDir(dataDir);
  } catch (err) {
    const e = err as NodeJS.ErrnoException;
    if (e.code === 'ENOENT') {
      throw new Error(`no operator secret: set IM_AUTH_SECRET, or IM_DATA_DIR to the server's data dir (${path.join(dataDir, 'auth.secret')} does not exist; the server creates it on first start)`);
    }
    throw new Error(`cannot read the operator secret: ${e.message}`);
  }
}

/** --tls, --tls-ca FILE, --tls-servername NAME (either of the last two implies --tls). */
function tlsFlags(flags: Map<string, string>): ClientTlsOptions | undefined {
  const caFile = flags.get('tls-ca');
  const servername = flags.get('tls-servername');
  if (!flags.has('tls') && caFile === undefined && servername === undefined) return undefined;
  let ca: Buffer | undefined;
  if (caFile !== undefined) {
    try {
      ca = fs.readFileSync(caFile);
    } catch (err) {
      throw new UsageError(`--tls-ca: cannot read ${caFile}: ${(err as Error).message}`);
    }
    if (!ca.includes('-----BEGIN CERTIFICATE-----')) throw new UsageError(`--tls-ca: ${caFile} holds no PEM certificate`);
  }
  if (servername === '') throw new UsageError('--tls-servername must not be empty');
  return { ...(ca ? { ca } : {}), ...(servername ? { servername } : {}) };
}

function clientOptions(uid: string, ctx: Ctx, extra: Partial<ImClientOptions>): ImClientOptions {
  checkUid(uid);
  const sign = tokenSigner(ctx.io.env);
  return {
    routerUrl: ctx.routerUrl,
    tls: ctx.tls,
    token: () => sign(uid, DEFAULT_TTL_MS / 1000),
    deviceId: ctx.io.deviceId ?? `cli-${process.pid}`,
    // A one-shot command fails fast and clearly rather than waiting out a long backoff.
    autoReconnect: false,
    maxReconnectAttempts: 2,
    backoffMaxMs: 2000,
    receiveMessages: false,
    ...extra,
  };
}

async function withClient(uid: string, ctx: Ctx, fn: (c: ImClient) => Promise<void>): Promise<void> {
  const client = new ImClient(clientOptions(uid, ctx, {}));
  try {
    await client.connect();
    await fn(client);
  } finally {
    await client.close();
  }
}

function groupLine(r: GroupResp, what: string): Record<string, unknown> {
  const g = r.group;
  if (!g) throw new Error(`the server's reply to group ${what} carries no group`);
  return { groupId: g.groupId, name: g.name, owner: g.owner, members: g.members, createdAtMs: g.createdAtMs };
}

export function messageLine(m: Message): Record<string, unknown> {
  const line: Record<string, unknown> = {
    seq: m.seq, msgId: m.msgId, convId: m.convId, from: m.from, to: m.to, groupId: m.groupId,
  };
  const content = Buffer.from(m.content);
  if (m.contentType === '' || m.contentType.startsWith('text/')) {
    line.text = content.toString('utf8');
  } else {
    line.contentType = m.contentType;
    line.contentBase64 = content.toString('base64');
  }
  line.sentAtMs = m.sentAtMs;
  return line;
}

/** Prints the inbox from fromSeq (synced first, then pushed, in seq order) until count/timeout/abort. */
async function listen(uid: string, ctx: Ctx, o: { fromSeq: number; count: number; timeoutMs: number }): Promise<void> {
  // A listener is long-lived: it rides out a gateway restart, within bounds.
  const client = new ImClient(clientOptions(uid, ctx, {
    lastSeq: o.fromSeq, receiveMessages: true, autoReconnect: true, maxReconnectAttempts: 10, backoffMaxMs: 5000,
  }));
  let printed = 0;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    await new Promise<void>((resolve, reject) => {
      client.on('message', (m) => {
        if (o.count > 0 && printed >= o.count) return;
        out(ctx, messageLine(m));
        printed++;
        if (o.count > 0 && printed >= o.count) resolve();
      });
      client.on('disconnected', (d) => {
        if (!d.reconnect) reject(new ImError(d.code, `disconnected: ${d.reason}`));
      });
      if (o.timeoutMs > 0) timer = setTimeout(resolve, o.timeoutMs);
      if (ctx.io.signal) {
        onAbort = () => resolve();
        if (ctx.io.signal.aborted) resolve();
        ctx.io.signal.addEventListener('abort', onAbort, { once: true });
      }
      client.connect().catch(reject);
    });
  } finally {
    clearTimeout(timer);
    if (onAbort) ctx.io.signal?.removeEventListener('abort', onAbort);
    await client.close();
  }
}

if (require.main === module) {
  const ac = new AbortController();
  process.once('SIGINT', () => ac.abort());
  process.once('SIGTERM', () => ac.abort());
  // `im listen | head -1` closes stdout early: that is a normal way to stop, not a crash.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  main(process.argv.slice(2), { signal: ac.signal }).then((code) => {
    process.exitCode = code;
  }, (err) => {
    process.stderr.write(`im: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 1;
  });
}
