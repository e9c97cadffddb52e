/**
 * A Connection's deadlines and rate state driven by a TimerWheel on an injected clock: no test
 * here waits for time to pass.
 */
import * as assert from 'node:assert/strict';
import * as net from 'node:net';
import { Code, DisconnectCode } from '../common/errors';
import { silentLogger } from '../common/log';
import { Connection, type ConnectionContext, type ConnectionSnapshot } from './connection';
import { resolveLimits } from './limits';
import { eventually, TestClient, token } from './gateway.test-support';
import { TimerWheel } from './timer-wheel';
import { SECRET } from './gateway.test-support';

describe('Connection deadlines and rate state (timer wheel, injected clock)', () => {
  const limits = resolveLimits({ authTimeoutMs: 5000, heartbeatIntervalMs: 30_000, idleTimeoutMs: 90_000, rateLimitPerSec: 1, rateLimitBurst: 3 });
  let wheel: TimerWheel;
  let server: net.Server;
  let port: number;
  const conns: Connection[] = [];
  let adopt: ConnectionSnapshot | undefined;

  beforeEach(async () => {
    wheel = new TimerWheel({ granuleMs: 100, now: () => 0, autoAdvance: false });
    const context: ConnectionContext = {
      node: 'n1', auth: { secret: SECRET }, limits, logger: silentLogger, wheel,
      // Business ops are not under test: nothing here sends one.
      logic: { call: async () => ({ code: Code.INTERNAL, body: new Uint8Array(0), message: 'unused', retryable: false }) },
    };
    adopt = undefined;
    conns.length = 0;
    server = net.createServer((s) => { conns.push(new Connection(context, s, `c${conns.length}`, adopt)); });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as net.AddressInfo).port;
  });
  afterEach(async () => {
    for (const c of conns) c.destroy();
    wheel.stop();
    await new Promise((r) => server.close(r));
  });

  async function connect(): Promise<TestClient> {
    const c = await TestClient.connect(port);
    await eventually(() => conns.length > 0 && conns[conns.length - 1].socket.remotePort === c.socket.localPort, 'server side');
    return c;
  }

  it('auth timeout: nothing before the deadline, OP_ERROR AUTH_TIMEOUT and Disconnect AUTH_TIMEOUT at it', async () => {
    const c = await connect();
    const t0 = Date.now();
    wheel.advance(t0 + 4000);
    assert.equal(conns[0].state, 'awaiting-auth');
    wheel.advance(t0 + 5000 + 1000);
    const err = await c.take((f) => f.requestId === 0 && f.error !== null, 'OP_ERROR');
    assert.equal(err.error?.code, Code.AUTH_TIMEOUT);
    assert.equal((await c.disconnectFrame()).code, DisconnectCode.AUTH_TIMEOUT);
    assert.equal(wheel.size, 0, 'a closing connection leaves the wheel');
  });

  it('idle timeout counts from the last frame: a ping moves it, silence past it closes with IDLE_TIMEOUT', async () => {
    const c = await connect();
    await c.authOk(token('u1'));
    await new Promise((r) => setImmediate(r));
    const pingedAt = Date.now();
    assert.equal((await c.ping()).error, null);
    wheel.advance(pingedAt + 89_000);
    assert.equal(conns[0].state, 'open', 'the ping keeps it alive past the first deadline');
    wheel.advance(Date.now() + 90_000 + 1000);
    assert.equal((await c.disconnectFrame()).code, DisconnectCode.IDLE_TIMEOUT);
  });

  it('rate state is created by frames, dropped once refilled, and travels with a hand-off until then', async () => {
    const c = await connect();
    await c.authOk(token('u1'));
    assert.equal((await c.ping()).error, null);
    assert.equal((await c.ping()).error, null);
    assert.equal((await c.ping()).error?.code, Code.RATE_LIMITED, 'burst of 3 spent');

    // Handed over while spent: the next owner keeps the empty bucket.
    const spent = conns[0].detach();
    assert.ok(spent.rateTokens < 1, `tokens ${spent.rateTokens}`);
    adopt = spent;
    const c2 = await connect();
    assert.equal((await c2.ping()).error?.code, Code.RATE_LIMITED, 'the adopted connection is still limited');

    // Once the wheel passes the refill time the state is gone: a snapshot reports a full bucket.
    wheel.advance(Date.now() + 10_000);
    assert.equal(conns[1].detach().rateTokens, limits.rateLimitBurst);
    c.close();
    c2.close();
  });
});
