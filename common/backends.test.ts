import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeTestPki, type TestPki } from '../test/tls-certs';
import { describeBackends, loadBusConfig, loadLogLevel, loadStoreConfig, openBus } from './backends';
import { InProcessBus } from './bus';
import { ConfigError } from './config';
import { urlCredentials } from './nats-auth';
import * as nkeys from '@nats-io/nkeys';

const namesField = (field: string) => (e: unknown) => {
  assert.ok(e instanceof ConfigError, `expected a ConfigError, got ${String(e)}`);
  assert.equal(e.field, field);
  assert.match(e.message, new RegExp(field));
  return true;
};

describe('backends config', () => {
  describe('loadStoreConfig', () => {
    it('defaults to sqlite in ./data, resolved to an absolute path', () => {
      assert.deepEqual(loadStoreConfig({}, []), { kind: 'sqlite', dataDir: path.resolve('data') });
      assert.deepEqual(loadStoreConfig({ IM_DATA_DIR: '/var/lib/im' }, []), { kind: 'sqlite', dataDir: '/var/lib/im' });
    });

    it('lets the caller choose the default kind', () => {
      assert.equal(loadStoreConfig({}, [], { store: 'cassandra' }).kind, 'cassandra');
    });

    it('has cassandra defaults', () => {
      assert.deepEqual(loadStoreConfig({ IM_STORE: 'cassandra' }, []), {
        kind: 'cassandra', contactPoints: ['127.0.0.1:9042'], localDataCenter: 'datacenter1',
        keyspace: 'im', consistency: 'LOCAL_QUORUM', replication: 1, leaseMs: 10_000, writeBehindMs: 10_000,
      });
    });

    it('reads every cassandra setting from env, and flags win', () => {
      const cfg = loadStoreConfig({
        IM_STORE: 'cassandra', IM_CASSANDRA_CONTACT_POINTS: 'c1:9042, c2 ,10.0.0.3:9142',
        IM_CASSANDRA_DC: 'eu-west', IM_CASSANDRA_KEYSPACE: 'im_prod', IM_CASSANDRA_CONSISTENCY: 'QUORUM',
        IM_CASSANDRA_REPLICATION: '3', IM_CASSANDRA_LEASE_MS: '4000', IM_CASSANDRA_WRITE_BEHIND_MS: '500',
      }, ['--cassandra-consistency', 'ONE', '--cassandra-write-behind-ms', '750']);
      assert.deepEqual(cfg, {
        kind: 'cassandra', contactPoints: ['c1:9042', 'c2', '10.0.0.3:9142'], localDataCenter: 'eu-west',
        keyspace: 'im_prod', consistency: 'ONE', replication: 3, leaseMs: 4000, writeBehindMs: 750,
      });
      assert.equal(loadStoreConfig({ IM_STORE: 'cassandra' }, ['--store=sqlite']).kind, 'sqlite');
    });

    it('names the field of each bad value', () => {
      const c = { IM_STORE: 'cassandra' };
      assert.throws(() => loadStoreConfig({ IM_STORE: 'mysql' }, []), namesField('IM_STORE'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_CONTACT_POINTS: 'host:99999' }, []), namesField('IM_CASSANDRA_CONTACT_POINTS'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_CONTACT_POINTS: 'a b' }, []), namesField('IM_CASSANDRA_CONTACT_POINTS'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_CONTACT_POINTS: ' , ' }, []), namesField('IM_CASSANDRA_CONTACT_POINTS'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_DC: 'dc 1' }, []), namesField('IM_CASSANDRA_DC'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_KEYSPACE: 'Bad-Name' }, []), namesField('IM_CASSANDRA_KEYSPACE'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_CONSISTENCY: 'one' }, []), namesField('IM_CASSANDRA_CONSISTENCY'));
      // Levels the store cannot pair with a serial level for its LWTs are refused up front.
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_CONSISTENCY: 'ALL' }, []), namesField('IM_CASSANDRA_CONSISTENCY'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_LEASE_MS: '100' }, []), namesField('IM_CASSANDRA_LEASE_MS'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_WRITE_BEHIND_MS: '0' }, []), namesField('IM_CASSANDRA_WRITE_BEHIND_MS'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_REPLICATION: '0' }, []), namesField('IM_CASSANDRA_REPLICATION'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_REPLICATION: 'three' }, []), namesField('IM_CASSANDRA_REPLICATION'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_USERNAME: 'im' }, []), namesField('IM_CASSANDRA_PASSWORD'));
    });

    it('reads password credentials only as a pair', () => {
      const cfg = loadStoreConfig({ IM_STORE: 'cassandra', IM_CASSANDRA_USERNAME: 'im', IM_CASSANDRA_PASSWORD: 's3cret' }, []);
      assert.deepEqual(cfg.kind === 'cassandra' && cfg.credentials, { username: 'im', password: 's3cret' });
    });

    describe('IM_CASSANDRA_TLS', () => {
      let pki: TestPki;
      const c = { IM_STORE: 'cassandra' };
      const tlsOf = (env: Record<string, string>) => {
        const cfg = loadStoreConfig({ ...c, ...env }, []);
        return cfg.kind === 'cassandra' ? cfg.tls : undefined;
      };
      before(function () {
        this.timeout(20_000);
        pki = makeTestPki(fs.mkdtempSync(path.join(os.tmpdir(), 'im-cass-tls-')));
        fs.writeFileSync(path.join(pki.dir, 'garbage.pem'), '-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydA==\n-----END CERTIFICATE-----\n');
      });
      after(() => fs.rmSync(pki.dir, { recursive: true, force: true }));

      it('is off by default; on, it verifies hostnames and reads the PEM files', () => {
        assert.equal(tlsOf({}), undefined);
        assert.deepEqual(tlsOf({ IM_CASSANDRA_TLS: 'true' }), { verifyHostname: true });
        const tls = tlsOf({ IM_CASSANDRA_TLS: '1', IM_CASSANDRA_TLS_CA: pki.caPem,
          IM_CASSANDRA_TLS_CERT: pki.clientCert, IM_CASSANDRA_TLS_KEY: pki.clientKey, IM_CASSANDRA_TLS_VERIFY_HOSTNAME: 'false' });
        assert.equal(tls?.ca, fs.readFileSync(pki.caPem, 'utf8'));
        assert.equal(tls?.cert, fs.readFileSync(pki.clientCert, 'utf8'));
        assert.equal(tls?.key, fs.readFileSync(pki.clientKey, 'utf8'));
        assert.equal(tls?.verifyHostname, false);
      });

      it('names the setting of a missing, unreadable or mismatched file, and of TLS settings without TLS', () => {
        const on = { IM_CASSANDRA_TLS: 'true' };
        assert.throws(() => tlsOf({ IM_CASSANDRA_TLS: 'maybe' }), namesField('IM_CASSANDRA_TLS'));
        assert.throws(() => tlsOf({ ...on, IM_CASSANDRA_TLS_CA: '/nonexistent/ca.pem' }), namesField('IM_CASSANDRA_TLS_CA'));
        assert.throws(() => tlsOf({ ...on, IM_CASSANDRA_TLS_CA: pki.clientKey }), namesField('IM_CASSANDRA_TLS_CA'));
        assert.throws(() => tlsOf({ ...on, IM_CASSANDRA_TLS_CA: path.join(pki.dir, 'garbage.pem') }), namesField('IM_CASSANDRA_TLS_CA'));
        assert.throws(() => tlsOf({ ...on, IM_CASSANDRA_TLS_CERT: pki.clientCert }), namesField('IM_CASSANDRA_TLS_KEY'));
        assert.throws(() => tlsOf({ ...on, IM_CASSANDRA_TLS_CERT: pki.clientCert, IM_CASSANDRA_TLS_KEY: path.join(pki.dir, 'server.key') }),
          namesField('IM_CASSANDRA_TLS_KEY'));
        assert.throws(() => tlsOf({ ...on, IM_CASSANDRA_TLS_CERT: pki.clientKey, IM_CASSANDRA_TLS_KEY: pki.clientKey }),
          namesField('IM_CASSANDRA_TLS_CERT'));
        assert.throws(() => tlsOf({ IM_CASSANDRA_TLS_CA: pki.caPem }), namesField('IM_CASSANDRA_TLS_CA'));
        assert.throws(() => tlsOf({ IM_CASSANDRA_TLS_VERIFY_HOSTNAME: 'false' }), namesField('IM_CASSANDRA_TLS_VERIFY_HOSTNAME'));
      });
    });

    it('does not validate cassandra settings when the store is sqlite', () => {
      assert.equal(loadStoreConfig({ IM_CASSANDRA_CONSISTENCY: 'nonsense' }, []).kind, 'sqlite');
    });
  });

  describe('loadBusConfig', () => {
    it('defaults to the local NATS server', () => {
      assert.deepEqual(loadBusConfig({}, []), { kind: 'nats', servers: ['nats://127.0.0.1:4222'] });
    });

    it('reads a server list, with or without scheme and credentials', () => {
      assert.deepEqual(loadBusConfig({ IM_NATS_URL: 'nats://a:4222,b:4223, tls://user:pw@c' }, []),
        { kind: 'nats', servers: ['nats://a:4222', 'b:4223', 'tls://user:pw@c'] });
      assert.deepEqual(loadBusConfig({}, ['--nats-url', 'nats://10.1.1.1:4222']),
        { kind: 'nats', servers: ['nats://10.1.1.1:4222'] });
    });

    it('reads NATS credentials and TLS settings, checked at start-up', () => {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'im-nats-auth-cfg-'));
      try {
        const seed = new TextDecoder().decode(nkeys.createUser().getSeed());
        fs.writeFileSync(path.join(dir, 'ok.nk'), `# a comment\n${seed}\n`);
        fs.writeFileSync(path.join(dir, 'bad.nk'), 'SUNOTASEED\n');
        assert.deepEqual(loadBusConfig({ IM_NATS_USER: 'logic', IM_NATS_PASSWORD: 'pw' }, []),
          { kind: 'nats', servers: ['nats://127.0.0.1:4222'], auth: { credentials: { kind: 'password', user: 'logic', password: 'pw' } } });
        assert.deepEqual(loadBusConfig({ IM_NATS_NKEY_SEED_FILE: path.join(dir, 'ok.nk') }, []),
          { kind: 'nats', servers: ['nats://127.0.0.1:4222'], auth: { credentials: { kind: 'nkey', seed } } });
        assert.throws(() => loadBusConfig({ IM_NATS_USER: 'logic' }, []), namesField('IM_NATS_PASSWORD'));
        assert.throws(() => loadBusConfig({ IM_NATS_PASSWORD: 'pw' }, []), namesField('IM_NATS_USER'));
        assert.throws(() => loadBusConfig({ IM_NATS_USER: 'u', IM_NATS_PASSWORD: 'p', IM_NATS_NKEY_SEED_FILE: path.join(dir, 'ok.nk') }, []),
          namesField('IM_NATS_NKEY_SEED_FILE'));
        assert.throws(() => loadBusConfig({ IM_NATS_NKEY_SEED_FILE: path.join(dir, 'absent.nk') }, []), namesField('IM_NATS_NKEY_SEED_FILE'));
        assert.throws(() => loadBusConfig({ IM_NATS_NKEY_SEED_FILE: path.join(dir, 'bad.nk') }, []), namesField('IM_NATS_NKEY_SEED_FILE'));
        assert.throws(() => loadBusConfig({ IM_NATS_TLS_CA: path.join(dir, 'ok.nk') }, []), namesField('IM_NATS_TLS_CA'));
        assert.throws(() => loadBusConfig({ IM_NATS_TLS_CA: path.join(dir, 'absent.pem') }, []), namesField('IM_NATS_TLS_CA'));
        // Credentials in the URL (nats.js would ignore them) and in the settings at once.
        assert.throws(() => loadBusConfig({ IM_NATS_URL: 'nats://u:p@h:4222', IM_NATS_USER: 'u', IM_NATS_PASSWORD: 'p' }, []), namesField('IM_NATS_URL'));
        assert.throws(() => loadBusConfig({ IM_NATS_URL: 'nats://u:p@h:4222,nats://v:q@i:4222' }, []), namesField('IM_NATS_URL'));
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    });

    it('takes credentials out of the URL, which nats.js would ignore', () => {
      assert.deepEqual(urlCredentials(['nats://us%40r:p%3Aw@h:4222', 'tls://us%40r:p%3Aw@i'], undefined),
        { servers: ['nats://h:4222', 'tls://i'], auth: { credentials: { kind: 'password', user: 'us@r', password: 'p:w' } } });
      assert.deepEqual(urlCredentials(['nats://h:4222'], undefined), { servers: ['nats://h:4222'], auth: undefined });
    });

    it('refuses inprocess unless the caller runs every service in one process', () => {
      assert.throws(() => loadBusConfig({ IM_BUS: 'inprocess' }, []), namesField('IM_BUS'));
      assert.deepEqual(loadBusConfig({ IM_BUS: 'inprocess' }, [], { allowInProcessBus: true }), { kind: 'inprocess' });
    });

    it('names the field of each bad value', () => {
      assert.throws(() => loadBusConfig({ IM_BUS: 'kafka' }, []), namesField('IM_BUS'));
      assert.throws(() => loadBusConfig({ IM_NATS_URL: 'http://x/y' }, []), namesField('IM_NATS_URL'));
      assert.throws(() => loadBusConfig({ IM_NATS_URL: 'nats://host:70000' }, []), namesField('IM_NATS_URL'));
      assert.throws(() => loadBusConfig({ IM_NATS_URL: ',' }, []), namesField('IM_NATS_URL'));
    });
  });

  it('loadLogLevel accepts the five levels and names IM_LOG_LEVEL otherwise', () => {
    assert.equal(loadLogLevel({}, []), 'info');
    assert.equal(loadLogLevel({ IM_LOG_LEVEL: 'debug' }, ['--log-level', 'warn']), 'warn');
    assert.throws(() => loadLogLevel({ IM_LOG_LEVEL: 'verbose' }, []), namesField('IM_LOG_LEVEL'));
  });

  it('describeBackends never shows NATS credentials', () => {
    const d = describeBackends({ kind: 'sqlite', dataDir: '/d' }, { kind: 'nats', servers: ['nats://u:secret@h:4222'] });
    assert.deepEqual(d, { store: 'sqlite /d', bus: 'nats nats://h:4222' });
  });

  it('openBus builds an in-process bus that delivers', async () => {
    const bus = await openBus({ kind: 'inprocess' }, { name: 'test' });
    assert.ok(bus instanceof InProcessBus);
    const got = new Promise<Uint8Array>((resolve) => bus.subscribe('im.gw.n1', resolve));
    bus.publish('im.gw.n1', Uint8Array.of(7));
    assert.deepEqual([...(await got)], [7]);
    await bus.close();
  });
});
