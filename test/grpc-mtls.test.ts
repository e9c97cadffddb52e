/**
 * Internal gRPC with mutual TLS (IM_GRPC_TLS_*), on the real processes: a throwaway PKI made with
 * openssl, router, logic and gateway processes with one certificate each, and stock grpc-js
 * clients built from proto/internal/*.proto that present no certificate, one from another CA, one
 * of the wrong role, or the right one. Then a message between two SDK clients through the whole
 * gateway -> logic -> router path, and the router picking up a new CA bundle without a restart.
 */
import * as assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import * as protoLoader from '@grpc/proto-loader';
import { ImClient } from '../client/sdk';
import { Settings } from '../common/config';
import { PROTO_DIR } from '../proto/load';
import { grpcChannel, loadGrpcTls } from '../common/grpc-tls';
import { silentLogger } from '../common/log';
import { signToken } from '../common/jwt';
import { loadEmbeddedConfig } from '../embedded/config';
import { startEmbedded, type EmbeddedSystem } from '../embedded/system';
import { adminClient, bearerMetadata, failedStatus, LOADER, unary } from '../logic/admin-client.test-support';
import { freePort, needs } from './infra';
import { expectConfigExit } from './launch';
import { needsNatsServerBinary, ProcCluster, ServiceProc } from './procs';
import { ca, signed } from './tls-certs';
import { eventually } from './wait';

const SERVER_EXT = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n';
const CLIENT_EXT = 'extendedKeyUsage=clientAuth\n';

interface Pki { dir: string; file(name: string): string }

/** ca and other-ca; router, logic-0 (servers), gateway-0, admin-ops (clients) by ca; gateway-rogue by other-ca. */
function makePki(): Pki {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-grpc-mtls-'));
  ca(dir, 'ca');
  ca(dir, 'other-ca');
  signed(dir, 'router', 'ca', SERVER_EXT);
  signed(dir, 'logic-0', 'ca', SERVER_EXT);
  signed(dir, 'gateway-0', 'ca', CLIENT_EXT);
  signed(dir, 'admin-ops', 'ca', CLIENT_EXT);
  signed(dir, 'gateway-rogue', 'other-ca', CLIENT_EXT);
  return { dir, file: (name) => path.join(dir, name) };
}

/** The IM_GRPC_TLS_* of a process holding certificate `name`. */
function tlsEnv(pki: Pki, name: string, caFile = pki.file('ca.pem')): Record<string, string> {
  return { IM_GRPC_TLS_CA: caFile, IM_GRPC_TLS_CERT: pki.file(`${name}.pem`), IM_GRPC_TLS_KEY: pki.file(`${name}.key`) };
}

/** Stock grpc-js TLS credentials trusting ca.pem, presenting `name`'s certificate (none: no certificate). */
function sslAs(pki: Pki, name?: string): grpc.ChannelCredentials {
  const read = (f: string) => fs.readFileSync(pki.file(f));
  return name === undefined
    ? grpc.credentials.createSsl(read('ca.pem'))
    : grpc.credentials.createSsl(read('ca.pem'), read(`${name}.key`), read(`${name}.pem`));
}

/** Router as another team would call it: proto-loader on router.proto, no project code. */
function routerStub(address: string, credentials: grpc.ChannelCredentials, options: grpc.ChannelOptions = {}): grpc.Client {
  const def = protoLoader.loadSync(path.join(PROTO_DIR, 'internal', 'router.proto'), { ...LOADER, includeDirs: [PROTO_DIR] });
  const pkg = grpc.loadPackageDefinition(def) as any; // eslint-disable-line @typescript-eslint/no-explicit-any
  return new pkg.im.internal.v1.Router(address, credentials, options);
}

/** A Router Lookup with a fresh channel: resolves with the status code (OK = 0). */
async function lookupStatus(address: string, credentials: grpc.ChannelCredentials, options?: grpc.ChannelOptions): Promise<grpc.status> {
  const client = routerStub(address, credentials, options);
  try {
    await unary(client, 'Lookup', { uids: ['nobody'] }, new grpc.Metadata());
    return grpc.status.OK;
  } catch (err) {
    return (err as grpc.ServiceError).code;
  } finally {
    client.close();
  }
}

describe('internal gRPC mutual TLS (IM_GRPC_TLS_*)', function () {
  this.timeout(60_000);
  let pki: Pki;
  before(function () {
    try {
      execFileSync('openssl', ['version'], { stdio: 'ignore' });
    } catch {
      this.skip(); // the PKI is made with the openssl CLI
    }
    pki = makePki();
  });
  after(() => { if (pki) fs.rmSync(pki.dir, { recursive: true, force: true }); });

  describe('bad settings stop the process (exit 2) naming the setting', () => {
    it('only some of CA, CERT and KEY', async () => {
      await expectConfigExit('router', { IM_GRPC_TLS_CA: pki.file('ca.pem') }, 'IM_GRPC_TLS_CERT');
      await expectConfigExit('logic', { IM_GRPC_TLS_CERT: pki.file('logic-0.pem'), IM_GRPC_TLS_KEY: pki.file('logic-0.key') }, 'IM_GRPC_TLS_CA');
    });
    it('an unreadable file', async () => {
      await expectConfigExit('router', { ...tlsEnv(pki, 'router'), IM_GRPC_TLS_KEY: path.join(pki.dir, 'missing.key') }, 'IM_GRPC_TLS_KEY');
    });
    it('a key that is not the certificate\'s', async () => {
      await expectConfigExit('router', { ...tlsEnv(pki, 'router'), IM_GRPC_TLS_KEY: pki.file('logic-0.key') }, 'IM_GRPC_TLS_KEY');
    });
    it('a certificate of another role', async () => {
      await expectConfigExit('gateway', { IM_AUTH_SECRET: 'a-secret-for-the-config-test', ...tlsEnv(pki, 'logic-0') }, 'IM_GRPC_TLS_CERT');
    });
    it('the other settings without the files', async () => {
      await expectConfigExit('logic', { IM_GRPC_TLS_CHECK_ROLES: 'false' }, 'IM_GRPC_TLS_CHECK_ROLES');
    });
  });

  describe('router, logic and gateway processes with mTLS on', function () {
    const adminToken = randomBytes(24).toString('hex');
    let cluster: ProcCluster;
    let routerAddr: string;
    let logicAddr: string;
    const clients: ImClient[] = [];

    before(async function () {
      this.timeout(120_000);
      await needs(this, 'cassandra');
      needsNatsServerBinary(this);
      cluster = await ProcCluster.start({
        logics: 1, gateways: 1,
        routerEnv: tlsEnv(pki, 'router'),
        logicEnv: { ...tlsEnv(pki, 'logic-0'), IM_LOGIC_ADMIN_TOKENS: adminToken },
        gatewayEnv: tlsEnv(pki, 'gateway-0'),
      });
      routerAddr = String(cluster.router.info.grpc);
      logicAddr = String(cluster.logics[0].info.addr);
    });
    after(async () => {
      await Promise.all(clients.map((c) => c.close()));
      await cluster?.stop();
    });

    it('says so in every listening line', () => {
      assert.equal(cluster.router.info.grpcTls, 'mtls (roles checked)');
      assert.equal(cluster.logics[0].info.grpcTls, 'mtls (roles checked)');
      assert.equal(cluster.gateways[0].info.grpcTls, 'mtls (roles checked)');
    });

    it('the router refuses a plaintext client, one without a certificate, and one from another CA', async () => {
      assert.equal(await lookupStatus(routerAddr, grpc.credentials.createInsecure()), grpc.status.UNAVAILABLE);
      assert.equal(await lookupStatus(routerAddr, sslAs(pki)), grpc.status.UNAVAILABLE);
      assert.equal(await lookupStatus(routerAddr, sslAs(pki, 'gateway-rogue')), grpc.status.UNAVAILABLE);
    });

    it('the router serves a gateway certificate and refuses an admin one (role)', async () => {
      assert.equal(await lookupStatus(routerAddr, sslAs(pki, 'gateway-0')), grpc.status.OK);
      assert.equal(await lookupStatus(routerAddr, sslAs(pki, 'admin-ops')), grpc.status.PERMISSION_DENIED);
    });

    it('a client checks the server\'s role: the router is not logic', async () => {
      const gatewayTls = loadGrpcTls(new Settings(tlsEnv(pki, 'gateway-0')), 'gateway');
      const asLogic = grpcChannel(gatewayTls, 'logic', silentLogger).credentials;
      const asRouter = grpcChannel(gatewayTls, 'router', silentLogger).credentials;
      assert.equal(await lookupStatus(routerAddr, asLogic), grpc.status.UNAVAILABLE);
      assert.equal(await lookupStatus(routerAddr, asRouter), grpc.status.OK);
    });

    it('IM_GRPC_TLS_SERVER_NAME replaces the dialled host in the server name check', async () => {
      const as = (name: string) => grpcChannel(loadGrpcTls(new Settings({ ...tlsEnv(pki, 'gateway-0'), IM_GRPC_TLS_SERVER_NAME: name }), 'gateway'),
        'router', silentLogger);
      const named = as('localhost'); // in the router's certificate
      assert.equal(await lookupStatus(routerAddr, named.credentials, named.options), grpc.status.OK);
      const other = as('router.elsewhere.invalid');
      assert.equal(await lookupStatus(routerAddr, other.credentials, other.options), grpc.status.UNAVAILABLE);
    });

    it('LogicAdmin needs an admin certificate and the bearer token', async () => {
      const req = { uids: ['ann'] };
      const token = bearerMetadata(adminToken);
      const status = async (creds: grpc.ChannelCredentials, md: grpc.Metadata) => {
        const client = adminClient(logicAddr, creds);
        try {
          return (await failedStatus(client, 'OnlineDevices', req, md)).code;
        } finally {
          client.close();
        }
      };
      assert.equal(await status(grpc.credentials.createInsecure(), token), grpc.status.UNAVAILABLE);
      assert.equal(await status(sslAs(pki), token), grpc.status.UNAVAILABLE);
      assert.equal(await status(sslAs(pki, 'gateway-rogue'), token), grpc.status.UNAVAILABLE);
      assert.equal(await status(sslAs(pki, 'gateway-0'), token), grpc.status.PERMISSION_DENIED);
      assert.equal(await status(sslAs(pki, 'admin-ops'), new grpc.Metadata()), grpc.status.UNAUTHENTICATED);
      const client = adminClient(logicAddr, sslAs(pki, 'admin-ops'));
      try {
        assert.deepEqual((await unary(client, 'OnlineDevices', req, token)).devices, []);
      } finally {
        client.close();
      }
    });

    it('a message goes from one SDK client to another through gateway -> logic -> router', async () => {
      const connect = async (uid: string) => {
        const c = new ImClient({ routerUrl: cluster.routerUrl, token: signToken(cluster.authSecret, uid, 3600), deviceId: 'phone' });
        clients.push(c);
        await c.connect();
        return c;
      };
      const ann = await connect('ann');
      const bob = await connect('bob');
      const got = new Promise<{ from: string; content: Uint8Array }>((resolve) => bob.once('message', resolve));
      await ann.send('bob', 'over mutual TLS');
      const m = await got;
      assert.equal(m.from, 'ann');
      assert.equal(Buffer.from(m.content).toString(), 'over mutual TLS');
      // Bob's gateway found him through the router (logic's Lookup over mTLS), not by chance.
      const admin = adminClient(logicAddr, sslAs(pki, 'admin-ops'));
      try {
        const online = await unary(admin, 'OnlineDevices', { uids: ['bob'] }, bearerMetadata(adminToken));
        assert.equal(online.devices.length, 1);
      } finally {
        admin.close();
      }
    });
  });

  describe('embedded mode (npm start)', () => {
    let sys: EmbeddedSystem | undefined;
    let dataDir = '';
    after(async () => {
      await sys?.stop();
      if (dataDir) fs.rmSync(dataDir, { recursive: true, force: true });
    });

    it('serves its internal gRPC port (LogicAdmin) with mTLS when IM_GRPC_TLS_* are set', async () => {
      dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-grpc-mtls-embedded-'));
      const adminToken = randomBytes(24).toString('hex');
      sys = await startEmbedded(loadEmbeddedConfig({
        IM_DATA_DIR: dataDir, IM_GATEWAY_ADDR: '127.0.0.1:0', IM_ROUTER_HTTP_ADDR: '127.0.0.1:0', IM_LOGIC_PORT: '0', IM_GATEWAY_WS_ADDR: 'off', IM_WEB_ADDR: 'off',
        IM_LOGIC_ADMIN_TOKENS: adminToken, ...tlsEnv(pki, 'logic-0'),
      }, []));
      const call = async (creds: grpc.ChannelCredentials) => {
        const client = adminClient(sys!.logicAddr, creds);
        try {
          return await unary(client, 'OnlineDevices', { uids: ['ann'] }, bearerMetadata(adminToken)).then(() => grpc.status.OK,
            (err: grpc.ServiceError) => err.code);
        } finally {
          client.close();
        }
      };
      assert.equal(await call(grpc.credentials.createInsecure()), grpc.status.UNAVAILABLE);
      assert.equal(await call(sslAs(pki, 'gateway-rogue')), grpc.status.UNAVAILABLE);
      assert.equal(await call(sslAs(pki, 'admin-ops')), grpc.status.OK);
    });
  });

  describe('a router process alone', () => {
    let router: ServiceProc | undefined;
    afterEach(async () => { await router?.stop('SIGKILL', 5000); });

    it('with IM_GRPC_TLS_CHECK_ROLES=false takes any certificate of its CA, and still only those', async () => {
      router = await ServiceProc.spawn('router', 'router', {
        IM_ROUTER_GRPC_ADDR: '127.0.0.1:0', IM_ROUTER_HTTP_ADDR: '127.0.0.1:0', ...tlsEnv(pki, 'router'), IM_GRPC_TLS_CHECK_ROLES: 'false',
      });
      assert.equal(router.info.grpcTls, 'mtls');
      const addr = String(router.info.grpc);
      assert.equal(await lookupStatus(addr, sslAs(pki, 'admin-ops')), grpc.status.OK);
      assert.equal(await lookupStatus(addr, sslAs(pki, 'gateway-rogue')), grpc.status.UNAVAILABLE);
      assert.equal(await lookupStatus(addr, sslAs(pki)), grpc.status.UNAVAILABLE);
    });

    it('trusts a new CA once the CA file holds it, and keeps the old files when new ones are broken', async () => {
      const caFile = path.join(pki.dir, 'rotating-ca.pem');
      fs.copyFileSync(pki.file('ca.pem'), caFile);
      const port = await freePort();
      router = await ServiceProc.spawn('router', 'router', {
        IM_ROUTER_GRPC_ADDR: `127.0.0.1:${port}`, IM_ROUTER_HTTP_ADDR: '127.0.0.1:0',
        ...tlsEnv(pki, 'router', caFile), IM_GRPC_TLS_RELOAD_INTERVAL: '100ms',
      });
      const addr = `127.0.0.1:${port}`;
      const replace = (text: string) => {
        fs.writeFileSync(`${caFile}.new`, text);
        fs.renameSync(`${caFile}.new`, caFile); // as a Kubernetes Secret volume swaps its files
      };
      assert.equal(await lookupStatus(addr, sslAs(pki, 'gateway-rogue')), grpc.status.UNAVAILABLE);

      // The overlap bundle: old and new CA.
      replace(fs.readFileSync(pki.file('ca.pem'), 'utf8') + fs.readFileSync(pki.file('other-ca.pem'), 'utf8'));
      await eventually(async () => (await lookupStatus(addr, sslAs(pki, 'gateway-rogue'))) === grpc.status.OK, 'the other CA trusted', 10_000);
      assert.equal(await lookupStatus(addr, sslAs(pki, 'gateway-0')), grpc.status.OK, 'the old CA still trusted');

      // A broken file is reported and not used: the bundle loaded before keeps serving.
      replace('not a certificate\n');
      await eventually(() => router!.log.includes('new files not used'), 'the broken CA file reported', 10_000);
      assert.equal(await lookupStatus(addr, sslAs(pki, 'gateway-rogue')), grpc.status.OK);

      // The old CA dropped: its certificates are refused from then on.
      replace(fs.readFileSync(pki.file('other-ca.pem'), 'utf8'));
      await eventually(async () => (await lookupStatus(addr, sslAs(pki, 'gateway-0'))) === grpc.status.UNAVAILABLE, 'the old CA dropped', 10_000);
      assert.equal(router.running, true);
    });
  });
});
