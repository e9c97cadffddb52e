/**
 * Preloaded (`node -r dist/bench/probe.js ...`) into server processes the bench starts, so it can
 * read what /proc does not show. On the IPC channel it answers
 *   {t: 'probe', gc}          with process.memoryUsage(), after a full GC when asked (needs --expose-gc)
 *   {t: 'snapshot', path}     by writing a V8 heap snapshot there (for the per-connection memory breakdown)
 * Does nothing in a process without an IPC channel, and never keeps one alive.
 */
import * as v8 from 'node:v8';

interface ProbeRequest { t: 'probe' | 'snapshot'; id: number; gc?: boolean; path?: string }

if (typeof process.send === 'function') {
  process.on('message', (m: ProbeRequest) => {
    if (!m || (m.t !== 'probe' && m.t !== 'snapshot')) return;
    const gc = (globalThis as { gc?: () => void }).gc;
    if (m.t === 'snapshot') {
      const file = v8.writeHeapSnapshot(m.path);
      process.send?.({ t: 'probe-reply', id: m.id, file });
      return;
    }
    if (m.gc && gc) {
      gc();
      gc();
    }
    process.send?.({ t: 'probe-reply', id: m.id, mem: process.memoryUsage(), gc: !!(m.gc && gc) });
  });
  process.channel?.unref();
}
