#!/usr/bin/env node
/*
 * Writes a nats-server config where every role has its own credential and only the permissions it
 * needs (docs/security.md, NATS), plus those credentials, for scripts/nats-start.sh (`make up`,
 * CI), the benchmarks and the tests that run their own nats-server.
 *
 *   node scripts/nats-config.js --dir DIR --port N [--host H] [--gateways gw-1,gw-2] [--gateway-class]
 *                               [--tls-cert FILE --tls-key FILE]
 *   node scripts/nats-config.js nkey FILE     a new nkey user seed in FILE (mode 600); prints its public key
 *   node scripts/nats-config.js gateway-seeds DIR PREFIX COUNT
 *                               one seed per gateway pod PREFIX-0 … PREFIX-<COUNT-1> in DIR/gateway-<pod>.nk
 *                               (kept when present): the keys of the Helm chart's
 *                               nats.credentials.gateway.perPodSecret; prints one `--gateway POD=U…`
 *                               per pod, arguments for `authorization`
 *   node scripts/nats-config.js authorization --logic U…[,U…] [--gateway-class U…[,U…]] [--gateway NODE=U…[,U…]]…
 *                               prints the authorization block for a server you run (the Helm chart's
 *                               external NATS): public keys only; two keys of one role during a rotation
 *
 * DIR gets (mode 600, directory 700):
 *   nats.conf            the server config: listen address, authorization with the users below
 *   logic.nk             logic's nkey seed          (IM_NATS_NKEY_SEED_FILE of every logic process)
 *   gateway-<node>.nk    one seed per gateway node  (IM_NATS_NKEY_SEED_FILE of gateway <node>)
 *   gateway.nk           with --gateway-class: one seed for any gateway node (the Helm chart's way)
 *   dev.url              nats://dev:<password>@host:port — all permissions, for the test suites and
 *                        tools on this machine only; a production server has no such user
 * Seeds already in DIR are kept (a restart of NATS does not log out running services); the config
 * is written anew each time, so --gateways may grow.
 *
 * Permissions (subjects: bus/bus.ts, storage/cassandra/peers.ts, logic/group-sync.ts):
 *   logic           publish im.gw.> (pushes, kicks), im.store.> (peer calls and replies) and
 *                   im.logic.> (group cache sync and its acks); subscribe im.store.> and im.logic.>
 *   gateway <node>  subscribe im.gw.<node> and im.kick.<node> only; publish im.kick.> (a login
 *                   that replaced a session on another node) and nothing else
 *   gateway class   the same for every node id without a dot: subscribe im.gw.* and im.kick.*. For
 *                   gateways whose node ids are not known in advance (an autoscaled StatefulSet);
 *                   such a gateway can read the others' pushes, not forge any (docs/security.md)
 * Nothing uses request/reply (_INBOX.>), so no role may subscribe to it.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const nkeys = require('@nats-io/nkeys');

function die(msg) {
  process.stderr.write(`nats-config: ${msg}\n`);
  process.exit(2);
}

/** A node id becomes subject tokens; the characters NATS gives meaning to are refused. */
const NODE_RE = /^[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*$/;

function writePrivate(file, text) {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, text, { mode: 0o600 });
  fs.renameSync(tmp, file);
}

/** The seed in `file`, made when absent; returns its public key. */
function nkeySeed(file) {
  let seed;
  if (fs.existsSync(file)) {
    seed = /\bSU[A-Z2-7]{56}\b/.exec(fs.readFileSync(file, 'utf8'))?.[0];
    if (!seed) die(`${file} holds no nkey user seed; remove it to have a new one made`);
  } else {
    seed = new TextDecoder().decode(nkeys.createUser().getSeed());
    writePrivate(file, `${seed}\n`);
  }
  return nkeys.fromSeed(new TextEncoder().encode(seed)).getPublicKey();
}

const q = (s) => JSON.stringify(s);
const list = (xs) => `[${xs.map(q).join(', ')}]`;

function permissions(pub, sub) {
  return `permissions: { publish: { allow: ${list(pub)} }, subscribe: { allow: ${list(sub)} } }`;
}

/** The permissions of each role, in one place (docs/security.md quotes them). */
const ROLES = {
  logic: () => permissions(['im.gw.>', 'im.store.>', 'im.logic.>'], ['im.store.>', 'im.logic.>']),
  gateway: (node) => permissions(['im.kick.>'], [`im.gw.${node}`, `im.kick.${node}`]),
  gatewayClass: () => permissions(['im.kick.>'], ['im.gw.*', 'im.kick.*']),
};

const PUBLIC_KEY_RE = /^U[A-Z2-7]{55}$/;

/** One authorization entry per public key. */
function nkeyUsers(comment, keys, perms) {
  return keys.map((k) => `    # ${comment}\n    { nkey: ${q(k)}, ${perms} }`);
}

function authorizationBlock(users) {
  return `authorization {\n  users = [\n${users.join('\n')}\n  ]\n}\n`;
}

/** `authorization`: the block for an external server, from public keys given on the command line. */
function printAuthorization(argv) {
  const users = [];
  const listedKeys = (v) => {
    const ks = v.split(',').map((k) => k.trim()).filter(Boolean);
    for (const k of ks) if (!PUBLIC_KEY_RE.test(k)) die(`${q(k)} is not an nkey user public key (U…)`);
    if (ks.length === 0) die('a role needs at least one public key');
    return ks;
  };
  let logic = false;
  const seen = new Set();
  const keys = (v) => {
    const ks = listedKeys(v);
    for (const k of ks) {
      if (seen.has(k)) die(`${k} is given twice: one key, one role`);
      seen.add(k);
    }
    return ks;
  };
  for (let i = 0; i < argv.length; i += 2) {
    const [a, v] = [argv[i], argv[i + 1]];
    if (v === undefined) die(`${a} needs a value`);
    if (a === '--logic') { users.push(...nkeyUsers('logic', keys(v), ROLES.logic())); logic = true; }
    else if (a === '--gateway-class') users.push(...nkeyUsers('gateway, any node', keys(v), ROLES.gatewayClass()));
    else if (a === '--gateway') {
      const eq = v.indexOf('=');
      const node = v.slice(0, eq);
      if (eq <= 0 || !NODE_RE.test(node)) die(`--gateway takes NODE=U…, got ${q(v)}`);
      users.push(...nkeyUsers(`gateway ${node}`, keys(v.slice(eq + 1)), ROLES.gateway(node)));
    } else die(`unknown argument ${a}`);
  }
  if (!logic) die('--logic is required');
  process.stdout.write(authorizationBlock(users));
}

function parseArgs(argv) {
  const o = { host: '127.0.0.1', gateways: [] };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const v = () => (i + 1 < argv.length ? argv[++i] : die(`${a} needs a value`));
    switch (a) {
      case '--dir': o.dir = path.resolve(v()); break;
      case '--port': o.port = Number(v()); break;
      case '--host': o.host = v(); break;
      case '--gateways': o.gateways = v().split(',').map((s) => s.trim()).filter(Boolean); break;
      case '--gateway-class': o.gatewayClass = true; break;
      case '--tls-cert': o.tlsCert = path.resolve(v()); break;
      case '--tls-key': o.tlsKey = path.resolve(v()); break;
      default: die(`unknown argument ${a}`);
    }
  }
  if (!o.dir) die('--dir is required');
  if (!Number.isInteger(o.port) || o.port < 1 || o.port > 65535) die('--port must be a port number');
  for (const g of o.gateways) if (!NODE_RE.test(g)) die(`gateway node id ${q(g)}: letters, digits, - and _ (dots between)`);
  if (!o.tlsCert !== !o.tlsKey) die('--tls-cert and --tls-key go together');
  return o;
}

function main(argv) {
  if (argv[0] === 'authorization') {
    printAuthorization(argv.slice(1));
    return;
  }
  if (argv[0] === 'gateway-seeds') {
    const [dir, prefix, count] = argv.slice(1);
    const n = Number(count);
    if (!dir || !prefix || !Number.isInteger(n) || n < 1) die('usage: nats-config.js gateway-seeds DIR PREFIX COUNT (e.g. prod-im-gateway 320)');
    if (!NODE_RE.test(`${prefix}-0`)) die(`pod name prefix ${q(prefix)}: letters, digits, - and _ (dots between)`);
    fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
    for (let i = 0; i < n; i++) process.stdout.write(`--gateway ${prefix}-${i}=${nkeySeed(path.join(path.resolve(dir), `gateway-${prefix}-${i}.nk`))}\n`);
    return;
  }
  if (argv[0] === 'nkey') {
    if (!argv[1]) die('usage: nats-config.js nkey FILE');
    if (fs.existsSync(argv[1])) die(`${argv[1]} exists; a new seed goes into a new file`);
    process.stdout.write(`${nkeySeed(path.resolve(argv[1]))}\n`);
    return;
  }
  const o = parseArgs(argv);
  fs.mkdirSync(o.dir, { recursive: true, mode: 0o700 });
  fs.chmodSync(o.dir, 0o700);

  const devUrlFile = path.join(o.dir, 'dev.url');
  let devPassword = fs.existsSync(devUrlFile) ? /^nats:\/\/dev:([0-9a-f]{32,})@/.exec(fs.readFileSync(devUrlFile, 'utf8'))?.[1] : undefined;
  devPassword ??= crypto.randomBytes(24).toString('hex');
  writePrivate(devUrlFile, `nats://dev:${devPassword}@${o.host}:${o.port}\n`);

  const users = [
    `    # Tests and tools on this machine (dev.url); all permissions. Not for production.\n    { user: "dev", password: ${q(devPassword)} }`,
    ...nkeyUsers('logic (logic.nk)', [nkeySeed(path.join(o.dir, 'logic.nk'))], ROLES.logic()),
    ...o.gateways.flatMap((g) => nkeyUsers(`gateway ${g} (gateway-${g}.nk)`, [nkeySeed(path.join(o.dir, `gateway-${g}.nk`))], ROLES.gateway(g))),
    ...(o.gatewayClass ? nkeyUsers('gateway, any node (gateway.nk)', [nkeySeed(path.join(o.dir, 'gateway.nk'))], ROLES.gatewayClass()) : []),
  ];
  const tls = o.tlsCert ? `tls {\n  cert_file: ${q(o.tlsCert)}\n  key_file: ${q(o.tlsKey)}\n}\n` : '';
  writePrivate(path.join(o.dir, 'nats.conf'), `# Written by scripts/nats-config.js; every start writes it anew.
listen: ${q(`${o.host}:${o.port}`)}
${tls}${authorizationBlock(users)}`);
}

main(process.argv.slice(2));
