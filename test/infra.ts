/**
 * Suites that need a real NATS or Cassandra detect them. Absent: the suite is skipped with a loud
 * "skipped: …" line. With IM_REQUIRE_INFRA=1 (CI), absent is a failure instead.
 */
import * as net from 'node:net';

export const NATS_URL = process.env.IM_NATS_URL ?? 'nats://127.0.0.1:4222';
export const CASSANDRA_CONTACT = process.env.IM_CASSANDRA_CONTACT_POINTS ?? '127.0.0.1:9042';
export const REQUIRE_INFRA = /^(1|true|yes)$/i.test(process.env.IM_REQUIRE_INFRA ?? '');

/** Whether something accepts TCP at host:port within timeoutMs. */
export function reachable(host: string, port: number, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect({ host, port });
    const done = (ok: boolean) => { s.destroy(); resolve(ok); };
    s.setTimeout(timeoutMs, () => done(false));
    s.once('connect', () => done(true));
    s.once('error', () => done(false));
  });
}

function hostPort(url: string, defPort: number): [string, number] {
  const m = /^(?:\w+:\/\/)?([^:/,]+)(?::(\d+))?/.exec(url.split(',')[0].trim());
  return [m?.[1] ?? '127.0.0.1', Number(m?.[2] ?? defPort)];
}

export const natsReachable = () => reachable(...hostPort(NATS_URL, 4222));
export const cassandraReachable = () => reachable(...hostPort(CASSANDRA_CONTACT, 9042));

/**
 * Call in a suite's before(): skips the suite (loudly) when the server is absent, or fails it when
 * IM_REQUIRE_INFRA is set.
 */
export async function needs(ctx: Mocha.Context, what: 'nats' | 'cassandra'): Promise<void> {
  const ok = what === 'nats' ? await natsReachable() : await cassandraReachable();
  if (ok) return;
  const where = what === 'nats' ? NATS_URL : CASSANDRA_CONTACT;
  if (REQUIRE_INFRA) throw new Error(`${what} is required (IM_REQUIRE_INFRA=1) but not reachable at ${where}`);
  process.stdout.write(`\n  !!! skipped: ${ctx.test?.parent?.fullTitle() ?? what} — no ${what} at ${where} (start it with \`make infra-up\`, or set IM_REQUIRE_INFRA=1 to make this a failure)\n\n`);
  ctx.skip();
}
