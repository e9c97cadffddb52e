/**
 * Stopping a socket's reads before its handle crosses to another process (a hot upgrade: the
 * supervisor does it before passing a new socket on, a connection before it is handed over).
 *
 * A handle passed with subprocess.send(msg, socket) stays open in the sender until the receiver
 * acknowledges it, and Node only swaps its read callback for a no-op: if libuv is still reading,
 * bytes that arrive in that window are read here and thrown away. socket.pause() does not help —
 * without an `onread` buffer it only stops 'data' events, and reads go on until the stream's
 * buffer fills. So reads are stopped on the handle itself, and what the client sends meanwhile
 * waits in the kernel's receive buffer for the next owner.
 */
import type * as net from 'node:net';

interface StreamHandle {
  readStop?: () => number;
}

/**
 * Stops reading for good in this process. `reading` on the handle is left as it is on purpose:
 * net.js restarts reads from _read() when it sees `reading === false`.
 */
export function stopReading(socket: net.Socket): void {
  socket.pause();
  const handle = (socket as unknown as { _handle?: StreamHandle | null })._handle;
  if (handle && typeof handle.readStop === 'function') handle.readStop();
}
