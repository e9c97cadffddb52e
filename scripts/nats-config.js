#!/usr/bin/env node
/*
 * Writes a nats-server config where every role has its own credential and only the permissions it
 * needs (docs/security.md, NATS), plus those credentials, for scripts/nats-start.sh (`make up`,
 * CI), the benchmarks and the tests that run their own nats-server.
 *
 *   node scripts/nats-config.js --dir DIR --port N [--host H] [--gateways gw-1,gw-2]
 *                               [--tls-cert FILE --tls-key FILE]
 *   node scripts/nats-config.js nkey FILE     a new nkey user seed in FILE (mode 600); prints its public key
 *
 * DIR gets (mode 600, directory 700):
 *   nats.conf            the server config: listen address, authorization with the users below
 *   logic.nk             logic's nkey seed          (IM_NATS_NKEY_SEED_FILE of every logic process)
 *   gateway-<node>.nk    one seed per gateway node  (IM_NATS_NKEY_SEED_FILE of gateway <node>)
 *   dev.url              nats://dev:<password>@host:port — all permissions, for the test suites and
 *                        tools on this machine only; a production server has no such user
 * Seeds already in DIR are kept (a restart of NATS does not log out running services); the config
 * is written anew each time, so --gateways may grow.
 *
 * Permissions (subjects: common/bus.ts, storage/cassandra-peers.ts):
 *   logic           publish im.gw.> (pushes, kicks) and im.store.> (peer calls and replies);
 *                   subscribe im.store.>
 *   gateway <node>  subscribe im.gw.<node> and im.kick.<node> only; publish im.kick.> (a login
 *                   that replaced a session on another node) and nothing else
 * Nothing uses request/reply (_INBOX.>), so no role may subscribe to it.
 */
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const crypto = require('node:crypto');
const { nkeys } = require('nats');

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
  logic: () => permissions(['im.gw.>', 'im.store.>'], ['im.store.>']),
  gateway: (node) => permissions(['im.kick.>'], [`im.gw.${node}`, `im.kick.${node}`]),
};

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
    `    # logic (logic.nk)\n    { nkey: ${q(nkeySeed(path.join(o.dir, 'logic.nk')))}, ${ROLES.logic()} }`,
    ...o.gateways.map((g) => `    # gateway ${g} (gateway-${g}.nk)\n    { nkey: ${q(nkeySeed(path.join(o.dir, `gateway-${g}.nk`)))}, ${ROLES.gateway(g)} }`),
  ];
  const tls = o.tlsCert ? `tls {\n  cert_file: ${q(o.tlsCert)}\n  key_file: ${q(o.tlsKey)}\n}\n` : '';
  writePrivate(path.join(o.dir, 'nats.conf'), `# Written by scripts/nats-config.js; every start writes it anew.
listen: ${q(`${o.host}:${o.port}`)}
${tls}authorization {
  users = [
${users.join('\n')}
  ]
}
`);
}

main(process.argv.slice(2));
