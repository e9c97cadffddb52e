/** Small TCP helpers shared by tests, the bench and scripts' readiness checks. */
import * as net from 'node:net';

/**
 * Ports below the kernel's ephemeral range (Linux default 32768-60999), where freePort looks. A
 * port from listen(0) comes out of that range, so any outgoing connection (a driver, a client)
 * could take it between our probe and the caller's bind: EADDRINUSE, a rare flake. Below it,
 * only another listener can, and within this process we never hand out one port twice.
 */
const PORT_LOW = 20_000;
const PORT_HIGH = 32_767;
const handedOut = new Set<number>();

function bindsAt(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

/** A port that was free a moment ago (the caller binds it next), outside the ephemeral range. */
export async function freePort(): Promise<number> {
  const span = PORT_HIGH - PORT_LOW + 1;
  for (let tries = 0; tries < 200; tries++) {
    const port = PORT_LOW + Math.floor(Math.random() * span);
    if (handedOut.has(port)) continue;
    handedOut.add(port); // before the probe: concurrent callers never race for one port
    if (await bindsAt(port)) return port;
  }
  throw new Error(`freePort: no free port in ${PORT_LOW}-${PORT_HIGH} after 200 tries`);
}

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

/** server.listen(port, host), resolving with the bound port (rejecting on a bind error). */
export function listen(server: net.Server, host: string, port: number): Promise<number> {
  return new Promise<number>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve((server.address() as net.AddressInfo).port);
    });
  });
}
