/** host:port parsing, on its own so the client SDK (which runs in browsers too) can use it. */

export interface HostPort { host: string; port: number }

export function parseHostPort(v: string): HostPort | undefined {
  const m = /^\[?([^\]]*?)\]?:(\d{1,5})$/.exec(v.trim());
  if (!m) return undefined;
  const port = Number(m[2]);
  if (port > 65535) return undefined;
  return { host: m[1] || '0.0.0.0', port };
}

export function formatHostPort(hp: HostPort): string {
  return hp.host.includes(':') ? `[${hp.host}]:${hp.port}` : `${hp.host}:${hp.port}`;
}
