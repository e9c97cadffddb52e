import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { makeTestPki, type TestPki } from '../test/tls-certs';
import { namesField } from '../common/config.test-support';
import { describeStore, loadStoreConfig } from './config';

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
      keyspace: 'im', consistency: 'LOCAL_QUORUM', replication: 1, leaseMs: 10_000, writeBehindMs: 10_000, maxKeyStates: 100_000, maxKeyHeads: 500_000, shedAfterMs: 2000,
    });
  });

  it('reads every cassandra setting from env, and flags win', () => {
    const cfg = loadStoreConfig({
      IM_STORE: 'cassandra', IM_CASSANDRA_CONTACT_POINTS: 'c1:9042, c2 ,10.0.0.3:9142',
      IM_CASSANDRA_DC: 'eu-west', IM_CASSANDRA_KEYSPACE: 'im_prod', IM_CASSANDRA_CONSISTENCY: 'QUORUM',
      IM_CASSANDRA_REPLICATION: '3', IM_CASSANDRA_LEASE_MS: '4000', IM_CASSANDRA_WRITE_BEHIND_MS: '500',
      IM_CASSANDRA_MAX_KEY_HEADS: '0', IM_CASSANDRA_MAX_KEY_STATES: '2000', IM_CASSANDRA_SHED_AFTER_MS: '0',
    }, ['--cassandra-consistency', 'ONE', '--cassandra-write-behind-ms', '750']);
    assert.deepEqual(cfg, {
      kind: 'cassandra', contactPoints: ['c1:9042', 'c2', '10.0.0.3:9142'], localDataCenter: 'eu-west',
      keyspace: 'im_prod', consistency: 'ONE', replication: 3, leaseMs: 4000, writeBehindMs: 750, maxKeyStates: 2000, maxKeyHeads: 0, shedAfterMs: 0,
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
    assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_MAX_KEY_HEADS: '-1' }, []), namesField('IM_CASSANDRA_MAX_KEY_HEADS'));
    assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_MAX_KEY_STATES: '0' }, []), namesField('IM_CASSANDRA_MAX_KEY_STATES'));
    assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_SHED_AFTER_MS: '-1' }, []), namesField('IM_CASSANDRA_SHED_AFTER_MS'));
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

  it('describes the store in one line', () => {
    assert.deepEqual(describeStore({ kind: 'sqlite', dataDir: '/d' }), { store: 'sqlite /d' });
  });
});
