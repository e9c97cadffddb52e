/**
 * The raw ceiling's client side, run inside the load-generator workers: N connections to the
 * echo server, one frame in flight on each (send, wait for the echo, send again), frames the same
 * size as the scenario's send frames. Also a connect+one-round-trip storm and a hold of idle
 * sockets, the ceilings of connect-storm and idle.
 */
import * as net from 'node:net';
import { Histogram } from './histogram';
import type { EchoResult, HostPort } from './ipc';
import { nowUs } from './stamp';

function frame(bytes: number): Buffer {
  const body = Math.max(1, bytes - 4);
  const b = Buffer.alloc(4 + body, 0x62);
  b.writeUInt32BE(body, 0);
  return b;
}

/** Calls onFrame once per whole echoed frame. */
function framer(onFrame: () => void): (chunk: Buffer) => void {
  let need = -1;
  let have = 0;
  let head: Buffer | undefined;
  return (chunk: Buffer) => {
    let off = 0;
    while (off < chunk.length) {
      if (need < 0) {
        const take = Math.min(4 - have, chunk.length - off);
        const part = chunk.subarray(off, off + take);
        head = head ? Buffer.concat([head, part]) : Buffer.from(part);
        off += take;
        have += take;
        if (have < 4) return;
        need = head.readUInt32BE(0);
        head = undefined;
        have = 0;
      }
      const take = Math.min(need, chunk.length - off);
      need -= take;
      off += take;
      if (need === 0) {
        need = -1;
        onFrame();
      }
    }
  };
}

function connect(target: HostPort): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(target);
    s.setNoDelay(true);
    s.once('connect', () => {
      s.off('error', reject);
      resolve(s);
    });
    s.once('error', reject);
  });
}

/** Steady echo: `connections` sockets, one frame in flight each, for durationMs. */
export async function runEcho(target: HostPort, connections: number, durationMs: number, frameBytes: number): Promise<EchoResult> {
  const sockets: net.Socket[] = [];
  let failed = 0;
  for (let i = 0; i < connections; i += 200) {
    const batch = await Promise.allSettled(Array.from({ length: Math.min(200, connections - i) }, () => connect(target)));
    for (const r of batch) if (r.status === 'fulfilled') sockets.push(r.value); else failed++;
  }
  const hist = new Histogram();
  const buf = frame(frameBytes);
  let running = true;
  let count = 0;
  const start = Date.now();
  await new Promise<void>((resolve) => {
    let open = sockets.length;
    if (open === 0) resolve();
    for (const s of sockets) {
      let sentAt = nowUs();
      s.on('data', framer(() => {
        const now = nowUs();
        hist.record(now - sentAt);
        count++;
        if (!running) {
          s.destroy();
          return;
        }
        sentAt = now;
        s.write(buf);
      }));
      s.on('error', () => {});
      s.on('close', () => { if (--open === 0) resolve(); });
      s.write(buf);
    }
    setTimeout(() => {
      running = false;
      // Sockets waiting on an echo close when it arrives; a stuck one is cut after a second.
      setTimeout(() => { for (const s of sockets) s.destroy(); }, 1000);
    }, durationMs);
  });
  return { count, failed, rttUs: hist.snapshot(), elapsedMs: Date.now() - start };
}

/** `count` times: connect, one round trip, close — `concurrency` at a time. */
export async function runEchoConnect(target: HostPort, count: number, concurrency: number, frameBytes: number): Promise<EchoResult> {
  const hist = new Histogram();
  const buf = frame(frameBytes);
  let next = 0;
  let ok = 0;
  let failed = 0;
  const start = Date.now();
  const one = async () => {
    const t0 = nowUs();
    const s = await connect(target);
    await new Promise<void>((resolve, reject) => {
      s.on('data', framer(() => resolve()));
      s.once('error', reject);
      s.once('close', () => reject(new Error('closed')));
      s.write(buf);
    });
    hist.record(nowUs() - t0);
    s.destroy();
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, async () => {
    while (next < count) {
      next++;
      try {
        await one();
        ok++;
      } catch {
        failed++;
      }
    }
  }));
  return { count: ok, failed, rttUs: hist.snapshot(), elapsedMs: Date.now() - start };
}

const held: net.Socket[] = [];

/** Opens `count` idle sockets and keeps them until releaseEcho(). */
export async function holdEcho(target: HostPort, count: number, concurrency: number): Promise<EchoResult> {
  const start = Date.now();
  let failed = 0;
  for (let i = 0; i < count; i += concurrency) {
    const batch = await Promise.allSettled(Array.from({ length: Math.min(concurrency, count - i) }, () => connect(target)));
    for (const r of batch) {
      if (r.status === 'fulfilled') {
        r.value.on('error', () => {});
        held.push(r.value);
      } else failed++;
    }
  }
  return { count: held.length, failed, rttUs: new Histogram().snapshot(), elapsedMs: Date.now() - start };
}

export function releaseEcho(): void {
  for (const s of held.splice(0)) s.destroy();
}
