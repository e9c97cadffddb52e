/**
 * What node:net, node:tls and `ws` become in the web page's bundle: the SDK uses them only for
 * TCP and Node WebSocket connections, which a page never opens (it uses `transport: 'websocket'`
 * and the browser's WebSocket). A TCP connect here is a clear error, not an undefined call.
 */
export function connect(): never {
  throw new Error('TCP is not available in a browser: use transport "websocket"');
}

export function isIP(): number {
  return 0;
}

export default {};
