import assert from 'node:assert/strict';
import * as net from 'node:net';
import { freePort, listen } from './net';

describe('freePort', () => {
  it('hands out distinct, bindable ports below the ephemeral range, even to concurrent callers', async () => {
    const ports = await Promise.all(Array.from({ length: 32 }, () => freePort()));
    assert.equal(new Set(ports).size, ports.length, 'no port handed out twice');
    for (const p of ports) assert.ok(p >= 20_000 && p < 32_768, `port ${p} outside 20000-32767`);
    const servers = ports.map(() => net.createServer());
    try {
      await Promise.all(servers.map((s, i) => listen(s, '127.0.0.1', ports[i])));
    } finally {
      await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
    }
  });
});
