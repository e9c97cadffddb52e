import { strict as assert } from 'node:assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as nkeys from '@nats-io/nkeys';
import { namesField } from '../common/config.test-support';
import { InProcessBus } from './bus';
import { describeBus, loadBusConfig, openBus } from './config';
import { urlCredentials } from './nats-auth';

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

  it('describeBus never shows NATS credentials', () => {
    assert.deepEqual(describeBus({ kind: 'nats', servers: ['nats://u:secret@h:4222'] }), { bus: 'nats nats://h:4222' });
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
