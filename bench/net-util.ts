/** Small TCP helpers for the bench: free ports, reachability, host:port parsing. */
import { parseHostPort } from '../common/config';
import type { HostPort } from './ipc';

export { freePort, reachable } from '../common/net';

export function tcpTarget(addr: string): HostPort {
  const hp = parseHostPort(addr);
  if (!hp) throw new Error(`expected host:port, got "${addr}"`);
  return { host: hp.host, port: hp.port };
}
