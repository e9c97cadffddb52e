/**
 * One fuzz connection: connect, write its bytes in the chosen cuts, read (and tally) whatever the
 * gateway answers, half-close, and wait for the gateway to close. A gateway that keeps the socket
 * open past the bound after the client's FIN counts as a hang.
 */
import * as net from 'node:net';
import { FrameDecoder } from '../../proto/codec';
import { decode, decodeFrame, Frame, Op } from '../../proto/wire';

/** What all connections saw, summed. */
export class Tally {
  framesSent = 0;
  bytesSent = 0;
  connections = 0;
  hangs = 0;
  /** Connections refused at connect (e.g. the connection limit). */
  refused = 0;
  /** "error 1001", "disconnect 3005", "ok": replies by code. */
  readonly replies = new Map<string, number>();

  count(key: string): void {
    this.replies.set(key, (this.replies.get(key) ?? 0) + 1);
  }

  sortedReplies(): Array<[string, number]> {
    return [...this.replies].sort((a, b) => b[1] - a[1]);
  }
}

export interface FuzzConnOptions {
  host: string;
  port: number;
  writes: Buffer[];
  /** Frames in `writes` (for the tally). */
  frames: number;
  tally: Tally;
  /** After the client's FIN, how long the gateway may take to close. */
  closeTimeoutMs: number;
  /** Called with every frame the gateway sends. */
  onFrame?: (f: Frame) => void;
}

export function replyKey(f: Frame): string {
  // An error reply carries the op of the request, which may be any op the fuzzer made up.
  if (f.error) return `error ${f.error.code}`;
  if (f.op === Op.DISCONNECT) {
    try {
      return `disconnect ${decode('Disconnect', f.body).code}`;
    } catch {
      return 'disconnect (undecodable)';
    }
  }
  return f.op === Op.PUSH ? 'push' : 'ok';
}

/** Resolves when the socket has closed (never rejects). */
export async function fuzzConnection(o: FuzzConnOptions): Promise<void> {
  const socket = net.connect({ host: o.host, port: o.port });
  socket.setNoDelay(true);
  const decoder = new FrameDecoder(16 * 1024 * 1024);
  let connected = false;
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  socket.on('error', () => undefined); // resets are an expected answer to garbage
  socket.on('data', (chunk: Buffer) => {
    const { frames, error } = decoder.push(chunk);
    for (const body of frames) {
      let f: Frame;
      try {
        f = decodeFrame(body);
      } catch {
        o.tally.count('undecodable reply');
        continue;
      }
      o.tally.count(replyKey(f));
      o.onFrame?.(f);
    }
    if (error) o.tally.count('oversized reply');
  });
  await Promise.race([new Promise<void>((resolve) => socket.once('connect', () => { connected = true; resolve(); })), closed]);
  if (!connected) {
    o.tally.refused++;
    return;
  }
  o.tally.connections++;
  o.tally.framesSent += o.frames;
  for (let i = 0; i < o.writes.length && socket.writable; i++) {
    o.tally.bytesSent += o.writes[i].length;
    const flushed = socket.write(o.writes[i]);
    // Separate writes leave as separate segments (no delay): yield so they are not coalesced.
    if (!flushed) await Promise.race([new Promise((r) => socket.once('drain', r)), closed]);
    else if (o.writes.length > 1) await new Promise((r) => setImmediate(r));
  }
  socket.end();
  const timer = setTimeout(() => {
    o.tally.hangs++;
    socket.destroy();
  }, o.closeTimeoutMs);
  await closed;
  clearTimeout(timer);
}
