/**
 * The SDK's WebSocket transport: one binary message per Frame, the bytes after TCP's length
 * prefix (docs/protocol.md "WebSocket framing"). No Node-only import: the platform hands in the
 * socket (the `ws` package in Node, which also bounds incoming messages; the global WebSocket in
 * a browser).
 */
import type { Link, LinkEvents } from './link';

/** The part of the WHATWG WebSocket API used here (browsers and the `ws` package both have it). */
export interface WebSocketLike {
  binaryType: string;
  readonly readyState: number;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onerror: ((ev: { message?: string }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  send(data: Uint8Array): void;
  close(code?: number, reason?: string): void;
  /** `ws` only: close without the closing handshake. */
  terminate?(): void;
}

const OPEN = 1;
const PREFIX_BYTES = 4;
/** RFC 6455: a close the client asks for. */
const NORMAL_CLOSURE = 1000;

/** An ArrayBuffer, also one made in another realm (an iframe, a vm context), where instanceof fails. */
function isArrayBuffer(d: unknown): d is ArrayBuffer {
  return d instanceof ArrayBuffer || Object.prototype.toString.call(d) === '[object ArrayBuffer]';
}

/** Opens a link on the socket `create` makes (it may throw, e.g. for a malformed URL). */
export function openWebSocketLink(create: () => WebSocketLike, events: LinkEvents): Link {
  let ws: WebSocketLike;
  try {
    ws = create();
  } catch (err) {
    // A malformed URL throws at once; report it as a failed connect, like a refused TCP connect.
    queueMicrotask(() => {
      events.error((err as Error).message);
      events.close();
    });
    return { send() {}, end() {}, destroy() {} };
  }
  let closed = false;
  ws.onopen = () => events.open();
  ws.onmessage = (ev) => {
    const d = ev.data;
    events.alive();
    if (isArrayBuffer(d)) events.frame(new Uint8Array(d));
    else if (ArrayBuffer.isView(d)) events.frame(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
    else {
      events.error('text message from the server (frames are binary)');
      ws.close(NORMAL_CLOSURE);
    }
  };
  ws.onerror = (ev) => events.error(ev.message || 'websocket error');
  ws.onclose = (ev) => {
    if (closed) return;
    closed = true;
    // A close with a Disconnect code follows the Disconnect frame, which already said why.
    if (ev.code !== NORMAL_CLOSURE) events.error(`websocket closed (${ev.code}${ev.reason ? ` ${ev.reason}` : ''})`);
    events.close();
  };
  return {
    send(frame) {
      if (ws.readyState === OPEN) ws.send(frame.subarray(PREFIX_BYTES));
    },
    end() {
      ws.close(NORMAL_CLOSURE);
    },
    destroy() {
      if (ws.terminate) ws.terminate();
      else ws.close(NORMAL_CLOSURE);
    },
  };
}
