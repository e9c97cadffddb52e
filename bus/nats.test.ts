import { strict as assert } from 'node:assert';
import { spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import {
  freePort, NATS_SERVER_BIN, NATS_URL, NATS_WHERE, REQUIRE_INFRA, needs, startNatsServer as startServer, stopNatsServer as stopServer,
} from '../test/infra';
import { decodeDeliveryBatch, encodeDeliveryBatch } from '../proto/delivery';
import { eventually } from '../test/wait';
import { NatsBus, type NatsBusOptions } from './nats';
import { ConfigError } from '../common/config';
import { UnavailableError } from '../common/errors';
import { createLogger } from '../common/log';

let seq = 0;
const subject = () => `im.test.${process.pid}.${Date.now()}.${seq++}`;

/** Waits for a condition driven by the network; the bound only turns a hang into a clear failure. */
const waitFor = (what: string, cond: () => boolean, boundMs = 8000) => eventually(cond, what, boundMs);

function capture() {
  const lines: Array<{ level: string; msg: string } & Record<string, unknown>> = [];
  const logger = createLogger('debug', {}, (l) => lines.push(JSON.parse(l)));
  return { logger, lines, count: (msg: string) => lines.filter((l) => l.msg.startsWith(msg)).length };
}

function collect() {
  const got: Uint8Array[] = [];
  return { got, handler: (d: Uint8Array) => { got.push(d); }, texts: () => got.map((d) => Buffer.from(d).toString()) };
}

const text = (s: string) => new Uint8Array(Buffer.from(s));

describe('NatsBus', function () {
  describe('options', () => {
    it('rejects bad options at start with the field named', async () => {
      await assert.rejects(NatsBus.connect({ servers: '' }), (e: unknown) => e instanceof ConfigError && e.field === 'servers');
      await assert.rejects(NatsBus.connect({ servers: NATS_URL, maxPendingBytes: 0 }),
        (e: unknown) => e instanceof ConfigError && e.field === 'maxPendingBytes');
      await assert.rejects(NatsBus.connect({ servers: NATS_URL, drainTimeoutMs: 1.5 }),
        (e: unknown) => e instanceof ConfigError && e.field === 'drainTimeoutMs');
    });
  });

  describe(`against a running server (${NATS_WHERE})`, function () {
    let pub: NatsBus;
    let sub: NatsBus;
    const log = capture();

    before(async function () {
      await needs(this, 'nats');
      // Two connections, as logic and a gateway in two processes would have.
      pub = await NatsBus.connect({ servers: NATS_URL, name: 'test-logic', logger: log.logger });
      sub = await NatsBus.connect({ servers: NATS_URL, name: 'test-gateway', logger: log.logger });
    });
    after(async () => {
      await Promise.all([pub?.close(), sub?.close()]);
    });

    it('delivers publishes from one connection to a subscriber on another, bytes intact and in order', async () => {
      const subj = subject();
      const c = collect();
      sub.subscribe(subj, c.handler);
      await sub.flush(); // the SUB is live on the server before the other connection publishes
      assert.equal(sub.connected, true);

      const allBytes = Uint8Array.from({ length: 256 }, (_, i) => i);
      const big = new Uint8Array(randomBytes(256 * 1024));
      const batch = encodeDeliveryBatch({ deliveries: [{ uid: 'u1', seq: 7, message: allBytes }], kicks: [] });
      const sent = [allBytes, new Uint8Array(0), big, batch, ...Array.from({ length: 50 }, (_, i) => text(`m${i}`))];
      for (const d of sent) pub.publish(subj, d);

      await waitFor('all messages', () => c.got.length >= sent.length);
      assert.equal(c.got.length, sent.length);
      c.got.forEach((d, i) => {
        assert.ok(d instanceof Uint8Array);
        assert.deepEqual(Buffer.from(d), Buffer.from(sent[i]), `message ${i} differs`);
      });
      assert.deepEqual(decodeDeliveryBatch(c.got[3]).deliveries[0].uid, 'u1');
      assert.deepEqual(Buffer.from(decodeDeliveryBatch(c.got[3]).deliveries[0].message), Buffer.from(allBytes));
    });

    it('stops delivering to a handler after its unsubscribe, and unsubscribe is idempotent', async () => {
      const subj = subject();
      const gone = collect();
      const stays = collect();
      const off = sub.subscribe(subj, gone.handler);
      sub.subscribe(subj, stays.handler);
      await sub.flush();
      pub.publish(subj, text('one'));
      await waitFor('first message on both', () => gone.got.length === 1 && stays.got.length === 1);

      off();
      off();
      await sub.flush(); // the UNSUB reached the server
      pub.publish(subj, text('two'));
      await waitFor('second message on the remaining handler', () => stays.got.length === 2);
      assert.deepEqual(gone.texts(), ['one']);
      assert.deepEqual(stays.texts(), ['one', 'two']);
    });

    it('keeps a subscription alive when its handler throws', async () => {
      const subj = subject();
      const seen: string[] = [];
      const before = sub.stats().handlerErrors;
      sub.subscribe(subj, (d) => {
        seen.push(Buffer.from(d).toString());
        if (seen.length === 1) throw new Error('handler bug');
      });
      await sub.flush();
      pub.publish(subj, text('boom'));
      pub.publish(subj, text('after'));
      await waitFor('message after the throw', () => seen.length === 2);
      assert.deepEqual(seen, ['boom', 'after']);
      assert.equal(sub.stats().handlerErrors, before + 1);
      assert.ok(log.count('bus handler threw') >= 1);
    });

    it('does not throw on publishes the server or client would reject, and keeps working', async () => {
      const subj = subject();
      const c = collect();
      sub.subscribe(subj, c.handler);
      await sub.flush();
      const before = pub.stats().publishErrors;
      for (const bad of ['', 'im.gw.a b', 'im..gw', 'im.gw.*', 'im.>']) {
        assert.doesNotThrow(() => pub.publish(bad, text('x')), `publish(${JSON.stringify(bad)}) threw`);
      }
      // Over the server's max_payload (1 MiB by default).
      assert.doesNotThrow(() => pub.publish(subj, new Uint8Array(2 * 1024 * 1024)));
      assert.equal(pub.stats().publishErrors, before + 6);
      pub.publish(subj, text('fine'));
      await waitFor('a good message after the bad ones', () => c.got.length === 1);
      assert.deepEqual(c.texts(), ['fine']);
      assert.equal(pub.connected, true);
    });

    it('rejects a malformed subscription subject with a ConfigError', () => {
      assert.throws(() => sub.subscribe('im.gw.a b', () => undefined), (e: unknown) => e instanceof ConfigError);
    });

    it('refuses to start when TLS is asked for (IM_NATS_TLS_CA) and the server offers none, naming the setting', async () => {
      // The client stops at the server's INFO, before any certificate is read.
      await assert.rejects(NatsBus.connect({ servers: NATS_URL, auth: { tlsCa: 'a CA the server never gets to show' } }),
        (e: unknown) => e instanceof ConfigError && e.field === 'IM_NATS_TLS_CA' && /does not offer TLS/.test(e.message));
    });

    it('close() delivers what was published just before it, is idempotent, and later calls neither throw nor deliver', async () => {
      const subj = subject();
      const c = collect();
      sub.subscribe(subj, c.handler);
      await sub.flush();
      const bus = await NatsBus.connect({ servers: NATS_URL, name: 'test-closing' });
      const mine = collect();
      const off = bus.subscribe(subj, mine.handler);
      await bus.flush();
      // Enough that some is still in the socket's user-space buffer when close() is called.
      const chunk = new Uint8Array(8 * 1024);
      for (let i = 0; i < 4000; i++) bus.publish(subj, chunk);
      bus.publish(subj, text('last words'));
      const first = bus.close();
      const second = bus.close();
      assert.equal(first, second);
      await first;
      await bus.close();
      assert.equal(bus.connected, false);
      assert.equal(bus.stats().closed, true);

      await waitFor('the messages published right before close', () => c.got.length === 4001);
      assert.equal(c.texts()[4000], 'last words');

      assert.doesNotThrow(() => bus.publish(subj, text('too late')));
      assert.doesNotThrow(off, 'an unsubscribe after close');
      assert.equal(bus.stats().dropped, 1);
      assert.throws(() => bus.subscribe(subj, () => undefined), (e: unknown) => e instanceof UnavailableError);
      await assert.rejects(bus.flush(), (e: unknown) => e instanceof UnavailableError);
      pub.publish(subj, text('marker'));
      await waitFor('marker on the open bus', () => c.got.length === 4002);
      assert.deepEqual(mine.texts().filter((t) => t === 'marker'), [], 'closed bus still delivered');
    });
  });

  describe('across a nats-server restart (own server on a free port)', function () {
    let server: ChildProcess | undefined;
    const buses: NatsBus[] = [];

    before(async function () {
      await needs(this, 'nats');
      const probe = spawnSync(NATS_SERVER_BIN, ['--version'], { encoding: 'utf8' });
      if (probe.error || probe.status !== 0) {
        const why = `${NATS_SERVER_BIN} is not runnable here (${probe.error?.message ?? probe.stderr})`;
        if (REQUIRE_INFRA) throw new Error(`${why}; required with IM_REQUIRE_INFRA=1`);
        process.stdout.write(`\n  !!! skipped: ${this.test?.parent?.fullTitle()} — ${why} (apt-get install -y nats-server)\n\n`);
        this.skip();
      }
    });
    afterEach(async () => {
      await Promise.all(buses.splice(0).map((b) => b.close()));
      if (server && server.exitCode === null && server.signalCode === null) await stopServer(server);
      server = undefined;
    });

    it('waits for the first connection, drops beyond maxPendingBytes while down without throwing, resubscribes, and closes while down', async () => {
      const port = await freePort();
      const url = `nats://127.0.0.1:${port}`;
      const log = capture();
      const opts: NatsBusOptions = { servers: url, logger: log.logger, reconnectTimeWaitMs: 200, reconnectJitterMs: 100, drainTimeoutMs: 500 };

      // A process started before NATS waits for it rather than failing.
      const connecting = NatsBus.connect({ ...opts, name: 'restart-logic', maxPendingBytes: 64 * 1024 });
      await waitFor('the first dial to be refused', () => log.count('nats not reachable yet') === 1);
      server = await startServer(port);
      const pub = await connecting;
      buses.push(pub);
      const sub = await NatsBus.connect({ ...opts, name: 'restart-gateway' });
      buses.push(sub);

      const subj = subject();
      const c = collect();
      sub.subscribe(subj, c.handler);
      await sub.flush();
      pub.publish(subj, text('before'));
      await waitFor('message before the outage', () => c.texts().includes('before'));

      await stopServer(server, 'SIGKILL');
      await waitFor('both buses to notice the outage', () => !pub.connected && !sub.connected);

      // 200 x 1 KiB against a 64 KiB bound: the first 64 are handed to the client, the rest dropped.
      const kib = new Uint8Array(1024);
      for (let i = 0; i < 200; i++) assert.doesNotThrow(() => pub.publish(subj, kib));
      assert.equal(pub.stats().dropped, 136);
      assert.equal(log.count('bus publish dropped'), 1, 'one log line per outage, not per message');

      server = await startServer(port);
      await waitFor('both buses to reconnect', () => pub.connected && sub.connected);
      await sub.flush(); // the client re-sent its SUB on reconnect; make sure the server has it
      pub.publish(subj, text('after'));
      await waitFor('message published after the server returned', () => c.texts().includes('after'));
      assert.ok(pub.stats().reconnects >= 1 && sub.stats().reconnects >= 1);
      assert.ok(log.count('nats disconnected') >= 2 && log.count('nats reconnected') >= 2);

      // Shutdown stays bounded when the server is gone for good.
      await stopServer(server, 'SIGKILL');
      await waitFor('outage noticed again', () => !sub.connected);
      assert.doesNotThrow(() => pub.publish(subj, text('into the void')));
      await Promise.all([pub.close(), sub.close()]);
      await Promise.all([pub.close(), sub.close()]);
      assert.equal(pub.connected, false);
      assert.equal(sub.connected, false);
    });
  });
});
