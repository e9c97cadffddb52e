/** The SDK's TCP transport (Node only): length-prefixed frames on a socket, TLS when asked. */
import * as net from 'node:net';
import * as tls from 'node:tls';
import { FrameDecoder } from '../proto/codec';
import type { Link, LinkEvents, TcpTarget } from './link';

/** TCP, or TLS (1.2 or later, the gateway's certificate verified) when `t.tls` is set. */
export function openTcpLink(t: TcpTarget, events: LinkEvents): Link & { socket: net.Socket } {
  const { host, port } = t;
  const socket = t.tls
    ? tls.connect({
      host, port, minVersion: 'TLSv1.2', ca: t.tls.ca as tls.ConnectionOptions['ca'],
      // Node sends no SNI for an IP; the identity check then uses the IP itself.
      servername: t.tls.servername ?? (net.isIP(host) ? undefined : host),
    })
    : net.connect({ host, port });
  const decoder = new FrameDecoder(t.maxIncomingFrameBytes);
  socket.setNoDelay(true);
  socket.on(t.tls ? 'secureConnect' : 'connect', events.open);
  socket.on('data', (chunk: Buffer) => {
    events.alive();
    const { frames, error } = decoder.push(chunk);
    for (const body of frames) events.frame(body);
    if (error) events.tooLarge(error.message);
  });
  socket.on('error', (err) => events.error(err.message));
  socket.on('close', events.close);
  return {
    socket,
    send: (frame) => { socket.write(frame); },
    end: () => { socket.end(); },
    destroy: () => { socket.destroy(); },
  };
}
