/** Browser stand-in for node:path: proto/wire.ts joins a file path at load time, never read in a page. */
export function resolve(...parts: string[]): string {
  return parts.join('/');
}

export default { resolve };
