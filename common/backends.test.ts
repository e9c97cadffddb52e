import { strict as assert } from 'node:assert';
import * as path from 'node:path';
import { describeBackends, loadBusConfig, loadLogLevel, loadStoreConfig, openBus } from './backends';
import { InProcessBus } from './bus';
import { ConfigError } from './config';

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
        keyspace: 'im', consistency: 'LOCAL_QUORUM', replication: 1, leaseMs: 10_000,
      });
    });

    it('reads every cassandra setting from env, and flags win', () => {
      const cfg = loadStoreConfig({
        IM_STORE: 'cassandra', IM_CASSANDRA_CONTACT_POINTS: 'c1:9042, c2 ,10.0.0.3:9142',
        IM_CASSANDRA_DC: 'eu-west', IM_CASSANDRA_KEYSPACE: 'im_prod', IM_CASSANDRA_CONSISTENCY: 'QUORUM',
        IM_CASSANDRA_REPLICATION: '3', IM_CASSANDRA_LEASE_MS: '4000',
      }, ['--cassandra-consistency', 'ONE']);
      assert.deepEqual(cfg, {
        kind: 'cassandra', contactPoints: ['c1:9042', 'c2', '10.0.0.3:9142'], localDataCenter: 'eu-west',
        keyspace: 'im_prod', consistency: 'ONE', replication: 3, leaseMs: 4000,
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
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_REPLICATION: '0' }, []), namesField('IM_CASSANDRA_REPLICATION'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_REPLICATION: 'three' }, []), namesField('IM_CASSANDRA_REPLICATION'));
      assert.throws(() => loadStoreConfig({ ...c, IM_CASSANDRA_USERNAME: 'im' }, []), namesField('IM_CASSANDRA_PASSWORD'));
    });

    it('reads password credentials only as a pair', () => {
      const cfg = loadStoreConfig({ IM_STORE: 'cassandra', IM_CASSANDRA_USERNAME: 'im', IM_CASSANDRA_PASSWORD: 's3cret' }, []);
      assert.deepEqual(cfg.kind === 'cassandra' && cfg.credentials, { username: 'im', password: 's3cret' });
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
