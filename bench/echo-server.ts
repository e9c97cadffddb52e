/**
 * The raw ceiling's server: a minimal Node TCP server that echoes each length-prefixed frame
 * back as it is (4-byte big-endian length, then the body). No protobuf, no auth, no logic: what
 * one Node process on this machine does per frame with nothing else in the way. Prints one JSON
 * line {"echo": port} when listening; stops on SIGTERM/SIGINT.
 */
import * as net from 'node:net';

const MAX_FRAME_BYTES = 16 * 1024 * 1024;

/** Splits a connection's byte stream into whole frames (prefix included) and echoes them. */
function serve(socket: net.Socket): void {
  socket.setNoDelay(true);
  let pending: Buffer | undefined;
  socket.on('data', (chunk: Buffer) => {
    let buf = pending ? Buffer.concat([pending, chunk]) : chunk;
    pending = undefined;
    let end = 0;
    while (buf.length - end >= 4) {
      const len = buf.readUInt32BE(end);
      if (len > MAX_FRAME_BYTES) {
        socket.destroy();
        return;
      }
      if (buf.length - end - 4 < len) break;
      end += 4 + len;
    }
    // Every whole frame of this read leaves in one write, like the gateway's corked writes.
    if (end > 0) socket.write(end === buf.length ? buf : buf.subarray(0, end));
    if (end < buf.length) pending = Buffer.from(buf.subarray(end));
  });
  socket.on('error', () => {});
}

const server = net.createServer(serve);
server.listen(Number(process.env.BENCH_ECHO_PORT ?? 0), '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ echo: (server.address() as net.AddressInfo).port, pid: process.pid }) + '\n');
});
const stop = () => {
  server.close();
  process.exit(0);
};
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
